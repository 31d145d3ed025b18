"""LM-prior sampling: prompts drawn from the task LM's own next-token distribution.

Each candidate is ``prompt_length`` tokens sampled from the frozen task LM after a
short context (``context``: by default a one-line task description followed by a
training input, so the sample continues the input where the template puts the prompt).
The best of the samples, selected on dev, is the result: a strong baseline, since the
LM proposes fluent text it finds natural in the prompt's position. Ranking, dev checks
and the budget follow :mod:`rlprompt.agents.search.discrete`.

Budget: sampling reads no labels and costs no prompt evaluation; its LM tokens are
charged to the budget's forward tokens (and so appear in the summary's LM tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from rlprompt.agents.core.config import AgentConfig
from rlprompt.agents.search.config import LMPriorConfig
from rlprompt.agents.search.discrete import DiscreteSearch
from rlprompt.errors import ConfigError
from rlprompt.lm.sampling import banned_mask, sample_tokens
from rlprompt.lm.vocabulary import token_texts

if TYPE_CHECKING:
    from rlprompt.lm import ScoringEngine
    from rlprompt.tasks import Task


class LMPriorSampling(DiscreteSearch):
    """The best on dev of prompts sampled from the task LM; see the module docstring.

    :param engine: the scoring engine (its LM samples the prompts).
    :param task: the task.
    :param config: an :class:`LMPriorConfig`.
    :param out_dir: where to write the curve, the best prompt and the summary.
    """

    name: ClassVar[str] = "lm-prior"
    config_class: ClassVar[type[AgentConfig]] = LMPriorConfig
    config: LMPriorConfig

    def __init__(self, engine: ScoringEngine, task: Task, config: AgentConfig | None = None, *,
                 out_dir: str | Path | None = None) -> None:
        super().__init__(engine, task, config, out_dir=out_dir)
        if engine.masked:
            raise ConfigError(f"lm-prior sampling needs a causal LM; {engine.lm.name!r} is a masked LM")
        self.description = self.config.description or default_description(task)
        self.context = sampling_context(task, self.config.context, type(self.config)().context)
        self._banned = banned_tokens(engine.tokenizer, self.engine.model.get_output_embeddings().weight.shape[0])
        self._generator = torch.Generator().manual_seed(self.config.seed)

    def _start_loop(self) -> None:
        super()._start_loop()
        self._generator = torch.Generator().manual_seed(self.config.seed)

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = super().checkpoint_state()
        tensors["lm_prior/generator"] = self._generator.get_state()
        return tensors, meta

    def restore_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().restore_state(tensors, meta)
        self._generator.set_state(tensors["lm_prior/generator"])

    def propose(self, n: int, rng: np.random.Generator) -> list[list[int]]:
        if n <= 0:
            return []
        train = self.task.texts("train")
        examples = [train[i] for i in rng.integers(len(train), size=n)]
        tokens, cost = sample_prompts(self.engine, self.context, self.description, examples,
                                      self.config.prompt_length, self._generator, self.config, self._banned)
        assert self.budget is not None
        self.budget.charge(**cost)
        return tokens.tolist()


INSTRUCTION_CONTEXT = "Task: {description}\nInstruction:"
"""The default sampling context on a generation task whose prompt comes before the input: there the
prompt reads as an instruction, and this context makes the LM write one (" Rewrite the negative
sentence ..."), where the classification context (the description, then an input) makes it continue
the input."""


def sampling_context(task: Task, configured: str, default: str) -> str:
    """The context prompts are sampled after: ``configured``, unless it is the config's ``default``
    and the task is a generation task with the prompt before the input (:data:`INSTRUCTION_CONTEXT`,
    followed by the template's text before ``{prompt}`` when it has some, so that the prompt is
    sampled as the continuation of a fixed instruction there)."""
    if configured == default and getattr(task, "kind", "") == "generation":
        from rlprompt.lm.template import Template

        template = Template.parse(task.template)
        if not template.prompt_after_input:
            head = template.head.strip().replace("{", "{{").replace("}", "}}")
            return f"{INSTRUCTION_CONTEXT} {head}" if head else INSTRUCTION_CONTEXT
    return configured


def default_description(task: Task) -> str:
    """A one-line task description from the class names: ``"Is the text negative or positive?"``
    (a generation task's own description)."""
    if getattr(task, "kind", "") == "generation":
        return task.description
    names = list(task.label_names or [v.strip() for v in task.verbalizers])
    choice = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
    return f"Is the text {choice}?"


def banned_tokens(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Token ids a sampled prompt may not contain: special tokens, line breaks, ids past the tokenizer."""
    texts = token_texts(tokenizer, min(len(tokenizer), vocab_size))
    bad = set(tokenizer.all_special_ids) | {i for i, t in enumerate(texts) if "\n" in t or not t}
    bad |= set(range(len(texts), vocab_size))
    return torch.tensor(sorted(bad), dtype=torch.long)


def sample_prompts(engine: ScoringEngine, context: str, description: str, examples: Sequence[str], length: int,
                   generator: torch.Generator, config: LMPriorConfig,
                   banned: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, int]]:
    """LM-prior prompts: ``length`` tokens sampled from the task LM after ``context`` filled with
    ``description`` and each of ``examples`` (at ``config``'s temperature and top-k).

    :param banned: token ids never sampled (default: :func:`banned_tokens` of the engine's LM).
    :returns: token ids [len(examples), length] (CPU) and the LM cost to charge.
    """
    contexts = [context.format(description=description, example=e) for e in examples]
    if banned is None:
        banned = banned_tokens(engine.tokenizer, engine.model.get_output_embeddings().weight.shape[0])
    return sample_continuations(engine.lm, contexts, length, generator, temperature=config.temperature,
                                top_k=config.top_k, banned=banned)


@torch.inference_mode()
def sample_continuations(lm: Any, contexts: list[str], length: int, generator: torch.Generator, *,
                         temperature: float = 1.0, top_k: int | None = None,
                         banned: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, int]]:
    """Sample ``length`` tokens after each context from a causal LM (see :func:`~rlprompt.lm.sampling.sample_tokens`).

    :param lm: a :class:`~rlprompt.lm.FrozenLM`.
    :param contexts: N context texts (tokenised with the tokenizer's special tokens).
    :param length: tokens to sample per context.
    :param generator: the random generator (CPU).
    :param temperature: divides the logits.
    :param top_k: keep only the k most likely tokens (None: all).
    :param banned: token ids never sampled.
    :returns: token ids [N, length] (CPU) and the cost ``{"forward_tokens", "forward_calls"}``.
    """
    allowed = None
    if banned is not None and banned.numel():
        allowed = banned_mask(banned, int(lm.model.get_output_embeddings().weight.shape[0]))
    out = sample_tokens(lm, contexts, length, generator=generator, allowed=allowed, temperature=temperature,
                        top_k=top_k)
    return out.tokens, out.cost
