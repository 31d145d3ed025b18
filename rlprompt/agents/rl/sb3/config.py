"""Options of the RL agents (issue 5): one config dataclass per agent, TRL style.

Every option is ``field(default=..., metadata={"help": ...})``; ``__post_init__``
validates with a :class:`~rlprompt.errors.ConfigError` that says how to fix it. Field
types are those the CLIs can parse (``str``/``int``/``float``/``bool``, enums and
``X | None``), and this module imports no torch, so the CLIs can build options cheaply.

- :class:`SQLConfig`: :class:`~rlprompt.agents.rl.sql.agent.SoftQLearning`.
- :class:`PPOConfig`, :class:`A2CConfig`, :class:`MaskablePPOConfig`: SB3 agents on
  discrete prompts; :class:`SoftPPOConfig`, :class:`SACConfig`, :class:`TD3Config`: on
  soft prompts (:mod:`rlprompt.agents.rl.sb3.agent`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlprompt.agents.core.config import AgentConfig, check_context, check_positive, check_share, enum_choice
from rlprompt.agents.search.config import SoftStart, SoftStartOptions
from rlprompt.errors import ConfigError
from rlprompt.lm.template import Placement


def parse_layers(text: str, name: str = "net_arch") -> list[int]:
    """``"64,64"`` -> ``[64, 64]``.

    :raises ConfigError: anything but a comma-separated list of positive integers.
    """
    try:
        sizes = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(n < 1 for n in sizes):
        raise ConfigError(f"{name} must be comma-separated positive layer sizes such as '64,64', got {text!r}")
    return sizes



# -- options ------------------------------------------------------------------------------


@dataclass
class RLConfig(AgentConfig):
    """Options every SB3 agent has (the environment and the selection)."""

    # -- the environment -------------------------------------------------------------------
    prompt_length: int = field(default=5, metadata={"help": "prompt positions written per episode"})
    reward: str = field(default="gap", metadata={
        "help": "reward on the training examples (accuracy, log-likelihood, gap, ... or pkg.module:fn)"})
    reward_mode: str = field(default="final", metadata={
        "help": "final (one score per prompt) or dense (a score every step; costs n_envs evals per step)"})
    n_envs: int = field(default=16, metadata={"help": "prompts written side by side (one engine call per step)"})
    examples_per_episode: int | None = field(default=16, metadata={
        "help": "training examples each episode's prompts are scored on (drawn per episode; None: all)"})
    obs: str = field(default="tokens", metadata={"help": "tokens, or hidden (adds the LM's hidden state)"})
    # -- the policy -----------------------------------------------------------------------
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    features_dim: int = field(default=128, metadata={"help": "size of the features extractor's output"})
    net_arch: str = field(default="64", metadata={
        "help": "hidden layers of the policy/value heads after the features extractor, e.g. '64,64'"})
    # -- selection ------------------------------------------------------------------------
    dev_top_k: int = field(default=8, metadata={
        "help": "a prompt is checked on dev when its training score is among the best k so far"})
    rescore: bool = field(default=False, metadata={
        "help": "re-score a prompt whose episode score enters the top k on the whole training split "
                "(1 prompt evaluation) and check it on dev only if that score enters the top k too"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("prompt_length", "n_envs", "features_dim", "dev_top_k"):
            check_positive(getattr(self, name), name)
        check_positive(self.examples_per_episode, "examples_per_episode", allow_none=True)
        check_positive(self.learning_rate, "learning_rate", integer=False)
        if self.reward_mode not in ("final", "dense"):
            raise ConfigError(f"reward_mode {self.reward_mode!r} is not known; use 'final' or 'dense'")
        if self.obs not in ("tokens", "hidden"):
            raise ConfigError(f"obs {self.obs!r} is not known; use 'tokens' or 'hidden'")
        parse_layers(self.net_arch)


@dataclass
class DiscreteRLConfig(RLConfig):
    """Options of the discrete-prompt SB3 agents."""

    vocab: str = field(default="words", metadata={"help": "candidate tokens: words or full (as the discrete env)"})
    max_vocab: int | None = field(default=4096, metadata={"help": "cap on vocab='words'"})
    tie_head: bool = field(default=False, metadata={
        "help": "action head tied to the LM's output embeddings over the candidate vocabulary (learns slower; "
                "similar tokens start alike)"})
    prior: bool = field(default=False, metadata={
        "help": "logits = the task LM's next-token log-probs after prior_context and the prompt so far + a "
                "residual that starts at zero (the first policy is LM-prior sampling)"})
    prior_context: str = field(default="{description}\n\n{example}", metadata={
        "help": "what the prior's prompt continues: {description} and {example} (one training input, by seed)"})
    prior_kl: bool = field(default=False, metadata={
        "help": "with prior: the entropy bonus becomes a penalty ent_coef * KL(policy || prior), which keeps the "
                "policy near the LM's distribution instead of pulling it toward uniform"})
    prior_examples: int = field(default=1, metadata={
        "help": "training inputs the prior's {example} takes, drawn by seed: the prior is the mixture of their "
                "distributions (each costs only the prompt tokens after its context's one forward)"})
    prior_uniform: float = field(default=0.0, metadata={
        "help": "share of the uniform distribution mixed into the prior per token: 0 starts at LM-prior sampling, "
                "1 at random search's draws"})
    description: str | None = field(default=None, metadata={
        "help": "task description of the prior (default: built from the class names, as lm-prior)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_context(self.prior_context, "prior_context")
        check_positive(self.prior_examples, "prior_examples")
        check_share(self.prior_uniform, "prior_uniform")
        if self.prior_kl and not self.prior:
            raise ConfigError("prior_kl=True needs prior=True (a KL to which prior?)")
        if self.vocab not in ("words", "full"):
            raise ConfigError(f"vocab {self.vocab!r} is not known; use 'words' or 'full'")
        check_positive(self.max_vocab, "max_vocab", allow_none=True)


@dataclass
class SoftRLConfig(RLConfig, SoftStartOptions):
    """Options of the soft-prompt SB3 agents."""

    placement: Placement = field(default=Placement.SUFFIX, metadata={
        "help": "suffix (after the cached input) or prefix (before the input)"})
    intrinsic_dim: int | None = field(default=32, metadata={
        "help": "act in a d-dimensional random projection of the embedding space (None: the embedding space)"})
    action_scale: float = field(default=2.0, metadata={"help": "embedding-table stds an action of 1 moves"})
    projection_seed: int = field(default=0, metadata={"help": "seed of the fixed random projection"})
    init: SoftStart = field(default=SoftStart.MEAN, metadata={
        "help": "the anchor an all-zero action writes: mean (the table's mean), vocab, text, lm-prior or best"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.init = self._check_start(self.init)
        self.placement = enum_choice(Placement, self.placement, "placement")
        check_positive(self.intrinsic_dim, "intrinsic_dim", allow_none=True)
        check_positive(self.action_scale, "action_scale", integer=False)


@dataclass
class _PPOOptions:
    n_steps: int = field(default=10, metadata={
        "help": "steps per env per rollout (rollout = n_steps * n_envs; 2 episodes of 5 tokens by default)"})
    batch_size: int = field(default=80, metadata={"help": "minibatch size"})
    n_epochs: int = field(default=4, metadata={"help": "passes over each rollout"})
    gamma: float = field(default=1.0, metadata={"help": "discount (episodes are short: 1)"})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda"})
    clip_range: float = field(default=0.2, metadata={"help": "PPO clip range"})
    ent_coef: float = field(default=0.01, metadata={"help": "entropy bonus"})
    vf_coef: float = field(default=0.5, metadata={"help": "value loss weight"})
    risk_seeking: float | None = field(default=None, metadata={
        "help": "top share of each rollout's episodes that learns (risk-seeking policy gradient: advantage = "
                "return minus the rollout's 1-share quantile, the rest 0; aims at the best prompt, not the mean)"})
    entropy_floor: float | None = field(default=None, metadata={
        "help": "mean per-token policy entropy (nats) below which the entropy bonus grows: after each rollout "
                "ent_coef is multiplied by 1.5 while under it and divided by 1.5 (not below its set value) "
                "while above; None: a fixed ent_coef"})

    def _check_ppo(self) -> None:
        for name in ("n_steps", "batch_size", "n_epochs"):
            check_positive(getattr(self, name), name)
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ConfigError(f"gamma must lie in (0, 1] and gae_lambda in [0, 1]; got {self.gamma}, {self.gae_lambda}")
        check_share(self.risk_seeking, "risk_seeking", allow_zero=False, allow_none=True)
        check_positive(self.entropy_floor, "entropy_floor", integer=False, allow_none=True)

    def algo_kwargs(self) -> dict[str, Any]:
        kwargs = {k: getattr(self, k) for k in ("n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda",
                                                "clip_range", "ent_coef", "vf_coef")}
        if self.risk_seeking is not None:  # its advantages are already scaled; centring would undo the zeros
            kwargs["normalize_advantage"] = False
        return kwargs


@dataclass
class PPOConfig(DiscreteRLConfig, _PPOOptions):
    """Options of :class:`PPOAgent` (discrete prompts)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_ppo()


