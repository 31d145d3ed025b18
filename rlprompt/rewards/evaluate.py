"""Evaluate prompts on a task split: accuracy, per-class accuracy and a reward.

Used by ``rlprompt eval``, by best-on-dev selection in the agents and by the
comparison harness, so every method is scored the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from rlprompt import stop
from rlprompt.errors import ConfigError
from rlprompt.rewards.base import Reward, RewardFn
from rlprompt.rewards.metrics import class_accuracy
from rlprompt.rewards.registry import get_reward
from rlprompt.tasks.sampling import describe_sample, stratified_indices

if TYPE_CHECKING:
    from rlprompt.lm import Prompt, ScoringEngine
    from rlprompt.tasks import Task


@dataclass
class PromptEvaluation:
    """How one prompt does on one split.

    :param prompt: the prompt text (for token prompts, their decoded text).
    :param split: ``"train"``, ``"dev"`` or ``"test"``.
    :param n_examples: examples scored.
    :param accuracy: fraction of examples whose most likely verbalizer is the label.
    :param per_class_accuracy: accuracy within each class (label order; NaN for an absent class).
    :param balanced_accuracy: mean of the per-class accuracies.
    :param reward: the reward function's value on the whole split.
    :param reward_name: which reward.
    :param diagnostics: the reward's extra numbers.
    :param seconds: wall time of the evaluation (shared by all prompts scored together).
    :param examples_per_s: (prompt, example) pairs scored per second.
    :param sample: which examples: ``"all"``, or the seeded label-stratified sample taken when
        ``max_examples`` is smaller than the split (see :mod:`rlprompt.tasks.sampling`).
    """

    prompt: str
    split: str
    n_examples: int
    accuracy: float
    per_class_accuracy: list[float]
    balanced_accuracy: float
    reward: float
    reward_name: str
    diagnostics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    examples_per_s: float = 0.0
    sample: str = "all"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None)."""
        out = asdict(self)
        out["per_class_accuracy"] = [None if math.isnan(a) else a for a in self.per_class_accuracy]
        return out


def evaluate_prompts(
    engine: ScoringEngine,
    task: Task,
    prompts: Sequence[Prompt],
    *,
    split: str = "test",
    reward: str | RewardFn | Reward = "accuracy",
    chunk_size: int = 256,
    max_examples: int | None = None,
    progress: bool = False,
    placement: str = "suffix",
) -> list[PromptEvaluation]:
    """Score ``prompts`` on a split of ``task`` through the engine.

    :param engine: the scoring engine (its verbalizers must be the task's).
    :param task: the task.
    :param prompts: text or token-id prompts, scored together (the inputs' caches are
        shared between them); or soft prompts, float tensors [T, H] of one length.
    :param split: which split to evaluate on.
    :param reward: a reward spec for :func:`~rlprompt.rewards.get_reward`.
    :param chunk_size: examples per engine call (memory; progress granularity).
    :param max_examples: evaluate on a seeded, label-stratified sample of N examples only.
    :param progress: show a progress bar on stderr.
    :param placement: where soft prompts go (``"suffix"``, the engine's and the agents' default,
        or ``"prefix"``); text prompts ignore it.
    :returns: one :class:`PromptEvaluation` per prompt.
    :raises ConfigError: soft prompts mixed with text prompts, or of different lengths.
    """
    if list(engine.verbalizers) != list(task.verbalizers):
        raise ConfigError(
            f"engine verbalizers {engine.verbalizers!r} differ from task {task.name!r}'s {list(task.verbalizers)!r}"
        )
    if not prompts:
        raise ConfigError("no prompts to evaluate")
    soft = [isinstance(p, torch.Tensor) and p.is_floating_point() for p in prompts]
    if any(soft):
        if not all(soft) or len({tuple(p.shape) for p in prompts}) != 1:  # type: ignore[union-attr]
            raise ConfigError("soft prompts are scored together only with soft prompts of the same shape [T, H]")
        embeds = torch.stack(list(prompts)).to(engine.device)  # type: ignore[arg-type]
        names = [f"<soft prompt: {embeds.shape[1]} vectors>"] * len(prompts)

        def score(chunk: list[str]) -> torch.Tensor:
            return engine.score_soft(embeds, chunk, placement=placement)  # type: ignore[arg-type]
    else:
        names = [p if isinstance(p, str) else engine.decode(p) for p in prompts]  # type: ignore[arg-type]

        def score(chunk: list[str]) -> torch.Tensor:
            return engine.score(prompts, chunk)
    return evaluate_split(score, names, task, split=split, reward=reward, chunk_size=chunk_size,
                          max_examples=max_examples, progress=progress)


