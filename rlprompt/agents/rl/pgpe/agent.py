"""PGPE (Sehnke et al. 2010): policy gradients with parameter-based exploration, writing soft
prompts.

The MDP is one step: the action is a whole soft prompt, the reward its train score. The policy
is a Gaussian ``z ~ N(mu, diag(sigma^2))`` over the coordinates of black-box tuning's subspace
``p(z) = p0 + scale * std * (A z)`` (:mod:`rlprompt.agents.search.subspace`), with ``p0`` a good
discrete prompt found by LM-prior sampling by default (``init``), so the policy starts where
LM-prior sampling is and learns residuals around it.

Each update samples ``popsize`` actions in antithetic pairs ``mu +- eps`` (the pair shares its
noise, which cancels most of the gradient's variance), scores each on the whole train split,
turns the rewards into centred ranks (advantages in [-0.5, 0.5]: robust to the reward's scale
and outliers) and takes one Adam step on REINFORCE's surrogate ``-mean(adv * log pi(z))`` for
``mu`` and ``log sigma``. The policy's mean, its deterministic action, is scored as well, as a
candidate for selection only.

Budget: ``popsize + 1`` prompt evaluations per update on train; a candidate whose train reward
enters the running top ``dev_top_k`` is also scored on dev. The last update is cut to leave room
for its dev checks (and, cut, is not learnt from).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from rlprompt.agents.core.config import AgentConfig
from rlprompt.agents.core.kinds import SoftAgent
from rlprompt.agents.core.tracking import TopKGate
from rlprompt.agents.rl.pgpe.config import PGPEConfig
from rlprompt.agents.search.discrete import train_room
from rlprompt.agents.search.subspace import PromptSubspace


def centred_ranks(rewards: torch.Tensor) -> torch.Tensor:
    """Ranks of ``rewards`` scaled to [-0.5, 0.5] (ties get the mean of their ranks)."""
    n = len(rewards)
    if n < 2:
        return torch.zeros(n)
    order = rewards.argsort(stable=True)
    ranks = torch.empty(n)
    ranks[order] = torch.arange(n, dtype=torch.float32)
    for value in rewards.unique():  # ties: the mean of their ranks
        same = rewards == value
        ranks[same] = ranks[same].mean()
    return ranks / (n - 1) - 0.5


class PGPE(SoftAgent):
    """A Gaussian policy over soft prompts trained by policy gradient; see the module docstring.

    :param engine: the scoring engine.
    :param task: the task.
    :param config: a :class:`PGPEConfig`.
    :param out_dir: where to write the curve, the best prompt and the summary.
    """

    name: ClassVar[str] = "pgpe"
    supports_resume: ClassVar[bool] = True
    config_class: ClassVar[type[AgentConfig]] = PGPEConfig
    config: PGPEConfig

    def _start_loop(self) -> None:
        """A fresh policy (mean 0, std ``sigma0``), its optimiser and its noise generator."""
        cfg = self.config
        d = cfg.intrinsic_dim
        self._mu = torch.zeros(d, requires_grad=True)
        self._log_sigma = torch.full((d,), math.log(cfg.sigma0), requires_grad=True)
        groups = [{"params": [self._mu], "lr": cfg.learning_rate}]
        if cfg.std_learning_rate > 0:
            groups.append({"params": [self._log_sigma], "lr": cfg.std_learning_rate})
        self._optimizer = torch.optim.Adam(groups)
        self._noise = torch.Generator().manual_seed(cfg.seed + 1)
        self._gate = TopKGate(cfg.dev_top_k)
        self._updates = 0
        self._p0: torch.Tensor | None = None  # the anchor, once chosen (kept: LM-prior anchors cost budget)

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = super().checkpoint_state()
        tensors["pgpe/mu"] = self._mu.detach().clone()
        tensors["pgpe/log_sigma"] = self._log_sigma.detach().clone()
        tensors["pgpe/noise"] = self._noise.get_state()
        for i, state in self._optimizer.state_dict()["state"].items():
            for key, value in state.items():
                tensors[f"pgpe/adam/{i}/{key}"] = torch.as_tensor(value).clone()
        if self._p0 is not None:
            tensors["pgpe/p0"] = self._p0
        meta["pgpe"] = {"gate": self._gate.state(), "updates": self._updates}
        return tensors, meta

    def restore_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().restore_state(tensors, meta)
        self._start_loop()
        with torch.no_grad():
            self._mu.copy_(tensors["pgpe/mu"])
            self._log_sigma.copy_(tensors["pgpe/log_sigma"])
        self._noise.set_state(tensors["pgpe/noise"])
        saved = self._optimizer.state_dict()
        for i in range(len(saved["param_groups"])):
            keys = [k.rsplit("/", 1)[1] for k in tensors if k.startswith(f"pgpe/adam/{i}/")]
            if keys:
                saved["state"][i] = {k: tensors[f"pgpe/adam/{i}/{k}"] for k in keys}
        self._optimizer.load_state_dict(saved)
        self._gate.restore(meta["pgpe"]["gate"])
        self._updates = int(meta["pgpe"]["updates"])
        self._p0 = tensors.get("pgpe/p0")

    def sigma(self) -> torch.Tensor:
        """The policy's standard deviation per coordinate (floored at ``min_sigma``)."""
        return self._log_sigma.detach().exp().clamp_min(self.config.min_sigma)

    def _learn(self) -> None:
        from rlprompt.rewards import get_reward

        cfg, budget = self.config, self.budget
        assert budget is not None
        gen = torch.Generator().manual_seed(cfg.seed)
        space = PromptSubspace(self, cfg.prompt_length, cfg.intrinsic_dim, cfg.scale, gen)
        if not self.resuming:
            self._start_loop()
        self._p0 = space.keep_or_choose(self, cfg, self._p0, gen)
        reward = get_reward(cfg.reward)
        texts, labels = self.task.texts("train"), self.task.label_tensor("train").to(space.device)
        half = cfg.popsize // 2
        while budget.room() > 0:
            # -- act: the mean, then antithetic pairs mu +- eps --------------------------------
            mu, sigma = self._mu.detach(), self.sigma()
            eps = torch.randn(half, cfg.intrinsic_dim, generator=self._noise) * sigma
            zs = torch.cat([mu[None], mu + eps, mu - eps])
            n = train_room(budget.room(), len(zs), cfg.dev_top_k)
            prompts = space.prompts(zs[:n])
            train = torch.as_tensor(reward(self.score(prompts, texts), labels).rewards, dtype=torch.float32).cpu()
            self.tick(float(train.max()))
            # -- the promising ones on dev -------------------------------------------------
            chosen = self._gate.admit(train.tolist())[: budget.room(self.selection_examples)]
            if chosen:
                self.evaluate_dev(prompts[chosen], train_scores=[float(train[i]) for i in chosen])
            if n < len(zs):
                break  # a cut population is not learnt from: the budget's last update ends here
            # -- learn: one policy-gradient step on the sampled actions ---------------------
            advantages = centred_ranks(train[1:])
            policy = torch.distributions.Normal(self._mu, self._log_sigma.exp().clamp_min(cfg.min_sigma))
            log_prob = policy.log_prob(zs[1:]).sum(-1)
            loss = -(advantages * log_prob).mean()
            self._optimizer.zero_grad()
            loss.backward()
            self._optimizer.step()
            self._updates += 1
            self.safe_point()
        self.extra["updates"] = self._updates
        self.extra["final_sigma"] = float(self.sigma().mean())
