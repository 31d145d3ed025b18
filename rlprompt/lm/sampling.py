"""Sampling token continuations from a causal LM, one batched forward per token.

:func:`sample_tokens` is the one sampling loop of rlprompt: contexts are left-padded
(:mod:`rlprompt.lm.padding`), run once, and grown token by token on the key/value cache.
Each step's next-token logits are the LM's own; a caller may reshape them per step
(``adjust``: soft Q-learning adds its learned Q-values), restrict them to allowed
tokens, and sample with a temperature and top-k from its own ``torch.Generator``
(on the CPU, so that a seed gives the same tokens on every device).

Shapes: N contexts, L the longest context, T sampled tokens, V vocabulary, H hidden size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rlprompt.lm.padding import pad_left, position_ids
from rlprompt.lm.transformers_compat import DecoderForward, cache_tensors, make_cache

LogitAdjust = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``adjust(logits, hidden) -> logits``: the LM's next-token logits [N, V] (float32, with
disallowed tokens at -inf) and its last hidden states [N, H] (float32) -> the logits to
sample from [N, V]."""


@dataclass
class Samples:
    """What :func:`sample_tokens` wrote.

    :param tokens: the sampled token ids [N, T] (long, CPU).
    :param hidden: the LM's last hidden state before each sampled token [N, T, H]
        (float32, CPU), when asked for (``keep_hidden``); else None.
    :param cost: LM tokens and forwards spent, ``{"forward_tokens", "forward_calls"}``.
    """

    tokens: torch.Tensor
    hidden: torch.Tensor | None
    cost: dict[str, int]


def banned_mask(banned: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """An allowed-token mask [V] (bool) that is False at the ``banned`` token ids [K]."""
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[banned.long().cpu()] = False
    return allowed


@torch.no_grad()
def sample_tokens(
    lm: Any,
    contexts: Sequence[str],
    length: int,
    *,
    generator: torch.Generator | None = None,
    adjust: LogitAdjust | None = None,
    allowed: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    greedy: bool = False,
    keep_hidden: bool = False,
) -> Samples:
    """Sample ``length`` tokens after each context (one batch on the key/value cache).

    Per step: the LM's logits [N, V] (float32) -> disallowed tokens to -inf ->
    ``adjust`` -> disallowed tokens to -inf again -> the most likely token (``greedy``),
    or ``/ temperature``, the ``top_k`` most likely kept, and one token drawn from the
    softmax on the CPU with ``generator``.

    :param lm: a causal :class:`~rlprompt.lm.FrozenLM` (its model, tokenizer and device).
    :param contexts: N context texts, tokenised with the tokenizer's special tokens.
    :param length: T, the tokens to sample per context (at least 1).
    :param generator: the CPU random generator the draws come from (None: torch's global one).
    :param adjust: a per-step change of the logits, see :data:`LogitAdjust`.
    :param allowed: bool mask [V] of the tokens that may be sampled (None: all).
    :param temperature: divides the logits before sampling (positive).
    :param top_k: sample among the k most likely tokens only (None: all).
    :param greedy: take the most likely token instead of sampling (no draw is made).
    :param keep_hidden: also return the hidden state before each token.
    :returns: the :class:`Samples`.
    """
    tok, device = lm.tokenizer, lm.device
    forward = DecoderForward(lm.model)
    ids, mask = pad_left([tok(c).input_ids for c in contexts], tok.pad_token_id, device=device)
    n = ids.shape[0]
    positions = position_ids(mask)
    if allowed is not None:
        allowed = allowed.to(device)
    hidden, cache, full = forward(input_ids=ids, attention_mask=mask, position_ids=positions, last_only=True)
    cost = {"forward_tokens": int(ids.numel()), "forward_calls": 1}
    sampled, kept = [], []
    for step in range(length):
        h = hidden[:, -1]
        logits = forward.logits(h, None if full is None else full[:, -1]).float()  # [N, V]
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        if keep_hidden or adjust is not None:
            h = h.float()
        if keep_hidden:
            kept.append(h.cpu())
        if adjust is not None:
            logits = adjust(logits, h)
            if allowed is not None:
                logits = logits.masked_fill(~allowed, float("-inf"))
        nxt = logits.argmax(-1, keepdim=True) if greedy else draw(logits, temperature, top_k, generator)
        sampled.append(nxt)
        if step + 1 < length:
            mask = torch.cat([mask, mask.new_ones(n, 1)], 1)
            positions = positions[:, -1:] + 1
            hidden, cache, full = forward(input_ids=nxt, attention_mask=mask, position_ids=positions, cache=cache,
                                          last_only=True)
            cost["forward_tokens"] += n
            cost["forward_calls"] += 1
    return Samples(tokens=torch.cat(sampled, 1).cpu(), hidden=torch.stack(kept, 1) if keep_hidden else None,
                   cost=cost)


def draw(logits: torch.Tensor, temperature: float, top_k: int | None,
          generator: torch.Generator | None) -> torch.Tensor:
    """One token per row [N, 1] (on the logits' device) from logits [N, V]: ``/ temperature``,
    the ``top_k`` most likely kept, one draw from the softmax on the CPU with ``generator``."""
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, -1).cpu()
    return torch.multinomial(probs, 1, generator=generator).to(logits.device)


