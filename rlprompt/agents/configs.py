"""Agent options: one config dataclass per agent (TRL style: every option is
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


def enum_choice(kind: type[E], value: Any, name: str) -> E:
    """``kind(value)``, or a ConfigError that lists the valid choices."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in kind)
        raise ConfigError(f"{name} {value!r} is not known; choose one of {choices}") from None


def check_positive(value: Any, name: str, *, allow_none: bool = False, integer: bool = True) -> None:
    """Raise a ConfigError unless ``value`` is a positive int (or float), or None when allowed."""
    if value is None and allow_none:
        return
    ok_type = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type) or not value > 0 or not math.isfinite(value):
        what = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}")


@dataclass
class AgentConfig:
    """Options every agent has."""

    # -- selection ---------------------------------------------------------------
    seed: int = field(default=0, metadata={"help": "seed of the agent's own randomness (init, sampling, batches)"})
    keep_top: int = field(default=5, metadata={"help": "how many of the best prompts (by dev accuracy) to keep"})
    # -- checkpoints ---------------------------------------------------------------
    checkpoint_every: float = field(default=60.0, metadata={
        "help": "seconds between checkpoints in <out>/checkpoint (0: at every safe point of the loop); "
                "one is always written when learning stops"})

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        check_positive(self.keep_top, "keep_top")
        every = self.checkpoint_every
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not every >= 0 or math.isinf(every):
            raise ConfigError(f"checkpoint_every must be a number of seconds >= 0 (0: at every safe point), "
                              f"got {every!r}")
        self.checkpoint_every = float(every)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (enums become their string values)."""
        return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in dataclasses.asdict(self).items()}



# -- soft prompts ---------------------------------------------------------------------


class Placement(str, enum.Enum):
    """Where a soft prompt goes: after the cached input (the template's ``{prompt}``) or
    before everything (Lester et al. 2021; PEFT's prompt tuning)."""

    SUFFIX = "suffix"
    PREFIX = "prefix"


class Init(str, enum.Enum):
    """How the soft prompt starts."""

    RANDOM = "random"  # uniform in [-0.5, 0.5] (Lester's random init), scaled to the table's std
    VOCAB = "vocab"  # embeddings of tokens sampled from the vocabulary
    TEXT = "text"  # the embeddings of init_text's tokens (repeated or cut to n_tokens)
    VERBALIZERS = "verbalizers"  # the class verbalizers' embeddings, then sampled vocabulary


class Optimizer(str, enum.Enum):
    ADAM = "adam"  # RLPrompt's setting: lr 1e-2
    ADAFACTOR = "adafactor"  # Lester's setting: lr 0.3, no relative step, no parameter scaling


class Loss(str, enum.Enum):
    CE = "ce"  # cross-entropy over the verbalizer classes
    GAP = "gap"  # minus RLPrompt's piecewise gap reward (differentiable where it is not flat)


DEFAULT_LR = {Optimizer.ADAM: 1e-2, Optimizer.ADAFACTOR: 0.3}


@dataclass
class SoftPromptConfig(AgentConfig):
    """Options of :class:`SoftPromptTuning`."""

    # -- the prompt ----------------------------------------------------------------
    n_tokens: int = field(default=5, metadata={"help": "number of soft tokens"})
    placement: Placement = field(default=Placement.SUFFIX, metadata={
        "help": "suffix: after the cached input (fast); prefix: before the input (Lester; PEFT)"})
    init: Init = field(default=Init.VOCAB, metadata={"help": "random, vocab, text or verbalizers"})
    init_text: str | None = field(default=None, metadata={"help": "the text prompt for init='text'"})
    # -- optimisation --------------------------------------------------------------
    optimizer: Optimizer = field(default=Optimizer.ADAM, metadata={"help": "adam (lr 1e-2) or adafactor (lr 0.3)"})
    lr: float | None = field(default=None, metadata={"help": "learning rate (default: the optimizer's)"})
    batch_size: int = field(default=16, metadata={"help": "training examples per step"})
    reshuffle: bool = field(default=False, metadata={
        "help": "regroup the examples into new batches every epoch (default: fixed batches in a new order "
                "each epoch, so each batch's input cache is computed once)"})
    loss: Loss = field(default=Loss.CE, metadata={"help": "ce (cross-entropy over classes) or gap"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many steps (default: budget)"})
    epochs: int | None = field(default=None, metadata={"help": "stop after this many passes over train"})
    # -- selection -------------------------------------------------------------------
    eval_every: int | None = field(default=None, metadata={
        "help": "steps between dev evaluations (default: once per epoch)"})
    patience: int | None = field(default=None, metadata={
        "help": "early stopping: dev evaluations without a new best before stopping (default: off)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.n_tokens, "n_tokens")
        self.placement = enum_choice(Placement, self.placement, "placement")
        self.init = enum_choice(Init, self.init, "init")
        self.optimizer = enum_choice(Optimizer, self.optimizer, "optimizer")
        self.loss = enum_choice(Loss, self.loss, "loss")
        if self.init is Init.TEXT and not self.init_text:
            raise ConfigError("init='text' needs init_text, e.g. init_text=' It was'")
        check_positive(self.lr, "lr", allow_none=True, integer=False)
        if self.lr is not None and self.lr > 1e6:  # beyond float32 optimiser state: a typo, not a setting
            raise ConfigError(f"lr must be at most 1e6, got {self.lr!r}")
        check_positive(self.batch_size, "batch_size")
        for name in ("max_steps", "epochs", "eval_every", "patience"):
            check_positive(getattr(self, name), name, allow_none=True)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]


@dataclass
class CMAESConfig(AgentConfig):
    """Options of :class:`CMAES`."""

    n_tokens: int = field(default=5, metadata={"help": "number of soft tokens"})
    placement: Placement = field(default=Placement.SUFFIX, metadata={
        "help": "suffix: after the cached input (fast); prefix: before the input (Lester; PEFT)"})
    intrinsic_dim: int = field(default=500, metadata={"help": "d, the dimension CMA-ES searches"})
    popsize: int = field(default=20, metadata={"help": "CMA-ES population per generation"})
    sigma0: float = field(default=1.0, metadata={"help": "CMA-ES initial step size (in z)"})
    scale: float = field(default=1.0, metadata={"help": "table standard deviations one unit of A z moves"})
    reward: str = field(default="log-likelihood", metadata={"help": "train reward to maximise"})
    dev_top_k: int = field(default=8, metadata={
        "help": "a candidate is checked on dev when its train reward is among the best k so far"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_tokens", "intrinsic_dim", "dev_top_k"):
            check_positive(getattr(self, name), name)
        if isinstance(self.popsize, bool) or not isinstance(self.popsize, int) or self.popsize < 2:
            raise ConfigError(f"popsize must be an integer of at least 2, got {self.popsize!r}")
        check_positive(self.sigma0, "sigma0", integer=False)
        check_positive(self.scale, "scale", integer=False)
        self.placement = enum_choice(Placement, self.placement, "placement")


# -- discrete black-box searches -----------------------------------------------------


@dataclass
class DiscreteSearchConfig(AgentConfig):
    """Options shared by the discrete black-box searches."""

    prompt_length: int = field(default=5, metadata={"help": "tokens per discrete prompt"})
    reward: str = field(default="gap", metadata={
        "help": "reward on train that ranks candidates (accuracy, log-likelihood, gap, ... or pkg.module:fn)"})
    batch_size: int = field(default=32, metadata={"help": "candidate prompts proposed and scored per round"})
    dev_top_k: int = field(default=8, metadata={
        "help": "a candidate is checked on dev when its train reward is among the best k so far"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("prompt_length", "batch_size", "dev_top_k"):
            check_positive(getattr(self, name), name)


@dataclass
class RandomSearchConfig(DiscreteSearchConfig):
    """Options of :class:`RandomSearch`."""

    vocab: str = field(default="words", metadata={
        "help": "candidate vocabulary: 'words' (whole-word tokens) or 'full' (every token), as in the discrete env"})
    max_vocab: int | None = field(default=4096, metadata={"help": "keep at most this many 'words' tokens"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vocab not in ("words", "full"):
            raise ConfigError(f"vocab {self.vocab!r} is not known; use 'words' or 'full'")


@dataclass
class LMPriorConfig(DiscreteSearchConfig):
    """Options of :class:`LMPriorSampling`."""

    context: str = field(default="{description}\n\n{example}", metadata={
        "help": "what the LM reads before sampling; {description} and {example} (a random train input) "
                "are filled in"})
    description: str | None = field(default=None, metadata={
        "help": "the task description (default: built from the task's class names)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_k: int | None = field(default=None, metadata={"help": "sample among the k most likely tokens (default: all)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.temperature, "temperature", integer=False)
        check_positive(self.top_k, "top_k", allow_none=True)
        try:
            self.context.format(description="", example="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"context {self.context!r} is not a valid template ({exc}); use only {{description}} and "
                "{example} as fields (double other braces)"
            ) from None


