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
from typing import ClassVar

import numpy as np

from rlprompt.agents.configs import AgentConfig, DiscreteSearchConfig
from rlprompt.agents.kinds import DiscreteAgent
from rlprompt.agents.tracking import TopKGate

MAX_STALE_ROUNDS = 20


def train_room(remaining: int, batch: int, dev_top_k: int) -> int:
    """Candidates to score on train this round, leaving room to check the best of them on dev."""
    return max(1, min(batch, remaining - min(dev_top_k, remaining // 2)))


class DiscreteSearch(DiscreteAgent):
    """Base of :class:`~rlprompt.agents.random_search.RandomSearch` and
    :class:`~rlprompt.agents.lm_prior.LMPriorSampling`; a subclass writes :meth:`propose`.
    """

    config_class: ClassVar[type[AgentConfig]] = DiscreteSearchConfig
    config: DiscreteSearchConfig

    @abstractmethod
    def propose(self, n: int, rng: np.random.Generator) -> list[list[int]]:
        """Up to ``n`` new prompts (token ids); an empty list ends the search."""

    def _learn(self) -> None:
        from rlprompt.rewards import get_reward

        cfg, budget = self.config, self.budget
        assert budget is not None
        rng = np.random.default_rng(cfg.seed)
        reward = get_reward(cfg.reward)
        texts, labels = self.task.texts("train"), self.task.label_tensor("train").to(self.engine.device)
        gate = TopKGate(cfg.dev_top_k)
        seen: set[tuple[int, ...]] = set()
        stale = 0  # rounds in a row that proposed nothing new (a tiny search space runs dry)
        while budget.remaining > 0 and stale < MAX_STALE_ROUNDS:
            proposals = self.propose(train_room(budget.remaining, cfg.batch_size, cfg.dev_top_k), rng)
            if not proposals:
                break
            prompts = []
            for p in proposals:
                if tuple(p) not in seen and len(prompts) < train_room(budget.remaining, cfg.batch_size, cfg.dev_top_k):
                    seen.add(tuple(p))
                    prompts.append(list(p))
            stale = 0 if prompts else stale + 1
            if not prompts:
                continue
            # -- score on train (1 prompt evaluation each) ---------------------------------
            train = reward(self.score(prompts, texts), labels).rewards.tolist()
            self.tick(max(train))
            # -- the promising ones on dev, while the budget lasts -------------------------
            chosen = gate.admit(train)[: budget.remaining]
            if chosen:
                self.evaluate_dev([prompts[i] for i in chosen], train_scores=[train[i] for i in chosen])
        self.extra["candidates"] = len(seen)
