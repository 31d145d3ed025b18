"""Rewards: per-class log-probabilities and labels in, one number per prompt out.

The protocol is stated once in :mod:`rlprompt.rewards.base`. Resolve a reward with
:func:`get_reward` (a name, ``"package.module:function"``, an entry point or a
callable) and call the returned :class:`Reward`; it checks what comes back.
"""

from __future__ import annotations

from rlprompt.rewards.base import Reward, RewardFn, RewardOutput
from rlprompt.rewards.builtin import (
    accuracy,
    balanced_accuracy,
    balanced_gap,
    class_balanced_mean,
    gap,
    log_likelihood,
    make_gap_reward,
)
from rlprompt.rewards.metrics import ClassAccuracy, class_accuracy
from rlprompt.rewards.normalize import ZScore
from rlprompt.rewards.registry import ENTRY_POINT_GROUP, get_reward, list_rewards, plugin_timeout, register_reward

__all__ = [
    "ENTRY_POINT_GROUP",
    "ClassAccuracy",
    "Reward",
    "RewardFn",
    "RewardOutput",
    "ZScore",
    "accuracy",
    "balanced_accuracy",
    "balanced_gap",
    "class_accuracy",
    "class_balanced_mean",
    "gap",
    "get_reward",
    "list_rewards",
    "log_likelihood",
    "plugin_timeout",
    "make_gap_reward",
    "register_reward",
]
