"""The engine's input side: encoding each example once into the per-example store
(:mod:`rlprompt.lm.input_cache`), length-bucketed batches, and the batches assembled from the
store that a call's prompts are scored on. Mixed into :class:`~rlprompt.lm.engine.ScoringEngine`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from rlprompt import stop
from rlprompt.errors import ConfigError
from rlprompt.lm.input_cache import InputEntry, assemble, split_entries
from rlprompt.lm.packing import PackedCache
from rlprompt.lm.padding import position_ids
from rlprompt.lm.transformers_compat import cache_tensors

PAD_SHARE, PAD_SLACK = 0.05, 16
"""Inputs are encoded in batches of sorted lengths padded by at most this share of their real
tokens plus this many positions (a padded position costs as much as a token; a new forward,
which reads every weight again, about as much as a few dozen on a CPU)."""

BATCH_POSITIONS = 4096
"""Input positions (rows x padded length) held per batch of inputs, being encoded or scored
(at most ``max_batch_tokens``): bounds the memory of the keys/values in flight, whatever the
number of examples; larger batches are no faster on a CPU."""

MEMO_BYTES = 128 << 20
"""A call's assembled input batches are kept for the next call on the same examples up to this size."""




class CachedInputs:
    """Input caching for :class:`~rlprompt.lm.engine.ScoringEngine` (uses the engine's model,
    tokenizer, template tokens and counters)."""

    # -- input caches -------------------------------------------------------------------

    def _input_ids(self, text: str) -> list[int]:
        """The input segment's tokens of one example (checked: some tokens, within the context)."""
        ids = self.template_tokens.input(text)
        if not ids:
            raise ConfigError(f"example {text!r} gives no tokens; every example needs some text")
        self._check_length(len(ids), f"example {text[:40]!r}")
        return ids

    def _encode(self, texts: Sequence[str], *, protected: bool = False) -> dict[str, InputEntry]:
        """Run the inputs of ``texts`` (each once), keep their entries, and return them.

        Inputs are sorted by length and batched under :data:`BATCH_POSITIONS`, each batch padded
        little (:data:`PAD_SHARE`, :data:`PAD_SLACK`).
        """
        seq_of = {t: self._input_ids(t) for t in texts}
        unique = sorted(seq_of, key=lambda t: len(seq_of[t]))
        out: dict[str, InputEntry] = {}
        # Normal tensors under no_grad (not inference tensors): soft prompts backpropagate
        # through these later.
        with torch.inference_mode(False), torch.no_grad():
            start = 0
            while start < len(unique):
                stop.check()  # a requested stop cuts a long encoding short (see rlprompt.stop)
                length = real = len(seq_of[unique[start]])
                batch = [unique[start]]
                for t in unique[start + 1 :]:
                    n = len(seq_of[t])  # the longest so far (sorted)
                    padded = (len(batch) + 1) * n
                    if padded > self._batch_positions or padded - (real + n) > PAD_SHARE * (real + n) + PAD_SLACK:
                        break
                    batch.append(t)
                    length, real = n, real + n
                seqs = [seq_of[t] for t in batch]
                ids, mask = self._pad_left(seqs, length)
                hidden, cache, full = self._decode_step(
                    input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)
                )
                entries = split_entries(cache_tensors(cache), [len(x) for x in seqs], hidden[:, -1],
                                        None if full is None else full[:, -1])
                del cache, hidden, full
                for t, e in zip(batch, entries, strict=True):
                    out[t] = e
                    self._store.put(t, e, protected=protected)
                start += len(batch)
        return out

    def _entries(self, texts: Sequence[str]) -> list[InputEntry]:
        """The input entries of ``texts``, in order: kept ones reused, the others run now."""
        got = {t: e for t in dict.fromkeys(texts) if (e := self._store.get(t)) is not None}
        missing = [t for t in dict.fromkeys(texts) if t not in got]
        if missing:
            got.update(self._encode(missing))
        return [got[t] for t in texts]

    def _base(self, texts: Sequence[str], extra: int) -> PackedCache:
        """The left-padded cache of ``texts`` (in order) in a buffer of its own with ``extra`` free positions."""
        entries = self._entries(texts)
        buf, key_mask = assemble(entries, extra)
        logits = None if entries[0].last_logits is None else torch.stack([e.last_logits for e in entries])
        return PackedCache.of_buffer(buf, key_mask, torch.stack([e.last_hidden for e in entries]), logits)

    def _room(self, n_prompts: int, per_prompt: int, n_ex: int, width: int) -> int:
        """Prompts packed per forward on ``n_ex`` rows of ``width`` positions (under ``max_batch_tokens``)."""
        room = max(1, self.max_batch_tokens // max(1, n_ex) - width)
        return max(1, min(n_prompts, room // max(1, per_prompt), self.max_packed_prompts))

    def _buckets(self, lengths: Sequence[int], per_row: int) -> list[list[int]]:
        """Example indices sorted by input length, in batches each under :data:`BATCH_POSITIONS`
        (rows x (longest input + ``per_row``))."""
        buckets: list[list[int]] = []
        cur: list[int] = []
        for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
            if cur and (len(cur) + 1) * (lengths[i] + per_row) > self._batch_positions:
                buckets.append(cur)
                cur = []
            cur.append(i)
        if cur:
            buckets.append(cur)
        return buckets

    def _bases(self, texts: Sequence[str], n_prompts: int,
               per_prompt: int) -> Iterator[tuple[torch.Tensor, PackedCache]]:
        """The inputs' caches batch by batch: (indices into ``texts``, cache of those rows).

        Batches group inputs of similar length (sorted, then restored by the indices), so a
        batch is padded to its own longest input only. Only the current batch is assembled
        at a time, unless the call is small enough to be remembered for the next one.
        """
        key = (tuple(texts), per_prompt)  # (the buckets depend on it; more room is made as needed)
        if self._memo is not None and self._memo[0] == key:
            for t in texts:  # (marked used: the store keeps what is reused)
                self._store.get(t)
            yield from self._memo[1]
            return
        lengths = [len(self._input_ids(t)) for t in texts]
        self._memo = None
        done: list[tuple[torch.Tensor, PackedCache]] | None = []
        held = 0
        for rows in self._buckets(lengths, per_prompt):
            width = max(lengths[i] for i in rows)
            extra = self._room(n_prompts, per_prompt, len(rows), width) * per_prompt
            with torch.inference_mode(False):  # normal tensors: a later call may backpropagate through them
                part = (torch.tensor(rows, device=self.device), self._base([texts[i] for i in rows], extra))
            held += part[1].buf.nbytes
            if done is not None and held <= MEMO_BYTES:
                done.append(part)
            else:
                done = None
            yield part
        if done is not None:
            self._memo = (key, done)

    def prepare(self, texts: Sequence[str]) -> None:
        """Build and keep the inputs' key/value caches now (no prompt is evaluated or counted).

        Lets a caller pay the one-off input cost up front, so later per-step costs do not
        depend on whether a cache already existed. Prepared examples are evicted last.
        """
        if not texts:
            raise ConfigError("no examples to prepare")
        if self.cacheable:
            with self._timed(), torch.inference_mode():
                missing = [t for t in dict.fromkeys(texts) if self._store.get(t) is None]
                if missing:
                    self._encode(missing, protected=True)

    def clear_cache(self) -> None:
        """Drop every kept input cache (frees memory)."""
        self._store.clear()
        self._memo = None

    @property
    def cached_examples(self) -> int:
        """Examples whose input cache is kept now."""
        return len(self._store)

    @property
    def cached_bytes(self) -> int:
        """Bytes of the kept input caches."""
        return self._store.nbytes

    def _example_chunks(self, texts: Sequence[str]) -> Iterator[tuple[int, Sequence[str]]]:
        """Chunks of ``cache_examples`` examples (the uncached soft prefix path's batches)."""
        step = max(1, self.cache_examples)
        for start in range(0, len(texts), step):
            yield start, texts[start : start + step]