@torch.no_grad()
def next_token_logits(lm: Any, sequences: Sequence[Sequence[int]],
                      tokens: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, int]]:
    """The LM's next-token logits after each token sequence (one left-padded forward).

    :param lm: a causal :class:`~rlprompt.lm.FrozenLM`.
    :param sequences: N token-id sequences (each at least one token).
    :param tokens: token ids [K] to read (None: the whole vocabulary); only their rows of the
        output head are multiplied.
    :returns: logits [N, K] or [N, V] (float32, CPU) and the LM cost, ``{"forward_tokens", "forward_calls"}``.
    """
    forward = DecoderForward(lm.model)
    ids, mask = pad_left([list(s) for s in sequences], lm.tokenizer.pad_token_id, device=lm.device)
    hidden, _, full = forward(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), last_only=True)
    cost = {"forward_tokens": int(ids.numel()), "forward_calls": 1}
    return _read_logits(forward, hidden[:, -1], None if full is None else full[:, -1], tokens), cost


def _read_logits(forward: DecoderForward, hidden: torch.Tensor, full: torch.Tensor | None,
                 tokens: torch.Tensor | None) -> torch.Tensor:
    """Logits [N, K] (or [N, V]; float32, CPU) of last hidden rows [N, H]: the ``tokens``' rows of the
    head only, or the model's own logits [N, V] when it ran whole."""
    if tokens is None or full is not None:
        logits = forward.logits(hidden, full)
        return (logits if tokens is None else logits[:, tokens.to(logits.device)]).float().cpu()
    head = forward.head
    idx = tokens.to(head.weight.device)
    bias = None if head.bias is None else head.bias[idx]
    return torch.nn.functional.linear(hidden, head.weight[idx], bias).float().cpu()


class ContextLogits:
    """Next-token logits after one fixed context followed by each of many short token sequences.

    The context runs once; its key/value cache is shared by every call, so a call runs only the
    sequences' own tokens (a prompt prior reads thousands of prefixes of at most a few tokens
    after the same context of tens). Equal to :func:`next_token_logits` on ``context + sequence``
    up to rounding.

    :param lm: a causal :class:`~rlprompt.lm.FrozenLM`.
    :param context: the context's token ids (at least one).
    :param tokens: token ids [K] to read (None: the whole vocabulary).
    """

    @torch.no_grad()
    def __init__(self, lm: Any, context: Sequence[int], tokens: torch.Tensor | None = None) -> None:
        if not context:
            raise ValueError("ContextLogits needs a context of at least one token")
        self.lm, self.tokens = lm, tokens
        self.forward = DecoderForward(lm.model)
        ids = torch.tensor([list(context)], dtype=torch.long, device=lm.device)
        mask = torch.ones_like(ids)
        hidden, cache, full = self.forward(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask),
                                           last_only=True)
        self.kv = cache_tensors(cache)  # per layer (keys, values) [1, heads, C, d]
        self.length = ids.shape[1]
        self.after_context = _read_logits(self.forward, hidden[:, -1], None if full is None else full[:, -1], tokens)
        self.cost = {"forward_tokens": self.length, "forward_calls": 1}
        """The context's own forward (spent once, by the constructor)."""

    @torch.no_grad()
    def __call__(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, dict[str, int]]:
        """Logits [N, K] (float32, CPU) after ``context + sequence`` for each sequence (empty ones
        allowed: the logits after the context alone), and the LM cost of this call.

        :param sequences: N token-id sequences.
        """
        out = self.after_context.expand(len(sequences), -1).clone()
        rows = [i for i, s in enumerate(sequences) if len(s)]
        if not rows:
            return out, {"forward_tokens": 0, "forward_calls": 0}
        # [context][pad][sequence]: left padding keeps every row's last token at position -1
        ids, mask = pad_left([list(sequences[i]) for i in rows], self.lm.tokenizer.pad_token_id, device=self.lm.device)
        n = ids.shape[0]
        cache = make_cache([(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in self.kv])
        full_mask = torch.cat([mask.new_ones(n, self.length), mask], 1)
        hidden, _, full = self.forward(input_ids=ids, attention_mask=full_mask,
                                       position_ids=self.length + position_ids(mask), cache=cache, last_only=True)
        out[rows] = _read_logits(self.forward, hidden[:, -1], None if full is None else full[:, -1], self.tokens)
        return out, {"forward_tokens": int(ids.numel()), "forward_calls": 1}
