"""Options of the black-box searches: random, LM-prior sampling, CMA-ES; free of torch."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from rlprompt.agents.core.config import AgentConfig, check_context, check_positive, enum_choice
from rlprompt.errors import ConfigError
from rlprompt.lm.template import Placement


class SoftStart(str, enum.Enum):
    """Where a soft-prompt search starts: the anchor ``p0`` its moves are added to."""

    MEAN = "mean"  # the embedding table's mean vector at every position
    VOCAB = "vocab"  # embeddings of tokens drawn from the vocabulary (black-box tuning's p0)
    TEXT = "text"  # the embeddings of init_text's tokens
    LM_PRIOR = "lm-prior"  # the best on train of init_samples prompts sampled from the task LM
    BEST = "best"  # the best on train of init_samples prompts: half LM-prior samples, half vocabulary draws


@dataclass
class SoftStartOptions:
    """How a soft-prompt search picks its anchor (``init`` itself is declared by each config,
    whose default differs)."""

    init_text: str | None = field(default=None, metadata={"help": "the text prompt for init='text'"})
    init_samples: int = field(default=32, metadata={
        "help": "init='lm-prior' or 'best': prompts sampled and scored on train (charged to the budget); "
                "the best is the anchor, and is checked on dev"})

    def _check_start(self, init: object) -> SoftStart:
        start = enum_choice(SoftStart, init, "init")
        if start is SoftStart.TEXT and not self.init_text:
            raise ConfigError("init='text' needs init_text, e.g. init_text=' It was'")
        check_positive(self.init_samples, "init_samples")
        return start


@dataclass
class SubspaceOptions(SoftStartOptions):
    """Black-box tuning's search space ``p0 + scale * std * (A z)`` and its bookkeeping, shared by
    the searches that move in it (CMA-ES, PGPE); each declares its own ``popsize``, ``sigma0`` and
    ``init`` defaults."""

    prompt_length: int = field(default=5, metadata={"help": "number of soft tokens"})
    placement: Placement = field(default=Placement.SUFFIX, metadata={
        "help": "suffix: after the cached input (fast); prefix: before the input (Lester; PEFT)"})
    intrinsic_dim: int = field(default=500, metadata={"help": "d, the dimension of the searched z"})
    scale: float = field(default=1.0, metadata={"help": "table standard deviations one unit of A z moves"})
    reward: str = field(default="log-likelihood", metadata={"help": "train reward to maximise"})
    init: SoftStart = field(default=SoftStart.VOCAB, metadata={
        "help": "p0, where the search starts: vocab (sampled tokens, as black-box tuning), mean, text, "
                "lm-prior or best"})
    dev_top_k: int = field(default=8, metadata={
        "help": "a candidate is checked on dev when its train reward is among the best k so far"})

    def _check_subspace(self) -> None:
        self.init = self._check_start(self.init)
        for name in ("prompt_length", "intrinsic_dim", "dev_top_k"):
            check_positive(getattr(self, name), name)
        check_positive(self.scale, "scale", integer=False)
        self.placement = enum_choice(Placement, self.placement, "placement")


@dataclass
class CMAESConfig(AgentConfig, SubspaceOptions):
    """Options of :class:`CMAES`."""

    popsize: int = field(default=20, metadata={"help": "CMA-ES population per generation"})
    sigma0: float = field(default=1.0, metadata={"help": "CMA-ES initial step size (in z)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_subspace()
        if isinstance(self.popsize, bool) or not isinstance(self.popsize, int) or self.popsize < 2:
            raise ConfigError(f"popsize must be an integer of at least 2, got {self.popsize!r}")
        check_positive(self.sigma0, "sigma0", integer=False)


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
                "are filled in; on a generation task with the prompt before the input the default "
                "is 'Task: {description}\\nInstruction:' (the prompt there is an instruction)"})
    description: str | None = field(default=None, metadata={
        "help": "the task description (default: built from the task's class names)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_k: int | None = field(default=None, metadata={"help": "sample among the k most likely tokens (default: all)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.temperature, "temperature", integer=False)
        check_positive(self.top_k, "top_k", allow_none=True)
        check_context(self.context)
