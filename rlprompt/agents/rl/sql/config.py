"""Options of soft Q-learning (:class:`~rlprompt.agents.rl.sql.SoftQLearning`); free of torch."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from rlprompt.agents.core.config import AgentConfig, check_context, check_positive, enum_choice
from rlprompt.errors import ConfigError


class Reference(str, enum.Enum):
    """The distribution Q-values are measured against (see the module docstring)."""

    PRIOR = "prior"  # the LM's own next-token distribution: start at LM-prior sampling
    UNIFORM = "uniform"  # uniform over the allowed tokens: RLPrompt's entropy regularisation


class SQLLoss(str, enum.Enum):
    """Which path-consistency objectives to use."""

    MIXED = "mixed"  # single-step + multi-step (RLPrompt's default)
    SINGLE = "single"
    MULTI = "multi"


class RewardNorm(str, enum.Enum):
    """How raw training rewards are shaped before learning."""

    BATCH = "batch"  # z-score within each training batch (RLPrompt)
    RUNNING = "running"  # z-score with the mean and std of every reward seen so far
    NONE = "none"  # raw rewards times reward_scale


@dataclass
class SQLConfig(AgentConfig):
    """Options of :class:`SoftQLearning`."""

    # -- the prompt ------------------------------------------------------------------
    prompt_length: int = field(default=5, metadata={"help": "tokens per prompt (steps per episode)"})
    reward: str = field(default="gap", metadata={
        "help": "reward on the training examples (accuracy, log-likelihood, gap, ... or pkg.module:fn)"})
    vocab: str = field(default="full", metadata={
        "help": "tokens the policy may write: 'full' (every token but special ones and line breaks, as "
                "lm-prior) or 'words' (the discrete env's whole-word list)"})
    max_vocab: int | None = field(default=4096, metadata={"help": "cap on vocab='words'"})
    examples_per_episode: int | None = field(default=None, metadata={
        "help": "training examples each sampled prompt is scored on (drawn per round; default: all)"})
    # -- the policy ------------------------------------------------------------------
    context: str = field(default="{description}\n\n{example}", metadata={
        "help": "what the LM reads before writing the prompt; {description} and {example} (a random "
                "train input) are filled in; on a generation task with the prompt before the input the default "
                "is 'Task: {description}\\nInstruction:' (the prompt there is an instruction)"})
    description: str | None = field(default=None, metadata={
        "help": "task description (default: built from the class names, as lm-prior)"})
    reference: Reference = field(default=Reference.PRIOR, metadata={
        "help": "prior: Q-values tilt the LM's own distribution; uniform: RLPrompt's entropy regularisation"})
    mlp_hidden: int = field(default=256, metadata={"help": "hidden width of the trainable MLP"})
    # -- sampling --------------------------------------------------------------------
    batch_size: int = field(default=32, metadata={"help": "prompts sampled (and scored) per round"})
    top_k: int | None = field(default=None, metadata={"help": "sample among the k most likely tokens"})
    stall_heat: float = field(default=1.0, metadata={
        "help": "after a round that wrote no new prompt, sample at this many times the temperature "
                "(compounding per such round, at most 8x; 1: off)"})
    # -- soft Q-learning ---------------------------------------------------------------
    alpha: float = field(default=0.25, metadata={
        "help": "temperature: the reward scale is 1/alpha (smaller = greedier policy)"})
    alpha_start: float | None = field(default=None, metadata={
        "help": "temperature at the start of the run, moving geometrically to alpha as the budget is spent "
                "(a hot start stays near the prior while few rewards are known; default: alpha throughout)"})
    sql_loss: SQLLoss = field(default=SQLLoss.MIXED, metadata={"help": "mixed, single or multi (path consistency)"})
    reward_norm: RewardNorm = field(default=RewardNorm.BATCH, metadata={"help": "batch, running or none"})
    reward_scale: float = field(default=1.0, metadata={"help": "multiplies the shaped reward"})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate of the MLP"})
    updates_per_round: int = field(default=4, metadata={"help": "gradient steps after each round"})
    replay_size: int = field(default=4096, metadata={"help": "prompts kept in the replay buffer"})
    replay_batch: int = field(default=32, metadata={"help": "off-policy prompts per gradient step (0: on-policy)"})
    target_tau: float = field(default=0.05, metadata={"help": "Polyak rate of the target network"})
    max_grad_norm: float = field(default=5.0, metadata={"help": "gradient clipping"})
    # -- selection ---------------------------------------------------------------------
    dev_top_k: int = field(default=8, metadata={
        "help": "a prompt is checked on dev when its training reward is among the best k so far"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.reference = enum_choice(Reference, self.reference, "reference")
        if isinstance(self.stall_heat, bool) or not isinstance(self.stall_heat, (int, float)) or \
                not 1.0 <= self.stall_heat <= 8.0:
            raise ConfigError(f"stall_heat must be a number in [1, 8], got {self.stall_heat!r}")
        self.sql_loss = enum_choice(SQLLoss, self.sql_loss, "sql_loss")
        self.reward_norm = enum_choice(RewardNorm, self.reward_norm, "reward_norm")
        for name in ("prompt_length", "mlp_hidden", "batch_size", "updates_per_round", "replay_size", "dev_top_k"):
            check_positive(getattr(self, name), name)
        check_positive(self.top_k, "top_k", allow_none=True)
        check_positive(self.max_vocab, "max_vocab", allow_none=True)
        check_positive(self.examples_per_episode, "examples_per_episode", allow_none=True)
        for name in ("alpha", "reward_scale", "learning_rate", "max_grad_norm"):
            check_positive(getattr(self, name), name, integer=False)
        check_positive(self.alpha_start, "alpha_start", integer=False, allow_none=True)
        if isinstance(self.replay_batch, bool) or not isinstance(self.replay_batch, int) or self.replay_batch < 0:
            raise ConfigError(f"replay_batch must be a non-negative integer, got {self.replay_batch!r}")
        if not 0 < self.target_tau <= 1:
            raise ConfigError(f"target_tau must lie in (0, 1], got {self.target_tau!r}")
        if self.vocab not in ("full", "words"):
            raise ConfigError(f"vocab {self.vocab!r} is not known; use 'full' or 'words'")
        if self.batch_size < 2 and self.reward_norm is RewardNorm.BATCH:
            raise ConfigError("reward_norm='batch' needs batch_size >= 2; raise batch_size or use 'running'")
        check_context(self.context)
