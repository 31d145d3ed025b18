"""Scoring soft prompts: vectors in the LM's input-embedding space in place of tokens.

``"suffix"`` placement puts them at the template's ``{prompt}``, after each example's
cached input (only the soft positions and the template's tail run, packed as in
:mod:`rlprompt.lm.packing`); ``"prefix"`` puts them before everything (Lester et al.
2021), one full forward per (prompt, example). Entry point:
:meth:`~rlprompt.lm.engine.ScoringEngine.score_soft`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from rlprompt.lm.packing import PackedCache
from rlprompt.lm.padding import position_ids, roll_left_padding
from rlprompt.lm.transformers_compat import cache_tensors

if TYPE_CHECKING:
    from rlprompt.lm.engine import ScoringEngine


def score_soft_suffix(engine: ScoringEngine, embeds: torch.Tensor, texts: Sequence[str],
                      grad: bool) -> torch.Tensor:
    """Soft prompts [P, T, H] at ``{prompt}`` after the cached inputs; [P, E, C].

    Inputs run in batches of similar length (:meth:`ScoringEngine._bases`), in the order of ``texts`` again after.
    """
    n_prompts, n_soft, _ = embeds.shape
    tail = engine.template_tokens.tail(prompt_empty=False)
    table = engine.lm.input_embeddings()
    # Placeholder ids for the soft positions; their embeddings are swapped in below.
    q, read = engine._queries_for([[0] * n_soft + tail for _ in range(n_prompts)])
    q_embeds = table(q.ids).detach()
    # The soft positions: each prompt's own group (1..P), first n_soft steps; prompt-major
    # like ``embeds`` (tails and verbalizer continuations sit between the prompts' blocks).
    is_soft = (q.group >= 1) & (q.group <= n_prompts) & (q.step < n_soft)
    soft_at = is_soft.nonzero().squeeze(-1)
    q_embeds = q_embeds.index_put((soft_at,), embeds.reshape(-1, embeds.shape[-1]).to(q_embeds.dtype))
    q.embeds = q_embeds
    n_new = q.group.numel()
    rows, parts = [], []
    # All prompts run in one packed forward per batch (per_prompt: the whole query block).
    for idx, base in engine._bases(texts, 1, n_new):
        engine._check_length(base.width + n_new, "input plus soft prompt")
        hidden, _ = engine._packed_forward(base, q, grad=grad)
        rows.append(idx)
        parts.append(engine.readout.read(base, hidden, q, read))
    order = torch.cat(rows)
    out = torch.cat(parts, dim=1)  # [P, E, C] in batch order
    return out.index_select(1, torch.argsort(order))  # back in the order of ``texts``


def score_soft_prefix(engine: ScoringEngine, embeds: torch.Tensor, texts: Sequence[str],
                      grad: bool) -> torch.Tensor:
    """Soft prompts [P, T, H] before the input with the template's empty prompt; [P, E, C].

    One full forward per (prompt, example); a verbalizer of several tokens then runs its
    later tokens on that forward's cache (their log-probs are added, as on the other paths).
    """
    table = engine.lm.input_embeddings()
    n_prompts, n_soft, _ = embeds.shape
    seqs = [engine.template_tokens.full_sequence([], t) for t in texts]
    ids, mask = engine._pad_left(seqs)
    engine._check_length(ids.shape[1] + n_soft + max((len(v) - 1 for v in engine.verbalizer_ids), default=0),
                         "soft prompt plus input")
    tok_embeds = table(ids).detach()  # [E, L, H]
    out = []
    rows_per = max(1, engine.max_batch_tokens // (ids.shape[1] + n_soft) // len(texts))
    for p0 in range(0, n_prompts, rows_per):
        soft = embeds[p0 : p0 + rows_per].to(tok_embeds.dtype)  # [p, T, H]
        n = soft.shape[0]
        pad_mask = mask.repeat(n, 1)
        # Left padding goes before the soft tokens, so every row ends with its last input token.
        lead = (pad_mask == 0).sum(-1)
        seq = torch.cat([soft.repeat_interleave(len(texts), 0), tok_embeds.repeat(n, 1, 1)], dim=1)
        att = torch.cat([torch.ones(seq.shape[0], n_soft, dtype=mask.dtype, device=engine.device), pad_mask], 1)
        # Move each row's padding to the front: roll the soft part right by the pad count.
        seq, att = roll_left_padding(seq, att, lead, n_soft)
        hidden, cache, full = engine._decode_step(
            inputs_embeds=seq, attention_mask=att, position_ids=position_ids(att), grad=grad
        )
        last_logits = None if full is None else full[:, -1]
        if engine.readout.multi:
            # The later verbalizer tokens after each row's cache (positions after its soft
            # tokens and input), as the cached paths read them.
            q, read = engine._queries_for([[]])
            base = PackedCache.of_inputs(cache_tensors(cache), att.bool(), hidden[:, -1], last_logits,
                                         extra=0 if grad else q.group.numel())
            del cache
            hidden2, _ = engine._packed_forward(base, q, grad=grad)
            scores = engine.readout.read(base, hidden2, q, read)[0]
        else:
            scores = engine.readout.class_logprobs(hidden[:, -1], last_logits)
        out.append(scores.view(n, len(texts), -1))
    return torch.cat(out)
