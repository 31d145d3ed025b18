"""Scoring prompts on a generation task: the LM writes, text rewards score, inputs average.

:class:`TextObjective` is the one routine every caller goes through (agents' training and
selection scores, ``rlprompt eval``, the comparison's test scores): the engine writes
``num_samples`` completions per (prompt, input); each is scored by the task's reward; the best
sample per input is kept (RLPrompt's output selection); the metrics (the task's metric and any
others asked for) are computed on the kept completions; each prompt's score is the mean over
its inputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from rlprompt.errors import ConfigError
from rlprompt.rewards.text import RewardContext, TextReward, get_text_reward

if TYPE_CHECKING:
    from rlprompt.lm.engine_core import Prompt
    from rlprompt.lm.generation import GenerationEngine
    from rlprompt.tasks.generation import GenerationTask


@dataclass
class TextScores:
    """What :meth:`TextObjective.score` returns for P prompts on E inputs.

    :param rewards: mean reward per prompt [P].
    :param metrics: metric name -> mean per prompt [P] (always holds ``"reward"``).
    :param completions: the kept completion per prompt and input, ``[P][E]``.
    :param per_input: metric name -> value per prompt and input ``[P][E]``.
    """

    rewards: list[float]
    metrics: dict[str, list[float]]
    completions: list[list[str]]
    per_input: dict[str, list[list[float]]] = field(default_factory=dict)


@dataclass
class GenerationEvaluation:
    """How one prompt does on one split of a generation task.

    :param accuracy: the task's metric (the score selection and reports use; the name keeps
        one field for both task kinds).
    """

    prompt: str
    split: str
    n_examples: int
    metric_name: str
    accuracy: float
    reward: float
    reward_name: str
    metrics: dict[str, float]
    outputs: list[dict[str, Any]]
    seconds: float = 0.0
    sample: str = "all"

    @property
    def balanced_accuracy(self) -> float:
        return self.accuracy

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the outputs included)."""
        return {"prompt": self.prompt, "split": self.split, "n_examples": self.n_examples,
                "metric": self.metric_name, "score": self.accuracy, "reward": self.reward,
                "reward_name": self.reward_name, "metrics": dict(self.metrics), "seconds": self.seconds,
                "sample": self.sample, "outputs": self.outputs}


