"""Options of the prompt-writing policy LM trained with TRL (issue 7): GRPO and RLOO.

Every option is ``field(default=..., metadata={"help": ...})``; ``__post_init__``
validates with a :class:`~rlprompt.errors.ConfigError` that says how to fix it. This
module imports no torch (the CLIs build options from it cheaply).

- :class:`GRPOAgentConfig`: :class:`~rlprompt.agents.rl.grpo.agent.GRPOAgent` (``algorithm="grpo"``).
- :class:`RLOOAgentConfig`: the same agent trained with RLOO (``algorithm="rloo"``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from rlprompt.agents.core.config import AgentConfig, check_positive, enum_choice
from rlprompt.errors import ConfigError

__all__ = ["META_PLACEHOLDERS", "Algorithm", "GRPOAgentConfig", "RLOOAgentConfig", "check_meta_prompt"]

META_PLACEHOLDERS = ("{description}", "{example}", "{examples}")
"""What a meta-prompt may hold; ``{description}`` is required."""


class Algorithm(str, enum.Enum):
    """Which TRL trainer updates the policy."""

    GRPO = "grpo"  # group-relative advantages (TRL's GRPOTrainer)
    RLOO = "rloo"  # REINFORCE leave-one-out baseline (TRL's RLOOTrainer)


def check_meta_prompt(text: str) -> None:
    """Refuse a meta-prompt without ``{description}`` or with unknown placeholders.

    :raises ConfigError: the message names the problem and shows a working meta-prompt.
    """
    example = "'{description}\\n\\n{example}'"
    if not isinstance(text, str) or "{description}" not in text:
        raise ConfigError(f"meta_prompt {text!r} has no {{description}} placeholder: the policy must be told the "
                          f"task; use e.g. {example}")
    unknown = sorted(set(re.findall(r"\{[^{}]*\}", text)) - set(META_PLACEHOLDERS))
    if unknown:
        raise ConfigError(f"meta_prompt {text!r}: unknown placeholder(s) {unknown}; only "
                          f"{', '.join(META_PLACEHOLDERS)} are filled in (e.g. {example})")
    try:
        text.format(description="", example="", examples="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"meta_prompt {text!r} is not a valid template ({exc}); use e.g. {example}") from None


@dataclass
class GRPOAgentConfig(AgentConfig):
    """Options of :class:`~rlprompt.agents.rl.grpo.agent.GRPOAgent` (a policy LM writing prompts, trained with TRL)."""

    algorithm: Algorithm = field(default=Algorithm.GRPO, metadata={
        "help": "grpo (TRL GRPOTrainer) or rloo (TRL RLOOTrainer)"})
    # -- the prompt ------------------------------------------------------------------
    prompt_length: int = field(default=8, metadata={
        "help": "most tokens the policy writes per prompt (it may stop earlier at a line break or EOS)"})
    min_prompt_length: int = field(default=1, metadata={"help": "fewest tokens the policy writes per prompt"})
    reward: str = field(default="gap", metadata={
        "help": "reward on the training examples (accuracy, log-likelihood, gap, ... or pkg.module:fn)"})
    examples_per_episode: int | None = field(default=None, metadata={
        "help": "training examples each written prompt is scored on (drawn per step; default: all)"})
    # -- the policy ------------------------------------------------------------------
    policy_model: str | None = field(default=None, metadata={
        "help": "causal LM that writes the prompts (smollm2-135m, an HF id or a path); default: the task LM's "
                "own weights"})
    lora: bool = field(default=True, metadata={
        "help": "train LoRA adapters (PEFT) on the policy; with the task LM's weights the base weights are shared, "
                "not copied. False: fine-tune a full trainable copy"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (alpha / r)"})
    meta_prompt: str = field(default="{description}\n\n{example}", metadata={
        "help": "what the policy reads before writing a prompt: {description} (required), {example} (a random "
                "training input, so the prompt continues it as the template does) and {examples} (n_shots "
                "labelled training examples)"})
    description: str | None = field(default=None, metadata={
        "help": "task description (default: built from the class names, as lm-prior)"})
    n_shots: int = field(default=2, metadata={"help": "labelled training examples in {examples}"})
    # -- sampling --------------------------------------------------------------------
    num_generations: int = field(default=8, metadata={
        "help": "prompts written per meta-prompt (a group; at least 2: each is compared with the others)"})
    prompts_per_step: int = field(default=2, metadata={"help": "meta-prompts (groups) per training step"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the policy"})
    top_k: int | None = field(default=None, metadata={"help": "sample among the k most likely tokens (None: all)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    # -- optimisation ----------------------------------------------------------------
    learning_rate: float | None = field(default=None, metadata={
        "help": "AdamW learning rate (default: 2e-4 with LoRA, 2e-5 for full fine-tuning)"})
    beta: float = field(default=0.0, metadata={
        "help": "KL penalty to the starting policy (0: none, and no reference model is kept)"})
    epsilon: float = field(default=0.2, metadata={"help": "clipping range of the policy ratio"})
    num_iterations: int = field(default=1, metadata={"help": "optimisation passes per batch of written prompts"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many steps (default: budget)"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "trade compute for memory (off: tiny policies gain nothing from it)"})
    bf16: bool | None = field(default=None, metadata={
        "help": "bf16 mixed precision for the policy's updates (None, the default: off). On an H200 it made the "
                "tiny test policy's samples NaN, a CUDA device-side assert that ends the process's CUDA context; "
                "the same run in float32 finished"})
    # -- selection ---------------------------------------------------------------------
    dev_top_k: int = field(default=8, metadata={
        "help": "a prompt is checked on dev when its training reward is among the best k so far"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.algorithm = enum_choice(Algorithm, self.algorithm, "algorithm")
        if isinstance(self.num_generations, bool) or not isinstance(self.num_generations, int) \
                or self.num_generations < 2:
            raise ConfigError(f"num_generations must be an integer >= 2 (each written prompt is compared with the "
                              f"others of its group), got {self.num_generations!r}")
        for name in ("prompt_length", "min_prompt_length", "lora_r", "lora_alpha", "n_shots", "prompts_per_step",
                     "num_iterations", "dev_top_k"):
            check_positive(getattr(self, name), name)
        if self.min_prompt_length > self.prompt_length:
            raise ConfigError(f"min_prompt_length ({self.min_prompt_length}) exceeds prompt_length "
                              f"({self.prompt_length}); lower it or raise prompt_length")
        for name in ("top_k", "examples_per_episode", "max_steps"):
            check_positive(getattr(self, name), name, allow_none=True)
        check_positive(self.learning_rate, "learning_rate", integer=False, allow_none=True)
        for name in ("temperature", "epsilon", "max_grad_norm"):
            check_positive(getattr(self, name), name, integer=False)
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must lie in (0, 1], got {self.top_p!r}")
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not self.beta >= 0:
            raise ConfigError(f"beta must be a non-negative number, got {self.beta!r}")
        if self.policy_model is not None and (not isinstance(self.policy_model, str) or not self.policy_model.strip()):
            raise ConfigError(f"policy_model must be a model name or path (or None), got {self.policy_model!r}")
        check_meta_prompt(self.meta_prompt)

    @property
    def effective_learning_rate(self) -> float:
        """The learning rate in use (the option, or the default for ``lora``)."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return 2e-4 if self.lora else 2e-5


@dataclass
class RLOOAgentConfig(GRPOAgentConfig):
    """Options of the policy LM trained with RLOO (:class:`~rlprompt.agents.rl.grpo.agent.RLOOAgent`)."""

    algorithm: Algorithm = field(default=Algorithm.RLOO, metadata={
        "help": "grpo (TRL GRPOTrainer) or rloo (TRL RLOOTrainer)"})
