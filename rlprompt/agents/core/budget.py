"""The budget: prompt evaluations an agent may spend, read from the scoring engine.

How every method is charged (the one rule the comparison rests on)
------------------------------------------------------------------
- The unit is the **prompt evaluation**: one prompt scored on one batch of examples
  costs 1, whatever the batch size (that is what :class:`~rlprompt.lm.EngineCounters`
  counts in ``prompt_evals``).
- Everything an agent scores while it learns counts: training batches, candidates,
  and the dev-set evaluations used for best-on-dev selection and early stopping.
- A **gradient step** is a forward on a batch (counted by the engine) plus its
  backward, charged here as a second prompt evaluation: **2 per soft prompt per step**.
  The backward costs about as much compute as the forward, so a gradient method pays for
  what it gets.
- Work the engine does not see is charged with :meth:`Budget.charge`: the backward
  pass above, and LM tokens spent *sampling* prompts (LM-prior sampling), which cost no
  prompt evaluation (no task example is read) but count as forward tokens.
- The final test evaluation is not charged: :meth:`Budget.close` freezes the totals
  when learning ends.
"""

from __future__ import annotations

from rlprompt.errors import ConfigError
from rlprompt.lm.counters import EngineCounters


class Budget:
    """A limit on prompt evaluations, measured on an engine's counters.

    :param engine: the :class:`~rlprompt.lm.ScoringEngine` the agent scores with.
    :param limit: prompt evaluations allowed (at least 1).
    :raises ConfigError: ``limit`` is not a positive integer.
    """

    def __init__(self, engine: object, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"budget must be a positive number of prompt evaluations, got {limit!r}")
        self.engine = engine
        self.limit = limit
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
    def used(self) -> int:
        """Prompt evaluations spent so far."""
        return int(self.spent().prompt_evals)

    @property
    def remaining(self) -> int:
        """Prompt evaluations left (never negative)."""
        return max(0, self.limit - self.used)

    @property
    def exhausted(self) -> bool:
        return self.remaining == 0

    def take(self, wanted: int) -> int:
        """How many of ``wanted`` prompt evaluations still fit (0 when spent)."""
        return max(0, min(int(wanted), self.remaining))

    def charge(self, *, prompt_evals: int = 0, forward_tokens: int = 0, backward_tokens: int = 0,
               forward_calls: int = 0) -> None:
        """Add a cost the engine did not count (a backward pass, sampling tokens).

        :param prompt_evals: prompt evaluations to add (a backward pass: 1 per soft prompt).
        :param forward_tokens: LM positions run forward outside the engine.
        :param backward_tokens: LM positions back-propagated outside the engine.
        :param forward_calls: LM forward calls outside the engine.
        """
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
        return f"Budget(used={self.used}, limit={self.limit})"
