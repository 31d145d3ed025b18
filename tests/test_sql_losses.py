"""Soft Q-learning's path-consistency losses against values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from rlprompt.agents.rl.sql.losses import path_consistency_loss
from rlprompt.agents.rl.sql.networks import reference_logprobs
from rlprompt.rewards.normalize import RunningStats, batch_zscore

# One episode of T = 3 steps; A = Q - V of the online network, Vbar of the target network.
ADV = torch.tensor([[0.5, -0.2, 1.0]])
V_BAR = torch.tensor([[0.3, 0.1, -0.4]])
R = torch.tensor([2.0])


def test_single_step_path_consistency_by_hand():
    # targets r_t + Vbar(s_{t+1}) - Vbar(s_t): 0 + 0.1 - 0.3 = -0.2; 0 - 0.4 - 0.1 = -0.5; 2 + 0 + 0.4 = 2.4
    # errors A - target: 0.7, 0.3, -1.4 -> 0.5 * mean(0.49, 0.09, 1.96) = 0.42333
    assert float(path_consistency_loss(ADV, V_BAR, R, "single")) == pytest.approx(0.5 * (0.49 + 0.09 + 1.96) / 3)


def test_multi_step_path_consistency_by_hand():
    # sums to go of A: 1.3, 0.8, 1.0; targets R - Vbar(s_t): 1.7, 1.9, 2.4
    # errors: -0.4, -1.1, -1.4 -> 0.5 * mean(0.16, 1.21, 1.96) = 0.555
    assert float(path_consistency_loss(ADV, V_BAR, R, "multi")) == pytest.approx(0.5 * (0.16 + 1.21 + 1.96) / 3)


def test_mixed_is_the_sum_and_batches_average():
    mixed = float(path_consistency_loss(ADV, V_BAR, R, "mixed"))
    assert mixed == pytest.approx(0.5 * (0.49 + 0.09 + 1.96) / 3 + 0.5 * (0.16 + 1.21 + 1.96) / 3)
    two = path_consistency_loss(ADV.repeat(2, 1), V_BAR.repeat(2, 1), R.repeat(2), "mixed")
    assert float(two) == pytest.approx(mixed)


def test_a_consistent_episode_has_zero_loss():
    # Vbar = 0 everywhere: A must be 0, 0, R at the single steps and sum to R from each step
    adv = torch.tensor([[0.0, 0.0, 1.5]])
    assert float(path_consistency_loss(adv, torch.zeros(1, 3), torch.tensor([1.5]), "mixed")) == 0.0


def test_reference_distributions():
    head = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # V = 3 tokens, H = 2
    banned = torch.tensor([False, False, True])
    h = torch.tensor([[2.0, 0.0]])
    prior = reference_logprobs(h, head, banned, prior=True)
    assert torch.allclose(prior[0, :2].exp(), torch.softmax(torch.tensor([2.0, 0.0]), -1))
    assert prior[0, 2] == float("-inf")
    uniform = reference_logprobs(h, head, banned, prior=False)
    assert torch.allclose(uniform[0, :2].exp(), torch.tensor([0.5, 0.5])) and uniform[0, 2] == float("-inf")


def test_the_one_z_score():
    raw = torch.tensor([1.0, 2.0, 3.0, 6.0])
    z = batch_zscore(raw, eps=0.0)
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-6) and float(z.std(unbiased=False)) == pytest.approx(1.0)
    stats = RunningStats()
    stats.update([1.0, 2.0])
    stats.update(torch.tensor([3.0, 6.0]))  # merged batch by batch = all at once
    assert (stats.count, stats.mean) == (4, pytest.approx(3.0))
    assert stats.std == pytest.approx(float(raw.std(unbiased=False)))
    assert torch.allclose(stats.normalize(raw, eps=0.0), z)