class TextObjective:
    """Scores prompts on a generation task (see the module docstring).

    :param engine: the generation engine.
    :param task: the generation task.
    :param reward: the reward spec (default: the task's).
    :param metrics: extra metric specs reported by :meth:`evaluate` (the task's metric is always one).
    :param seed: seeds the draws of sampled completions.
    :param context: what model-backed rewards are built from (default: this engine and task).
    """

    def __init__(self, engine: GenerationEngine, task: GenerationTask, reward: Any = None, *,
                 metrics: Sequence[Any] = (), seed: int = 0, context: RewardContext | None = None) -> None:
        self.engine = engine
        self.task = task
        self.context = context or RewardContext(engine=engine, task=task,
                                                embedding_model=task.meta.get("embedding_model"))
        spec = task.reward if reward is None else reward
        self.reward = get_text_reward(spec, self.context)
        names = [task.metric or spec, *metrics]
        self.metric_name = self.reward.name if names[0] is spec or names[0] == spec else self._name(names[0])
        self.metrics: dict[str, TextReward] = {}
        for spec in names:
            name = self.metric_name if spec is names[0] else self._name(spec)
            if name != self.reward.name and name not in self.metrics:
                self.metrics[name] = get_text_reward(spec, self.context)
        self.generator = torch.Generator().manual_seed(seed)
        for split in ("train", "dev"):
            self.reward.check_columns(task.columns(split), f"the {split} split of {task.name!r}")
        self._check_context()

    def _check_context(self) -> None:
        """Fail before any work when the longest input, the template and the completion cannot fit."""
        tokens, lm = self.engine.template_tokens, self.engine.lm
        longest, where = max((len(tokens.encode(ex.input)), split) for split in ("train", "dev", "test")
                             for ex in self.task.split(split))
        overhead = len(tokens.encode(self.engine.template.render("", "")))
        need = longest + overhead + self.engine.settings.max_new_tokens
        if need > lm.max_length:
            raise ConfigError(f"the longest {where} input ({longest} tokens) with the template and max_new_tokens="
                              f"{self.engine.settings.max_new_tokens} needs {need} of the {lm.max_length}-token "
                              f"context of {lm.name!r}; shorten the inputs or lower --max-new-tokens")

    @staticmethod
    def _name(spec: Any) -> str:
        from rlprompt.rewards.base import reward_name

        if isinstance(spec, str):
            return spec if ("," in spec or "=" in spec or ":" in spec) else spec.strip().lower().replace("_", "-")
        return spec.name if isinstance(spec, TextReward) else reward_name(spec)

    def score(self, prompts: Sequence[Prompt], split: str = "train", indices: Sequence[int] | None = None,
              *, with_metrics: bool = True) -> TextScores:
        """Write, reward, keep the best sample per input, and average over the inputs.

        :param prompts: P prompts (text or token ids).
        :param split: which split's inputs.
        :param indices: which inputs of the split (default: all).
        :param with_metrics: also compute the metrics on the kept completions.
        """
        columns = self.task.columns(split, indices)  # type: ignore[arg-type]
        texts = columns["inputs"]
        written = self.engine.generate(prompts, texts, generator=self.generator)
        names = [p if isinstance(p, str) else self.engine.decode(p) for p in prompts]
        samples = len(written[0][0])
        flat = [c for per_prompt in written for per_input in per_prompt for c in per_input]
        rows = {k: [v for _ in prompts for v in values for _ in range(samples)] for k, values in columns.items()}
        rows["prompts"] = [n for n in names for _ in texts for _ in range(samples)]
        rewards = self.reward(flat, **rows)
        kept: list[list[str]] = []
        per_input: dict[str, list[list[float]]] = {"reward": []}
        for p in range(len(prompts)):
            best_texts, best_rewards = [], []
            for e in range(len(texts)):
                at = (p * len(texts) + e) * samples
                j = max(range(samples), key=lambda s: rewards[at + s])
                best_texts.append(flat[at + j])
                best_rewards.append(rewards[at + j])
            kept.append(best_texts)
            per_input["reward"].append(best_rewards)
        if with_metrics and self.metrics:
            kept_flat = [c for row in kept for c in row]
            kept_rows = {k: [v for _ in prompts for v in values] for k, values in columns.items()}
            kept_rows["prompts"] = [n for n in names for _ in texts]
            for name, metric in self.metrics.items():
                if not metric.applies_to(kept_rows):
                    continue  # e.g. BLEU on inputs without references: not reported there
                values = metric(kept_flat, **kept_rows)
                per_input[name] = [values[p * len(texts) : (p + 1) * len(texts)] for p in range(len(prompts))]
        means = {k: [sum(v) / len(v) for v in rows_] for k, rows_ in per_input.items()}
        if self.reward.name not in means:
            means[self.reward.name] = means["reward"]
        return TextScores(means["reward"], means, kept, per_input)

    def selection_scores(self, prompts: Sequence[Prompt], split: str = "dev") -> tuple[list[float], list[float]]:
        """(the task's metric, the reward) per prompt, for best-on-dev selection."""
        scores = self.score(prompts, split)
        metric = scores.metrics.get(self.metric_name, scores.rewards)
        return metric, scores.rewards

    def evaluate(self, prompts: Sequence[Prompt], split: str = "test", *, max_examples: int | None = None,
                 chunk_size: int = 64, progress: bool = False) -> list[GenerationEvaluation]:
        """Every prompt on a split: the metric, the reward, the other metrics and all outputs."""
        from rlprompt.rewards.evaluate import _progress

        n_all = len(self.task.split(split))  # type: ignore[arg-type]
        indices = list(range(n_all))
        sample = "all"
        if max_examples is not None and max_examples < n_all:
            generator = torch.Generator().manual_seed(0)
            indices = sorted(torch.randperm(n_all, generator=generator)[:max_examples].tolist())
            sample = f"a seeded (0) sample of {len(indices)} of {n_all}"
        start = time.perf_counter()
        parts: list[TextScores] = []
        bar = _progress(len(indices), f"eval {self.task.name}/{split}", progress)
        for i in range(0, len(indices), chunk_size):
            chunk = indices[i : i + chunk_size]
            parts.append(self.score(prompts, split, chunk))
            bar.update(len(chunk))
        bar.close()
        seconds = time.perf_counter() - start
        rows = self.task.split(split)  # type: ignore[arg-type]
        out = []
        for p, prompt in enumerate(prompts):
            name = prompt if isinstance(prompt, str) else self.engine.decode(prompt)
            per = {k: [v for part in parts for v in part.per_input[k][p]] for k in parts[0].per_input}
            means = {k: (sum(v) / len(v) if v else math.nan) for k, v in per.items()}
            texts = [c for part in parts for c in part.completions[p]]
            outputs = [{"input": rows[j].input, "output": texts[k], "references": list(rows[j].references),
                        **{m: per[m][k] for m in per}} for k, j in enumerate(indices)]
            metric = means.get(self.metric_name, means["reward"])
            means.setdefault(self.reward.name, means["reward"])
            out.append(GenerationEvaluation(
                prompt=name, split=split, n_examples=len(indices), metric_name=self.metric_name, accuracy=metric,
                reward=means["reward"], reward_name=self.reward.name,
                metrics={k: v for k, v in means.items() if k != "reward"}, outputs=outputs, seconds=seconds,
                sample=sample,
            ))
        return out
