"""Accuracy read-outs for evaluation and logging (not rewards themselves)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class ClassAccuracy(NamedTuple):
    """Overall and per-class accuracy of P prompts.

    :param overall: float [P], fraction of all examples correct.
    :param per_class: float [P, C], fraction correct among each class's examples;
        NaN for a class with no examples.
    :param balanced: float [P], mean of ``per_class`` over the classes present.
    :param counts: long [C], examples per class.
    """

    overall: torch.Tensor
    per_class: torch.Tensor
    balanced: torch.Tensor
    counts: torch.Tensor


def class_accuracy(logprobs: torch.Tensor, labels: torch.Tensor) -> ClassAccuracy:
    """Overall, per-class and class-balanced accuracy.

    :param logprobs: float [P, E, C] (or [E, C] for one prompt, giving P = 1) per-class
        log-probabilities; only their argmax matters.
    :param labels: long [E] class ids.
    :return: a :class:`ClassAccuracy`.

    >>> lp = torch.log(torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]))
    >>> acc = class_accuracy(lp, torch.tensor([0, 1, 1]))
    >>> acc.overall, acc.per_class
    (tensor([0.6667]), tensor([[1.0000, 0.5000]]))
    """
    if logprobs.dim() == 2:
        logprobs = logprobs.unsqueeze(0)
    if logprobs.dim() != 3 or labels.dim() != 1 or labels.shape[0] != logprobs.shape[1]:
        raise ValueError(
            f"class_accuracy needs logprobs [P, E, C] and labels [E]; got {list(logprobs.shape)} "
            f"and {list(labels.shape)}"
        )
    with torch.no_grad():
        num_classes = logprobs.shape[-1]
        correct = (logprobs.argmax(-1) == labels).float()  # [P, E]
        onehot = F.one_hot(labels.long(), num_classes).float()  # [E, C]
        counts = onehot.sum(0)
        per_class = (correct @ onehot) / counts  # NaN where count is 0
        balanced = per_class[:, counts > 0].mean(-1)
        return ClassAccuracy(correct.mean(-1), per_class, balanced, counts.long())
