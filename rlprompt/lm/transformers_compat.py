"""What rlprompt needs from a transformers model, across transformers versions.

The key/value cache changed names and shapes between releases (``past_key_values`` /
``cache``; tuples of tensors / ``DynamicCache`` with ``key_cache`` or ``layers``), and
some models post-process their logits so that their output head cannot run on its own.
Everything that depends on those details is here, so that the scoring engine and the
samplers read one forward the same way.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from rlprompt.errors import ConfigError


def accepts(fn: Any, name: str) -> bool:
    """True when the callable ``fn`` takes a parameter called ``name``."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def cache_keyword(model: Any) -> str:
    """The keyword a model's ``forward`` takes its key/value cache by.

    transformers >= 5 names it ``cache``; older versions ``past_key_values``.
    """
    return "cache" if accepts(model.forward, "cache") else "past_key_values"


def output_cache(out: Any, cache_kw: str) -> Any:
    """The grown key/value cache of a forward's output (None when it kept none)."""
    past = getattr(out, cache_kw, None)
    return getattr(out, "past_key_values", None) if past is None else past


def cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer, each [B, heads, S, d], from a cache object (old and new APIs)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache, strict=True))
    return [(k, v) for k, v in cache]


def make_cache(kv: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """A ``DynamicCache`` holding (keys, values) per layer."""
    from transformers import DynamicCache

    if accepts(DynamicCache.__init__, "ddp_cache_data"):
        return DynamicCache(ddp_cache_data=kv)
    return DynamicCache.from_legacy_cache(tuple(kv))  # transformers < 4.56


def split_head(model: Any, cache_kw: str) -> tuple[Any, torch.nn.Linear | None]:
    """The decoder and a plain linear output head, when the model is built that way.

    Models that post-process logits (soft-capping, scaling) keep their own forward:
    ``(None, None)``.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    cfg = model.config
    plain = isinstance(head, torch.nn.Linear) and not any(
        getattr(cfg, a, None) for a in ("final_logit_softcapping", "logit_scale", "logits_scaling")
    )
    if not plain or decoder is None or decoder is model:
        return None, None
    if not accepts(decoder.forward, cache_kw):
        return None, None
    return decoder, head


def masked_head(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """Apply a masked LM's prediction head to selected hidden rows only."""
    for name in ("lm_head", "cls", "predictions"):
        head = getattr(model, name, None)
        if head is not None:
            return head(hidden)
    raise ConfigError(f"do not know the prediction head of {type(model).__name__}; use a causal LM")


class DecoderForward:
    """One forward of a causal LM that returns hidden states and grows the key/value cache.

    With a plain linear output head (:func:`split_head`) only the decoder runs, and the
    caller applies :attr:`head` at the positions it reads (:meth:`logits`); otherwise the
    whole model runs and its logits come along.

    :param model: a transformers causal LM.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.cache_kw = cache_keyword(model)
        self.decoder, self.head = split_head(model, self.cache_kw)
        self._keeps_logits = self.head is None and accepts(model.forward, "logits_to_keep")

    def __call__(
        self,
        *,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: Any = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        """Run new positions [B, Q] (ids, or embeddings [B, Q, H]) after ``cache``.

        :param last_only: the caller reads only the last position (a model without a
            separable head then computes the logits of that position only).
        :returns: last hidden states [B, Q, H], the grown cache, and the logits [B, Q, V]
            ([B, 1, V] with ``last_only``) for models whose head cannot run on its own (else None).
        """
        kwargs: dict[str, Any] = {"attention_mask": attention_mask, "position_ids": position_ids,
                                  "use_cache": True, self.cache_kw: cache}
        if inputs_embeds is not None:
            kwargs["inputs_embeds"] = inputs_embeds
        else:
            kwargs["input_ids"] = input_ids
        if self.head is not None:
            out = self.decoder(**kwargs)
            return out.last_hidden_state, output_cache(out, self.cache_kw), None
        if last_only and self._keeps_logits:
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs, output_hidden_states=True)
        return out.hidden_states[-1], output_cache(out, self.cache_kw), out.logits

    def logits(self, hidden: torch.Tensor, full: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits [..., V] of hidden rows [..., H]; ``full``: the model's own, when it ran whole."""
        if full is not None:
            return full
        assert self.head is not None
        return torch.nn.functional.linear(hidden, self.head.weight, self.head.bias)
