"""Seeded, label-stratified samples of a split.

Many distributed test files are sorted by label, so their first N lines may hold one class
only; a figure measured on "the first N test examples" can then measure one class. Every
"N examples only" option (``--test-examples``, ``--max-examples``) takes this sample instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SAMPLE_SEED = 0


def stratified_indices(labels: Sequence[int], n: int, seed: int = SAMPLE_SEED) -> list[int]:
    """``n`` indices into ``labels``, drawn without replacement so each class keeps its share
    (largest-remainder rounding), in their original order; all of them when ``n >= len``.

    :param labels: the class of each example.
    :param n: how many to keep (at least 1).
    :param seed: the sample's seed (the same seed gives the same sample).

    >>> stratified_indices([0, 0, 0, 0, 1, 1, 1, 1], 4)
    [2, 3, 4, 5]
    """
    total = len(labels)
    if n >= total:
        return list(range(total))
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    classes = sorted(by_class)
    exact = [n * len(by_class[c]) / total for c in classes]
    counts = [int(x) for x in exact]
    for j in sorted(range(len(classes)), key=lambda j: exact[j] - counts[j], reverse=True)[: n - sum(counts)]:
        counts[j] += 1
    chosen: list[int] = []
    for c, k in zip(classes, counts, strict=True):
        members = by_class[c]
        chosen.extend(members[i] for i in rng.choice(len(members), size=k, replace=False))
    return sorted(chosen)


def describe_sample(n: int, total: int, seed: int = SAMPLE_SEED) -> str:
    """How a report names the sample: ``"a seeded (0), label-stratified sample of 500 of 1821"``."""
    return "all" if n >= total else f"a seeded ({seed}), label-stratified sample of {n} of {total}"
