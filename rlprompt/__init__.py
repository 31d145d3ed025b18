"""rlprompt: find prompts for a frozen language model with reinforcement learning.

Importing the package is cheap; heavy libraries (torch, transformers) are imported
by the submodules that need them. It registers the environments with gymnasium (by
entry-point string, so nothing heavy loads), as env packages do::

    import gymnasium as gym
    import rlprompt

    env = gym.make("rlprompt/DiscretePrompt-v0", task="demo")
"""

from __future__ import annotations

__version__ = "0.1.0"

from rlprompt.envs.registration import register_envs as _register_envs
from rlprompt.errors import ConfigError, DataError, ModelLoadError, RewardError, RLPromptError

_register_envs()

__all__ = ["ConfigError", "DataError", "ModelLoadError", "RewardError", "RLPromptError", "__version__"]
