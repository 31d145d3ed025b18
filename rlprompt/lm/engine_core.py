"""What every engine over the frozen LM shares: prompt tokens, checks and the counted forward.

Mixed into :class:`~rlprompt.lm.engine.ScoringEngine` (classification: per-class
log-probabilities) and :class:`~rlprompt.lm.generation.GenerationEngine` (text tasks: the
LM writes), so that both read prompts the same way and charge the same counters. A class
using it sets ``lm``, ``model``, ``tokenizer``, ``device``, ``template_tokens``,
``counters`` and ``_forward`` (a :class:`~rlprompt.lm.transformers_compat.DecoderForward`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from rlprompt.errors import ConfigError
from rlprompt.lm.padding import pad_left

Prompt = str | Sequence[int]
"""A prompt: text, or token ids of the task LM's vocabulary."""


class EngineCore:
    """Prompt handling, input checks and the one counted decoder forward; see the module docstring."""

    lm: Any
    model: Any
    tokenizer: Any
    device: torch.device
    template_tokens: Any
    counters: Any
    _forward: Any

    def prompt_tokens(self, prompt: Prompt) -> list[int]:
        """The token ids that a prompt occupies in the template (its leading space included)."""
        if isinstance(prompt, str):
            return self.template_tokens.prompt(prompt)
        ids = [int(t) for t in prompt]
        vocab = self.model.get_input_embeddings().num_embeddings
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise ConfigError(f"prompt token ids {bad[:5]} are outside the vocabulary (0..{vocab - 1})")
        return ids

    def decode(self, tokens: Sequence[int]) -> str:
        """Text of prompt tokens (as they read in the template)."""
        return self.tokenizer.decode(list(tokens))

    def _check_inputs(self, prompts: Sequence[Any], texts: Sequence[str]) -> None:
        if len(prompts) == 0:
            raise ConfigError("empty prompt batch: give at least one prompt to score")
        if len(texts) == 0:
            raise ConfigError("no examples to score the prompts on")
        if isinstance(texts, str):
            raise ConfigError("texts must be a list of strings, got one string")

    def _check_length(self, n_tokens: int, what: str) -> None:
        if n_tokens > self.lm.max_length:
            raise ConfigError(
                f"{what} is {n_tokens} tokens, beyond the {self.lm.max_length}-token context of "
                f"{self.lm.name!r}; use a shorter prompt or truncate the inputs"
            )

    # -- forward plumbing ---------------------------------------------------------------

    @contextmanager
    def _timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.counters.seconds += time.perf_counter() - start

    def _decode_step(self, *, attention_mask: torch.Tensor, position_ids: torch.Tensor, grad: bool = False,
                     **kwargs: Any) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        """One counted decoder forward (see :class:`~rlprompt.lm.transformers_compat.DecoderForward`).

        :returns: last hidden states [B, Q, H], the grown cache, and the full logits
            [B, Q, V] only for models whose head cannot be applied on its own (else None).
        """
        batch, new = position_ids.shape
        self.counters.forward_calls += 1
        self.counters.forward_tokens += batch * new
        if grad:
            self.counters.backward_tokens += batch * new
        return self._forward(attention_mask=attention_mask, position_ids=position_ids, **kwargs)

    def _pad_left(self, seqs: list[list[int]], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_left(seqs, self.tokenizer.pad_token_id, length, self.device)
