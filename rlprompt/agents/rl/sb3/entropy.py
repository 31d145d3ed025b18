"""An entropy floor for on-policy SB3 agents (PPO's ``entropy_floor``).

PPO's entropy bonus is a fixed weight, and on AG News a PPO policy started at the LM prior
still collapses from 3.4 to 0.1 nats per token by mid-run, then spends the rest of its budget
re-scoring a few prompts (docs/benchmarks.md). A stronger fixed bonus pulls toward uniform from
the first update on, before anything is learned. The floor instead raises the bonus only while
the policy's entropy is below a level, as SAC's entropy target does with its temperature: after
each rollout the weight is multiplied by ``factor`` while the rollout's mean per-token entropy
is under the floor and divided by it (never below the configured weight) while above.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["adapt_ent_coef", "apply_entropy_floor", "rollout_entropy"]

MAX_ENT_COEF = 1.0
"""The bonus never grows past this (rewards are z-scored advantages of order 1)."""


def adapt_ent_coef(current: float, entropy: float, floor: float, base: float, factor: float = 1.5) -> float:
    """The entropy weight for the next update.

    :param current: the weight used so far.
    :param entropy: the rollout's mean per-token policy entropy (nats).
    :param floor: the entropy below which the weight grows.
    :param base: the configured weight, the lowest it returns to.
    :param factor: the step, > 1.
    :raises ValueError: a factor not above 1 or a negative weight.
    """
    if factor <= 1 or current < 0 or base < 0:
        raise ValueError(f"need factor > 1 and weights >= 0, got factor={factor}, current={current}, base={base}")
    if entropy < floor:
        return min(MAX_ENT_COEF, max(current * factor, base, 1e-4))
    return max(base, current / factor)


@torch.no_grad()
def rollout_entropy(policy: Any, observations: dict[str, np.ndarray]) -> float:
    """Mean entropy (nats) of ``policy``'s action distribution over a rollout's observations.

    :param policy: an SB3 actor-critic policy.
    :param observations: the rollout buffer's observations, ``{key: [n_steps, n_envs, ...]}``.
    """
    flat = {key: value.reshape(-1, *value.shape[2:]) for key, value in observations.items()}
    obs, _ = policy.obs_to_tensor(flat)
    return float(policy.get_distribution(obs).entropy().float().mean())


def apply_entropy_floor(model: Any, floor: float, base: float) -> float:
    """Measure the rollout just collected and set ``model.ent_coef`` for the update that follows.

    :param model: an SB3 on-policy algorithm (its ``rollout_buffer`` filled).
    :param floor: the entropy floor (nats per token).
    :param base: the configured ``ent_coef``.
    :returns: the rollout's mean policy entropy.
    """
    entropy = rollout_entropy(model.policy, model.rollout_buffer.observations)
    model.ent_coef = adapt_ent_coef(float(model.ent_coef), entropy, floor, float(base))
    model.logger.record("rollout/policy_entropy", entropy)
    model.logger.record("train/ent_coef", model.ent_coef)
    return entropy
