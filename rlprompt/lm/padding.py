"""Batch layout of token sequences of different lengths: left padding and position ids.

Every batched forward in rlprompt pads on the left, so that each row ends at its last
real token: the next token's logits are then at position -1 of every row, and the
key/value cache grows on the right for all rows alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_left(
    seqs: Sequence[Sequence[int]],
    pad_id: int | None,
    length: int | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of N sequences, left-padded to one length.

    :param seqs: N token id sequences.
    :param pad_id: the id written at padded positions (None: 0; padding is masked anyway).
    :param length: the padded length L (default: the longest sequence).
    :param device: where the tensors go.
    :returns: ids [N, L] and mask [N, L] (1 at real tokens), both long.
    """
    length = max(len(s) for s in seqs) if length is None else length
    ids = torch.full((len(seqs), length), 0 if pad_id is None else pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, length - len(s) :] = torch.tensor(list(s))
            mask[i, length - len(s) :] = 1
    return ids.to(device), mask.to(device)


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Position ids [N, L] of a left-padded attention mask [N, L]: 0 at each row's first real token."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def roll_left_padding(
    seq: torch.Tensor, att: torch.Tensor, lead: torch.Tensor, n_soft: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows laid out [soft][pad][input] become [pad][soft][input].

    :param seq: embeddings [B, n_soft + L, H].
    :param att: attention mask [B, n_soft + L].
    :param lead: padded positions per row [B].
    :param n_soft: soft positions at the start of each row.
    """
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
