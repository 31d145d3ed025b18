"""Black-box tuning (Sun et al. 2022): CMA-ES over a low-dimensional random projection
of a soft prompt.

The soft prompt is ``p(z) = p0 + scale * std * (A z)``: ``p0`` [T, H] an initial prompt
(``init``: embeddings of sampled vocabulary tokens by default, or the best of a few LM-prior
samples, see :mod:`rlprompt.agents.search.anchor`), ``A`` a fixed Gaussian matrix
[T*H, d] with entries N(0, 1/d), ``std`` the embedding table's per-dimension standard
deviation. So with ``z ~ N(0, sigma0^2 I)`` each coordinate moves by about
``scale * sigma0`` table standard deviations and prompts stay in the range of real
token embeddings. The well-kept ``cma`` package runs CMA-ES on ``z`` (d ~ 500,
population ~ 20), minimising minus the train reward (default: the log-likelihood of the
label, i.e. the cross-entropy black-box tuning uses).

Budget: each candidate is scored on the whole train split (1 prompt evaluation); a
candidate whose train reward enters the running top ``dev_top_k`` is also scored on dev
(1 more). The last generation is cut to leave room for its dev checks (and, cut, is
not told to CMA-ES).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from rlprompt.agents.core.config import AgentConfig
from rlprompt.agents.core.kinds import SoftAgent
from rlprompt.agents.core.tracking import TopKGate
from rlprompt.agents.search.config import CMAESConfig
from rlprompt.agents.search.discrete import train_room
from rlprompt.agents.search.subspace import PromptSubspace


class CMAES(SoftAgent):
    """CMA-ES over a random projection of a soft prompt; see the module docstring.

    :param engine: the scoring engine.
    :param task: the task.
    :param config: a :class:`CMAESConfig`.
    :param out_dir: where to write the curve, the best prompt and the summary.
    """

    name: ClassVar[str] = "cma"
    supports_resume: ClassVar[bool] = True
    config_class: ClassVar[type[AgentConfig]] = CMAESConfig
    config: CMAESConfig

    def _start_loop(self) -> None:
        """Fresh CMA-ES state; ``self._history`` records each generation (its asked
        population's fitness when told), so a checkpoint can rebuild it by replay."""
        import cma

        cfg = self.config
        self._es = cma.CMAEvolutionStrategy(
            np.zeros(cfg.intrinsic_dim), cfg.sigma0,
            {"popsize": cfg.popsize, "seed": cfg.seed + 1, "verbose": -9, "CMA_diagonal": False},
        )
        self._gate = TopKGate(cfg.dev_top_k)
        self._history: list[list[float] | None] = []
        self._generations = 0
        self._p0: torch.Tensor | None = None  # the anchor, once chosen (kept: LM-prior anchors cost budget)

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = super().checkpoint_state()
        meta["cma"] = {"history": self._history, "gate": self._gate.state(), "generations": self._generations}
        if self._p0 is not None:
            tensors["cma/p0"] = self._p0
        return tensors, meta

    def restore_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Rebuild CMA-ES by replaying its asks and tells with the recorded fitness (no
        scoring): the same seed and the same values give the same state, bit for bit."""
        super().restore_state(tensors, meta)
        self._start_loop()
        state = meta["cma"]
        for fitness in state["history"]:
            zs = self._es.ask()
            if fitness is not None:
                self._es.tell(zs, [float(f) for f in fitness])
        self._history = [None if f is None else [float(x) for x in f] for f in state["history"]]
        self._gate.restore(state["gate"])
        self._generations = int(state["generations"])
        self._p0 = tensors.get("cma/p0")

    def _learn(self) -> None:
        from rlprompt.rewards import get_reward

        cfg, budget, device = self.config, self.budget, self.engine.device
        assert budget is not None
        # -- seeding: the anchor and the projection from one generator; CMA-ES's own seed
        gen = torch.Generator().manual_seed(cfg.seed)
        space = PromptSubspace(self, cfg.prompt_length, cfg.intrinsic_dim, cfg.scale, gen)
        if not self.resuming:
            self._start_loop()
        self._p0 = space.keep_or_choose(self, cfg, self._p0, gen)
        to_prompts = space.prompts

        es, gate = self._es, self._gate
        reward = get_reward(cfg.reward)
        texts, labels = self.task.texts("train"), self.task.label_tensor("train").to(device)
        while budget.room() > 0:
            # -- ask, score on train (popsize prompt evaluations), tell --------------------
            zs = es.ask()
            n = train_room(budget.room(), len(zs), cfg.dev_top_k)
            prompts = to_prompts(zs[:n])
            train = reward(self.score(prompts, texts), labels).rewards.tolist()
            if n == len(zs):
                fitness = [-r for r in train]
                es.tell(zs, fitness)
                self._history.append(fitness)
                self._generations += 1
            else:
                self._history.append(None)
            self.tick(max(train))
            # -- the promising ones on dev ------------------------------------------------
            chosen = gate.admit(train)[: budget.room(self.selection_examples)]
            if chosen:
                self.evaluate_dev(prompts[chosen], train_scores=[train[i] for i in chosen])
            if n < len(zs):
                # A partial generation cannot be told to CMA-ES, and asking again without a
                # tell breaks its step-size adaptation: the budget's last generation ends here.
                break
            self.safe_point()
        self.extra["generations"] = self._generations
