"""Built-in rewards. Each follows the protocol in :mod:`rlprompt.rewards.base`:
``fn(logprobs [P, E, C], labels [E]) -> rewards [P]``.

Probabilities are renormalised over the C classes (``softmax`` of the class
log-probabilities) wherever a reward uses them, so the verbalizers compete only
with each other, not with the rest of the vocabulary.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from rlprompt.errors import ConfigError

GAP_CORRECT = 200.0
GAP_INCORRECT = 180.0


def accuracy(logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of examples whose highest-scoring class is the label (not differentiable).

    :param logprobs: float [P, E, C] per-class log-probabilities.
    :param labels: long [E] class ids.
    :return: float [P] in ``[0, 1]``.

    >>> lp = torch.log(torch.tensor([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]]))
    >>> accuracy(lp, torch.tensor([0, 1, 1]))
    tensor([0.6667])
    """
    return (logprobs.argmax(-1) == labels).to(logprobs.dtype).mean(-1)


def log_likelihood(logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean log-probability of the label, after renormalising over the classes.

    :param logprobs: float [P, E, C] per-class log-probabilities.
    :param labels: long [E] class ids.
    :return: float [P], at most 0 (0 = every label certain).

    >>> lp = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75]]]))
    >>> log_likelihood(lp, torch.tensor([0, 1]))
    tensor([-0.4904])
    """
    return _label_logprob(logprobs.log_softmax(-1), labels).mean(-1)


def gap(
    logprobs: torch.Tensor,
    labels: torch.Tensor,
    correct_coef: float = GAP_CORRECT,
    incorrect_coef: float = GAP_INCORRECT,
) -> torch.Tensor:
    """RLPrompt's piecewise gap reward (Deng et al., 2022), averaged over examples.

    Per example, with probabilities renormalised over the classes,
    ``gap = p(label) - max_{c != label} p(c)``; the reward is ``correct_coef * gap``
    when ``gap > 0`` (classified correctly) and ``incorrect_coef * gap`` otherwise.
    Use :func:`make_gap_reward` or :func:`functools.partial` for other coefficients.

    :param logprobs: float [P, E, C] per-class log-probabilities.
    :param labels: long [E] class ids.
    :param correct_coef: scale of the gap on correct examples.
    :param incorrect_coef: scale of the (negative) gap on wrong examples.
    :return: float [P], in ``[-incorrect_coef, correct_coef]``.

    >>> lp = torch.log(torch.tensor([[[0.9, 0.1], [0.6, 0.4]]]))
    >>> gap(lp, torch.tensor([0, 1]))  # (200 * 0.8 + 180 * -0.2) / 2
    tensor([62.0000])
    """
    return _piecewise_gap(logprobs, labels, correct_coef, incorrect_coef).mean(-1)


def balanced_accuracy(logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accuracy averaged per class, then over the classes present in ``labels``.

    :param logprobs: float [P, E, C] per-class log-probabilities.
    :param labels: long [E] class ids.
    :return: float [P] in ``[0, 1]``.

    >>> lp = torch.log(torch.tensor([[[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]]]))
    >>> balanced_accuracy(lp, torch.tensor([0, 0, 1]))  # class 0: 1.0, class 1: 0.0
    tensor([0.5000])
    """
    correct = (logprobs.argmax(-1) == labels).to(logprobs.dtype)
    return class_balanced_mean(correct, labels, logprobs.shape[-1])


def balanced_gap(
    logprobs: torch.Tensor,
    labels: torch.Tensor,
    correct_coef: float = GAP_CORRECT,
    incorrect_coef: float = GAP_INCORRECT,
) -> torch.Tensor:
    """:func:`gap` averaged per class, then over the classes present in ``labels``.

    Keeps a prompt from scoring well by always naming the majority class.

    :param logprobs: float [P, E, C] per-class log-probabilities.
    :param labels: long [E] class ids.
    :param correct_coef: scale of the gap on correct examples.
    :param incorrect_coef: scale of the (negative) gap on wrong examples.
    :return: float [P].

    >>> lp = torch.log(torch.tensor([[[0.9, 0.1], [0.7, 0.3], [0.6, 0.4]]]))
    >>> balanced_gap(lp, torch.tensor([0, 0, 1]))  # (200 * 0.6 + 180 * -0.2) / 2
    tensor([42.0000])
    """
    per_example = _piecewise_gap(logprobs, labels, correct_coef, incorrect_coef)
    return class_balanced_mean(per_example, labels, logprobs.shape[-1])


def make_gap_reward(
    correct: float = GAP_CORRECT, incorrect: float = GAP_INCORRECT, *, balanced: bool = False
) -> functools.partial[torch.Tensor]:
    """A gap reward with other coefficients.

    :param correct: scale of the gap on correct examples (RLPrompt: 200).
    :param incorrect: scale of the negative gap on wrong examples (RLPrompt: 180).
    :param balanced: average per class first (:func:`balanced_gap`).
    :return: a reward function ``fn(logprobs, labels) -> [P]``.
    :raises ConfigError: a negative coefficient.

    >>> fn = make_gap_reward(1.0, 1.0)
    >>> fn(torch.log(torch.tensor([[[0.9, 0.1]]])), torch.tensor([0]))
    tensor([0.8000])
    """
    for name, value in (("correct", correct), ("incorrect", incorrect)):
        if not value >= 0:
            raise ConfigError(f"gap reward coefficient {name}={value!r} must be >= 0 (RLPrompt: 200 and 180)")
    fn = balanced_gap if balanced else gap
    return functools.partial(fn, correct_coef=float(correct), incorrect_coef=float(incorrect))


# -- shared maths ----------------------------------------------------------------


def _label_logprob(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``values[p, e, labels[e]]`` as [P, E]."""
    p, e, _ = values.shape
    return values.gather(-1, labels.view(1, e, 1).expand(p, e, 1)).squeeze(-1)


def _piecewise_gap(
    logprobs: torch.Tensor, labels: torch.Tensor, correct_coef: float, incorrect_coef: float
) -> torch.Tensor:
    """Per-example scaled gap, [P, E]."""
    probs = logprobs.softmax(-1)
    p_label = _label_logprob(probs, labels)
    is_label = F.one_hot(labels, probs.shape[-1]).bool().expand_as(probs)
    p_other = probs.masked_fill(is_label, float("-inf")).amax(-1)
    diff = p_label - p_other
    return torch.where(diff > 0, correct_coef * diff, incorrect_coef * diff)


def class_balanced_mean(values: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean of ``values`` per class, then over the classes that occur in ``labels``.

    :param values: float [P, E] per-example values.
    :param labels: long [E] class ids.
    :param num_classes: C.
    :return: float [P].
    """
    onehot = F.one_hot(labels, num_classes).to(values.dtype)  # [E, C]
    counts = onehot.sum(0)
    per_class = (values @ onehot) / counts.clamp(min=1)  # [P, C]
    return per_class[:, counts > 0].mean(-1)
