"""Gymnasium environments: prompt search for a frozen LM as a Markov decision process.

- :class:`DiscretePromptEnv` (``rlprompt/DiscretePrompt-v0``): one action = one token.
- :class:`SoftPromptEnv` (``rlprompt/SoftPrompt-v0``): one action = one soft token
  embedding (optionally through a low-dimensional random projection), or the whole
  soft prompt at once.
- :class:`PromptVectorEnv`: N sub-envs advanced with ONE engine call per step
  (``gymnasium.make_vec`` uses it through the ``vector_entry_point``), and
  :class:`SB3VecEnv`, the same for stable-baselines3 agents.

Importing this package registers both ids with gymnasium and stays cheap: the
classes (and torch) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rlprompt.envs.registration import DISCRETE_ID, SOFT_ID, register_envs

if TYPE_CHECKING:
    from rlprompt.envs.discrete import DiscretePromptEnv
    from rlprompt.envs.errors import InvalidActionError, ResetNeededError
    from rlprompt.envs.sb3 import SB3VecEnv
    from rlprompt.envs.soft import SoftActionMap, SoftPromptEnv
    from rlprompt.envs.vector import PromptVectorEnv, make_discrete_vector_env, make_soft_vector_env
    from rlprompt.envs.vocab import candidate_vocab

_LAZY = {
    "DiscretePromptEnv": "rlprompt.envs.discrete",
    "InvalidActionError": "rlprompt.envs.errors",
    "ResetNeededError": "rlprompt.envs.errors",
    "SB3VecEnv": "rlprompt.envs.sb3",
    "SoftActionMap": "rlprompt.envs.soft",
    "SoftPromptEnv": "rlprompt.envs.soft",
    "PromptVectorEnv": "rlprompt.envs.vector",
    "make_discrete_vector_env": "rlprompt.envs.vector",
    "make_soft_vector_env": "rlprompt.envs.vector",
    "candidate_vocab": "rlprompt.envs.vocab",
}

__all__ = [
    "DISCRETE_ID",
    "SOFT_ID",
    "DiscretePromptEnv",
    "InvalidActionError",
    "PromptVectorEnv",
    "ResetNeededError",
    "SB3VecEnv",
    "SoftActionMap",
    "SoftPromptEnv",
    "candidate_vocab",
    "make_discrete_vector_env",
    "make_soft_vector_env",
    "register_envs",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlprompt.envs' has no attribute {name!r}")


register_envs()
