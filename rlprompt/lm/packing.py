"""Several prompts packed side by side after each example's cached input.

Every example row holds its cached input followed by the tokens of ALL prompts; a 4-D
attention mask lets a token see the input, its own group's earlier tokens and its
ancestor groups (a prompt's template tail sees the prompt, a verbalizer continuation
sees the tail). So the input cache is never copied per prompt, and a prompt costs only
its own tokens.

Groups: 0 is the input, 1..P the prompts; further groups (tails, continuations) are
children of a prompt. A position's ``step`` is its offset after the input, so its
position id is ``input length + step``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlprompt.lm.input_cache import KVBuffer


@dataclass
class PackedCache:
    """Keys/values of E example rows: each cached input, then (packed) prompt tokens.

    The first :attr:`width` positions of :attr:`buf` are held; a forward on this cache
    writes its new positions right after them, in place (see
    :func:`~rlprompt.lm.transformers_compat.slot_cache`), and :meth:`keep` holds some of them.
    ``key_group`` says which prompt each position belongs to (0: the input) and
    ``key_step`` its position within the prompt; see :func:`packed_attention`.
    """

    buf: KVBuffer  # per layer [E, heads, capacity, d]; positions [0, width) held
    key_mask: torch.Tensor  # [E, S] bool: input padding is False
    key_group: torch.Tensor  # [S] long
    key_step: torch.Tensor  # [S] long
    lengths: torch.Tensor  # [E] real input tokens (the position of prompt step 0)
    last_hidden: torch.Tensor  # [E, H] hidden state right after the input
    last_logits: torch.Tensor | None  # [E, V] only for models without a separable head

    @classmethod
    def of_buffer(cls, buf: KVBuffer, key_mask: torch.Tensor, last_hidden: torch.Tensor,
                  last_logits: torch.Tensor | None) -> PackedCache:
        """The cache of left-padded inputs alone (every position in group 0), held in ``buf``."""
        zeros = torch.zeros(key_mask.shape[1], dtype=torch.long, device=key_mask.device)
        return cls(buf=buf, key_mask=key_mask, key_group=zeros, key_step=zeros.clone(), lengths=key_mask.sum(-1),
                   last_hidden=last_hidden, last_logits=last_logits)

    @classmethod
    def of_inputs(cls, kv: list[tuple[torch.Tensor, torch.Tensor]], key_mask: torch.Tensor,
                  last_hidden: torch.Tensor, last_logits: torch.Tensor | None, extra: int = 0) -> PackedCache:
        """The cache of left-padded inputs whose per-layer keys/values are ``kv`` (copied, with
        room for ``extra`` more positions)."""
        return cls.of_buffer(KVBuffer.of_layers(kv, extra), key_mask, last_hidden, last_logits)

    @property
    def n(self) -> int:
        return self.key_mask.shape[0]

    @property
    def width(self) -> int:
        """S, the positions held per row."""
        return self.key_mask.shape[1]

    @property
    def kv(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the held keys/values [E, heads, S, d] (views of the buffer)."""
        return self.buf.views(self.width)

    def keep(self, q: Queries, n_keep: int) -> PackedCache:
        """This cache grown by the first ``n_keep`` queries of the forward just run on it
        (which wrote them into the buffer right after the held positions).

        Later queries (tails, continuations) were read, not kept; the next forward overwrites them.
        """
        return PackedCache(
            buf=self.buf,
            key_mask=torch.cat([self.key_mask, self.key_mask.new_ones(self.n, n_keep)], 1),
            key_group=torch.cat([self.key_group, q.group[:n_keep]]),
            key_step=torch.cat([self.key_step, q.step[:n_keep]]),
            lengths=self.lengths, last_hidden=self.last_hidden, last_logits=self.last_logits,
        )


@dataclass
class Queries:
    """New positions for a packed forward: token ids (or embeddings), group and step."""

    ids: torch.Tensor  # [Q]
    group: torch.Tensor  # [Q]
    step: torch.Tensor  # [Q]
    visible: torch.Tensor  # [G, G] bool: visible[g, h] = h is g or an ancestor of g
    embeds: torch.Tensor | None = None  # [Q, H] or [E, Q, H]
    continuations: list[tuple[int, int, int, int]] | None = None  # (query, prompt, class, token index)

    @classmethod
    def build(cls, ids: list[int], group: list[int], step: list[int], parent: list[int],
              device: torch.device) -> Queries:
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


class QueryBuilder:
    """Collects packed query positions; groups 1..P are the prompts, 0 the input.

    :param n_prompts: P.
    :param read_if_empty: the query to read at when a suffix adds no token (-1: right
        after the input).
    """

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
        """A new group that sees group ``of`` (and its ancestors)."""
        self.parent.append(of)
        return len(self.parent) - 1

    def add(self, token: int, group: int, step: int, continuation: tuple[int, int, int] | None = None) -> None:
        if continuation is not None:
            self.continuations.append((self.size, *continuation))
        self.ids.append(token)
        self.group.append(group)
        self.step.append(step)

    def add_suffix(self, prompt: int, group: int, tokens: list[int], first_step: int,
                   continued: list[tuple[int, list[int]]]) -> int:
        """Queue a prompt's ``tokens`` in ``group``, then its multi-token verbalizer continuations.

        :param continued: (class, verbalizer token ids) of each multi-token verbalizer.
        :returns: the query index to read the first verbalizer token at (-1: right after the input).
        """
        for j, t in enumerate(tokens):
            self.add(t, group, first_step + j)
        read = self.size - 1 if tokens else self.read_if_empty
        for c, ids in continued:
            child = self.child(group)
            for j, t in enumerate(ids[:-1]):
                self.add(t, child, first_step + len(tokens) + j, continuation=(prompt, c, j + 1))
        return read

    def build(self, device: torch.device) -> Queries:
        q = Queries.build(self.ids, self.group, self.step, self.parent, device)
        q.continuations = self.continuations
        return q


def queries_for(suffixes: list[list[int]], continued: list[tuple[int, list[int]]],
                device: torch.device) -> tuple[Queries, list[int]]:
    """Queries for P prompt suffixes (prompt tokens + template tail), one group each, and
    the query each prompt's classes are read at."""
    b = QueryBuilder(len(suffixes))
    read = [b.add_suffix(p, p + 1, s, 0, continued) for p, s in enumerate(suffixes)]
    return b.build(device), read


def packed_attention(base: PackedCache, q: Queries, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4-D additive attention mask and the position ids of queries packed after ``base``.

    :returns: mask [E, 1, Q, S + Q] (0 where allowed, the dtype's minimum elsewhere) and
        position ids [E, Q].
    """
    n_ex = base.n
    vis = q.visible
    old_ok = vis[q.group][:, base.key_group] & (
        (base.key_group == 0)[None, :] | (base.key_step[None, :] <= q.step[:, None])
    )
    new_ok = vis[q.group][:, q.group] & (q.step[None, :] <= q.step[:, None])
    allowed = torch.cat(
        [old_ok.unsqueeze(0) & base.key_mask[:, None, :], new_ok.unsqueeze(0).expand(n_ex, -1, -1)], dim=-1
    )
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask = mask.masked_fill_(~allowed, torch.finfo(dtype).min).unsqueeze(1)  # [E, 1, Q, S+Q]
    positions = base.lengths[:, None] + q.step[None, :]
    return mask, positions


@dataclass
class HiddenWithLogits:
    """Hidden states plus full logits, for models whose head must run inside forward."""

    hidden: torch.Tensor
    logits: torch.Tensor
