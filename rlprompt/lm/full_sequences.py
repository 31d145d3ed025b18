"""The uncached paths of the scoring engine: every (prompt, example) sequence runs whole.

Used for templates that put the prompt before the input, for masked LMs, and as the reference the cached path
is tested against (:meth:`~rlprompt.lm.engine.ScoringEngine.score` with ``use_cache=False``).
Sequences are sorted by length and batched under ``max_batch_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from rlprompt import stop
from rlprompt.errors import ConfigError
from rlprompt.lm.packing import PackedCache
from rlprompt.lm.padding import position_ids
from rlprompt.lm.transformers_compat import cache_tensors, masked_head

if TYPE_CHECKING:
    from rlprompt.lm.engine import ScoringEngine


def score_full(engine: ScoringEngine, tokens: list[list[int]], texts: Sequence[str]) -> torch.Tensor:
    """Class log-probs [P, E, C] of P prompts' tokens on E examples, every sequence run in full."""
    pairs = [(p, e) for p in range(len(tokens)) for e in range(len(texts))]
    seqs = [engine.template_tokens.full_sequence(tokens[p], texts[e]) for p, e in pairs]
    for s in seqs:
        engine._check_length(len(s), "input plus prompt")
    flat = torch.empty(len(seqs), engine.num_classes, device=engine.device)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths pad less
    start = 0
    while start < len(order):
        stop.check()  # a requested stop cuts a long call short (see rlprompt.stop)
        per = max(1, engine.max_batch_tokens // max(1, len(seqs[order[start]])))
        sel = order[start : start + per]
        longest = max(len(seqs[i]) for i in sel)
        sel = sel[: max(1, engine.max_batch_tokens // longest)]
        ids, mask = engine._pad_left([seqs[i] for i in sel])
        flat[sel] = _readout(engine, ids, mask)
        start += len(sel)
    return flat.view(len(tokens), len(texts), -1)


def _readout(engine: ScoringEngine, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Class log-probs [B, C] of left-padded full sequences ids/mask [B, L]."""
    if engine.masked:
        return _masked_readout(engine, ids, mask)
    hidden, cache, full = engine._decode_step(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask))
    last_logits = None if full is None else full[:, -1]
    scores = engine.readout.class_logprobs(hidden[:, -1], last_logits)
    if engine.readout.multi:
        # Continue each row's cache with the verbalizers' later tokens.
        q, read = engine._queries_for([[]])
        base = PackedCache.of_inputs(cache_tensors(cache), mask.bool(), hidden[:, -1], last_logits,
                                     extra=q.group.numel())
        hidden2, _ = engine._packed_forward(base, q)
        scores = engine.readout.read(base, hidden2, q, read)[0]
    return scores


def _masked_readout(engine: ScoringEngine, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A masked LM's class log-probs [B, C], read at each row's one ``<mask>``."""
    at = ids == engine.tokenizer.mask_token_id
    if not bool((at.sum(-1) == 1).all()):
        raise ConfigError("each masked-LM sequence needs exactly one <mask> token (check the template)")
    hidden = engine.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    engine.counters.forward_calls += 1
    engine.counters.forward_tokens += ids.numel()
    logits = masked_head(engine.model, hidden[at]).float()  # [B, V]: the mask rows only
    return torch.log_softmax(logits, dim=-1).index_select(-1, engine.readout.first_ids)
