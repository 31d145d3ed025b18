"""What every agent config shares: :class:`AgentConfig` and the validators the configs use.

One config dataclass per agent, beside its agent (TRL style: every option is
``field(default=..., metadata={"help": ...})`` and ``__post_init__`` validates with a
:class:`~rlprompt.errors.ConfigError` that says how to fix it).

Kept apart from the agents, free of torch, so the CLI can build its options from
these classes without loading the heavy libraries.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rlprompt.errors import ConfigError

E = TypeVar("E", bound=enum.Enum)

# How the final prompt is picked among the dev-checked candidates (AgentConfig.selection).
SELECTION_RULES = ("dev", "pooled")


def enum_choice(kind: type[E], value: Any, name: str) -> E:
    """``kind(value)``, or a ConfigError that lists the valid choices."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in kind)
        raise ConfigError(f"{name} {value!r} is not known; choose one of {choices}") from None


def check_context(text: str, name: str = "context") -> None:
    """A sampling context must be a format string whose only fields are ``{description}`` and ``{example}``.

    :raises ConfigError: another field, or unbalanced braces.
    """
    try:
        text.format(description="", example="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{name} {text!r} is not a valid template ({exc}); use only {{description}} and "
                          "{example} as fields (double other braces)") from None


def check_positive(value: Any, name: str, *, allow_none: bool = False, integer: bool = True) -> None:
    """Raise a ConfigError unless ``value`` is a positive int (or float), or None when allowed."""
    if value is None and allow_none:
        return
    ok_type = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type) or not value > 0 or not math.isfinite(value):
        what = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}")


def check_share(value: Any, name: str, *, allow_zero: bool = True, allow_none: bool = False) -> None:
    """Raise a ConfigError unless ``value`` is a number in [0, 1] (in (0, 1] without ``allow_zero``)."""
    if value is None and allow_none:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (0 <= value <= 1) or (value == 0 and not allow_zero):
        span = "[0, 1]" if allow_zero else "(0, 1]"
        raise ConfigError(f"{name} must be a share in {span}{' or None' if allow_none else ''}, got {value!r}")


@dataclass
class AgentConfig:
    """Options every agent has."""

    # -- selection ---------------------------------------------------------------
    seed: int = field(default=0, metadata={"help": "seed of the agent's own randomness (init, sampling, batches)"})
    keep_top: int = field(default=5, metadata={"help": "how many of the best prompts (by dev accuracy) to keep"})
    selection: str = field(default="dev", metadata={
        "help": "how the final prompt is picked among those checked on dev: 'dev' (best dev accuracy, RLPrompt's "
                "protocol) or 'pooled' (best accuracy on train and dev together: twice the examples, so less "
                "overfit to dev; each check then also scores the prompt on train, charged to the budget)"})
    # -- checkpoints ---------------------------------------------------------------
    checkpoint_every: float = field(default=60.0, metadata={
        "help": "seconds between checkpoints in <out>/checkpoint (0: at every safe point of the loop); "
                "one is always written when learning stops"})

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        check_positive(self.keep_top, "keep_top")
        if self.selection not in SELECTION_RULES:
            raise ConfigError(f"selection {self.selection!r} is not known; choose one of "
                              f"{', '.join(map(repr, SELECTION_RULES))}")
        every = self.checkpoint_every
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not every >= 0 or math.isinf(every):
            raise ConfigError(f"checkpoint_every must be a number of seconds >= 0 (0: at every safe point), "
                              f"got {every!r}")
        self.checkpoint_every = float(every)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (enums become their string values)."""
        return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in dataclasses.asdict(self).items()}



# -- soft prompts ---------------------------------------------------------------------


# A search stops after this many rounds (or steps) in a row without a new prompt: the
# candidate space is exhausted or the policy has collapsed. Shared by every loop.
STALL_ROUNDS = 20
