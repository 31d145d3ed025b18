"""The scoring engine: the one place where rlprompt spends LM compute.

Given prompts and examples, :meth:`ScoringEngine.score` returns
``log p(verbalizer_c | template(example, prompt))`` as a tensor of shape
``[prompts, examples, classes]`` (a verbalizer of several tokens sums their log-probs).

Why it is fast. With a template whose prompt follows the input (RLPrompt's
``"{sentence} {prompt}"``), each example's key/value cache is computed once and kept;
a new prompt then runs only its own tokens (plus the template's tail) on top of that
cache. :meth:`ScoringEngine.start` / :meth:`PromptState.extend` grow a prompt one token
at a time for environments, at one token per example per step. Only the read-out
position goes through the output head. Other templates and masked LMs take a plain
batched path (:meth:`ScoringEngine.score` with ``use_cache=False`` is that path too,
and the reference the cached path is tested against).

Shapes: P prompts, E examples, C classes, L input positions, T prompt positions,
H hidden size. Rows of a batch are prompt-major: row ``p * E + e``.
"""

from __future__ import annotations

import inspect
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch

from rlprompt.errors import ConfigError, RLPromptError
from rlprompt.lm.counters import EngineCounters
from rlprompt.lm.loading import FrozenLM
from rlprompt.lm.template import CAUSAL_TEMPLATE, MASK, MASKED_TEMPLATE, Template

Prompt = str | Sequence[int]
"""A prompt: text, or token ids of the task LM's vocabulary."""

Placement = Literal["suffix", "prefix"]


class NonFiniteScoresError(RLPromptError, FloatingPointError):
    """The LM produced NaN or infinite log-probabilities."""


