"""Risk-seeking advantages for on-policy SB3 agents (PPO, MaskablePPO).

Prompt search is judged by the best prompt it finds, not by the mean reward of its policy.
PPO maximises the mean, and a policy that concentrates on one good-on-average prompt stops
exploring (on AG News one PPO-prior run wrote the same prompt in 14% of its episodes,
docs/benchmarks.md). The risk-seeking policy gradient of Petersen et al. (2021, "Deep
symbolic regression", ICLR) optimises the expected reward of the best ``share`` of the
policy's samples instead: in each rollout only the episodes whose return reaches the
``1 - share`` quantile ``q`` get an advantage, ``R - q`` (scaled by the returns' standard
deviation, as a z-score would be), and the others get zero, so a bad prompt is not pushed
down and a good one is pushed up by how far it clears the bar.
"""

from __future__ import annotations

import numpy as np

__all__ = ["risk_seeking_advantages"]


def risk_seeking_advantages(rewards: np.ndarray, episode_starts: np.ndarray, last_dones: np.ndarray,
                            share: float) -> np.ndarray:
    """Per-step advantages [n_steps, n_envs] of one rollout, risk-seeking.

    A step's episode return is the sum of its episode's rewards (episodes are short and
    undiscounted). Episodes that began before the rollout or end after it have no known
    return here and get zero, as do those below the quantile.

    :param rewards: the rollout's rewards [n_steps, n_envs].
    :param episode_starts: 1 where a step is the first of an episode [n_steps, n_envs]
        (SB3's ``rollout_buffer.episode_starts``).
    :param last_dones: whether each env's last step of the rollout ended its episode [n_envs].
    :param share: the top share of finished episodes that learns, in (0, 1].
    :raises ValueError: a share outside (0, 1] or mismatched shapes.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    rewards = np.asarray(rewards, dtype=np.float64)
    starts = np.asarray(episode_starts).astype(bool)
    if rewards.ndim != 2 or starts.shape != rewards.shape or np.shape(last_dones) != rewards.shape[1:]:
        raise ValueError(f"rewards {rewards.shape}, episode_starts {starts.shape} and last_dones "
                         f"{np.shape(last_dones)} do not match")
    n_steps, n_envs = rewards.shape
    ends = np.zeros_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = np.asarray(last_dones).astype(bool)
    episodes: list[tuple[int, int, int, float]] = []  # env, first step, last step, return
    for env in range(n_envs):
        first: int | None = None
        for t in range(n_steps):
            if starts[t, env]:
                first = t
            if ends[t, env] and first is not None:
                episodes.append((env, first, t, float(rewards[first:t + 1, env].sum())))
                first = None
    advantages = np.zeros((n_steps, n_envs), dtype=np.float32)
    if not episodes:
        return advantages
    returns = np.array([r for *_, r in episodes])
    bar = float(np.quantile(returns, 1.0 - share))
    scale = float(returns.std()) + 1e-8
    for env, first, last, ret in episodes:
        if ret >= bar:
            advantages[first:last + 1, env] = (ret - bar) / scale
    return advantages
