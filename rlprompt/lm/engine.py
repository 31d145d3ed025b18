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
import torch.nn.functional as F

from rlprompt.errors import ConfigError, RLPromptError
from rlprompt.lm.counters import EngineCounters
from rlprompt.lm.loading import FrozenLM
from rlprompt.lm.template import CAUSAL_TEMPLATE, MASK, MASKED_TEMPLATE, Template

Prompt = str | Sequence[int]
"""A prompt: text, or token ids of the task LM's vocabulary."""

Placement = Literal["suffix", "prefix"]


class NonFiniteScoresError(RLPromptError, FloatingPointError):
    """The LM produced NaN or infinite log-probabilities."""


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
    :param max_packed_prompts: at most this many prompts share one packed forward.
    :param normalize: ``"vocab"``: exact log-probabilities under the LM (the output head
        runs over the whole vocabulary, at the read-out positions only); ``"classes"``:
        log-softmax over the verbalizers' first tokens only (only those rows of the head
        run; single-token verbalizers; every built-in reward gives the same result).
    """

    def __init__(
        self,
        lm: FrozenLM,
        verbalizers: Sequence[str],
        template: str | Template | None = None,
        *,
        max_batch_tokens: int = 16384,
        cache_examples: int = 512,
        max_packed_prompts: int = 16,
        normalize: Literal["vocab", "classes"] = "vocab",
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
        self.max_packed_prompts = max_packed_prompts
        if normalize not in ("vocab", "classes"):
            raise ConfigError(f"normalize must be 'vocab' or 'classes', got {normalize!r}")
        self.normalize = normalize
        self.counters = EngineCounters()
        self.device = lm.device
        self.verbalizers = list(verbalizers)
        self.verbalizer_ids = self._verbalizer_ids(self.verbalizers)
        self._first_ids = torch.tensor([ids[0] for ids in self.verbalizer_ids], device=self.device)
        self._multi = [c for c, ids in enumerate(self.verbalizer_ids) if len(ids) > 1]
        self._bos, self._eos = self._special_wrap()
        self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self._decoder, self._head = _split_head(self.model, self._cache_kw)
        if normalize == "classes" and (self._multi or self._head is None):
            raise ConfigError("normalize='classes' needs single-token verbalizers and a plain linear output head")
        self._caches: OrderedDict[tuple[str, ...], _Packed] = OrderedDict()
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

    def _decode_step(
        self,
        *,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: Any = None,
        grad: bool = False,
    ) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        """One decoder forward.

        :returns: last hidden states [B, Q, H], the grown cache, and the full logits
            [B, Q, V] only for models whose head cannot be applied on its own (else None).
        """
        kwargs: dict[str, Any] = {"attention_mask": attention_mask, "position_ids": position_ids,
                                  "use_cache": True, self._cache_kw: cache}
        if inputs_embeds is not None:
            kwargs["inputs_embeds"] = inputs_embeds
        else:
            kwargs["input_ids"] = input_ids
        batch, new = position_ids.shape
        self.counters.forward_calls += 1
        self.counters.forward_tokens += batch * new
        if grad:
            self.counters.backward_tokens += batch * new
        if self._head is not None:
            out = self._decoder(**kwargs)
            return out.last_hidden_state, getattr(out, self._cache_kw, None), None
        out = self.model(**kwargs, output_hidden_states=True)
        return out.hidden_states[-1], getattr(out, self._cache_kw, None), out.logits

    def _class_logprobs(self, hidden: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Class log-probs of the first verbalizer tokens from read-out rows [..., H] -> [..., C].

        Only these rows go through the output head, as one 2-D matmul.
        """
        if logits is None:
            flat = hidden.reshape(-1, hidden.shape[-1])
            if self.normalize == "classes":
                w = self._head.weight[self._first_ids]
                b = None if self._head.bias is None else self._head.bias[self._first_ids]
                return torch.log_softmax(F.linear(flat, w, b).float(), -1).view(*hidden.shape[:-1], -1)
            logits = F.linear(flat, self._head.weight, self._head.bias).view(*hidden.shape[:-1], -1)
        return torch.log_softmax(logits.float(), -1).index_select(-1, self._first_ids)

    def _token_logprobs(
        self, hidden: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(target) from rows [..., H] and targets [...] (multi-token verbalizers)."""
        if logits is None:
            flat = hidden.reshape(-1, hidden.shape[-1])
            logits = F.linear(flat, self._head.weight, self._head.bias).view(*hidden.shape[:-1], -1)
        logp = torch.log_softmax(logits.float(), -1)
        return logp.gather(-1, targets.unsqueeze(-1).expand(*logp.shape[:-1], 1)).squeeze(-1)

    def _pad_left(self, seqs: list[list[int]], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(s) for s in seqs) if length is None else length
        ids = torch.full((len(seqs), length), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for i, s in enumerate(seqs):
            if s:
                ids[i, length - len(s) :] = torch.tensor(s)
                mask[i, length - len(s) :] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _positions(mask: torch.Tensor) -> torch.Tensor:
        return (mask.cumsum(-1) - 1).clamp(min=0)

    # -- input caches -------------------------------------------------------------------

    def _build_input_cache(self, texts: Sequence[str]) -> _Packed:
        seqs = [self._input_tokens(t) for t in texts]
        for t, s in zip(texts, seqs, strict=True):
            if not s:
                raise ConfigError(f"example {t!r} gives no tokens; every example needs some text")
            self._check_length(len(s), f"example {t[:40]!r}")
        length = max(len(s) for s in seqs)
        rows_per_chunk = max(1, self.max_batch_tokens // length)
        kv_chunks, masks, hiddens, logits = [], [], [], []
        # no_grad rather than inference_mode: soft prompts backpropagate through these later.
        with torch.no_grad():
            for start in range(0, len(seqs), rows_per_chunk):
                ids, mask = self._pad_left(seqs[start : start + rows_per_chunk], length)
                hidden, cache, full = self._decode_step(
                    input_ids=ids, attention_mask=mask, position_ids=self._positions(mask)
                )
                kv_chunks.append(_cache_tensors(cache))
                masks.append(mask)
                hiddens.append(hidden[:, -1])
                logits.append(None if full is None else full[:, -1])
        kv = [(torch.cat([c[i][0] for c in kv_chunks]), torch.cat([c[i][1] for c in kv_chunks]))
              for i in range(len(kv_chunks[0]))]
        key_mask = torch.cat(masks).bool()
        # Zero padded positions so that no stray value can leak through a zero attention weight.
        keep = key_mask[:, None, :, None]
        kv = [(k.masked_fill(~keep, 0), v.masked_fill(~keep, 0)) for k, v in kv]
        zeros = torch.zeros(length, dtype=torch.long, device=self.device)
        return _Packed(
            kv=kv, key_mask=key_mask, key_group=zeros, key_step=zeros.clone(),
            lengths=key_mask.sum(-1), last_hidden=torch.cat(hiddens),
            last_logits=None if logits[0] is None else torch.cat(logits),
        )

    def _input_cache(self, texts: Sequence[str]) -> _Packed:
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

    def prepare(self, texts: Sequence[str]) -> None:
        """Build and keep the inputs' key/value caches now (no prompt is evaluated or counted).

        Lets a caller pay the one-off input cost up front, so later per-step costs do not
        depend on whether a cache already existed.
        """
        if not texts:
            raise ConfigError("no examples to prepare")
        if self.cacheable:
            with self._timed(), torch.inference_mode():
                for _, chunk in self._example_chunks(texts):
                    self._input_cache(chunk)

    def clear_cache(self) -> None:
        """Drop every kept input cache (frees memory)."""
        self._caches.clear()
        self._cached_rows = 0

    def _example_chunks(self, texts: Sequence[str]) -> Iterator[tuple[int, Sequence[str]]]:
        for start in range(0, len(texts), max(1, self.cache_examples)):
            yield start, texts[start : start + self.cache_examples]

    # -- packed prompts on a shared cache -----------------------------------------------

    def _packed_forward(self, base: _Packed, q: _Queries, grad: bool = False) -> tuple[torch.Tensor, Any]:
        """Run queries of several prompts packed side by side after each example's cache.

        Every example row holds its cached input followed by the tokens of ALL prompts;
        the attention mask lets a token see the input, its own group's earlier tokens and
        its ancestor groups (a prompt's tail sees the prompt). So the input cache is never
        copied per prompt, and a prompt costs only its own tokens.

        :returns: hidden states [E, Q, H] and the grown cache (E rows).
        """
        n_ex, q_len = base.n, q.group.shape[0]
        vis = q.visible
        old_ok = vis[q.group][:, base.key_group] & (
            (base.key_group == 0)[None, :] | (base.key_step[None, :] <= q.step[:, None])
        )
        new_ok = vis[q.group][:, q.group] & (q.step[None, :] <= q.step[:, None])
        allowed = torch.cat(
            [old_ok.unsqueeze(0) & base.key_mask[:, None, :], new_ok.unsqueeze(0).expand(n_ex, -1, -1)], dim=-1
        )
        dtype = self.lm.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=self.device)
        mask = mask.masked_fill_(~allowed, torch.finfo(dtype).min).unsqueeze(1)  # [E, 1, Q, S+Q]
        positions = base.lengths[:, None] + q.step[None, :]
        if q.embeds is not None:
            embeds = q.embeds if q.embeds.dim() == 3 else q.embeds.unsqueeze(0).expand(n_ex, -1, -1)
            kw: dict[str, Any] = {"inputs_embeds": embeds.to(dtype)}
        else:
            kw = {"input_ids": q.ids.unsqueeze(0).expand(n_ex, q_len)}
        hidden, cache, full = self._decode_step(
            attention_mask=mask, position_ids=positions, cache=_make_cache(base.kv), grad=grad, **kw
        )
        if full is not None:
            hidden = _HiddenWithLogits(hidden, full)
        return hidden, cache

    def _add_suffix(self, b: _QueryBuilder, prompt: int, group: int, tokens: list[int], first_step: int) -> int:
        """Queue a prompt's ``tokens`` in ``group``, then its multi-token verbalizer continuations.

        :returns: the query index to read the first verbalizer token at (-1: right after the input).
        """
        for j, t in enumerate(tokens):
            b.add(t, group, first_step + j)
        read = b.size - 1 if tokens else b.read_if_empty
        for c in self._multi:
            child = b.child(group)
            for j, t in enumerate(self.verbalizer_ids[c][:-1]):
                b.add(t, child, first_step + len(tokens) + j, continuation=(prompt, c, j + 1))
        return read

    def _queries_for(self, suffixes: list[list[int]]) -> tuple[_Queries, list[int]]:
        """Queries for P prompt suffixes (prompt tokens + template tail), one group each."""
        b = _QueryBuilder(len(suffixes))
        read = [self._add_suffix(b, p, p + 1, s, 0) for p, s in enumerate(suffixes)]
        return b.build(self.device), read

    def _read_classes(self, base: _Packed, hidden: Any, q: _Queries, read: list[int]) -> torch.Tensor:
        """Class log-probs [P, E, C] from a packed forward's hidden states [E, Q, H].

        ``read[p]`` is the query whose next token is the first verbalizer token; -1 reads
        right after the input (an empty prompt).
        """
        hid, full = (hidden.hidden, hidden.logits) if isinstance(hidden, _HiddenWithLogits) else (hidden, None)
        n_ex = base.n
        scores = torch.empty(n_ex, len(read), self.num_classes, device=self.device)
        at = [p for p, r in enumerate(read) if r >= 0]
        if at:
            idx = torch.tensor([read[p] for p in at], device=self.device)
            scores[:, at] = self._class_logprobs(
                hid.index_select(1, idx), None if full is None else full.index_select(1, idx)
            )
        empty = [p for p, r in enumerate(read) if r < 0]
        if empty:
            scores[:, empty] = self._class_logprobs(base.last_hidden, base.last_logits).unsqueeze(1)
        if q.continuations:
            qi = torch.tensor([c[0] for c in q.continuations], device=self.device)
            tgt = torch.tensor([self.verbalizer_ids[c][j] for _, _, c, j in q.continuations], device=self.device)
            extra = self._token_logprobs(
                hid.index_select(1, qi), tgt.unsqueeze(0).expand(n_ex, -1),
                None if full is None else full.index_select(1, qi),
            )  # [E, n_continuations]
            add = torch.zeros_like(scores)
            for k, (_, p, c, _) in enumerate(q.continuations):
                add[:, p, c] += extra[:, k]
            scores = scores + add
        return scores.transpose(0, 1)  # [P, E, C]

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
        if use_cache is None:
            use_cache = self.cacheable
        if use_cache and not self.cacheable:
            raise ConfigError(
                f"template {self.template.text!r} puts the prompt before the input (or the LM is "
                "masked): its input cannot be cached; use use_cache=False"
            )
        tokens = [self.prompt_tokens(p) for p in prompts]
        with self._timed(), torch.inference_mode():
            out = self._score_cached(tokens, texts) if use_cache else self._score_full(tokens, texts)
            self.counters.prompt_evals += len(prompts)
            self.counters.example_evals += len(prompts) * len(texts)
        return _check_finite(out, self.lm.name)

    def _prompt_chunks(self, n_prompts: int, per_prompt: int, n_ex: int, length: int) -> Iterator[slice]:
        """Prompt slices whose packed batch stays under ``max_batch_tokens``."""
        room = max(1, self.max_batch_tokens // max(1, n_ex) - length)
        per = max(1, min(n_prompts, room // max(1, per_prompt), self.max_packed_prompts))
        for start in range(0, n_prompts, per):
            yield slice(start, start + per)

    def _score_cached(self, tokens: list[list[int]], texts: Sequence[str]) -> torch.Tensor:
        out = torch.empty(len(tokens), len(texts), self.num_classes, device=self.device)
        suffixes = [t + self._tail_tokens(not t) for t in tokens]
        longest = max(len(s) for s in suffixes) + sum(len(self.verbalizer_ids[c]) for c in self._multi)
        for start, chunk in self._example_chunks(texts):
            base = self._input_cache(chunk)
            length = base.key_mask.shape[1]
            self._check_length(length + longest, "input plus prompt")
            for sl in self._prompt_chunks(len(suffixes), longest, base.n, length):
                q, read = self._queries_for(suffixes[sl])
                if q.group.numel() == 0:
                    hidden = base.last_hidden.new_zeros(base.n, 0, base.last_hidden.shape[-1])
                else:
                    hidden, _ = self._packed_forward(base, q)
                out[sl, start : start + len(chunk)] = self._read_classes(base, hidden, q, read)
        return out

    def _score_full(self, tokens: list[list[int]], texts: Sequence[str]) -> torch.Tensor:
        """The plain path: every (prompt, example) sequence run in full; [P, E, C]."""
        pairs = [(p, e) for p in range(len(tokens)) for e in range(len(texts))]
        seqs = [self._full_sequence(tokens[p], texts[e]) for p, e in pairs]
        for s in seqs:
            self._check_length(len(s), "input plus prompt")
        flat = torch.empty(len(seqs), self.num_classes, device=self.device)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths pad less
        start = 0
        while start < len(order):
            per = max(1, self.max_batch_tokens // max(1, len(seqs[order[start]])))
            sel = order[start : start + per]
            longest = max(len(seqs[i]) for i in sel)
            sel = sel[: max(1, self.max_batch_tokens // longest)]
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
        hidden, cache, full = self._decode_step(input_ids=ids, attention_mask=mask, position_ids=self._positions(mask))
        scores = self._class_logprobs(hidden[:, -1], None if full is None else full[:, -1])
        if self._multi:
            # Continue each row's cache with the verbalizers' later tokens.
            zeros = torch.zeros(ids.shape[1], dtype=torch.long, device=self.device)
            base = _Packed(kv=_cache_tensors(cache), key_mask=mask.bool(), key_group=zeros, key_step=zeros,
                           lengths=mask.sum(-1), last_hidden=hidden[:, -1],
                           last_logits=None if full is None else full[:, -1])
            q, read = self._queries_for([[]])
            hidden2, _ = self._packed_forward(base, q)
            scores = self._read_classes(base, hidden2, q, read)[0]
        return scores

    def _masked_readout(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        at = ids == self.tokenizer.mask_token_id
        if not bool((at.sum(-1) == 1).all()):
            raise ConfigError("each masked-LM sequence needs exactly one <mask> token (check the template)")
        hidden = self.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        self.counters.forward_calls += 1
        self.counters.forward_tokens += ids.numel()
        logits = _masked_head(self.model, hidden[at]).float()  # [B, V]: the mask rows only
        return torch.log_softmax(logits, dim=-1).index_select(-1, self._first_ids)

    # -- soft prompts -------------------------------------------------------------------

    def score_soft(
        self,
        embeds: torch.Tensor,
        texts: Sequence[str],
        *,
        placement: Placement = "suffix",
        grad: bool = False,
    ) -> torch.Tensor:
        """Class log-probs of soft prompts (embedding vectors) on every example.

        :param embeds: soft prompts [P, T, H] (or one prompt [T, H]) in the LM's
            input-embedding space.
        :param texts: E input texts.
        :param placement: ``"suffix"``: at the template's ``{prompt}`` after the cached
            input (only the soft tokens and the tail run); ``"prefix"``: before everything
            (Lester et al. 2021; a full forward per example).
        :param grad: keep the graph so gradients flow into ``embeds`` (the LM stays
            frozen); counts each position as a forward and a backward token.
        :returns: float32 tensor [P, E, C].
        """
        if embeds.dim() == 2:
            embeds = embeds.unsqueeze(0)
        hidden_size = self.lm.input_embeddings().embedding_dim
        if embeds.dim() != 3 or embeds.shape[-1] != hidden_size or embeds.shape[1] == 0:
            raise ConfigError(
                f"soft prompts must be [P, T, {hidden_size}] with T >= 1, got {list(embeds.shape)}"
            )
        if placement not in ("suffix", "prefix"):
            raise ConfigError(f"placement must be 'suffix' or 'prefix', got {placement!r}")
        if self.masked:
            raise ConfigError("soft prompts are supported on causal LMs only")
        self._check_inputs(list(range(embeds.shape[0])), texts)
        embeds = embeds.to(self.device)
        context = torch.enable_grad() if grad else torch.inference_mode()
        with self._timed(), context:
            if placement == "suffix":
                if not self.template.prompt_after_input:
                    raise ConfigError(f"suffix placement needs the prompt after the input; {self.template.text!r}")
                parts = [self._soft_suffix(embeds, chunk, grad) for _, chunk in self._example_chunks(texts)]
            else:
                parts = [self._soft_prefix(embeds, chunk, grad) for _, chunk in self._example_chunks(texts)]
            out = torch.cat(parts, dim=1)
            self.counters.prompt_evals += embeds.shape[0]
            self.counters.example_evals += embeds.shape[0] * len(texts)
        return _check_finite(out, self.lm.name)

    def _soft_suffix(self, embeds: torch.Tensor, texts: Sequence[str], grad: bool) -> torch.Tensor:
        base = self._input_cache(texts)
        n_prompts, n_soft, _ = embeds.shape
        tail = self._tail_tokens(prompt_empty=False)
        table = self.lm.input_embeddings()
        # Placeholder ids for the soft positions; their embeddings are swapped in below.
        q, read = self._queries_for([[0] * n_soft + tail for _ in range(n_prompts)])
        q_embeds = table(q.ids).detach()
        # The soft positions: each prompt's own group (1..P), first n_soft steps; prompt-major
        # like ``embeds`` (tails and verbalizer continuations sit between the prompts' blocks).
        is_soft = (q.group >= 1) & (q.group <= n_prompts) & (q.step < n_soft)
        soft_at = is_soft.nonzero().squeeze(-1)
        q_embeds = q_embeds.index_put((soft_at,), embeds.reshape(-1, embeds.shape[-1]).to(q_embeds.dtype))
        q.embeds = q_embeds
        self._check_length(base.key_mask.shape[1] + q.group.numel(), "input plus soft prompt")
        hidden, _ = self._packed_forward(base, q, grad=grad)
        return self._read_classes(base, hidden, q, read)

    def _soft_prefix(self, embeds: torch.Tensor, texts: Sequence[str], grad: bool) -> torch.Tensor:
        """[soft][input with the template's empty prompt]: one full forward per (prompt, example)."""
        table = self.lm.input_embeddings()
        n_prompts, n_soft, _ = embeds.shape
        seqs = [self._full_sequence([], t) for t in texts]
        ids, mask = self._pad_left(seqs)
        self._check_length(ids.shape[1] + n_soft, "soft prompt plus input")
        tok_embeds = table(ids).detach()  # [E, L, H]
        out = []
        rows_per = max(1, self.max_batch_tokens // (ids.shape[1] + n_soft) // len(texts))
        for p0 in range(0, n_prompts, rows_per):
            soft = embeds[p0 : p0 + rows_per].to(tok_embeds.dtype)  # [p, T, H]
            n = soft.shape[0]
            pad_mask = mask.repeat(n, 1)
            # Left padding goes before the soft tokens, so every row ends with its last input token.
            lead = (pad_mask == 0).sum(-1)
            seq = torch.cat([soft.repeat_interleave(len(texts), 0), tok_embeds.repeat(n, 1, 1)], dim=1)
            att = torch.cat([torch.ones(seq.shape[0], n_soft, dtype=mask.dtype, device=self.device), pad_mask], 1)
            # Move each row's padding to the front: roll the soft part right by the pad count.
            seq, att = _roll_left_padding(seq, att, lead, n_soft)
            hidden, _, full = self._decode_step(
                inputs_embeds=seq, attention_mask=att, position_ids=self._positions(att), grad=grad
            )
            scores = self._class_logprobs(hidden[:, -1], None if full is None else full[:, -1])
            out.append(scores.view(n, len(texts), -1))
        return torch.cat(out)

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
        with self._timed(), torch.inference_mode():
            base = self._input_cache(texts)
        return PromptState(self, base, n_prompts)


@dataclass
class _Packed:
    """Keys/values of E example rows: each cached input, then (packed) prompt tokens.

    ``key_group`` says which prompt each position belongs to (0: the input) and
    ``key_step`` its position within the prompt; see ``_packed_forward``.
    """

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, each [E, heads, S, d]
    key_mask: torch.Tensor  # [E, S] bool: input padding is False
    key_group: torch.Tensor  # [S] long
    key_step: torch.Tensor  # [S] long
    lengths: torch.Tensor  # [E] real input tokens (the position of prompt step 0)
    last_hidden: torch.Tensor  # [E, H] hidden state right after the input
    last_logits: torch.Tensor | None  # [E, V] only for models without a separable head

    @property
    def n(self) -> int:
        return self.key_mask.shape[0]


@dataclass
class _Queries:
    """New positions for a packed forward: token ids (or embeddings), group and step."""

    ids: torch.Tensor  # [Q]
    group: torch.Tensor  # [Q]
    step: torch.Tensor  # [Q]
    visible: torch.Tensor  # [G, G] bool: visible[g, h] = h is g or an ancestor of g
    embeds: torch.Tensor | None = None  # [Q, H] or [E, Q, H]
    continuations: list[tuple[int, int, int, int]] | None = None

    @classmethod
    def build(cls, ids: list[int], group: list[int], step: list[int], parent: list[int],
              device: torch.device) -> _Queries:
        n = len(parent)
        visible = torch.zeros(n, n, dtype=torch.bool)
        for g in range(n):
            h = g
            while True:
                visible[g, h] = True
                if h == 0:
                    break
                h = parent[h]
        as_t = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
        return cls(ids=as_t(ids), group=as_t(group), step=as_t(step), visible=visible.to(device))


class _QueryBuilder:
    """Collects packed query positions; groups 1..P are the prompts, 0 the input."""

    def __init__(self, n_prompts: int, read_if_empty: int = -1) -> None:
        self.ids: list[int] = []
        self.group: list[int] = []
        self.step: list[int] = []
        self.parent = [0] * (n_prompts + 1)
        self.continuations: list[tuple[int, int, int, int]] = []
        self.read_if_empty = read_if_empty

    @property
    def size(self) -> int:
        return len(self.ids)

    def child(self, of: int) -> int:
        self.parent.append(of)
        return len(self.parent) - 1

    def add(self, token: int, group: int, step: int, continuation: tuple[int, int, int] | None = None) -> None:
        if continuation is not None:
            self.continuations.append((self.size, *continuation))
        self.ids.append(token)
        self.group.append(group)
        self.step.append(step)

    def build(self, device: torch.device) -> _Queries:
        q = _Queries.build(self.ids, self.group, self.step, self.parent, device)
        q.continuations = self.continuations
        return q


@dataclass
class _HiddenWithLogits:
    """Hidden states plus full logits, for models whose head must run inside forward."""

    hidden: torch.Tensor
    logits: torch.Tensor


def _roll_left_padding(
    seq: torch.Tensor, att: torch.Tensor, lead: torch.Tensor, n_soft: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows laid out [soft][pad][input] become [pad][soft][input]."""
    if int(lead.max()) == 0:
        return seq, att
    idx = torch.arange(seq.shape[1], device=seq.device).unsqueeze(0).expand(seq.shape[0], -1)
    # Output position i takes: pads first (from the pad block), then soft, then the input.
    src = torch.where(
        idx < lead[:, None], idx + n_soft,
        torch.where(idx < lead[:, None] + n_soft, idx - lead[:, None], idx),
    )
    seq = seq.gather(1, src.unsqueeze(-1).expand(-1, -1, seq.shape[-1]))
    att = att.gather(1, src)
    return seq, att


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
    for name in ("lm_head", "cls", "predictions"):
        head = getattr(model, name, None)
        if head is not None:
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
    """Prompts being grown one token (or soft vector) at a time on fixed examples.

    Made by :meth:`ScoringEngine.start`. Each example row keeps its cached input and
    the packed tokens of all P prompts, so :meth:`extend` costs one position per
    prompt per example (plus the template's tail, which is read but not kept) and
    never copies the input cache per prompt.
    """

    def __init__(self, engine: ScoringEngine, base: _Packed, n_prompts: int) -> None:
        self.engine = engine
        self.n_prompts = n_prompts
        self.n_examples = base.n
        self.tokens: list[list[int]] = [[] for _ in range(n_prompts)]
        self.hidden: torch.Tensor | None = None
        self._state = base
        self._tail = engine._tail_tokens(prompt_empty=False)
        with torch.inference_mode(), engine._timed():
            b = _QueryBuilder(n_prompts)
            empty_tail = engine._tail_tokens(prompt_empty=True)
            read = [engine._add_suffix(b, p, b.child(p + 1), empty_tail, 0) for p in range(n_prompts)]
            self.logprobs = self._run(b, read, n_keep=0)
            engine.counters.prompt_evals += n_prompts
            engine.counters.example_evals += n_prompts * self.n_examples

    @property
    def length(self) -> int:
        """Positions appended so far (the same for every prompt)."""
        return len(self.tokens[0])

    def _run(self, b: _QueryBuilder, read: list[int], n_keep: int, embeds: torch.Tensor | None = None,
             want_hidden: bool = False) -> torch.Tensor:
        """Forward the queued positions; keep the first ``n_keep`` in the state; [P, E, C]."""
        eng = self.engine
        q = b.build(eng.device)
        if q.group.numel() == 0:
            hidden = self._state.last_hidden.new_zeros(self.n_examples, 0, self._state.last_hidden.shape[-1])
            return eng._read_classes(self._state, hidden, q, read)
        if embeds is not None:
            table = eng.lm.input_embeddings()
            q.embeds = torch.cat([embeds.to(table.weight.dtype), table(q.ids[n_keep:])])
        hidden, cache = eng._packed_forward(self._state, q)
        scores = eng._read_classes(self._state, hidden, q, read)
        if n_keep:
            st = self._state
            # Keep the new prompt positions; tails and continuations were read, not kept.
            end = st.key_mask.shape[1] + n_keep
            self._state = _Packed(
                kv=[(k[:, :, :end], v[:, :, :end]) for k, v in _cache_tensors(cache)],
                key_mask=torch.cat([st.key_mask, st.key_mask.new_ones(st.n, n_keep)], 1),
                key_group=torch.cat([st.key_group, q.group[:n_keep]]),
                key_step=torch.cat([st.key_step, q.step[:n_keep]]),
                lengths=st.lengths, last_hidden=st.last_hidden, last_logits=st.last_logits,
            )
            if want_hidden:
                hid = hidden.hidden if isinstance(hidden, _HiddenWithLogits) else hidden
                self.hidden = hid[:, :n_keep].transpose(0, 1).float()  # [P, E, H]
        return scores

    def extend(
        self,
        tokens: Sequence[int] | torch.Tensor | None = None,
        *,
        embeds: torch.Tensor | None = None,
        want_hidden: bool = False,
    ) -> torch.Tensor:
        """Append one position to every prompt and read the classes out.

        :param tokens: P token ids, one per prompt; or None with ``embeds``.
        :param embeds: P soft token embeddings [P, H] (a soft prompt grown per step).
        :param want_hidden: keep the LM's last hidden state of each new position in
            :attr:`hidden` ([P, E, H]), for policies that observe what the LM sees.
        :returns: class log-probs [P, E, C] of the grown prompts.
        """
        eng = self.engine
        if (tokens is None) == (embeds is None):
            raise ConfigError("extend takes either tokens or embeds (one per prompt)")
        if tokens is not None:
            ids = [int(t) for t in (tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens)]
            if len(ids) != self.n_prompts:
                raise ConfigError(f"extend needs {self.n_prompts} tokens (one per prompt), got {len(ids)}")
            eng.prompt_tokens(ids)  # vocabulary range check
        else:
            hidden_size = eng.lm.input_embeddings().embedding_dim
            if embeds.dim() != 2 or tuple(embeds.shape) != (self.n_prompts, hidden_size):
                raise ConfigError(
                    f"extend needs embeds of shape [{self.n_prompts}, {hidden_size}], got {list(embeds.shape)}"
                )
            ids = [0] * self.n_prompts  # placeholders; the embeddings are used
        input_len = int(self._state.lengths.max())
        eng._check_length(input_len + self.length + 1 + len(self._tail), "input plus prompt")
        with torch.inference_mode(), eng._timed():
            b = _QueryBuilder(self.n_prompts)
            step = self.length
            for p, t in enumerate(ids):
                b.add(t, p + 1, step)
            read = []
            for p in range(self.n_prompts):
                b.read_if_empty = p  # no tail: read at the prompt's new position
                tail_group = b.child(p + 1) if self._tail else p + 1
                read.append(eng._add_suffix(b, p, tail_group, list(self._tail), step + 1))
            self.logprobs = self._run(b, read, self.n_prompts, embeds, want_hidden)
            for p, t in enumerate(ids):
                self.tokens[p].append(t)
            eng.counters.prompt_evals += self.n_prompts
            eng.counters.example_evals += self.n_prompts * self.n_examples
        return _check_finite(self.logprobs, eng.lm.name)

    def text(self, p: int = 0) -> str:
        """The text of prompt ``p`` so far (soft positions read as token 0)."""
        return self.engine.decode(self.tokens[p])