@dataclass
class _InputCache:
    """Key/value cache of a batch of inputs, left-padded to a common length L."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, each [E, heads, L, d]
    mask: torch.Tensor  # [E, L] long
    lengths: torch.Tensor  # [E] real tokens per input
    last_logits: torch.Tensor  # [E, V_read] log-probs read out right after the input

    @property
    def n(self) -> int:
        return self.mask.shape[0]


class ScoringEngine:
    """Scores prompts on examples with a frozen LM; see the module docstring.

    :param lm: the frozen LM (from :func:`~rlprompt.lm.loading.load_lm`).
    :param verbalizers: one string per class, in label order (e.g. ``[" terrible", " great"]``).
    :param template: where input and prompt go; default ``"{sentence} {prompt}"`` for a
        causal LM and ``"{sentence} {prompt} <mask> ."`` for a masked LM.
    :param max_batch_tokens: bound on rows x positions per forward (memory); the
        engine chunks prompts and examples to stay under it.
    :param cache_examples: keep the input caches of up to this many examples (LRU over
        example sets); larger sets are scored chunk by chunk without being kept.
    """

    def __init__(
        self,
        lm: FrozenLM,
        verbalizers: Sequence[str],
        template: str | Template | None = None,
        *,
        max_batch_tokens: int = 16384,
        cache_examples: int = 1024,
    ) -> None:
        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        self.masked = lm.kind == "masked"
        if template is None:
            template = MASKED_TEMPLATE if self.masked else CAUSAL_TEMPLATE
        self.template = template if isinstance(template, Template) else Template.parse(template, masked=self.masked)
        if max_batch_tokens < 1:
            raise ConfigError(f"max_batch_tokens must be positive, got {max_batch_tokens}")
        self.max_batch_tokens = max_batch_tokens
        self.cache_examples = cache_examples
        self.counters = EngineCounters()
        self.device = lm.device
        self.verbalizers = list(verbalizers)
        self.verbalizer_ids = self._verbalizer_ids(self.verbalizers)
        self._first_ids = torch.tensor([ids[0] for ids in self.verbalizer_ids], device=self.device)
        self._multi = [c for c, ids in enumerate(self.verbalizer_ids) if len(ids) > 1]
        self._bos, self._eos = self._special_wrap()
        self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self._keep_kw = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self._decoder, self._head = _split_head(self.model, self._cache_kw)
        self._caches: OrderedDict[tuple[str, ...], _InputCache] = OrderedDict()
        self._cached_rows = 0
        self._token_cache: dict[str, list[int]] = {}

    # -- set-up checks ------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.verbalizers)

    @property
    def cacheable(self) -> bool:
        """True when prompts follow the input, so the input's cache can be reused."""
        return not self.masked and self.template.prompt_after_input

    def _verbalizer_ids(self, verbalizers: list[str]) -> list[list[int]]:
        if len(verbalizers) < 2:
            raise ConfigError(f"need at least two verbalizers (one per class), got {verbalizers!r}")
        unk = self.tokenizer.unk_token_id
        out: list[list[int]] = []
        for v in verbalizers:
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"verbalizer {v!r} is empty; give one non-empty word per class")
            ids = self.tokenizer(v, add_special_tokens=False).input_ids
            if not ids or (unk is not None and unk in ids):
                raise ConfigError(
                    f"verbalizer {v!r} is not in the vocabulary of {self.lm.name!r} (tokens {ids}); "
                    "check spelling and the leading space (byte-level BPE: ' great' != 'great')"
                )
            if self.masked and len(ids) > 1:
                pieces = self.tokenizer.convert_ids_to_tokens(ids)
                raise ConfigError(
                    f"verbalizer {v!r} is {len(ids)} tokens {pieces} but a masked LM reads one token at "
                    "<mask>; pick a single-token word (a leading space often makes one)"
                )
            out.append(list(ids))
        if len({tuple(i) for i in out}) != len(out):
            raise ConfigError(f"verbalizers {verbalizers!r} map to the same tokens; classes must differ")
        return out

    def _special_wrap(self) -> tuple[list[int], list[int]]:
        """Special tokens the tokenizer adds before and after a text (BOS, <s>...</s>)."""
        bare = self.tokenizer("x", add_special_tokens=False).input_ids
        full = self.tokenizer("x").input_ids
        for start in range(len(full) - len(bare) + 1):
            if full[start : start + len(bare)] == bare:
                before, after = full[:start], full[start + len(bare) :]
                # A causal LM reads the class right after the context: no trailing EOS.
                return before, (after if self.masked else [])
        return [], []

    def _encode(self, text: str) -> list[int]:
        if not text:
            return []
        ids = self._token_cache.get(text)
        if ids is None:
            if self.masked and MASK in text:
                # "<mask>" in the template becomes the tokenizer's own mask token.
                parts = text.split(MASK)
                ids = []
                for i, part in enumerate(parts):
                    if i:
                        ids.append(self.tokenizer.mask_token_id)
                    ids.extend(self.tokenizer(part, add_special_tokens=False).input_ids if part.strip() else [])
            else:
                ids = self.tokenizer(text, add_special_tokens=False).input_ids
            if len(self._token_cache) < 100_000:
                self._token_cache[text] = ids
        return list(ids)

    def prompt_tokens(self, prompt: Prompt) -> list[int]:
        """The token ids that a prompt occupies in the template (its leading space included)."""
        if isinstance(prompt, str):
            return self._encode(self.template.segments("", prompt)[1])
        ids = [int(t) for t in prompt]
        vocab = self.model.get_input_embeddings().num_embeddings
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise ConfigError(f"prompt token ids {bad[:5]} are outside the vocabulary (0..{vocab - 1})")
        return ids

    def decode(self, tokens: Sequence[int]) -> str:
        """Text of prompt tokens (as they read in the template)."""
        return self.tokenizer.decode(list(tokens))

    def _tail_tokens(self, prompt_empty: bool) -> list[int]:
        return self._encode(self.template.segments("", "" if prompt_empty else "x")[2])

    def _input_tokens(self, text: str) -> list[int]:
        return self._bos + self._encode(self.template.segments(text, "x")[0])

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

    def _forward(
        self,
        *,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None,
        cache: Any = None,
        keep: int = 1,
        grad: bool = False,
    ) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """One causal LM forward.

        :returns: log-probs over the vocabulary at the last ``keep`` positions [B, keep, V],
            the grown cache, and the last hidden state at those positions [B, keep, H].
        """
        kwargs: dict[str, Any] = {"attention_mask": attention_mask, "position_ids": position_ids,
                                  "use_cache": True, self._cache_kw: cache}
        if inputs_embeds is not None:
            kwargs["inputs_embeds"] = inputs_embeds
            new = inputs_embeds.shape[1]
        else:
            kwargs["input_ids"] = input_ids
            new = input_ids.shape[1]
        if self._head is not None:
            # Decoder, then the output head on the read-out rows only, as one 2-D matmul.
            out = self._decoder(**kwargs)
            hidden = out.last_hidden_state[:, -keep:]
            logits = torch.nn.functional.linear(
                hidden.reshape(-1, hidden.shape[-1]), self._head.weight, self._head.bias
            ).view(hidden.shape[0], keep, -1)
        else:
            if self._keep_kw:
                kwargs["logits_to_keep"] = keep
            out = self.model(**kwargs, output_hidden_states=True)
            hidden = out.hidden_states[-1][:, -keep:]
            logits = out.logits[:, -keep:]
        rows = attention_mask.shape[0]
        self.counters.forward_calls += 1
        self.counters.forward_tokens += rows * new
        if grad:
            self.counters.backward_tokens += rows * new
        return torch.log_softmax(logits.float(), dim=-1), getattr(out, self._cache_kw, None), hidden

    def _readout(self, logprobs_last: torch.Tensor) -> torch.Tensor:
        """First-token class log-probs from last-position log-probs [B, V] -> [B, C]."""
        return logprobs_last.index_select(-1, self._first_ids)

    def _pad_left(self, seqs: list[list[int]], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(s) for s in seqs) if length is None else length
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), length), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for i, s in enumerate(seqs):
            if s:
                ids[i, length - len(s) :] = torch.tensor(s)
                mask[i, length - len(s) :] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _positions(mask: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        pos = mask.cumsum(-1) - 1
        if offset is not None:
            pos = pos + offset.unsqueeze(-1)
        return pos.clamp(min=0)

    # -- input caches -------------------------------------------------------------------

    def _build_input_cache(self, texts: Sequence[str]) -> _InputCache:
        seqs = [self._input_tokens(t) for t in texts]
        for t, s in zip(texts, seqs, strict=True):
            if not s:
                raise ConfigError(f"example {t!r} gives no tokens; every example needs some text")
            self._check_length(len(s), f"example {t[:40]!r}")
        length = max(len(s) for s in seqs)
        rows_per_chunk = max(1, self.max_batch_tokens // length)
        kv_chunks: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        masks, lasts = [], []
        with torch.inference_mode():
            for start in range(0, len(seqs), rows_per_chunk):
                ids, mask = self._pad_left(seqs[start : start + rows_per_chunk], length)
                logp, cache, _ = self._forward(
                    input_ids=ids, attention_mask=mask, position_ids=self._positions(mask)
                )
                kv_chunks.append(_cache_tensors(cache))
                masks.append(mask)
                lasts.append(logp[:, -1])
        kv = [
            (torch.cat([c[i][0] for c in kv_chunks]), torch.cat([c[i][1] for c in kv_chunks]))
            for i in range(len(kv_chunks[0]))
        ]
        mask = torch.cat(masks)
        # Zero padded positions so that no stray value can leak through a zero attention weight.
        keep = mask.bool()[:, None, :, None]
        kv = [(k.masked_fill(~keep, 0), v.masked_fill(~keep, 0)) for k, v in kv]
        return _InputCache(kv=kv, mask=mask, lengths=mask.sum(-1), last_logits=torch.cat(lasts))

    def _input_cache(self, texts: Sequence[str]) -> _InputCache:
        key = tuple(texts)
        hit = self._caches.get(key)
        if hit is not None:
            self._caches.move_to_end(key)
            return hit
        cache = self._build_input_cache(texts)
        if len(texts) <= self.cache_examples:
            self._caches[key] = cache
            self._cached_rows += len(texts)
            while self._cached_rows > self.cache_examples and len(self._caches) > 1:
                _, old = self._caches.popitem(last=False)
                self._cached_rows -= old.n
        return cache

    def clear_cache(self) -> None:
        """Drop every kept input cache (frees memory)."""
        self._caches.clear()
        self._cached_rows = 0

    # -- public scoring -----------------------------------------------------------------

    def score(
        self,
        prompts: Sequence[Prompt],
        texts: Sequence[str],
        *,
        use_cache: bool | None = None,
    ) -> torch.Tensor:
        """Per-class log-probabilities of every prompt on every example.

        :param prompts: P prompts, each text or token ids.
        :param texts: E input texts.
        :param use_cache: reuse each input's key/value cache (default: whenever the
            template allows); ``False`` runs every full sequence (the reference path).
        :returns: float32 tensor [P, E, C] on the LM's device.
        """
        self._check_inputs(prompts, texts)
        with self._timed():
            if use_cache is None:
                use_cache = self.cacheable
            if use_cache and not self.cacheable:
                raise ConfigError(
                    f"template {self.template.text!r} puts the prompt before the input (or the LM is "
                    "masked): its input cannot be cached; use use_cache=False"
                )
            tokens = [self.prompt_tokens(p) for p in prompts]
            if use_cache:
                out = self._score_cached(tokens, texts)
            else:
                out = self._score_full(tokens, texts)
            self.counters.prompt_evals += len(prompts)
            self.counters.example_evals += len(prompts) * len(texts)
            return _check_finite(out, self.lm.name)

    def _example_chunks(self, texts: Sequence[str]) -> Iterator[tuple[int, Sequence[str]]]:
        if len(texts) <= self.cache_examples:
            yield 0, texts
            return
        for start in range(0, len(texts), self.cache_examples):
            yield start, texts[start : start + self.cache_examples]

    def _score_cached(self, tokens: list[list[int]], texts: Sequence[str]) -> torch.Tensor:
        out = torch.empty(len(tokens), len(texts), self.num_classes, device=self.device)
        suffixes = [t + self._tail_tokens(not t) for t in tokens]
        for start, chunk in self._example_chunks(texts):
            cache = self._input_cache(chunk)
            out[:, start : start + len(chunk)] = self._score_on_cache(suffixes, cache)
        return out

    def _score_on_cache(self, suffixes: list[list[int]], cache: _InputCache) -> torch.Tensor:
        """Run each prompt's tokens on top of the cached inputs; returns [P, E, C]."""
        n_ex, length = cache.n, cache.mask.shape[1]
        result = torch.empty(len(suffixes), n_ex, self.num_classes, device=self.device)
        # Prompts of equal length share a batch with no padding inside the prompt segment.
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(suffixes):
            self._check_length(length + len(s), "input plus prompt")
            by_len.setdefault(len(s), []).append(i)
        with torch.inference_mode():
            for t_len, idx in by_len.items():
                if t_len == 0:
                    base = self._readout(cache.last_logits)
                    if self._multi:
                        base = self._multi_token(base, cache.kv, cache.mask, cache.lengths, 1)
                    result[idx] = base.view(1, n_ex, -1).expand(len(idx), -1, -1)
                    continue
                per_chunk = max(1, self.max_batch_tokens // (n_ex * (length + t_len)))
                for c0 in range(0, len(idx), per_chunk):
                    sel = idx[c0 : c0 + per_chunk]
                    ids = torch.tensor([suffixes[i] for i in sel], device=self.device)
                    ids = ids.repeat_interleave(n_ex, dim=0)  # [p*E, T] prompt-major
                    result[sel] = self._extend_rows(cache, ids, len(sel)).view(len(sel), n_ex, -1)
        return result

    def _extend_rows(self, cache: _InputCache, ids: torch.Tensor, n_prompts: int) -> torch.Tensor:
        """Forward ``ids`` [n_prompts*E, T] after the inputs' cache; class log-probs [rows, C]."""
        kv = [(_tile(k, n_prompts), _tile(v, n_prompts)) for k, v in cache.kv]
        in_mask = cache.mask.repeat(n_prompts, 1)
        new_mask = torch.ones_like(ids)
        mask = torch.cat([in_mask, new_mask], dim=1)
        lengths = cache.lengths.repeat(n_prompts)
        pos = self._positions(new_mask, lengths)
        logp, new_cache, _ = self._forward(
            input_ids=ids, attention_mask=mask, position_ids=pos, cache=_make_cache(kv)
        )
        scores = self._readout(logp[:, -1])
        if self._multi:
            scores = self._multi_token(scores, _cache_tensors(new_cache), mask, lengths + ids.shape[1], 1)
        return scores

    def _multi_token(
        self,
        scores: torch.Tensor,
        kv: list[tuple[torch.Tensor, torch.Tensor]],
        mask: torch.Tensor,
        lengths: torch.Tensor,
        _unused: int,
    ) -> torch.Tensor:
        """Add the log-probs of the 2nd..kth tokens of multi-token verbalizers [B, C]."""
        rows = mask.shape[0]
        for c in self._multi:
            ids = self.verbalizer_ids[c]
            cont = torch.tensor(ids[:-1], device=self.device).expand(rows, -1)
            tgt = torch.tensor(ids[1:], device=self.device)
            cont_mask = torch.ones_like(cont)
            full_mask = torch.cat([mask, cont_mask], dim=1)
            pos = self._positions(cont_mask, lengths)
            logp, _, _ = self._forward(
                input_ids=cont, attention_mask=full_mask, position_ids=pos,
                cache=_make_cache(kv), keep=cont.shape[1],
            )
            extra = logp.gather(-1, tgt.view(1, -1, 1).expand(rows, -1, 1)).squeeze(-1).sum(-1)
            scores = scores.clone()
            scores[:, c] = scores[:, c] + extra
        return scores

    def _score_full(self, tokens: list[list[int]], texts: Sequence[str]) -> torch.Tensor:
        """The plain path: every (prompt, example) sequence run in full; [P, E, C]."""
        seqs = [self._full_sequence(t, text) for t in tokens for text in texts]
        for s in seqs:
            self._check_length(len(s), "input plus prompt")
        flat = torch.empty(len(seqs), self.num_classes, device=self.device)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths pad less
        with torch.inference_mode():
            start = 0
            while start < len(order):
                length = len(seqs[order[min(len(order) - 1, start)]])
                per = max(1, self.max_batch_tokens // max(1, length))
                sel = order[start : start + per]
                ids, mask = self._pad_left([seqs[i] for i in sel])
                flat[sel] = self._full_readout(ids, mask)
                start += len(sel)
        return flat.view(len(tokens), len(texts), -1)

    def _full_sequence(self, prompt_tokens: list[int], text: str) -> list[int]:
        before, _, after = self.template.segments(text, "x" if prompt_tokens else "")
        return self._bos + self._encode(before) + prompt_tokens + self._encode(after) + self._eos

    def _full_readout(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.masked:
            return self._masked_readout(ids, mask)
        logp, cache, _ = self._forward(input_ids=ids, attention_mask=mask, position_ids=self._positions(mask))
        scores = self._readout(logp[:, -1])
        if self._multi:
            scores = self._multi_token(scores, _cache_tensors(cache), mask, mask.sum(-1), 1)
        return scores

    def _masked_readout(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        at = ids == self.tokenizer.mask_token_id
        if not bool((at.sum(-1) == 1).all()):
            raise ConfigError("each masked-LM sequence needs exactly one <mask> token (check the template)")
        hidden = self.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        self.counters.forward_calls += 1
        self.counters.forward_tokens += ids.numel()
        logits = _masked_head(self.model, hidden[at]).float()  # [B, V]: the mask rows only
        return self._readout(torch.log_softmax(logits, dim=-1))

    # -- incremental prompts (environments) ---------------------------------------------

    def start(self, n_prompts: int, texts: Sequence[str]) -> PromptState:
        """Begin ``n_prompts`` empty prompts on ``texts``, to be grown token by token.

        :param n_prompts: P, the number of prompts grown side by side (e.g. sub-envs).
        :param texts: the E examples they are scored on.
        :returns: a :class:`PromptState`; its :attr:`~PromptState.logprobs` are those of
            the empty prompt, and :meth:`PromptState.extend` appends one token per prompt.
        """
        if not self.cacheable:
            raise ConfigError(
                f"incremental prompts need a causal LM and a template with the prompt after the "
                f"input; {self.template.text!r} on a {self.lm.kind} LM is not one"
            )
        if n_prompts < 1:
            raise ConfigError(f"n_prompts must be at least 1, got {n_prompts}")
        self._check_inputs([None] * n_prompts, texts)
        with self._timed():
            cache = self._input_cache(texts)
        return PromptState(self, cache, n_prompts)


def _tile(t: torch.Tensor, n: int) -> torch.Tensor:
    """[E, ...] -> [n*E, ...], prompt-major."""
    return t if n == 1 else t.repeat(n, *([1] * (t.dim() - 1)))


def _cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer from a transformers cache object (old and new APIs)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache, strict=True))
    return [(k, v) for k, v in cache]


def _make_cache(kv: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    from transformers import DynamicCache

    if "ddp_cache_data" in inspect.signature(DynamicCache.__init__).parameters:
        return DynamicCache(ddp_cache_data=kv)
    return DynamicCache.from_legacy_cache(tuple(kv))  # transformers < 4.56


def _split_head(model: Any, cache_kw: str) -> tuple[Any, torch.nn.Linear | None]:
    """The decoder and a plain linear output head, when the model is built that way.

    Models that post-process logits (soft-capping, scaling) keep their own forward.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    cfg = model.config
    plain = isinstance(head, torch.nn.Linear) and not any(
        getattr(cfg, a, None) for a in ("final_logit_softcapping", "logit_scale", "logits_scaling")
    )
    if not plain or decoder is None or decoder is model:
        return None, None
    if cache_kw not in inspect.signature(decoder.forward).parameters:
        return None, None
    return decoder, head


def _masked_head(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """Apply a masked LM's prediction head to selected hidden rows only."""
    for name in ("lm_head", "cls", "generator_lm_head", "predictions"):
        head = getattr(model, name, None)
        if head is not None:
            if name == "generator_lm_head":
                hidden = model.generator_predictions(hidden)
            return head(hidden)
    raise ConfigError(f"do not know the prediction head of {type(model).__name__}; use a causal LM")


def _check_finite(scores: torch.Tensor, name: str) -> torch.Tensor:
    if not bool(torch.isfinite(scores).all()):
        bad = int((~torch.isfinite(scores)).sum())
        raise NonFiniteScoresError(
            f"the LM {name!r} produced {bad} NaN/infinite class log-probabilities; the model weights "
            "or dtype may be broken (try dtype float32)"
        )
    return scores


class PromptState:
    """Prompts being grown one token at a time on a fixed set of examples.

    Made by :meth:`ScoringEngine.start`. Holds the key/value cache of every
    (prompt, example) row, so each :meth:`extend` costs one token per row.
    """

    def __init__(self, engine: ScoringEngine, inputs: _InputCache, n_prompts: int) -> None:
        self.engine = engine
        self.n_prompts = n_prompts
        self.n_examples = inputs.n
        self.tokens: list[list[int]] = [[] for _ in range(n_prompts)]
        self._kv = [(_tile(k, n_prompts), _tile(v, n_prompts)) for k, v in inputs.kv]
        self._mask = inputs.mask.repeat(n_prompts, 1)
        self._lengths = inputs.lengths.repeat(n_prompts)
        self._tail = engine._tail_tokens(prompt_empty=False)
        empty_tail = engine._tail_tokens(prompt_empty=True)
        self.hidden: torch.Tensor | None = None
        with torch.inference_mode(), engine._timed():
            if empty_tail:
                self.logprobs = self._read_with_tail(empty_tail)
            else:
                base = engine._readout(inputs.last_logits)
                if engine._multi:
                    base = engine._multi_token(base, inputs.kv, inputs.mask, inputs.lengths, 1)
                self.logprobs = base.repeat(n_prompts, 1).view(n_prompts, self.n_examples, -1)
            engine.counters.prompt_evals += n_prompts
            engine.counters.example_evals += n_prompts * self.n_examples

    @property
    def length(self) -> int:
        """Tokens appended so far (the same for every prompt)."""
        return len(self.tokens[0])

    def extend(self, tokens: Sequence[int] | torch.Tensor, *, want_hidden: bool = False) -> torch.Tensor:
        """Append one token to every prompt and read the classes out.

        :param tokens: P token ids, one per prompt.
        :param want_hidden: also keep the LM's last hidden state of each row in
            :attr:`hidden` ([P, E, H]), for policies that observe what the LM sees.
        :returns: class log-probs [P, E, C] of the grown prompts.
        """
        eng = self.engine
        ids = [int(t) for t in (tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens)]
        if len(ids) != self.n_prompts:
            raise ConfigError(f"extend needs {self.n_prompts} tokens (one per prompt), got {len(ids)}")
        eng.prompt_tokens(ids)  # range check
        eng._check_length(self._mask.shape[1] + 1 + len(self._tail), "input plus prompt")
        with torch.inference_mode(), eng._timed():
            step = torch.tensor(ids, device=eng.device).repeat_interleave(self.n_examples).unsqueeze(1)
            new_mask = torch.ones_like(step)
            mask = torch.cat([self._mask, new_mask], dim=1)
            pos = eng._positions(new_mask, self._lengths)
            logp, cache = self._run(step, mask, pos, self._kv, want_hidden and not self._tail)
            self._kv, self._mask, self._lengths = _cache_tensors(cache), mask, self._lengths + 1
            for p, t in enumerate(ids):
                self.tokens[p].append(t)
            if self._tail:
                self.logprobs = self._read_with_tail(self._tail, want_hidden)
            else:
                scores = eng._readout(logp[:, -1])
                if eng._multi:
                    scores = eng._multi_token(scores, self._kv, self._mask, self._lengths, 1)
                self.logprobs = scores.view(self.n_prompts, self.n_examples, -1)
            eng.counters.prompt_evals += self.n_prompts
            eng.counters.example_evals += self.n_prompts * self.n_examples
            return _check_finite(self.logprobs, eng.lm.name)

    def _run(
        self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
        kv: list[tuple[torch.Tensor, torch.Tensor]], want_hidden: bool,
    ) -> tuple[torch.Tensor, Any]:
        logp, cache, hidden = self.engine._forward(
            input_ids=ids, attention_mask=mask, position_ids=pos, cache=_make_cache(kv)
        )
        if want_hidden:
            self.hidden = hidden[:, -1].reshape(self.n_prompts, self.n_examples, -1).float()
        return logp, cache

    def _read_with_tail(self, tail: list[int], want_hidden: bool = False) -> torch.Tensor:
        """Read out after the template's tail without keeping the tail in the cache."""
        eng = self.engine
        ids = torch.tensor(tail, device=eng.device).expand(self._mask.shape[0], -1)
        new_mask = torch.ones_like(ids)
        mask = torch.cat([self._mask, new_mask], dim=1)
        pos = eng._positions(new_mask, self._lengths)
        # A transformers cache grows by concatenation into new tensors, so self._kv
        # keeps its length: the tail is not kept.
        logp, cache = self._run(ids, mask, pos, self._kv, want_hidden)
        scores = eng._readout(logp[:, -1])
        if eng._multi:
            scores = eng._multi_token(scores, _cache_tensors(cache), mask, self._lengths + len(tail), 1)
        return scores.view(self.n_prompts, self.n_examples, -1)

    def text(self, p: int = 0) -> str:
        """The text of prompt ``p`` so far."""
        return self.engine.decode(self.tokens[p])
