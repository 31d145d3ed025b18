"""How an agent scores prompts on its task: the training reward and the dev selection scores.

Classification tasks: the agent's ``config.reward`` of the class log-probabilities, and dev
accuracy with log-likelihood to break ties. Generation tasks: the task's text reward of what
the LM writes, averaged over the inputs, and the task's metric on dev
(:class:`~rlprompt.rewards.evaluate_text.TextObjective`). Mixed into
:class:`~rlprompt.agents.core.base.BaseAgent`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rlprompt.agents.core.tracking import pooled_accuracy


class TaskScoring:
    """Training rewards and dev selection scores for :class:`~rlprompt.agents.core.base.BaseAgent`."""

    generation: bool
    objective: Any
    task: Any
    config: Any
    _dev_texts: list[str]
    _dev_labels: torch.Tensor

    def score(self, prompts: Any, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def train_rewards(self, prompts: Any, indices: Sequence[int] | None = None) -> list[float]:
        """The training reward of each prompt on the training examples ``indices`` (default: all).

        Classification: ``config.reward`` of the class log-probabilities; generation: the task's
        text reward of what the LM writes, averaged over the inputs
        (:class:`~rlprompt.rewards.evaluate_text.TextObjective`).
        Charged to the budget by the engine (``len(indices) / n`` prompt evaluations each).
        """
        if self.generation:
            return self.objective.score(prompts, "train", indices, with_metrics=False).rewards
        from rlprompt.rewards import get_reward

        texts, labels = self.task.texts("train"), self.task.label_tensor("train")
        if indices is not None:
            texts, labels = [texts[i] for i in indices], labels[torch.as_tensor(list(indices), dtype=torch.long)]
        logprobs = self.score(prompts, texts)
        return get_reward(self.config.reward)(logprobs, labels.to(logprobs.device)).rewards.tolist()

    @property
    def selection_examples(self) -> int:
        """Examples one selection check scores a prompt on: the dev split, plus the training
        split with ``selection="pooled"`` (what the agents pass to ``budget.room``)."""
        n_dev = len(self._dev_texts)
        return n_dev + (len(self.task.texts("train")) if self.config.selection == "pooled" else 0)

    def _pooled_accuracy(self, prompts: Any, dev: Sequence[float]) -> list[float | None]:
        """With ``selection="pooled"``: each prompt's accuracy (metric) on train and dev together,
        from a fresh full-train score (charged; agents train on subsets or on other rewards).
        Otherwise None per prompt."""
        if self.config.selection != "pooled":
            return [None] * len(dev)
        n_train, n_dev = len(self.task.texts("train")), len(self._dev_texts)
        train, _ = self._dev_scores(prompts, "train")
        return [pooled_accuracy(t, d, n_train, n_dev) for t, d in zip(train, dev, strict=True)]

    def _dev_scores(self, prompts: Any, split: str = "dev") -> tuple[list[float], list[float]]:
        """(selection score, tie-breaking score) per prompt on ``split`` (dev, or train for pooled
        selection): accuracy and log-likelihood, or on a generation task the task's metric and
        its reward."""
        if self.generation:
            return self.objective.selection_scores(prompts, split)
        from rlprompt.rewards import accuracy, log_likelihood

        texts, labels = self._dev_texts, self._dev_labels
        if split != "dev":
            texts, labels = self.task.texts(split), self.task.label_tensor(split).to(self._dev_labels.device)
        logprobs = self.score(prompts, texts)
        return accuracy(logprobs, labels).tolist(), log_likelihood(logprobs, labels).tolist()
