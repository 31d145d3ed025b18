"""rlprompt: find prompts for a frozen language model with reinforcement learning.

Importing the package is cheap; heavy libraries (torch, transformers) are imported
by the submodules that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from rlprompt.errors import ConfigError, DataError, ModelLoadError, RewardError, RLPromptError

__all__ = ["ConfigError", "DataError", "ModelLoadError", "RewardError", "RLPromptError", "__version__"]
