"""The LM prior of a discrete SB3 policy: where RL starts when it starts at LM-prior sampling.

With ``prior=True`` a discrete agent's action logits are
``log p_LM(vocab | context + prompt so far) + residual(features)``, the residual head
initialised at zero. Its first policy is the task LM's own next-token distribution over the
candidate vocabulary, as LM-prior sampling draws from, and PPO learns a tilt of it (RLPrompt's
frozen-LM-plus-MLP policy, StablePrompt's anchored policy; soft Q-learning and GRPO start
the same way). Without it PPO starts uniform over 4,096 words, which at 1,000 evaluations
is random search with extra steps (docs/benchmarks.md).

:class:`PromptPrior` computes ``log p_LM`` per prompt prefix, once: a rollout's prefixes are
read again by every PPO epoch, so a bounded cache keyed by the prefix holds them. The context
runs once (:class:`~rlprompt.lm.sampling.ContextLogits`): a prefix costs only its own few
tokens. With several contexts (``prior_examples``: one per training input) the prior is
their mixture, so that no single input steers it. Its LM tokens are charged to the budget's
forward tokens, as LM-prior sampling's are.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from rlprompt.lm.sampling import ContextLogits

Charge = Callable[..., None]
"""``charge(forward_tokens=..., forward_calls=...)``: where the prior's LM cost goes."""


class PromptPrior:
    """``log p_LM(a | context, prompt so far)`` over the candidate vocabulary [K], per prompt.

    :param lm: the causal task LM (a :class:`~rlprompt.lm.FrozenLM`).
    :param context: the text the prompt continues (a task description and a training input),
        or several: the prior is then the mixture (mean of probabilities) of their distributions.
    :param vocab: candidate token ids [K]; action ``a`` is token ``vocab[a]``.
    :param charge: called with the LM cost of each forward (None: not metered).
    :param uniform: share of the uniform distribution over the K candidates mixed in
        (``(1 - u) p_LM + u / K``): a start between LM-prior sampling and random search.
    :param cache_size: prefixes kept (each ``K`` floats).
    :param chunk: prefixes per LM forward.
    """

    def __init__(self, lm: Any, context: str | Sequence[str], vocab: np.ndarray, *, charge: Charge | None = None,
                 cache_size: int = 4096, chunk: int = 64, uniform: float = 0.0) -> None:
        if not 0 <= uniform <= 1:
            raise ValueError(f"uniform must lie in [0, 1], got {uniform}")
        self.lm = lm
        self.uniform = float(uniform)
        texts = [context] if isinstance(context, str) else list(context)
        if not texts:
            raise ValueError("PromptPrior needs at least one context")
        self.contexts_ids = [list(lm.tokenizer(t).input_ids) or [lm.tokenizer.eos_token_id or 0] for t in texts]
        self.vocab = np.asarray(vocab, dtype=np.int64)
        self._vocab_t = torch.as_tensor(self.vocab)
        self.charge = charge
        self._contexts: list[ContextLogits] | None = None  # run at the first call (on the budget by then)
        self.cache_size = cache_size
        self.chunk = chunk
        self._cache: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()

    def __call__(self, prompt: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [B, K] (float32, on ``prompt``'s device) of the next action.

        :param prompt: candidate indices written so far [B, T] (-1 at empty positions, which
            follow the written ones).
        """
        keys = [tuple(int(i) for i in row if i >= 0) for row in prompt.long().cpu().tolist()]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        for start in range(0, len(missing), self.chunk):
            self._compute(missing[start:start + self.chunk])
        out = torch.stack([self._lookup(k) for k in keys])
        return out.to(prompt.device)

    def _lookup(self, key: tuple[int, ...]) -> torch.Tensor:
        value = self._cache.get(key)
        if value is None:  # evicted by this very call (more prefixes than the cache holds)
            self._compute([key])
            value = self._cache[key]
        self._cache.move_to_end(key)
        return value

    @property
    def context_ids(self) -> list[int]:
        """The first context's token ids."""
        return self.contexts_ids[0]

    def _compute(self, keys: list[tuple[int, ...]]) -> None:
        if self._contexts is None:
            self._contexts = [ContextLogits(self.lm, ids, self._vocab_t) for ids in self.contexts_ids]
            for c in self._contexts:
                self._spend(c.cost)
        seqs = [self.vocab[list(k)].tolist() for k in keys]
        per_context = []
        for c in self._contexts:
            logits, cost = c(seqs)  # [N, K]: the candidates' rows only
            self._spend(cost)
            per_context.append(torch.log_softmax(logits, -1))  # a distribution over the K actions
        # the mixture: log of the mean probability over the contexts
        logp = torch.logsumexp(torch.stack(per_context), 0) - math.log(len(per_context))
        if self.uniform > 0:  # (1 - u) p + u / K, in log space
            flat = torch.full_like(logp, math.log(self.uniform / logp.shape[-1]))
            logp = flat if self.uniform == 1 else torch.logaddexp(logp + math.log1p(-self.uniform), flat)
        for key, row in zip(keys, logp, strict=True):
            self._cache[key] = row.clone()
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _spend(self, cost: dict[str, int]) -> None:
        if self.charge is not None and cost["forward_calls"]:
            self.charge(**cost)
