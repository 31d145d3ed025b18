"""Every agent, env and the gradient baseline run on a bfloat16 task LM (the auto dtype on a
CPU with native bf16, and on CUDA): a short learn() must finish, select a prompt, and report
finite dev and test accuracies equal to the agent's own re-evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlprompt.agents import get_agent_class
from rlprompt.lm import ScoringEngine
from rlprompt.lm.loading import FrozenLM, _freeze

pytestmark = pytest.mark.usefixtures("one_thread")

SB3_DISCRETE = {"prompt_length": 2, "n_envs": 4, "vocab": "words", "max_vocab": 32, "examples_per_episode": None}
SB3_SOFT = {"prompt_length": 2, "n_envs": 4, "intrinsic_dim": 8, "examples_per_episode": None}
AGENTS = {
    "random": {"prompt_length": 2, "batch_size": 4},
    "lm-prior": {"prompt_length": 2, "batch_size": 4},
    "cma": {"prompt_length": 2, "popsize": 4, "intrinsic_dim": 8},
    "soft-prompt": {"prompt_length": 2, "batch_size": 8},
    "sql": {"prompt_length": 2, "batch_size": 4, "vocab": "words", "max_vocab": 32},
    "ppo": {**SB3_DISCRETE, "n_steps": 2, "batch_size": 8},
    "a2c": {**SB3_DISCRETE, "n_steps": 2},
    "maskable-ppo": {**SB3_DISCRETE, "n_steps": 2, "batch_size": 8},
    "ppo-soft": {**SB3_SOFT, "n_steps": 2, "batch_size": 8},
    "sac": {**SB3_SOFT, "learning_starts": 4, "batch_size": 8},
    "td3": {**SB3_SOFT, "learning_starts": 4, "batch_size": 8},
    "grpo": {"prompt_length": 2, "num_generations": 2, "prompts_per_step": 1},
}


@pytest.fixture(scope="module")
def bf16_lm(tiny_lm) -> FrozenLM:
    import copy

    model = copy.deepcopy(tiny_lm.model).to(torch.bfloat16)
    return _freeze("tiny-llama-bf16", model, tiny_lm.tokenizer, "causal", torch.device("cpu"))


@pytest.fixture
def engine(bf16_lm, great_task) -> ScoringEngine:
    return ScoringEngine(bf16_lm, great_task.verbalizers, great_task.template)


def test_the_engine_runs_in_bfloat16(engine, great_task):
    assert next(engine.model.parameters()).dtype == torch.bfloat16
    scores = engine.score([" great", " It was"], great_task.texts("dev"))
    assert scores.shape == (2, len(great_task.texts("dev")), 2) and torch.isfinite(scores).all()


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_agent_learns_in_bfloat16(engine, great_task, name):
    cls = get_agent_class(name)
    options = dict(AGENTS[name])
    fields = {f for f in cls.config_class.__dataclass_fields__}
    options = {k: v for k, v in options.items() if k in fields}
    agent = cls(engine, great_task, cls.config_class(seed=0, **options))
    agent.learn(24, progress=False)
    summary = agent.summary(test=True)
    assert agent.tracker.best is not None, f"{name}: no prompt selected ({summary.message})"
    assert summary.dev_accuracy is not None and math.isfinite(summary.dev_accuracy)
    assert summary.test_accuracy == pytest.approx(agent.evaluate("test").accuracy)
    assert summary.prompt_evals <= 24


@pytest.mark.parametrize("env_id", ["rlprompt/DiscretePrompt-v0", "rlprompt/SoftPrompt-v0"])
def test_envs_step_in_bfloat16(engine, great_task, env_id):
    import gymnasium as gym

    import rlprompt  # noqa: F401  (registers the ids)

    env = gym.make(env_id, task=great_task, engine=engine, prompt_length=2, reward_mode="dense")
    obs, _ = env.reset(seed=0)
    rewards = []
    for _ in range(2):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        rewards.append(reward)
    assert terminated or truncated
    assert np.isfinite(rewards).all()
