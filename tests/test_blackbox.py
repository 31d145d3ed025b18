"""Black-box baselines (CMA-ES, random search, LM-prior sampling) and the shared agent pieces."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import assert_accuracy, assert_selected_is_best_on_dev, placement_of, word_sentiment_task

from rlprompt.agents import (
    CMAES,
    BestTracker,
    Budget,
    Candidate,
    CMAESConfig,
    LMPriorConfig,
    LMPriorSampling,
    RandomSearch,
    RandomSearchConfig,
    TopKGate,
    get_agent_class,
    get_config_class,
    list_agents,
)
from rlprompt.agents.core.tracking import read_curve
from rlprompt.agents.search.lm_prior import sample_continuations
from rlprompt.envs.vocab import candidate_vocab
from rlprompt.errors import ConfigError
from rlprompt.lm import ScoringEngine
from rlprompt.tasks import Task, demo_task


@pytest.fixture()
def task() -> Task:
    return word_sentiment_task(16)


@pytest.fixture()
def engine(tiny_lm, task) -> ScoringEngine:
    return ScoringEngine(tiny_lm, task.verbalizers, task.template)


# -- each baseline runs within its budget ------------------------------------------------------


@pytest.mark.parametrize(("method", "limit"), [("cma", 45), ("random", 50), ("lm-prior", 37)])
def test_runs_exactly_within_budget_and_writes_outputs(tmp_path, sharp_lm, method, limit):
    # the sharp LM on the demo task: prompts differ in dev and in test accuracy (0.25 to 0.75),
    # so a wrong selection or a test accuracy taken from elsewhere shows
    task = demo_task(n_train=16, n_dev=16, n_test=32)
    engine = ScoringEngine(sharp_lm, task.verbalizers, task.template)
    cls = get_agent_class(method)
    small = {"cma": {"popsize": 6, "intrinsic_dim": 20}, "random": {"batch_size": 16},
             "lm-prior": {"batch_size": 8}}[method]
    agent = cls(engine, task, get_config_class(method)(**small), out_dir=tmp_path)
    before = engine.counters.copy()
    agent.learn(limit, progress=False)
    summary = agent.write_outputs(test=True)
    assert summary.prompt_evals == limit == (engine.counters - before).prompt_evals - 1  # minus the test pass
    assert summary.status == "completed"
    # the test accuracy is the selected prompt's, on the whole test split
    assert summary.test_accuracy == agent.evaluate("test").accuracy
    assert_accuracy(summary.test_accuracy, engine, task, agent.predict(), "test", placement=placement_of(agent))
    assert_selected_is_best_on_dev(agent)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["test_accuracy"] == summary.test_accuracy and saved["method"] == method
    assert [p.prompt_evals for p in read_curve(tmp_path / "curve.csv")] == [p.prompt_evals for p in agent.tracker.curve]
    assert (tmp_path / cls.artefact_name).is_file()


def test_random_search_draws_from_the_env_vocabulary(engine, task, tiny_lm):
    agent = RandomSearch(engine, task, RandomSearchConfig(prompt_length=3, seed=1))
    vocab = candidate_vocab(tiny_lm.tokenizer, tiny_lm.input_embeddings().num_embeddings, "words", 4096)
    assert np.array_equal(agent.vocab, vocab)
    prompts = agent.propose(50, np.random.default_rng(0))
    assert len(prompts) == 50 and all(len(p) == 3 and set(p) <= set(vocab.tolist()) for p in prompts)
    agent.learn(30, progress=False)
    assert set(agent.predict()) <= set(vocab.tolist()) and len(agent.predict()) == 3
    assert agent.extra["candidates"] <= 30


def test_discrete_save_and_load(tmp_path, engine, task):
    agent = RandomSearch(engine, task, RandomSearchConfig(prompt_length=2))
    agent.learn(20, progress=False)
    path = agent.save(tmp_path / "prompt.json")
    again = RandomSearch.load(path, engine, task)
    assert again.predict() == agent.predict() and again.config.prompt_length == 2
    assert again.evaluate("dev").accuracy == pytest.approx(agent.tracker.best.dev_accuracy)
    assert json.loads(path.read_text())["prompt"] == engine.decode(agent.predict())


def test_lm_prior_samples_and_charges_its_tokens(engine, task, tiny_lm):
    agent = LMPriorSampling(engine, task, LMPriorConfig(batch_size=8, prompt_length=4, top_k=20, seed=5))
    assert agent.description == "Is the text terrible or great?"
    agent.learn(24, progress=False)
    spent = agent.budget.spent()
    engine_only = spent.forward_tokens - agent.budget.extra.forward_tokens
    assert agent.budget.extra.prompt_evals == 0 and agent.budget.extra.forward_tokens > 0
    assert spent.forward_tokens > engine_only > 0
    assert len(agent.predict()) == 4
    # sampling is reproducible from its generator, and avoids the banned (special) tokens
    a, _ = sample_continuations(tiny_lm, ["it was great ."] * 3, 4, torch.Generator().manual_seed(0))
    b, cost = sample_continuations(tiny_lm, ["it was great ."] * 3, 4, torch.Generator().manual_seed(0),
                                   banned=torch.tensor(tiny_lm.tokenizer.all_special_ids))
    assert a.shape == (3, 4) and cost["forward_calls"] == 4
    assert not set(b.flatten().tolist()) & set(tiny_lm.tokenizer.all_special_ids)


def test_cma_prompts_stay_in_the_embedding_range(engine, task, tiny_lm):
    agent = CMAES(engine, task, CMAESConfig(popsize=6, intrinsic_dim=16, prompt_length=3, dev_top_k=2))
    agent.learn(30, progress=False)
    prompt = agent.predict()
    table = tiny_lm.input_embeddings().weight.detach()
    assert prompt.shape == (3, 32)
    assert float(prompt.std()) < 3 * float(table.std())
    assert agent.extra["generations"] >= 3


@pytest.mark.parametrize("budget", [100, 77])
def test_cma_ends_cleanly_when_the_budget_cuts_a_generation(engine, task, budget):
    # The last generation is only partly scored; CMA-ES must not be asked again without a
    # tell (its TPA step-size adaptation raises). These defaults failed before the fix.
    agent = CMAES(engine, task, CMAESConfig(seed=13))
    agent.learn(budget, progress=False)
    assert agent.status == "completed" and agent.summary().prompt_evals <= budget


def test_prefix_placement_for_cma(engine, task):
    agent = CMAES(engine, task, CMAESConfig(popsize=4, intrinsic_dim=8, placement="prefix"))
    agent.learn(12, progress=False)
    assert agent.summary().prompt_evals == 12


# -- shared pieces ---------------------------------------------------------------------------


def test_best_tracker_orders_by_dev_accuracy_then_likelihood():
    tracker = BestTracker(keep=2)
    assert tracker.offer(Candidate((1,), "a", 0.5, -1.0))
    assert not tracker.offer(Candidate((2,), "b", 0.5, -2.0))
    assert tracker.offer(Candidate((3,), "c", 0.5, -0.5))  # same accuracy, more likely labels
    assert not tracker.offer(Candidate((4,), "c", 0.9, 0.0))  # the same text again: ignored
    assert tracker.offer(Candidate((5,), "d", 0.75, -9.0))
    assert [c.text for c in tracker.top] == ["d", "c"]
    assert tracker.offer(Candidate((6,), "e", 1.0, float("nan")))  # NaN tie-break counts as worst, not an error


def test_top_k_gate():
    gate = TopKGate(2)
    assert gate.admit([1.0, 0.5, 2.0, 0.1, math.nan]) == [0, 1, 2]
    assert gate.admit([0.2, 1.5, 3.0]) == [1, 2]


def test_budget_charges_and_close(engine):
    budget = Budget(engine, 10, train_examples=4)  # a training split of 4 examples
    engine.score([" it was"], ["a b .", "c d ."])  # 2 of 4 examples: half a prompt evaluation
    assert budget.used == 0.5
    budget.charge(example_evals=6, forward_tokens=7)  # e.g. a backward pass
    assert budget.used == 2 and budget.remaining == 8 and budget.take(20) == 8 and budget.room(2) == 16
    assert budget.cost(3, 2) == 1.5
    budget.close()
    engine.score([" it was"], ["a b ."])  # after close: not charged
    assert budget.used == 2 and budget.spent().forward_tokens >= 7


def test_budget_is_fractional_and_refuses_nonsense(engine):
    budget = Budget(engine, 0.5, train_examples=4)
    assert budget.room() == 0 and budget.room(2) == 1 and not budget.exhausted
    engine.score([" it was"], ["a b .", "c d ."])
    assert budget.exhausted and budget.remaining == 0
    for bad in (0, -1, float("inf"), float("nan"), True, "3"):
        with pytest.raises(ConfigError, match="budget must be a positive number"):
            Budget(engine, bad, train_examples=4)


@pytest.mark.parametrize(("cls", "kwargs", "match"), [
    (CMAESConfig, {"popsize": 1}, "popsize must be an integer of at least 2"),
    (CMAESConfig, {"intrinsic_dim": 0}, "intrinsic_dim must be a positive integer"),
    (CMAESConfig, {"placement": "inside"}, "placement 'inside' is not known"),
    (RandomSearchConfig, {"vocab": "letters"}, "vocab 'letters' is not known; use 'words' or 'full'"),
    (RandomSearchConfig, {"prompt_length": 0}, "prompt_length must be a positive integer"),
    (LMPriorConfig, {"context": "{task} {example}"}, "context '{task} {example}' is not a valid template"),
    (LMPriorConfig, {"temperature": 0}, "temperature must be a positive number"),
])
def test_bad_options(cls, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        cls(**kwargs)


def test_registry_and_wrong_config(engine, task):
    assert {"cma", "lm-prior", "random", "soft-prompt"} <= set(list_agents())
    with pytest.raises(ConfigError, match="RandomSearch takes a RandomSearchConfig, got CMAESConfig"):
        RandomSearch(engine, task, CMAESConfig())
    with pytest.raises(ConfigError, match="has no prompt yet; call learn"):
        RandomSearch(engine, task).predict()


# -- where a soft search starts (init) ----------------------------------------------------------


def test_cma_lm_prior_anchor_is_charged_and_checked_on_dev(engine, task):
    cfg = CMAESConfig(popsize=4, intrinsic_dim=8, prompt_length=3, init="lm-prior", init_samples=5, dev_top_k=1)
    agent = CMAES(engine, task, cfg)
    agent.learn(20, progress=False)
    assert agent.summary().prompt_evals <= 20
    anchor = agent._p0
    assert anchor is not None and anchor.shape == (3, 32)
    table = engine.lm.input_embeddings().weight.detach().float().cpu()
    rows = [int((table - row).abs().sum(-1).argmin()) for row in anchor]
    assert torch.allclose(anchor, table[rows])  # a discrete prompt, read as embeddings
    # the anchor itself was checked on dev, so selection can fall back on it
    assert any(torch.equal(c.prompt, anchor) for c in agent.tracker.top)


def test_best_anchor_scores_lm_prior_samples_and_vocabulary_draws(engine, task, monkeypatch):
    from rlprompt.envs.vocab import candidate_vocab

    cfg = CMAESConfig(popsize=4, intrinsic_dim=8, prompt_length=3, init="best", init_samples=6, dev_top_k=1)
    agent = CMAES(engine, task, cfg)
    scored: list[torch.Tensor] = []
    score = agent.score
    monkeypatch.setattr(agent, "score", lambda prompts, texts: scored.append(prompts) or score(prompts, texts))
    agent.learn(20, progress=False)
    first = scored[0].float().cpu()  # the anchor's candidates, scored before any search step
    assert first.shape[0] == 6
    table = engine.lm.input_embeddings().weight.detach().float().cpu()
    ids = (first[:, :, None, :] - table[None, None]).abs().sum(-1).argmin(-1)  # [6, 3] token ids
    words = set(candidate_vocab(engine.lm.tokenizer, table.shape[0]).tolist())
    assert all(int(t) in words for t in ids[3:].flatten())  # the second half: random search's words
    assert any(torch.equal(agent._p0, first[i]) for i in range(6))  # the anchor is the best of them
    assert agent.summary().prompt_evals <= 20


def test_soft_start_options_are_checked():
    with pytest.raises(ConfigError, match="init_text"):
        CMAESConfig(init="text")
    with pytest.raises(ConfigError, match="init"):
        CMAESConfig(init="nowhere")
    with pytest.raises(ConfigError, match="init_samples"):
        CMAESConfig(init="lm-prior", init_samples=0)


def test_cma_lm_prior_anchor_needs_a_budget(engine, task):
    agent = CMAES(engine, task, CMAESConfig(popsize=4, intrinsic_dim=8, init="lm-prior"))
    with pytest.raises(ConfigError, match="init='lm-prior'"):
        agent.learn(1, progress=False)
