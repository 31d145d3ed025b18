"""ContextLogits (rlprompt/lm/sampling.py): a shared context's cache gives the logits of a full forward."""

from __future__ import annotations

import pytest
import torch

from rlprompt.lm.sampling import ContextLogits, next_token_logits


@pytest.mark.parametrize("subset", [False, True])
def test_logits_after_a_cached_context_equal_a_full_forward(sharp_lm, subset):
    tok = sharp_lm.tokenizer
    context = tok("Classify the review.\n\nA fine film with a weak end.").input_ids
    tokens = torch.arange(20, 60) if subset else None
    sequences = [[], [31], [31, 44, 52], [7, 8], []]
    logits, cost = ContextLogits(sharp_lm, context, tokens)(sequences)
    for row, seq in zip(logits, sequences, strict=True):
        expected, _ = next_token_logits(sharp_lm, [context + seq], tokens)
        assert torch.allclose(row, expected[0], atol=1e-4)
    assert logits.shape == (5, 40 if subset else len(tok))
    assert cost == {"forward_tokens": 3 * 3, "forward_calls": 1}  # the three non-empty rows, padded to 3


def test_only_empty_sequences_cost_nothing_and_an_empty_context_is_refused(sharp_lm):
    logits = ContextLogits(sharp_lm, [5, 6, 7])
    out, cost = logits([[], []])
    assert cost["forward_calls"] == 0 and torch.equal(out[0], out[1])
    assert logits.cost == {"forward_tokens": 3, "forward_calls": 1}
    with pytest.raises(ValueError, match="at least one token"):
        ContextLogits(sharp_lm, [])
