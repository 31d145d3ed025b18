"""The budget unit: one prompt scored on the whole training split; a call on k of n examples
costs k/n, so equal budgets mean equal example evaluations for every method."""

from __future__ import annotations

import pytest
import torch

from rlprompt.agents import get_agent_class
from rlprompt.lm import ScoringEngine
from rlprompt.rewards.evaluate import evaluate_prompts

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = {"vocab": "words", "max_vocab": 32}


@pytest.fixture
def engine(tiny_lm, great_task) -> ScoringEngine:
    return ScoringEngine(tiny_lm, great_task.verbalizers, great_task.template)


def spent_on(engine, fn) -> float:
    before = engine.counters.example_evals
    fn()
    return engine.counters.example_evals - before


@pytest.mark.parametrize("obs", ["tokens", "hidden"])
def test_sb3_budget_is_the_engines_example_evaluations(engine, great_task, obs):
    """With obs="hidden" an episode's prompt is read at every step: the budget must see that
    (it used to count n_envs + 1 per batch whatever the observation cost)."""
    cls = get_agent_class("ppo")
    agent = cls(engine, great_task, cls.config_class(seed=0, prompt_length=3, n_envs=4, n_steps=3, batch_size=12,
                                                     examples_per_episode=8, obs=obs, **VOCAB))
    n = len(great_task.texts("train"))
    spent = spent_on(engine, lambda: agent.learn(12, progress=False))
    summary = agent.summary()
    assert summary.example_evals == spent and summary.prompt_evals == pytest.approx(spent / n)
    assert summary.prompt_evals <= 12 + 1e-9
    assert summary.prompt_evals >= 12 - 4  # it stops only when another batch and a dev check do not fit


def test_an_episode_on_half_the_examples_costs_half(engine, great_task):
    cls = get_agent_class("ppo")
    agent = cls(engine, great_task, cls.config_class(seed=0, prompt_length=1, n_envs=4, n_steps=1, batch_size=4,
                                                     examples_per_episode=16, **VOCAB))
    assert agent._episode_batch_cost() == pytest.approx(4 * 16 / 32)  # 4 episodes x 16 of 32 examples
    agent.learn(10, progress=False)
    dev_checks = len(agent.on_dev)  # prompts scored on the 32 dev examples: 1 each
    assert agent.summary().prompt_evals == pytest.approx(agent.episodes * 0.5 + dev_checks)


def test_every_method_spends_the_same_example_evaluations(engine, great_task):
    """Equal budget = equal example evaluations, whatever the batch each method scores on."""
    budget, n = 16, len(great_task.texts("train"))
    for name, options in (("random", {"prompt_length": 2, "batch_size": 4}),
                          ("sql", {"prompt_length": 2, "batch_size": 4, "examples_per_episode": 8, **VOCAB}),
                          ("soft-prompt", {"prompt_length": 2, "batch_size": 8})):
        cls = get_agent_class(name)
        agent = cls(engine, great_task, cls.config_class(seed=0, **options))
        agent.learn(budget, progress=False)
        s = agent.summary()
        assert s.example_evals <= budget * n, name
        assert s.example_evals >= (budget - 2) * n, (name, s.example_evals)  # within one round of the budget


def test_soft_prompts_are_evaluated_where_the_agents_put_them(engine, great_task):
    """evaluate_prompts used to place soft prompts as a prefix by default while the engine and
    the agents default to the suffix: the same soft prompt got two different accuracies."""
    soft = torch.randn(2, engine.lm.input_embeddings().embedding_dim, generator=torch.Generator().manual_seed(0))
    default = evaluate_prompts(engine, great_task, [soft], split="dev", reward="log-likelihood")[0]
    suffix = engine.score_soft(soft.unsqueeze(0), great_task.texts("dev"))
    from rlprompt.rewards import log_likelihood

    expected = float(log_likelihood(suffix.float(), great_task.label_tensor("dev").to(suffix.device))[0])
    assert default.reward == pytest.approx(expected, abs=1e-5)
