"""Errors the environments raise when an agent or a caller breaks the MDP's rules."""

from __future__ import annotations

from gymnasium.error import ResetNeeded

from rlprompt.errors import RLPromptError


class InvalidActionError(RLPromptError, ValueError):
    """An action is outside the environment's action space."""


class ResetNeededError(RLPromptError, ResetNeeded):
    """``step`` was called before ``reset`` or after the episode ended."""
