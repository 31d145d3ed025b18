"""Class log-probabilities from the LM's hidden states at the read-out positions.

Only the read-out rows go through the output head, as one 2-D matmul. A verbalizer of
several tokens adds the log-probs of its later tokens, read at its continuation queries
(see :mod:`rlprompt.lm.packing`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rlprompt.errors import RLPromptError
from rlprompt.lm.packing import HiddenWithLogits, PackedCache, Queries


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
        if logits is None:
            flat = hidden.reshape(-1, hidden.shape[-1])
            if self.normalize == "classes":
                w = self.head.weight[self.first_ids]
                b = None if self.head.bias is None else self.head.bias[self.first_ids]
                return torch.log_softmax(F.linear(flat, w, b).float(), -1).view(*hidden.shape[:-1], -1)
            logits = F.linear(flat, self.head.weight, self.head.bias).view(*hidden.shape[:-1], -1)
        return torch.log_softmax(logits.float(), -1).index_select(-1, self.first_ids)

    def token_logprobs(
        self, hidden: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(target) from rows [..., H] and targets [...] (multi-token verbalizers)."""
        if logits is None:
            flat = hidden.reshape(-1, hidden.shape[-1])
            logits = F.linear(flat, self.head.weight, self.head.bias).view(*hidden.shape[:-1], -1)
        logp = torch.log_softmax(logits.float(), -1)
        return logp.gather(-1, targets.unsqueeze(-1).expand(*logp.shape[:-1], 1)).squeeze(-1)

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
