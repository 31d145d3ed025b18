"""The record of a run: :class:`RunSummary`, written as ``summary.json``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunSummary:
    """What a run produced and spent; written as ``summary.json``.

    :param method: agent name (``"soft-prompt"``, ``"cma"``, ...).
    :param task: task name.
    :param model: the task LM's name.
    :param dtype: the dtype the task LM ran in (``"bfloat16"``, ``"float32"``).
    :param status: ``"completed"``, ``"early-stopped"``, ``"non-finite-loss"``, ``"interrupted"``,
        ``"failed"`` (an error ended learning; ``message`` names it).
    :param message: a line about how it ended.
    :param prompt_kind: ``"discrete"`` or ``"soft"``.
    :param prompt: the selected prompt as text (a soft prompt: its nearest tokens).
    :param dev_accuracy: dev accuracy of the selected prompt.
    :param test_accuracy: its test accuracy (None when not evaluated).
    :param test_balanced_accuracy: its class-balanced test accuracy.
    :param budget: the prompt-evaluation limit.
    :param prompt_evals: prompt evaluations spent (dev selection included), in whole-training-split
        equivalents (see :mod:`rlprompt.agents.core.budget`).
    :param example_evals: (prompt, example) pairs read out (the budget's own count).
    :param forward_tokens: LM forward tokens spent while learning.
    :param backward_tokens: LM backward tokens spent while learning.
    :param wall_seconds: wall time of learning.
    :param engine_seconds: of which inside the scoring engine.
    :param config: the agent's options.
    :param task_meta: facts about the task (seed, source).
    :param extra: agent-specific results (e.g. the projected prompt's accuracy).
    :param curve: learning-curve points (see :class:`~rlprompt.agents.core.tracking.CurvePoint`).
    """

    method: str
    task: str
    model: str
    dtype: str
    status: str
    message: str
    prompt_kind: str
    prompt: str | None
    dev_accuracy: float | None
    test_accuracy: float | None
    test_balanced_accuracy: float | None
    budget: float
    prompt_evals: float
    example_evals: int
    forward_tokens: int
    backward_tokens: int
    wall_seconds: float
    engine_seconds: float
    config: dict[str, Any]
    task_meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