@dataclass
class MaskablePPOConfig(PPOConfig):
    """Options of :class:`MaskablePPOAgent` (tokens already in the prompt are masked)."""


@dataclass
class A2CConfig(DiscreteRLConfig):
    """Options of :class:`A2CAgent` (discrete prompts)."""

    n_steps: int = field(default=5, metadata={"help": "steps per env per update (one episode by default)"})
    gamma: float = field(default=1.0, metadata={"help": "discount"})
    gae_lambda: float = field(default=1.0, metadata={"help": "GAE lambda"})
    ent_coef: float = field(default=0.01, metadata={"help": "entropy bonus"})
    vf_coef: float = field(default=0.5, metadata={"help": "value loss weight"})
    normalize_advantage: bool = field(default=True, metadata={
        "help": "normalise advantages per update (rewards of prompts differ by little)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.n_steps, "n_steps")

    def algo_kwargs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("n_steps", "gamma", "gae_lambda", "ent_coef", "vf_coef",
                                              "normalize_advantage")}


@dataclass
class SoftPPOConfig(SoftRLConfig, _PPOOptions):
    """Options of :class:`SoftPPOAgent` (soft prompts)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_ppo()


@dataclass
class _OffPolicyOptions:
    buffer_size: int = field(default=20_000, metadata={"help": "replay buffer transitions"})
    learning_starts: int = field(default=160, metadata={"help": "transitions collected before learning"})
    batch_size: int = field(default=128, metadata={"help": "minibatch size"})
    tau: float = field(default=0.02, metadata={"help": "Polyak rate of the target networks"})
    gamma: float = field(default=1.0, metadata={"help": "discount"})
    train_freq: int = field(default=5, metadata={"help": "env steps between updates (one episode by default)"})
    gradient_steps: int = field(default=8, metadata={"help": "gradient steps per update"})

    def _check_off_policy(self) -> None:
        for name in ("buffer_size", "batch_size", "train_freq", "gradient_steps"):
            check_positive(getattr(self, name), name)
        if not 0 < self.tau <= 1 or not 0 < self.gamma <= 1:
            raise ConfigError(f"tau and gamma must lie in (0, 1]; got {self.tau}, {self.gamma}")

    def algo_kwargs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("buffer_size", "learning_starts", "batch_size", "tau", "gamma",
                                              "train_freq", "gradient_steps")}


@dataclass
class SACConfig(SoftRLConfig, _OffPolicyOptions):
    """Options of :class:`SACAgent` (soft prompts)."""

    ent_coef: float = field(default=0.01, metadata={"help": "entropy coefficient (the start value with auto_entropy)"})
    auto_entropy: bool = field(default=False, metadata={
        "help": "learn the entropy coefficient (SB3's 'auto'; explores longer than a short budget allows)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_off_policy()
        check_positive(self.ent_coef, "ent_coef", integer=False)

    def algo_kwargs(self) -> dict[str, Any]:
        coef = f"auto_{self.ent_coef}" if self.auto_entropy else self.ent_coef
        return {**super().algo_kwargs(), "ent_coef": coef}


@dataclass
class TD3Config(SoftRLConfig, _OffPolicyOptions):
    """Options of :class:`TD3Agent` (soft prompts)."""

    action_noise: float = field(default=0.2, metadata={"help": "std of the Gaussian exploration noise"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_off_policy()
        check_positive(self.action_noise, "action_noise", integer=False)


