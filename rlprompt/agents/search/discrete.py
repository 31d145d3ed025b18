"""The loop of the discrete black-box baselines: propose prompts, score them on train,
check the promising ones on dev.

Per round: ``propose`` gives up to ``batch_size`` new token-id prompts; each is scored on
the whole train split (1 prompt evaluation each); those whose train reward enters the
running top ``dev_top_k`` are scored on dev (1 more each) and offered for best-on-dev
selection. The last rounds shrink so that their best candidates can still be checked on
dev, and a run spends exactly its budget (less only if the proposer runs dry).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from rlprompt.agents.core.config import STALL_ROUNDS, AgentConfig
from rlprompt.agents.core.kinds import DiscreteAgent
from rlprompt.agents.core.tracking import TopKGate
from rlprompt.agents.search.config import DiscreteSearchConfig


def train_room(remaining: int, batch: int, dev_top_k: int) -> int:
    """Candidates to score on train this round, leaving room to check the best of them on dev."""
    return max(1, min(batch, remaining - min(dev_top_k, remaining // 2)))


class DiscreteSearch(DiscreteAgent):
    """Base of :class:`~rlprompt.agents.search.random_search.RandomSearch` and
    :class:`~rlprompt.agents.search.lm_prior.LMPriorSampling`; a subclass writes :meth:`propose`.
    """

    supports_resume: ClassVar[bool] = True
    supports_generation: ClassVar[bool] = True
    config_class: ClassVar[type[AgentConfig]] = DiscreteSearchConfig
    config: DiscreteSearchConfig

    @abstractmethod
    def propose(self, n: int, rng: np.random.Generator) -> list[list[int]]:
        """Up to ``n`` new prompts (token ids); an empty list ends the search."""

    def _start_loop(self) -> None:
        """The loop's fresh state: the proposal RNG, the dev gate, the prompts seen."""
        cfg = self.config
        self._rng = np.random.default_rng(cfg.seed)
        self._gate = TopKGate(cfg.dev_top_k)
        self._seen: set[tuple[int, ...]] = set()
        self._stale = 0  # rounds in a row that proposed nothing new (a tiny search space runs dry)

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from rlprompt.agents.core.checkpoint import numpy_generator_state

        tensors, meta = super().checkpoint_state()
        meta["search"] = {"rng": numpy_generator_state(self._rng), "gate": self._gate.state(),
                          "seen": [list(p) for p in self._seen], "stale": self._stale}
        return tensors, meta

    def restore_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().restore_state(tensors, meta)
        self._start_loop()
        state = meta["search"]
        self._rng.bit_generator.state = state["rng"]
        self._gate.restore(state["gate"])
        self._seen = {tuple(p) for p in state["seen"]}
        self._stale = int(state["stale"])

    def _learn(self) -> None:
        cfg, budget = self.config, self.budget
        assert budget is not None
        if not self.resuming:
            self._start_loop()
        gate, seen = self._gate, self._seen
        while budget.room() > 0 and self._stale < STALL_ROUNDS:
            proposals = self.propose(train_room(budget.room(), cfg.batch_size, cfg.dev_top_k), self._rng)
            if not proposals:
                break
            prompts = []
            for p in proposals:
                if tuple(p) not in seen and len(prompts) < train_room(budget.room(), cfg.batch_size, cfg.dev_top_k):
                    seen.add(tuple(p))
                    prompts.append(list(p))
            self._stale = 0 if prompts else self._stale + 1
            if not prompts:
                continue
            # -- score on train (1 prompt evaluation each) ---------------------------------
            train = self.train_rewards(prompts)
            self.tick(max(train))
            # -- the promising ones on dev, while the budget lasts -------------------------
            chosen = gate.admit(train)[: budget.room(self.selection_examples)]
            if chosen:
                self.evaluate_dev([prompts[i] for i in chosen], train_scores=[train[i] for i in chosen])
            self.safe_point()
        self.extra["candidates"] = len(seen)
