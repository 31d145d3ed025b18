"""Per-example input caches: each example's key/value cache is computed once and kept.

An entry holds one example's keys/values (all layers, its real positions only), keyed by
the example's text, so any subset of examples, in any order, is assembled from the kept
entries (:func:`assemble`) and only missing examples are run through the LM. The store is
a segmented LRU bounded by entries and by bytes: an example used a second time moves to
a protected segment (at most :data:`PROTECTED_SHARE` of the bounds), so a one-off pass
over a large split (an evaluation) cycles through the probation segment and does not
evict the training examples that every step reuses.

A batch's assembled cache lives in a :class:`KVBuffer`, preallocated with room after the
inputs: a forward writes its new positions there in place
(:func:`~rlprompt.lm.transformers_compat.slot_cache`) instead of concatenating the whole
cache each time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

PROTECTED_SHARE = 0.75
"""The part of the store's bounds that examples used more than once may hold."""


@dataclass
class InputEntry:
    """One example's cached input: keys/values [layers, heads, L, d] of its L real tokens."""

    keys: torch.Tensor
    values: torch.Tensor
    last_hidden: torch.Tensor  # [H]: the hidden state right after the input
    last_logits: torch.Tensor | None  # [V]: only for models without a separable head

    @property
    def length(self) -> int:
        return self.keys.shape[2]

    @property
    def nbytes(self) -> int:
        extra = 0 if self.last_logits is None else self.last_logits.nbytes
        return self.keys.nbytes + self.values.nbytes + self.last_hidden.nbytes + extra


class InputCacheStore:
    """Input entries by text, bounded by count and bytes (segmented LRU; see the module docstring).

    :param max_entries: entries kept at most (0: none).
    :param max_bytes: bytes kept at most (None: no byte bound).
    """

    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        self.max_entries = max(0, int(max_entries))
        self.max_bytes = max_bytes
        self._probation: OrderedDict[str, InputEntry] = OrderedDict()
        self._protected: OrderedDict[str, InputEntry] = OrderedDict()
        self.nbytes = 0
        self._protected_bytes = 0

    def __len__(self) -> int:
        return len(self._probation) + len(self._protected)

    def __contains__(self, text: object) -> bool:
        return text in self._protected or text in self._probation

    @property
    def protected(self) -> int:
        """Entries in the protected segment (used more than once, or prepared)."""
        return len(self._protected)

    def get(self, text: str) -> InputEntry | None:
        """The entry of ``text`` (marked recently used; a second use protects it), or None."""
        entry = self._protected.get(text)
        if entry is not None:
            self._protected.move_to_end(text)
            return entry
        entry = self._probation.pop(text, None)
        if entry is not None:
            self._protect(text, entry, new=False)
        return entry

    def put(self, text: str, entry: InputEntry, *, protected: bool = False) -> None:
        """Keep ``entry`` (evicting least recently used entries beyond the bounds)."""
        self.discard(text)
        if protected:
            self._protect(text, entry, new=True)
        else:
            self._probation[text] = entry
            self.nbytes += entry.nbytes
        self._evict()

    def discard(self, text: str) -> None:
        entry = self._protected.pop(text, None)
        if entry is not None:
            self._protected_bytes -= entry.nbytes
        else:
            entry = self._probation.pop(text, None)
        if entry is not None:
            self.nbytes -= entry.nbytes

    def clear(self) -> None:
        self._probation.clear()
        self._protected.clear()
        self.nbytes = self._protected_bytes = 0

    def _protect(self, text: str, entry: InputEntry, *, new: bool) -> None:
        if new:  # (a promoted entry is counted already)
            self.nbytes += entry.nbytes
        self._protected[text] = entry
        self._protected_bytes += entry.nbytes
        max_n = int(self.max_entries * PROTECTED_SHARE)
        max_b = None if self.max_bytes is None else int(self.max_bytes * PROTECTED_SHARE)
        while len(self._protected) > 1 and (
            len(self._protected) > max_n or (max_b is not None and self._protected_bytes > max_b)
        ):
            old_text, old = self._protected.popitem(last=False)  # demoted: most recent in probation
            self._protected_bytes -= old.nbytes
            self._probation[old_text] = old
        self._evict()

    def _over(self) -> bool:
        return len(self) > self.max_entries or (self.max_bytes is not None and self.nbytes > self.max_bytes)

    def _evict(self) -> None:
        while len(self) and self._over():
            if self._probation:
                _, old = self._probation.popitem(last=False)
            else:
                _, old = self._protected.popitem(last=False)
                self._protected_bytes -= old.nbytes
            self.nbytes -= old.nbytes


