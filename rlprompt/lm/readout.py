"""Class log-probabilities from the LM's hidden states at the read-out positions.

Only the read-out rows go through the output head, a block of rows at a time (the
float32 log-softmax over the vocabulary too, so no float32 copy of all logits is made). A verbalizer of
several tokens adds the log-probs of its later tokens, read at its continuation queries
(see :mod:`rlprompt.lm.packing`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rlprompt.errors import RLPromptError
from rlprompt.lm.packing import HiddenWithLogits, PackedCache, Queries

HEAD_ROWS, LSE_ROWS = 128, 16
"""Rows through the output head at a time, and rows whose float32 log-softmax is taken at a
time (their logits stay in cache; measured fastest on a 2-core CPU)."""


class NonFiniteScoresError(RLPromptError, FloatingPointError):
    """The LM produced NaN or infinite log-probabilities."""


def check_finite(scores: torch.Tensor, name: str) -> torch.Tensor:
    """``scores``, or a :class:`NonFiniteScoresError` naming the LM when any is NaN or infinite."""
    if not bool(torch.isfinite(scores).all()):
        bad = int((~torch.isfinite(scores)).sum())
        raise NonFiniteScoresError(
            f"the LM {name!r} produced {bad} NaN/infinite class log-probabilities; the model weights "
            "or dtype may be broken (try dtype float32)"
        )
    return scores


class ClassReadout:
    """Reads class log-probs out of hidden states.

    :param head: the plain linear output head, or None when the model's logits come
        with its forward (then every method takes them as ``logits``).
    :param verbalizer_ids: the token ids of each class's verbalizer.
    :param normalize: ``"vocab"`` (log-softmax over the vocabulary) or ``"classes"``
        (over the verbalizers' first tokens only).
    :param device: where the class tensors live.
    """

    def __init__(self, head: torch.nn.Linear | None, verbalizer_ids: list[list[int]], normalize: str,
                 device: torch.device) -> None:
        self.head = head
        self.verbalizer_ids = verbalizer_ids
        self.normalize = normalize
        self.device = device
        self.first_ids = torch.tensor([ids[0] for ids in verbalizer_ids], device=device)
        self.multi = [c for c, ids in enumerate(verbalizer_ids) if len(ids) > 1]

    @property
    def continued(self) -> list[tuple[int, list[int]]]:
        """(class, token ids) of each multi-token verbalizer."""
        return [(c, self.verbalizer_ids[c]) for c in self.multi]

    @property
    def num_classes(self) -> int:
        return len(self.verbalizer_ids)

    def class_logprobs(self, hidden: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Class log-probs of the first verbalizer tokens from read-out rows [..., H] -> [..., C]."""
        if logits is None and self.normalize == "classes":
            flat = hidden.reshape(-1, hidden.shape[-1])
            w = self.head.weight[self.first_ids]
            b = None if self.head.bias is None else self.head.bias[self.first_ids]
            return torch.log_softmax(F.linear(flat, w, b).float(), -1).view(*hidden.shape[:-1], -1)
        lead = (hidden if logits is None else logits).shape[:-1]
        index = self.first_ids.expand(int(torch.Size(lead).numel()), -1)
        return self._logprobs_at(hidden, logits, index).view(*lead, -1)

    def token_logprobs(
        self, hidden: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(target) from rows [..., H] and targets [...] (multi-token verbalizers)."""
        return self._logprobs_at(hidden, logits, targets.reshape(-1, 1)).view(targets.shape)

    def _logprobs_at(self, hidden: torch.Tensor, logits: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
        """float32 log-softmax over the vocabulary at ``index`` [R, K] of R rows (hidden [..., H]
        through the head, or the model's logits [..., V]): [R, K].

        The head and the log-softmax run a block of rows at a time, so that a block's logits
        stay in cache and the float32 copy of the whole [R, V] logits is never made.
        """
        if logits is None:
            flat, width = hidden.reshape(-1, hidden.shape[-1]), HEAD_ROWS
        else:
            flat, width = logits.reshape(-1, logits.shape[-1]), LSE_ROWS
        out = torch.empty(flat.shape[0], index.shape[1], dtype=torch.float32, device=flat.device)
        for i in range(0, flat.shape[0], width):
            block = flat[i : i + width]
            if logits is None:
                block = F.linear(block, self.head.weight, self.head.bias)
            for j in range(0, block.shape[0], LSE_ROWS):
                f = block[j : j + LSE_ROWS].float()
                top = f.amax(-1, keepdim=True)
                lse = top + (f - top).exp_().sum(-1, keepdim=True).log_()
                out[i + j : i + j + f.shape[0]] = f.gather(-1, index[i + j : i + j + f.shape[0]]) - lse
        return out

    def read(self, base: PackedCache, hidden: Any, q: Queries, read: list[int]) -> torch.Tensor:
        """Class log-probs [P, E, C] from a packed forward's hidden states [E, Q, H].

        ``read[p]`` is the query whose next token is the first verbalizer token; -1 reads
        right after the input (an empty prompt).
        """
        hid, full = (hidden.hidden, hidden.logits) if isinstance(hidden, HiddenWithLogits) else (hidden, None)
        n_ex = base.n
        scores = torch.empty(n_ex, len(read), self.num_classes, device=self.device)
        at = [p for p, r in enumerate(read) if r >= 0]
        if at:
            idx = torch.tensor([read[p] for p in at], device=self.device)
            scores[:, at] = self.class_logprobs(
                hid.index_select(1, idx), None if full is None else full.index_select(1, idx)
            )
        empty = [p for p, r in enumerate(read) if r < 0]
        if empty:
            scores[:, empty] = self.class_logprobs(base.last_hidden, base.last_logits).unsqueeze(1)
        if q.continuations:
            qi = torch.tensor([c[0] for c in q.continuations], device=self.device)
            tgt = torch.tensor([self.verbalizer_ids[c][j] for _, _, c, j in q.continuations], device=self.device)
            extra = self.token_logprobs(
                hid.index_select(1, qi), tgt.unsqueeze(0).expand(n_ex, -1),
                None if full is None else full.index_select(1, qi),
            )  # [E, n_continuations]
            add = torch.zeros_like(scores)
            for k, (_, p, c, _) in enumerate(q.continuations):
                add[:, p, c] += extra[:, k]
            scores = scores + add
        return scores.transpose(0, 1)  # [P, E, C]
