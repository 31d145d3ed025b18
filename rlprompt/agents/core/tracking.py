"""Best-on-dev selection, learning curves and their CSV log (the RLPrompt protocol:
select on dev, report on test)."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass
class Candidate:
    """A prompt with its dev-set result.

    :param prompt: the prompt itself (token ids for a discrete prompt, a CPU tensor
        [T, H] for a soft prompt).
    :param text: how it reads (decoded text, or a soft-prompt description).
    :param dev_accuracy: accuracy on the dev split.
    :param dev_score: a finer dev score that breaks accuracy ties (the mean
        log-likelihood of the label over the classes).
    :param train_score: the agent's training signal for this prompt, where it has one.
    :param prompt_evals: prompt evaluations spent when it was found.
    :param pooled_accuracy: accuracy on train and dev together (``selection="pooled"``): when
        set, it orders the candidates in place of the dev accuracy.
    """

    prompt: Any
    text: str
    dev_accuracy: float
    dev_score: float
    train_score: float | None = None
    prompt_evals: float = 0
    pooled_accuracy: float | None = None

    @property
    def key(self) -> tuple[float, float]:
        """Ordering: dev accuracy (or the pooled accuracy when set), then the tie-breaking dev score."""
        score = self.dev_score if math.isfinite(self.dev_score) else -math.inf
        return (self.dev_accuracy if self.pooled_accuracy is None else self.pooled_accuracy, score)


def pooled_accuracy(train: float, dev: float, n_train: int, n_dev: int) -> float:
    """Accuracy on train and dev together, from each split's accuracy and size."""
    return (train * n_train + dev * n_dev) / (n_train + n_dev)


@dataclass
class CurvePoint:
    """One point of a learning curve (one dev evaluation).

    :param prompt_evals: budget spent so far.
    :param forward_tokens: LM forward tokens spent so far.
    :param backward_tokens: LM backward tokens spent so far.
    :param seconds: wall time since learning started.
    :param dev_accuracy: dev accuracy of the prompt just evaluated.
    :param best_dev_accuracy: best dev accuracy so far.
    :param train_score: the agent's training signal at that point (loss, reward), or NaN.
    """

    prompt_evals: float
    forward_tokens: int
    backward_tokens: int
    seconds: float
    dev_accuracy: float
    best_dev_accuracy: float
    train_score: float = math.nan


class BestTracker:
    """Keeps the best prompts by dev accuracy (ties: higher dev log-likelihood, then the
    earlier one) and the learning curve.

    :param keep: how many of the best distinct prompts to keep.
    """

    def __init__(self, keep: int = 5) -> None:
        self.keep = max(1, int(keep))
        self.top: list[Candidate] = []
        self.curve: list[CurvePoint] = []

    @property
    def best(self) -> Candidate | None:
        """The selected prompt, or None before any dev evaluation."""
        return self.top[0] if self.top else None

    def offer(self, candidate: Candidate, dedupe: bool = True) -> bool:
        """Consider a dev-evaluated prompt.

        :param candidate: the prompt and its dev result.
        :param dedupe: ignore a prompt whose text is already kept (discrete prompts).
        :returns: True when it became the best.
        """
        if dedupe and any(c.text == candidate.text for c in self.top):
            return False
        is_best = self.best is None or candidate.key > self.best.key
        self.top.append(candidate)
        # Stable sort: among equal keys the earlier prompt stays first.
        self.top.sort(key=lambda c: c.key, reverse=True)
        del self.top[self.keep :]
        return is_best

    def log(self, point: CurvePoint) -> None:
        self.curve.append(point)

    def state(self, tensors: dict[str, Any]) -> dict[str, Any]:
        """The kept prompts and the curve as JSON; soft prompts (tensors) go into ``tensors``."""
        import torch

        top = []
        for i, c in enumerate(self.top):
            item = {k: v for k, v in asdict(c).items() if k != "prompt"}
            if isinstance(c.prompt, torch.Tensor):
                tensors[f"tracker/top/{i}"] = c.prompt.detach().cpu().contiguous().clone()
                item["tensor"] = f"tracker/top/{i}"
            else:
                item["tokens"] = [int(t) for t in c.prompt]
            top.append(item)
        return {"keep": self.keep, "top": top, "curve": [asdict(p) for p in self.curve]}

    def restore(self, state: dict[str, Any], tensors: dict[str, Any]) -> None:
        """Load what :meth:`state` saved."""
        self.top = []
        for item in state["top"]:
            item = dict(item)
            prompt = tensors[item.pop("tensor")] if "tensor" in item else tuple(item.pop("tokens"))
            self.top.append(Candidate(prompt=prompt, **item))
        self.curve = [CurvePoint(**{k: (math.nan if v is None else v) for k, v in p.items()})
                      for p in state["curve"]]


class TopKGate:
    """Decides which candidates are worth a dev evaluation: those whose training score
    is among the ``k`` best seen so far (roughly ``k * ln(N / k)`` of N candidates).

    :param k: how many of the best training scores to track.
    """

    def __init__(self, k: int) -> None:
        self.k = max(1, int(k))
        self.scores: list[float] = []

    def state(self) -> list[float]:
        """The running top-k scores (for a checkpoint)."""
        return list(self.scores)

    def restore(self, scores: list[float]) -> None:
        self.scores = [float(s) for s in scores]

    def admit(self, scores: list[float]) -> list[int]:
        """Indices of ``scores`` that enter the running top-k (each one updates it)."""
        chosen = []
        for i, s in enumerate(scores):
            if not math.isfinite(s):
                continue
            if len(self.scores) < self.k or s > self.scores[-1]:
                chosen.append(i)
                self.scores.append(s)
                self.scores.sort(reverse=True)
                del self.scores[self.k :]
        return chosen


class CurveLogger:
    """Appends :class:`CurvePoint` rows to a CSV file (flushed per row, so an interrupted
    run keeps its curve).

    :param path: the CSV file (its folder is created; an existing file is replaced).
    :param points: rows to write first (a resumed run's curve so far).
    """

    def __init__(self, path: str | Path, points: list[CurvePoint] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=[f.name for f in fields(CurvePoint)])
        self._writer.writeheader()
        for point in points or []:
            self._writer.writerow(asdict(point))
        self._file.flush()

    def write(self, point: CurvePoint) -> None:
        self._writer.writerow(asdict(point))
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def read_curve(path: str | Path) -> list[CurvePoint]:
    """Read a curve CSV written by :class:`CurveLogger`."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    types = {f.name: f.type for f in fields(CurvePoint)}
    return [CurvePoint(**{k: (int(v) if types[k] == "int" else float(v)) for k, v in row.items()}) for row in rows]
