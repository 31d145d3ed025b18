"""Options of gradient soft prompt tuning (:class:`~rlprompt.agents.gradient.SoftPromptTuning`); free of torch."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from rlprompt.agents.core.config import AgentConfig, check_positive, enum_choice
from rlprompt.errors import ConfigError
from rlprompt.lm.template import Placement


class Init(str, enum.Enum):
    """How the soft prompt starts."""

    RANDOM = "random"  # uniform in [-0.5, 0.5] (Lester's random init), scaled to the table's std
    VOCAB = "vocab"  # embeddings of tokens sampled from the vocabulary
    TEXT = "text"  # the embeddings of init_text's tokens (repeated or cut to prompt_length)
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
    prompt_length: int = field(default=5, metadata={"help": "number of soft tokens"})
    placement: Placement = field(default=Placement.SUFFIX, metadata={
        "help": "suffix: after the cached input (fast); prefix: before the input (Lester; PEFT)"})
    init: Init = field(default=Init.VOCAB, metadata={"help": "random, vocab, text or verbalizers"})
    init_text: str | None = field(default=None, metadata={"help": "the text prompt for init='text'"})
    # -- optimisation --------------------------------------------------------------
    optimizer: Optimizer = field(default=Optimizer.ADAM, metadata={"help": "adam (lr 1e-2) or adafactor (lr 0.3)"})
    learning_rate: float | None = field(default=None, metadata={"help": "learning rate (default: the optimizer's)"})
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
        check_positive(self.prompt_length, "prompt_length")
        self.placement = enum_choice(Placement, self.placement, "placement")
        self.init = enum_choice(Init, self.init, "init")
        self.optimizer = enum_choice(Optimizer, self.optimizer, "optimizer")
        self.loss = enum_choice(Loss, self.loss, "loss")
        if self.init is Init.TEXT and not self.init_text:
            raise ConfigError("init='text' needs init_text, e.g. init_text=' It was'")
        check_positive(self.learning_rate, "learning_rate", allow_none=True, integer=False)
        # beyond float32 optimiser state: a typo, not a setting
        if self.learning_rate is not None and self.learning_rate > 1e6:
            raise ConfigError(f"learning_rate must be at most 1e6, got {self.learning_rate!r}")
        check_positive(self.batch_size, "batch_size")
        for name in ("max_steps", "epochs", "eval_every", "patience"):
            check_positive(getattr(self, name), name, allow_none=True)

    @property
    def effective_learning_rate(self) -> float:
        """``learning_rate``, or the optimizer's default when it is None."""
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LR[self.optimizer]
