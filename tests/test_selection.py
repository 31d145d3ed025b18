"""Selection rules: best on dev (RLPrompt's protocol) or best on train and dev pooled, the same
rule for every method, its extra train scores charged to the budget."""

from __future__ import annotations

import pytest

from rlprompt.agents import get_agent_class
from rlprompt.agents.core.tracking import BestTracker, Candidate
from rlprompt.errors import ConfigError
from rlprompt.lm import ScoringEngine
from rlprompt.rewards.evaluate import evaluate_prompts

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def task():
    from rlprompt.tasks import demo_task

    return demo_task(n_train=32, n_dev=16, n_test=16)  # train and dev of different sizes: the weights matter


@pytest.fixture
def engine(sharp_lm, task) -> ScoringEngine:
    return ScoringEngine(sharp_lm, task.verbalizers, task.template)


def random_search(engine, task, selection: str):
    cls = get_agent_class("random")
    return cls(engine, task, cls.config_class(seed=0, prompt_length=2, batch_size=8, keep_top=50,
                                              selection=selection, vocab="words", max_vocab=64))


@pytest.mark.parametrize("bad", ["best", "", "Pooled", None])
def test_an_unknown_rule_is_refused_in_one_line(bad):
    cls = get_agent_class("random")
    with pytest.raises(ConfigError, match="selection .* is not known; choose one of 'dev', 'pooled'"):
        cls.config_class(selection=bad)


def test_the_pooled_accuracy_orders_the_candidates():
    tracker = BestTracker(keep=3)
    tracker.offer(Candidate(prompt=(1,), text="a", dev_accuracy=0.9, dev_score=0.0, pooled_accuracy=0.6))
    tracker.offer(Candidate(prompt=(2,), text="b", dev_accuracy=0.7, dev_score=0.0, pooled_accuracy=0.8))
    assert [c.text for c in tracker.top] == ["b", "a"]
    plain = BestTracker(keep=3)
    plain.offer(Candidate(prompt=(1,), text="a", dev_accuracy=0.9, dev_score=0.0))
    plain.offer(Candidate(prompt=(2,), text="b", dev_accuracy=0.7, dev_score=0.0))
    assert [c.text for c in plain.top] == ["a", "b"]


@pytest.mark.parametrize("selection", ["dev", "pooled"])
def test_a_check_costs_dev_and_with_pooled_also_train(engine, task, selection):
    agent = random_search(engine, task, selection)
    n_train, n_dev = len(task.texts("train")), len(task.texts("dev"))
    expected = n_dev + (n_train if selection == "pooled" else 0)
    assert agent.selection_examples == expected
    before = engine.counters.example_evals
    agent.evaluate_dev([list(engine.prompt_tokens(" the movie")), list(engine.prompt_tokens(" a film"))])
    assert engine.counters.example_evals - before == 2 * expected


def test_pooled_selection_weights_train_and_dev_by_their_sizes(engine, task):
    agent = random_search(engine, task, "pooled")
    agent.learn(12, progress=False)
    top = agent.tracker.top
    assert len(top) >= 3
    n_train, n_dev = len(task.texts("train")), len(task.texts("dev"))
    train = evaluate_prompts(engine, task, [list(c.prompt) for c in top], split="train")
    for c, t in zip(top, train, strict=True):
        assert c.pooled_accuracy == pytest.approx((t.accuracy * n_train + c.dev_accuracy * n_dev) / (n_train + n_dev))
    assert [c.pooled_accuracy for c in top] == sorted((c.pooled_accuracy for c in top), reverse=True)
    assert agent.summary().prompt_evals <= 12 + 1e-9  # the extra train scores stay inside the budget


def test_the_pooled_order_survives_save_and_load(engine, task, tmp_path):
    agent = random_search(engine, task, "pooled")
    agent.learn(12, progress=False)
    path = agent.save(tmp_path / "prompt.json")
    loaded = type(agent).load(path, engine, task)
    assert [c.text for c in loaded.tracker.top] == [c.text for c in agent.tracker.top]
    assert loaded.predict() == agent.predict()


def test_compare_applies_the_rule_to_every_method_and_keeps_old_folders(tiny_model_dir, tmp_path):
    from rlprompt.experiments import CompareConfig, compare
    from rlprompt.experiments.config import config_differences

    cfg = CompareConfig(model=str(tiny_model_dir), seeds=[0], methods=["manual", "random"], budget=6,
                        prompt_length=1, selection="pooled", options={"random": {"batch_size": 4}})
    records = {r["method"]: r for r in compare(cfg, tmp_path / "cmp", progress=False).records}
    assert records["random"]["options"]["selection"] == "pooled"
    assert records["random"]["prompt_evals"] <= 6 + 1e-9
    # manual scores its prompts on dev and on train: 2 evaluations each on the demo task's equal splits
    n_manual = len(records["manual"]["candidates"])
    assert records["manual"]["example_evals"] > n_manual * 32
    # a config.json written before the rule existed reads as selection="dev", no difference
    old = CompareConfig(model=str(tiny_model_dir), seeds=[0], methods=["random"], budget=6)
    stored = CompareConfig.from_dict({k: v for k, v in old.as_dict().items() if k != "selection"})
    assert stored.selection == "dev" and config_differences(stored, old) == []
    assert config_differences(stored, cfg)  # but dev-selected results are no fit for a pooled comparison


def test_compare_refuses_an_unknown_rule(tiny_model_dir):
    from rlprompt.experiments import CompareConfig

    with pytest.raises(ConfigError, match="--selection 'best' is not known"):
        CompareConfig(model=str(tiny_model_dir), selection="best")
