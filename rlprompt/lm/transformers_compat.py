"""What rlprompt needs from a transformers model, across transformers versions.

The key/value cache changed names and shapes between releases (``past_key_values`` /
``cache``; tuples of tensors / ``DynamicCache`` with ``key_cache`` or ``layers``), and
some models post-process their logits so that their output head cannot run on its own.
Everything that depends on those details is here, so that the scoring engine and the
samplers read one forward the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
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


_SLOT_LAYER: Any = None


def _slot_layer_class() -> Any:
    """A ``DynamicLayer`` that writes new positions into preallocated storage (None: unsupported)."""
    global _SLOT_LAYER
    if _SLOT_LAYER is None:
        try:
            from transformers.cache_utils import DynamicLayer
        except ImportError:  # transformers < 4.56: caches are per-model lists of tensors
            _SLOT_LAYER = False
            return None

        class SlotLayer(DynamicLayer):
            """Keys/values ``[B, heads, capacity, d]`` of which the first ``start`` positions are held.

            ``update`` writes the new positions at ``[start, start + Q)`` of the same storage and
            returns views up to there: nothing held is copied, and the layer does not grow (a
            later forward on the same storage overwrites those positions).
            """

            def __init__(self, keys: torch.Tensor, values: torch.Tensor, start: int) -> None:
                super().__init__()
                self.storage = (keys, values)
                self.start = self.end = start
                self.keys, self.values = keys[:, :, :start], values[:, :, :start]
                self.is_initialized = True
                self.device = keys.device

            def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                       **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
                keys, values = self.storage
                end = self.start + key_states.shape[-2]
                keys[:, :, self.start : end].copy_(key_states)
                values[:, :, self.start : end].copy_(value_states)
                self.end = end
                self.keys, self.values = keys[:, :, :end], values[:, :, :end]
                return self.keys, self.values

            def get_seq_length(self) -> int:
                return self.end

        _SLOT_LAYER = SlotLayer
    return _SLOT_LAYER or None


def slot_cache(storage: list[tuple[torch.Tensor, torch.Tensor]], start: int) -> Any | None:
    """A cache over preallocated keys/values ``[B, heads, capacity, d]`` per layer holding the
    first ``start`` positions; a forward writes its Q new positions at ``[start, start + Q)``
    in place instead of concatenating (so the held positions are not copied).

    :returns: the cache, or None on transformers versions without cache layers (then use
        :func:`make_cache`).
    """
    layer = _slot_layer_class()
    if layer is None:
        return None
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.layer_class_to_replicate = None
    cache.layers = [layer(k, v, start) for k, v in storage]
    return cache


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


SMALL_ATTENTION = "rlprompt_small_sdpa"
"""The attention implementation the engine's forwards use on CPU in place of ``"sdpa"``
(:func:`small_attention`)."""

SMALL_ATTENTION_SCORES = 1 << 22
"""Attention score elements (batch x heads x queries x keys) up to which :func:`small_attention`
runs its own two matmuls; beyond, the fused kernel (which never holds all scores) runs."""

_registered: bool | None = None


def small_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                    is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Scaled dot-product attention as two batched matmuls, scores and softmax in float32.

    On a CPU the fused kernel costs a few milliseconds per call whatever the size, more than
    the work itself for the short sequences the engine runs (inputs of tens of tokens, a few
    prompt tokens after a cache): this does the same arithmetic (float32 scores, probabilities
    rounded to the value dtype for the second product) 2-3x faster there. Grouped key/value
    heads are attended without repeating them. Anything else goes to transformers' ``sdpa``.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, q_len, dim = query.shape
    kv_heads, k_len = key.shape[1], key.shape[2]
    if (query.device.type != "cpu" or dropout or heads % kv_heads or value.shape[-1] != dim
            or batch * heads * q_len * k_len > SMALL_ATTENTION_SCORES
            or any(kwargs.get(k) is not None for k in ("position_bias", "softcap", "s_aux", "sliding_window"))
            or (attention_mask is not None and (attention_mask.dim() != 4 or attention_mask.shape[1] != 1))):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    rep = heads // kv_heads
    scale = dim**-0.5 if scaling is None else scaling
    # Without a mask, causal as sdpa reads it: the first q_len keys, upper-left aligned.
    causal = attention_mask is None and q_len > 1 and (
        is_causal if is_causal is not None else getattr(module, "is_causal", True))
    if causal and k_len > q_len:
        key, value, k_len = key[:, :, :q_len], value[:, :, :q_len], q_len
    q = query.reshape(batch, kv_heads, rep * q_len, dim).float()
    scores = torch.matmul(q, key.float().transpose(-1, -2)).view(batch, kv_heads, rep, q_len, k_len).mul_(scale)
    low = torch.finfo(torch.float32).min
    if attention_mask is None:
        if causal:
            pos = torch.arange(q_len, device=query.device)
            scores.masked_fill_(pos[None, :] > pos[:, None], low)
    elif attention_mask.dtype == torch.bool:
        scores.masked_fill_(~attention_mask[..., :k_len].unsqueeze(2), low)
    else:
        scores.add_(attention_mask[..., :k_len].unsqueeze(2).float()).clamp_(min=low)
    probs = torch.softmax(scores, -1).to(value.dtype).view(batch, kv_heads, rep * q_len, k_len)
    out = torch.matmul(probs, value).view(batch, heads, q_len, dim)
    return out.transpose(1, 2).contiguous(), None


def _register_small_attention() -> bool:
    global _registered
    if _registered is None:
        try:
            from transformers import AttentionInterface
            from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
        except ImportError:
            _registered = False
        else:
            AttentionInterface.register(SMALL_ATTENTION, small_attention)
            AttentionMaskInterface.register(SMALL_ATTENTION, sdpa_mask)
            _registered = True
    return _registered


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
        param = next(model.parameters(), None)
        self.device_type = "cpu" if param is None else param.device.type

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
        with self._small_attention():
            return self._run(attention_mask=attention_mask, position_ids=position_ids, input_ids=input_ids,
                             inputs_embeds=inputs_embeds, cache=cache, last_only=last_only)

    @contextmanager
    def _small_attention(self) -> Iterator[None]:
        """:func:`small_attention` in place of ``sdpa`` for this forward only (CPU models)."""
        cfg = getattr(self.model, "config", None)
        impl = getattr(cfg, "_attn_implementation", None)
        if impl != "sdpa" or self.device_type != "cpu" or not _register_small_attention():
            yield
            return
        cfg._attn_implementation = SMALL_ATTENTION
        try:
            yield
        finally:
            cfg._attn_implementation = impl

    def _run(self, *, attention_mask: torch.Tensor, position_ids: torch.Tensor, input_ids: torch.Tensor | None,
             inputs_embeds: torch.Tensor | None, cache: Any,
             last_only: bool) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
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
