"""The budget: prompt evaluations an agent may spend, read from the scoring engine.

How every method is charged (the one rule the comparison rests on)
------------------------------------------------------------------
- The unit is the **prompt evaluation**: one prompt scored on the whole training split.
  A call on k of the n training examples costs k/n, so the budget is really a count of
  (prompt, example) pairs read out, the engine's ``example_evals``, divided by n. Equal
  budgets therefore mean equal example evaluations for every method: a PPO episode scored
  on 16 of 32 examples costs 0.5, a prompt grown one token at a time with a read-out at each
  of its T steps costs T.
- Everything an agent scores while it learns counts: training batches, candidates, and the
  dev-set evaluations used for best-on-dev selection (a dev split of n examples costs 1).
- A **gradient step** is a forward on a batch (counted by the engine) plus its backward,
  charged here as the same number of example evaluations again: a step on b of n examples
  costs 2b/n. The backward costs about as much compute as the forward.
- Work the engine does not see is charged with :meth:`Budget.charge`: the backward pass
  above, and LM tokens spent *sampling* prompts (LM-prior sampling, soft Q-learning), which
  read no task example (no prompt evaluation) but count as forward tokens.
- The final test evaluation is not charged: :meth:`Budget.close` freezes the totals when
  learning ends.

Budgets may be fractional; reports show them with one decimal.
"""

from __future__ import annotations

import math

from rlprompt.errors import ConfigError
from rlprompt.lm.counters import EngineCounters

_EPS = 1e-9  # float slack when counting what still fits


class Budget:
    """A limit on prompt evaluations (whole-training-split equivalents), measured on an
    engine's counters.

    :param engine: the :class:`~rlprompt.lm.ScoringEngine` the agent scores with.
    :param limit: prompt evaluations allowed (a positive number).
    :param train_examples: the size n of the training split: n example evaluations make
        one prompt evaluation.
    :raises ConfigError: ``limit`` or ``train_examples`` is not positive.
    """

    def __init__(self, engine: object, limit: float, *, train_examples: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0 or math.isinf(limit):
            raise ConfigError(f"budget must be a positive number of prompt evaluations, got {limit!r}")
        if isinstance(train_examples, bool) or not isinstance(train_examples, int) or train_examples < 1:
            raise ConfigError(f"train_examples must be a positive integer, got {train_examples!r}")
        self.engine = engine
        self.limit = limit
        self.train_examples = train_examples
        self.extra = EngineCounters()
        self._start = engine.counters.copy()  # type: ignore[attr-defined]
        self._closed: EngineCounters | None = None

    def spent(self) -> EngineCounters:
        """Everything spent since the budget started: engine counters plus charges."""
        if self._closed is not None:
            return self._closed.copy()
        spent = self.engine.counters - self._start  # type: ignore[attr-defined]
        for key, value in self.extra.as_dict().items():
            setattr(spent, key, getattr(spent, key) + value)
        return spent

    @property
    def used(self) -> float:
        """Prompt evaluations spent so far (example evaluations / training-split size)."""
        return self.spent().example_evals / self.train_examples

    @property
    def remaining(self) -> float:
        """Prompt evaluations left (never negative)."""
        return max(0.0, self.limit - self.used)

    @property
    def exhausted(self) -> bool:
        """True when not even one more example evaluation fits."""
        return self.remaining * self.train_examples < 1 - _EPS

    def room(self, n_examples: int | None = None) -> int:
        """How many more prompts scored on ``n_examples`` examples each fit (default: the whole
        training split, i.e. whole prompt evaluations)."""
        n = self.train_examples if n_examples is None else n_examples
        if n < 1:
            return 0
        left = self.limit * self.train_examples - self.spent().example_evals
        return max(0, math.floor(left / n + _EPS))

    def cost(self, n_prompts: int, n_examples: int) -> float:
        """What scoring ``n_prompts`` prompts on ``n_examples`` examples each costs."""
        return n_prompts * n_examples / self.train_examples

    def take(self, wanted: int, n_examples: int | None = None) -> int:
        """How many of ``wanted`` prompts (scored on ``n_examples`` each) still fit (0 when spent)."""
        return max(0, min(int(wanted), self.room(n_examples)))

    def charge(self, *, example_evals: int = 0, prompt_evals: int = 0, forward_tokens: int = 0,
               backward_tokens: int = 0, forward_calls: int = 0) -> None:
        """Add a cost the engine did not count (a backward pass, sampling tokens).

        :param example_evals: (prompt, example) pairs to add (a backward pass on a batch of b
            examples: b per soft prompt); this is what the budget counts.
        :param prompt_evals: prompt read-outs to add to the raw counter (not the budget).
        :param forward_tokens: LM positions run forward outside the engine.
        :param backward_tokens: LM positions back-propagated outside the engine.
        :param forward_calls: LM forward calls outside the engine.
        """
        self.extra.example_evals += example_evals
        self.extra.prompt_evals += prompt_evals
        self.extra.forward_tokens += forward_tokens
        self.extra.backward_tokens += backward_tokens
        self.extra.forward_calls += forward_calls

    def restore(self, spent: dict[str, float]) -> None:
        """Continue from a checkpoint: what was spent before (``spent``, from :meth:`spent`'s
        ``as_dict()``) plus whatever the engine counts from now on.

        :param spent: the counters at the checkpoint.
        """
        self._start = self.engine.counters.copy()  # type: ignore[attr-defined]
        self.extra = EngineCounters()
        self.extra.load(spent)
        self._closed = None

    def close(self) -> None:
        """Freeze the totals (later engine calls, such as test evaluation, are not charged)."""
        if self._closed is None:
            self._closed = self.spent()

    def __repr__(self) -> str:
        return f"Budget(used={self.used:.1f}, limit={self.limit})"
