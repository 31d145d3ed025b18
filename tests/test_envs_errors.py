"""The environments refuse bad input: actions outside the space, steps before reset or after the end,
bad arguments, an engine of another task, a reward returning NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_envs import WORDS, discrete

from rlprompt.envs import (
    DiscretePromptEnv,
    InvalidActionError,
    PromptVectorEnv,
    ResetNeededError,
    SoftPromptEnv,
)
from rlprompt.errors import ConfigError, RewardError
from rlprompt.lm import ScoringEngine
from rlprompt.tasks import demo_task


@pytest.fixture(scope="module")
def task():
    return demo_task()


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("action", [len(WORDS), -1, 1.5, "a", np.array([1, 2])])
def test_action_outside_space(tiny_lm, task, action):
    env = discrete(tiny_lm, task)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=rf"outside the action space Discrete\({len(WORDS)}\)"):
        env.step(action)


@pytest.mark.parametrize(
    ("action", "message"),
    [(np.full(4, 1.5), r"outside \[-1, 1\]"), (np.zeros(3), r"shape \[1, 3\]"), (np.full(4, np.nan), "NaN"),
     ("x", "non-numeric")],
)
def test_soft_action_outside_space(tiny_lm, task, action, message):
    env = SoftPromptEnv(task, tiny_lm, intrinsic_dim=4)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=message):
        env.step(action)


def test_step_before_reset_and_after_done(tiny_lm, task):
    env = discrete(tiny_lm, task, prompt_length=1)
    with pytest.raises(ResetNeededError, match=r"call reset\(\) before step\(\)"):
        env.step(0)
    env.reset(seed=0)
    env.step(0)
    with pytest.raises(ResetNeededError, match=r"ended after 1 step\(s\); call reset\(\)"):
        env.step(0)
    venv = PromptVectorEnv(2, env)
    with pytest.raises(ResetNeededError):
        venv.step(np.array([0, 0]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt_length": 0}, "prompt_length must be a positive number"),
        ({"prompt_length": 300}, "beyond the 256-token context"),
        ({"prompt_length": 250}, r"plus the longest train example \(\d+ tokens\) is beyond the 256-token context"),
        ({"vocab": []}, "candidate vocab .* is empty"),
        ({"vocab": [" great", " great"]}, "repeats"),
        ({"vocab": [" wonderfully"]}, "is 3 tokens"),
        ({"vocab": [10_000]}, "outside the vocabulary"),
        ({"vocab": "nouns"}, "vocab 'nouns' is not known"),
        ({"reward_mode": "sparse"}, "reward_mode 'sparse'"),
        ({"obs": "pixels"}, "obs 'pixels'"),
        ({"render_mode": "human"}, "render_mode 'human'"),
        ({"examples_per_episode": 0}, r"examples_per_episode must lie in 1\.\.32"),
        ({"reward": "accuracyy"}, "did you mean 'accuracy'"),
    ],
)
def test_bad_arguments(tiny_lm, task, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        discrete(tiny_lm, task, **kwargs)


def test_engine_must_match_task(tiny_lm, task):
    engine = ScoringEngine(tiny_lm, [" bad", " good"])
    with pytest.raises(ConfigError, match="engine verbalizers"):
        discrete(tiny_lm, task, engine=engine)


def test_reward_returning_nan(tiny_lm, task):
    def broken(logprobs, labels):
        return torch.full((logprobs.shape[0],), float("nan"))

    env = discrete(tiny_lm, task, reward=broken)
    env.reset(seed=0)
    for a in range(4):
        env.step(a)
    with pytest.raises(RewardError, match="broken' returned 1 non-finite value"):
        env.step(4)


def test_vector_env_resets_all_together(tiny_lm, task):
    venv = PromptVectorEnv(2, DiscretePromptEnv, task=task, model=tiny_lm, vocab=WORDS)
    with pytest.raises(ConfigError, match="lockstep"):
        venv.reset(options={"reset_mask": np.array([True, False])})
    venv.reset(seed=0)
    for bad in (np.array([0, 99]), 3, np.array([0, 1, 2])):
        with pytest.raises(InvalidActionError, match="2 integers"):
            venv.step(bad)
