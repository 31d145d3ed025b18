"""Errors that rlprompt raises on bad input.

Every error a user can cause derives from :class:`RLPromptError`, so the CLI can
print its one-line message and exit non-zero instead of a traceback. Messages
name the bad value (file, line, column, plug-in) and, where there is one, the fix.
"""

from __future__ import annotations


class RLPromptError(Exception):
    """Base class of every error caused by bad input or configuration."""


class ConfigError(RLPromptError, ValueError):
    """An argument or option has a value that cannot work."""


class DataError(RLPromptError, ValueError):
    """A data file or split is missing, unreadable or malformed."""


class ModelLoadError(RLPromptError, OSError):
    """A language model or its tokenizer cannot be found or loaded."""


class RewardError(RLPromptError, RuntimeError):
    """A reward function (built-in or plug-in) failed or returned a bad value."""


def first_line(exc: BaseException, default: str = "") -> str:
    """The first line of an exception's message (``default`` when it has none): for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else default
