"""Z-score normalisation of rewards, as a wrapper that is itself a reward function."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from rlprompt.errors import ConfigError, RewardError
from rlprompt.rewards.base import Reward, RewardFn


def batch_zscore(raw: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``(raw - mean) / (std + eps)`` over a batch [P] (population std; gradients flow)."""
    return (raw - raw.mean()) / (raw.std(unbiased=False) + eps)


class RunningStats:
    """Mean and (population) std of every value seen so far, merged batch by batch
    (Chan et al.'s parallel Welford); the one running normaliser of the project."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    @property
    def std(self) -> float:
        """Running (population) standard deviation; 0 before two values are seen."""
        return math.sqrt(self.m2 / self.count) if self.count > 1 else 0.0

    def update(self, values: torch.Tensor | list[float]) -> None:
        """Merge a batch of values into the statistics."""
        values = torch.as_tensor(values, dtype=torch.float64).detach().cpu().flatten()
        n = values.numel()
        if n == 0:
            return
        batch_mean = float(values.mean())
        batch_m2 = float(((values - batch_mean) ** 2).sum())
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta * delta * self.count * n / total
        self.count = total

    def normalize(self, raw: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """``(raw - mean) / (std + eps)``; only centred before two values are seen."""
        return (raw - self.mean) / (self.std + eps) if self.count > 1 else raw - self.mean

    def state_dict(self) -> dict[str, Any]:
        """The statistics as plain numbers (JSON-serialisable)."""
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore statistics saved by :meth:`state_dict`.

        :raises ConfigError: missing keys or invalid values.
        """
        missing = {"count", "mean", "m2"} - set(state)
        if missing:
            raise ConfigError(f"z-score state lacks {sorted(missing)}; pass a dict saved by state_dict()")
        count, mean, m2 = int(state["count"]), float(state["mean"]), float(state["m2"])
        if count < 0 or m2 < 0 or not math.isfinite(mean) or not math.isfinite(m2):
            raise ConfigError(f"z-score state has invalid statistics count={count}, mean={mean}, m2={m2}")
        self.count, self.mean, self.m2 = count, mean, m2


class ZScore:
    """Wrap a reward so it returns z-scores: ``(r - mean) / (std + eps)``.

    - ``mode="batch"``: mean and std over the P prompts of each call (needs P >= 2);
      gradients flow through them.
    - ``mode="running"``: mean and std over every reward seen so far (Welford's
      algorithm, updated with each call's rewards before normalising); the statistics
      are constants for autograd. Save and restore them with :meth:`state_dict` and
      :meth:`load_state_dict`.

    The raw rewards are returned as the diagnostic ``"raw_reward"``.

    :param reward: the reward to normalise: a function, a :class:`Reward`, or any spec
        :func:`rlprompt.rewards.get_reward` accepts.
    :param mode: ``"batch"`` or ``"running"``.
    :param eps: added to the std to avoid dividing by zero.
    :raises ConfigError: unknown mode or negative ``eps``.

    >>> z = ZScore("accuracy", mode="batch")
    >>> lp = torch.log(torch.tensor([[[0.9, 0.1]], [[0.1, 0.9]]]))
    >>> z(lp, torch.tensor([0]))[0]
    tensor([ 1., -1.])
    """

    def __init__(
        self, reward: RewardFn | Reward | str, mode: Literal["batch", "running"] = "batch", eps: float = 1e-8
    ) -> None:
        from rlprompt.rewards.registry import get_reward

        if mode not in ("batch", "running"):
            raise ConfigError(f"z-score mode {mode!r} is not one of 'batch', 'running'")
        if not eps >= 0:
            raise ConfigError(f"z-score eps must be >= 0, got {eps!r}")
        self.reward = get_reward(reward)
        self.mode = mode
        self.eps = float(eps)
        self.reward_name = f"zscore[{mode}]({self.reward.name})"
        self.reset()

    def reset(self) -> None:
        """Forget the running statistics."""
        self.stats = RunningStats()

    @property
    def count(self) -> int:
        """How many rewards the running statistics have seen."""
        return self.stats.count

    @property
    def mean(self) -> float:
        """Running mean."""
        return self.stats.mean

    @property
    def m2(self) -> float:
        """Running sum of squared deviations (Welford's M2)."""
        return self.stats.m2

    @property
    def std(self) -> float:
        """Running (population) standard deviation; 0 before two values are seen."""
        return self.stats.std

    def __call__(
        self, logprobs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Normalised rewards [P] and the wrapped reward's diagnostics plus ``"raw_reward"``.

        :param logprobs: float [P, E, C] per-class log-probabilities.
        :param labels: long [E] class ids.
        :raises RewardError: batch mode with a single prompt, or the wrapped reward failed.
        """
        out = self.reward(logprobs, labels)
        raw = out.rewards
        if self.mode == "batch":
            if raw.shape[0] < 2:
                raise RewardError(
                    f"reward {self.reward_name!r}: batch z-scores need at least 2 prompts per call, got "
                    f"{raw.shape[0]}; use mode='running'"
                )
            z = batch_zscore(raw, self.eps)
        else:
            self.stats.update(raw.detach())
            z = self.stats.normalize(raw, self.eps)
        return z, {**out.diagnostics, "raw_reward": raw.detach()}

    def state_dict(self) -> dict[str, Any]:
        """The statistics as plain numbers (JSON-serialisable)."""
        return {"mode": self.mode, "eps": self.eps, **self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore statistics saved by :meth:`state_dict`.

        :param state: the saved dict.
        :raises ConfigError: missing keys, a different mode, or bad values.
        """
        if "mode" not in state:
            raise ConfigError("z-score state lacks ['mode']; pass a dict saved by ZScore.state_dict()")
        if state["mode"] != self.mode:
            raise ConfigError(f"z-score state was saved in mode {state['mode']!r}, this one is {self.mode!r}")
        self.stats.load_state_dict(state)
        self.eps = float(state.get("eps", self.eps))
