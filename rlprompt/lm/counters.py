"""What the scoring engine spends: the currency every method is compared in."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class EngineCounters:
    """Running totals kept by a :class:`~rlprompt.lm.engine.ScoringEngine`.

    :param prompt_evals: prompts read out (one prompt scored on a batch of examples
        counts once; each read-out of a growing prompt counts once too).
    :param example_evals: (prompt, example) pairs read out.
    :param forward_tokens: positions run through the LM forward, padding included
        (that is what the compute costs).
    :param backward_tokens: positions whose activations were kept for a backward pass
        (gradient soft prompt tuning counts its forward and its backward).
    :param forward_calls: LM forward calls.
    :param generated_tokens: tokens the LM wrote on generation tasks (each also a forward token).
    :param seconds: wall time spent inside the engine.
    """

    prompt_evals: int = 0
    example_evals: int = 0
    forward_tokens: int = 0
    backward_tokens: int = 0
    forward_calls: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The counters as a flat JSON-ready dict."""
        return asdict(self)

    def copy(self) -> EngineCounters:
        return EngineCounters(**asdict(self))

    def __sub__(self, other: EngineCounters) -> EngineCounters:
        a, b = asdict(self), asdict(other)
        return EngineCounters(**{k: a[k] - b[k] for k in a})

    def load(self, values: dict[str, float]) -> None:
        """Restore totals (e.g. from a checkpoint)."""
        for key, value in values.items():
            if hasattr(self, key):
                setattr(self, key, type(getattr(self, key))(value))
