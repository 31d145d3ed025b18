"""Risk-seeking advantages (PPO's ``risk_seeking``): values by hand, and the option's wiring."""

from __future__ import annotations

import numpy as np
import pytest

from rlprompt.agents.rl.sb3 import algorithms as sb3
from rlprompt.agents.rl.sb3.risk import risk_seeking_advantages
from rlprompt.errors import ConfigError


def test_advantages_by_hand():
    # Two envs, 4 steps, episodes of 2 steps with the reward on the last: returns 1, 3 (env 0)
    # and 2, 6 (env 1). The top half's bar is the median, 2.5; the std of [1, 3, 2, 6] is
    # sqrt(3.5). Episodes 3 and 6 clear it by 0.5 and 3.5; the others get zero.
    rewards = np.array([[0, 0], [1, 2], [0, 0], [3, 6]], dtype=np.float32)
    starts = np.array([[1, 1], [0, 0], [1, 1], [0, 0]])
    adv = risk_seeking_advantages(rewards, starts, np.array([True, True]), 0.5)
    scale = np.sqrt(3.5)
    expected = np.array([[0, 0], [0, 0], [0.5 / scale, 3.5 / scale], [0.5 / scale, 3.5 / scale]])
    np.testing.assert_allclose(adv, expected, rtol=1e-5)


def test_episodes_cut_by_the_rollout_get_zero():
    # Env 0's second episode is still running at the end (last_dones False); env 1's first began
    # before the rollout (no start at step 0). Only env 0's first (return 4) and env 1's second
    # (return 1) are finished: with share 1 the bar is their minimum, 1.
    rewards = np.array([[0, 5], [4, 0], [0, 1]], dtype=np.float32)
    starts = np.array([[1, 0], [0, 1], [1, 0]])
    adv = risk_seeking_advantages(rewards, starts, np.array([False, True]), 1.0)
    scale = np.std([4.0, 1.0])
    np.testing.assert_allclose(adv[:, 0], [3 / scale, 3 / scale, 0], rtol=1e-5)
    np.testing.assert_allclose(adv[:, 1], [0, 0, 0], atol=1e-7)


def test_no_finished_episode_and_bad_arguments():
    assert not risk_seeking_advantages(np.ones((2, 3)), np.zeros((2, 3)), np.zeros(3, bool), 0.5).any()
    with pytest.raises(ValueError, match="share"):
        risk_seeking_advantages(np.ones((2, 1)), np.ones((2, 1)), np.ones(1, bool), 0.0)
    with pytest.raises(ValueError, match="do not match"):
        risk_seeking_advantages(np.ones((2, 1)), np.ones((3, 1)), np.ones(1, bool), 0.5)


@pytest.mark.parametrize("bad", [0, 1.5, -0.2, True, "half"])
def test_risk_seeking_config_errors(bad):
    with pytest.raises(ConfigError, match="risk_seeking"):
        sb3.PPOConfig(risk_seeking=bad)


def test_ppo_trains_on_the_risk_seeking_advantages(great_engine, great_task):
    cfg = sb3.PPOConfig(seed=0, n_envs=8, n_steps=2, batch_size=16, prompt_length=2, risk_seeking=0.25)
    agent = sb3.PPOAgent(great_engine, great_task, cfg)
    assert agent.model.normalize_advantage is False  # centring would give the zeros a sign
    seen = []
    train = agent.model.train

    def spy() -> None:  # what each PPO update trains on
        buffer = agent.model.rollout_buffer
        seen.append((buffer.rewards.copy(), buffer.advantages.copy()))
        train()

    agent.model.train = spy
    agent.learn(60, progress=False)
    assert seen and any((adv > 0).any() for _, adv in seen)
    for rewards, adv in seen:  # one episode of 2 steps per env and rollout, the reward on the last
        returns = rewards.sum(0)
        bar = np.quantile(returns, 0.75)
        expected = np.where(returns >= bar, (returns - bar) / (returns.std() + 1e-8), 0.0)
        np.testing.assert_allclose(adv, np.broadcast_to(expected, adv.shape), rtol=1e-4, atol=1e-6)
