"""--test-examples / --max-examples take a seeded, label-stratified sample, not the first N lines."""

from __future__ import annotations

import dataclasses

import pytest

from rlprompt.lm import ScoringEngine
from rlprompt.rewards.evaluate import evaluate_prompts
from rlprompt.tasks import Example
from rlprompt.tasks.sampling import stratified_indices


def test_the_sample_keeps_every_class_share_and_is_seeded():
    labels = [0] * 60 + [1] * 30 + [2] * 10  # sorted by label, as many distributed test files are
    keep = stratified_indices(labels, 20)
    assert [sum(labels[i] == c for i in keep) for c in range(3)] == [12, 6, 2]
    assert keep == sorted(keep) == stratified_indices(labels, 20) != stratified_indices(labels, 20, seed=1)
    assert stratified_indices(labels, 500) == list(range(100))


def test_an_evaluation_on_n_examples_of_a_sorted_split_sees_both_classes(tiny_lm, great_task):
    sorted_test = [Example(f"example {i} .", 0) for i in range(30)] + [Example(f"example {i} .", 1) for i in range(30)]
    task = dataclasses.replace(great_task, test=sorted_test)
    engine = ScoringEngine(tiny_lm, task.verbalizers, task.template)
    result = evaluate_prompts(engine, task, [" great"], split="test", max_examples=10)[0]
    assert result.n_examples == 10 and result.sample == "a seeded (0), label-stratified sample of 10 of 60"
    # the first 10 lines are all class 0: a per-class accuracy of class 1 exists only in a stratified sample
    assert not any(a != a for a in result.per_class_accuracy)  # no NaN: both classes present
    with pytest.raises(Exception, match="max_examples must be a positive integer"):
        evaluate_prompts(engine, task, [" great"], split="test", max_examples=0)