def evaluate_split(
    score: Callable[[list[str]], torch.Tensor],
    names: Sequence[str],
    task: Task,
    *,
    split: str = "test",
    reward: str | RewardFn | Reward = "accuracy",
    chunk_size: int = 256,
    max_examples: int | None = None,
    progress: bool = False,
) -> list[PromptEvaluation]:
    """The one evaluation routine: score P prompts on a split in chunks, then accuracy and reward.

    Every evaluation goes through it: ``rlprompt eval`` (:func:`evaluate_prompts`), an agent's
    :meth:`~rlprompt.agents.core.base.BaseAgent.evaluate`, and the comparison's test scores.

    :param score: ``score(texts) -> logprobs [P, E, C]`` for a chunk of E inputs.
    :param names: the P prompts as text (a soft prompt: a description of it).
    :param task: the task (its texts and labels of ``split``).
    :param split: ``"train"``, ``"dev"`` or ``"test"``.
    :param reward: a reward spec for :func:`~rlprompt.rewards.get_reward`.
    :param chunk_size: examples per ``score`` call (bounds memory; progress granularity).
    :param max_examples: evaluate on a seeded, label-stratified sample of N examples only (many
        test files are sorted by label: their first N lines may be one class).
    :param progress: show a progress bar on stderr.
    :returns: one :class:`PromptEvaluation` per prompt.
    """
    reward_fn = get_reward(reward)
    texts = task.texts(split)
    labels = task.label_tensor(split)
    sample = "all"
    if max_examples is not None:
        if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
            raise ConfigError(f"max_examples must be a positive integer, got {max_examples!r}")
        keep = stratified_indices(labels.tolist(), max_examples)
        sample = describe_sample(len(keep), len(texts))
        texts, labels = [texts[i] for i in keep], labels[torch.tensor(keep, dtype=torch.long)]
    start = time.perf_counter()
    parts = []
    bar = _progress(len(texts), f"eval {task.name}/{split}", progress)
    for i in range(0, len(texts), chunk_size):
        stop.check()  # a requested stop cuts a long evaluation short (see rlprompt.stop)
        chunk = texts[i : i + chunk_size]
        with torch.no_grad():
            parts.append(score(chunk).detach().float().cpu())
        bar.update(len(chunk))
    bar.close()
    logprobs = torch.cat(parts, dim=1)  # [P, E, C]
    seconds = time.perf_counter() - start
    acc = class_accuracy(logprobs, labels)  # before the reward, which gets its own copy anyway
    out = reward_fn(logprobs, labels)
    rate = len(names) * len(texts) / max(seconds, 1e-9)
    return [
        PromptEvaluation(
            prompt=name, split=split, n_examples=len(texts), accuracy=float(acc.overall[p]),
            per_class_accuracy=[float(a) for a in acc.per_class[p]], balanced_accuracy=float(acc.balanced[p]),
            reward=float(out.rewards[p]), reward_name=reward_fn.name,
            diagnostics={k: float(v[p]) for k, v in out.diagnostics.items()},
            seconds=seconds, examples_per_s=rate, sample=sample,
        )
        for p, name in enumerate(names)
    ]


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ex", leave=False)