class KVBuffer:
    """Keys and values of every layer in one preallocated tensor each, [layers, B, heads, capacity, d].

    Who holds it decides which positions are valid (a :class:`~rlprompt.lm.packing.PackedCache`'s
    width); a forward writes positions after them in place.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys = keys
        self.values = values

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes

    def reserve(self, needed: int, keep: int) -> None:
        """Room for ``needed`` positions; positions ``[0, keep)`` survive a regrowth (by half at least)."""
        if needed <= self.capacity:
            return
        cap = max(needed, self.capacity + self.capacity // 2)
        with torch.inference_mode(False), torch.no_grad():
            keys = self.keys.new_empty(*self.keys.shape[:3], cap, self.keys.shape[4])
            values = self.values.new_empty(*self.values.shape[:3], cap, self.values.shape[4])
            keys[:, :, :, :keep] = self.keys[:, :, :, :keep]
            values[:, :, :, :keep] = self.values[:, :, :, :keep]
        self.keys, self.values = keys, values

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the whole storage [B, heads, capacity, d]."""
        return list(zip(self.keys.unbind(0), self.values.unbind(0), strict=True))

    def views(self, end: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, positions ``[0, end)`` [B, heads, end, d] (views, not copies)."""
        return [(k[:, :, :end], v[:, :, :end]) for k, v in self.layers()]

    @classmethod
    def of_layers(cls, kv: Sequence[tuple[torch.Tensor, torch.Tensor]], extra: int = 0) -> KVBuffer:
        """A buffer holding per-layer keys/values [B, heads, S, d] (copied), with ``extra`` room."""
        k0 = kv[0][0]
        shape = (len(kv), k0.shape[0], k0.shape[1], k0.shape[2] + extra, k0.shape[3])
        keys, values = k0.new_empty(shape), kv[0][1].new_empty(shape[:4] + (kv[0][1].shape[3],))
        s = k0.shape[2]
        for i, (k, v) in enumerate(kv):
            keys[i, :, :, :s] = k
            values[i, :, :, :s] = v
        return cls(keys, values)


def split_entries(kv: Sequence[tuple[torch.Tensor, torch.Tensor]], lengths: Sequence[int],
                  last_hidden: torch.Tensor, last_logits: torch.Tensor | None) -> list[InputEntry]:
    """Per-example entries of a left-padded batch's caches (each row's real positions, copied).

    :param kv: per layer, keys/values [B, heads, S, d].
    :param lengths: real tokens of each row.
    """
    width = kv[0][0].shape[2]
    out = []
    for i, n in enumerate(lengths):
        keys = torch.stack([k[i, :, width - n :] for k, _ in kv])
        values = torch.stack([v[i, :, width - n :] for _, v in kv])
        out.append(InputEntry(keys, values, last_hidden[i].clone(),
                              None if last_logits is None else last_logits[i].clone()))
    return out


def assemble(entries: Sequence[InputEntry], extra: int) -> tuple[KVBuffer, torch.Tensor]:
    """The left-padded batch of ``entries`` in a buffer with ``extra`` free positions.

    Padded positions hold zeros (no stray value can leak through a zero attention weight).

    :returns: the buffer and the key mask [B, S] (True at real positions), S the longest input.
    """
    e0 = entries[0]
    layers, heads, _, dim = e0.keys.shape
    vdim = e0.values.shape[3]
    width = max(e.length for e in entries)
    n = len(entries)
    with torch.inference_mode(False), torch.no_grad():
        keys = e0.keys.new_empty(layers, n, heads, width + extra, dim)
        values = e0.values.new_empty(layers, n, heads, width + extra, vdim)
        lengths = torch.tensor([e.length for e in entries], device=e0.keys.device)
        for i, e in enumerate(entries):
            pad = width - e.length
            if pad:
                keys[:, i, :, :pad] = 0
                values[:, i, :, :pad] = 0
            keys[:, i, :, pad:width] = e.keys
            values[:, i, :, pad:width] = e.values
        key_mask = torch.arange(width, device=lengths.device)[None, :] >= (width - lengths)[:, None]
    return KVBuffer(keys, values), key_mask
