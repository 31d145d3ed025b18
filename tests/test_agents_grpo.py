"""The prompt-writing policy LM trained with TRL (GRPO / RLOO) and `rlprompt train --agent grpo`.

The learning tests use the synthetic task of tests/test_agents_rl.py on the tiny random LM:
every label is " great" and the reward is the label's log-likelihood, so the reward of a
written prompt says how much it pulls the LM towards " great". The policy is the tiny LM's
own weights (a trainable copy, or LoRA adapters on the shared weights); it writes from
the whole 420-token vocabulary, nearly uniformly at first.
"""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest
import torch
from conftest import assert_accuracy, assert_run_reports_its_prompt, assert_selected_is_best_on_dev, one_error_line

from rlprompt.agents.registry import get_agent_class, get_config_class
from rlprompt.agents.rl.grpo.agent import GRPOAgent, GRPOAgentConfig, RLOOAgent, RLOOAgentConfig, shared_copy
from rlprompt.cli.train import resolve_agent
from rlprompt.errors import ConfigError
from rlprompt.lm import ScoringEngine
from rlprompt.lm.loading import FrozenLM
from rlprompt.rewards import register_reward
from rlprompt.tasks import load_task

SYNTH = {"reward": "log-likelihood", "num_generations": 8, "prompts_per_step": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


def first_last(agent: GRPOAgent, n: int = 8) -> tuple[float, float]:
    """Mean training reward of the first and the last n steps."""
    means = [h["reward_mean"] for h in agent.history]
    assert len(means) >= 3 * n, f"only {len(means)} steps"
    return statistics.fmean(means[:n]), statistics.fmean(means[-n:])


# -- learning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [GRPOAgent, RLOOAgent], ids=["grpo", "rloo"])
def test_reward_rises_on_the_synthetic_task(great_engine, great_id, great_task, cls):
    cfg = cls.config_class(seed=0, prompt_length=1, lora=False, learning_rate=1e-2, **SYNTH)
    agent = cls(great_engine, great_task, cfg)
    agent.learn(300, progress=False)
    first, last = first_last(agent)
    # A random prompt scores about -0.70; the policy climbs to -0.6 or better within ~50 steps.
    assert last > first + 0.07, (first, last)
    assert agent.predict() == [great_id]  # best on dev: the right token itself
    assert agent.budget.used <= 300 and agent.summary().dev_accuracy == 1.0
    assert_selected_is_best_on_dev(agent)
    assert agent.extra["algorithm"] == cfg.algorithm.value and agent.extra["steps"] == len(agent.history)


def test_lora_policy_shares_the_task_lm_and_leaves_it_unchanged(great_engine, great_id, great_task):
    model = great_engine.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    texts = great_task.texts("dev")
    scores_before = great_engine.score([[great_id]], texts)
    agent = GRPOAgent(great_engine, great_task, GRPOAgentConfig(seed=1, prompt_length=2, learning_rate=5e-2, **SYNTH))
    # The policy's base weights are the task LM's tensors (no copy), behind their own modules.
    base = agent.policy.get_base_model()
    assert base is not model
    assert base.model.layers[0].self_attn.q_proj.base_layer.weight is model.model.layers[0].self_attn.q_proj.weight
    assert base.get_input_embeddings().weight is model.get_input_embeddings().weight
    trainable = {n: p.clone() for n, p in agent.policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    agent.learn(60, progress=False)
    changed = [n for n, p in agent.policy.named_parameters() if p.requires_grad and not torch.equal(p, trainable[n])]
    assert changed, "no LoRA weight moved"
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the frozen task LM changed"
    assert not any(p.requires_grad for p in model.parameters())
    assert torch.equal(great_engine.score([[great_id]], texts), scores_before)
    assert type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear  # no adapter on the task LM


def test_shared_copy_shares_tensors_not_modules(tiny_lm):
    copy_ = shared_copy(tiny_lm.model)
    assert copy_ is not tiny_lm.model and copy_.config is not tiny_lm.model.config
    for (name, a), (_, b) in zip(tiny_lm.model.named_parameters(), copy_.named_parameters(), strict=True):
        assert a is b, name


@pytest.mark.parametrize("budget", [37, 100])
def test_budget_is_spent_exactly(great_engine, great_task, budget):
    agent = GRPOAgent(great_engine, great_task, GRPOAgentConfig(seed=3, prompt_length=3, lora=False, learning_rate=1e-3,
                                                          examples_per_episode=8, **SYNTH))
    start, n = great_engine.counters.example_evals, len(great_task.texts("train"))
    agent.learn(budget, progress=False)
    spent = (great_engine.counters.example_evals - start) / n  # a prompt on 8 of 32 examples costs 0.25
    summary = agent.summary()
    assert spent == summary.prompt_evals == budget, (spent, summary.prompt_evals)
    assert summary.status == "completed" and summary.forward_tokens > 0 and summary.backward_tokens > 0
    # Test evaluation after learning is not charged.
    agent.evaluate("test")
    assert agent.summary().prompt_evals == budget
    assert_selected_is_best_on_dev(agent)


def test_prompts_are_task_lm_tokens_with_the_template_space(great_engine, great_task):
    agent = GRPOAgent(great_engine, great_task, GRPOAgentConfig(seed=0, prompt_length=4, **SYNTH))
    tok = agent.policy_tokenizer
    ids = tok(" great movie\nignored", add_special_tokens=False).input_ids
    text = agent.completion_text(ids)
    assert text == "great movie"
    assert list(agent.prompt_of(text)) == great_engine.tokenizer(" great movie", add_special_tokens=False).input_ids
    assert agent.completion_text([tok.eos_token_id, *ids]) == ""
    prompts = agent.sample_prompts(6)
    assert len(prompts) == 6 and all("\n" not in p and p == p.strip() for p in prompts)


def test_a_users_reward_plugs_in_unchanged(great_engine, great_task):
    calls = {"n": 0}

    def mean_label_logprob(logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return logprobs.gather(-1, labels.view(1, -1, 1).expand(logprobs.shape[0], -1, 1)).squeeze(-1).mean(-1)

    register_reward("test-grpo-user-reward", mean_label_logprob, overwrite=True)
    agent = GRPOAgent(great_engine, great_task, GRPOAgentConfig(
        seed=0, prompt_length=2, reward="test-grpo-user-reward", num_generations=4, prompts_per_step=1))
    agent.learn(20, progress=False)
    assert calls["n"] >= 2 and agent.budget.used == 20


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"meta_prompt": "Write a prompt for: {example}"}, "has no {description} placeholder"),
    ({"meta_prompt": "{description} {input}"}, r"unknown placeholder\(s\) \['{input}'\]"),
    ({"num_generations": 1}, "num_generations must be an integer >= 2"),
    ({"algorithm": "ppo"}, "algorithm 'ppo' is not known"),
    ({"min_prompt_length": 9, "prompt_length": 4}, "min_prompt_length .9. exceeds prompt_length"),
    ({"top_p": 0}, "top_p must lie in"),
    ({"beta": -1.0}, "beta must be a non-negative number"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        GRPOAgentConfig(**kwargs)


def test_a_policy_that_cannot_generate_is_refused(great_engine, great_task, tiny_lm, tiny_masked_lm):
    with pytest.raises(ConfigError, match="'tiny-roberta' is a masked LM and cannot generate a prompt"):
        GRPOAgent(great_engine, great_task, GRPOAgentConfig(), policy_lm=tiny_masked_lm)
    headless = FrozenLM(model=tiny_lm.model.model, tokenizer=tiny_lm.tokenizer, kind="causal", name="no-head")
    with pytest.raises(ConfigError, match="'no-head' .LlamaModel. cannot generate text"):
        GRPOAgent(great_engine, great_task, GRPOAgentConfig(), policy_lm=headless)
    masked_engine = ScoringEngine(tiny_masked_lm, great_task.verbalizers)
    with pytest.raises(ConfigError, match="the task LM .* is a masked LM"):
        GRPOAgent(masked_engine, great_task, GRPOAgentConfig())


# -- saving -----------------------------------------------------------------------------------


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_save_load_round_trip(great_engine, great_task, tmp_path, lora):
    cls = GRPOAgent if lora else RLOOAgent
    cfg = cls.config_class(seed=2, prompt_length=2, lora=lora, learning_rate=1e-2, **SYNTH)
    agent = cls(great_engine, great_task, cfg)
    agent.learn(40, progress=False)
    path = agent.save(tmp_path / "prompt.json")
    folder = cls.policy_path(path)
    assert (folder / ("adapter_model.safetensors" if lora else "model.safetensors")).exists()
    if lora:
        assert json.loads((folder / "adapter_config.json").read_text())["peft_type"] == "LORA"
    loaded = cls.load(path, great_engine, great_task)
    assert loaded.predict() == agent.predict() and loaded.config == agent.config
    assert loaded.steps == agent.steps > 0
    trained = {n: p for n, p in agent.policy.named_parameters() if p.requires_grad}
    restored = dict(loaded.policy.named_parameters())
    assert all(torch.equal(p, restored[n]) for n, p in trained.items())
    metas = agent.meta_prompts(4)
    assert loaded.sample_prompts(4, greedy=True, metas=metas) == agent.sample_prompts(4, greedy=True, metas=metas)


# -- rlprompt train --------------------------------------------------------------------------


def test_registry_and_resolve_agent():
    assert resolve_agent("grpo", "discrete") is GRPOAgent and resolve_agent("rloo", "discrete") is RLOOAgent
    assert get_agent_class("rloo") is RLOOAgent and get_config_class("grpo") is GRPOAgentConfig
    assert RLOOAgentConfig().algorithm.value == "rloo" and GRPOAgentConfig().algorithm.value == "grpo"
    with pytest.raises(ConfigError, match="agent 'grpo' writes discrete prompts"):
        resolve_agent("grpo", "soft")


def test_train_grpo_end_to_end_tiny(train_cli, tiny_model_dir, tiny_dir_lm, tmp_path, capsys):
    out = tmp_path / "run"
    code = train_cli(["train", "--model", str(tiny_model_dir), "--agent", "grpo", "--budget", "40", "--prompt-length",
                      "2", "--set", "num_generations=4", "--set", "learning_rate=1e-3", "--out", str(out),
                      "--progress", "off", "--dtype", "float32"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "grpo" and summary["status"] == "completed" and summary["prompt_evals"] == 40
    assert summary["test_accuracy"] is not None and summary["config"]["num_generations"] == 4
    assert summary["extra"]["algorithm"] == "grpo" and summary["extra"]["steps"] > 0
    assert_run_reports_its_prompt(out, tiny_dir_lm, load_task("demo"))
    prompt = json.loads((out / "prompt.json").read_text())
    assert prompt["prompt"] == summary["prompt"]
    assert (out / "prompt.policy" / "adapter_model.safetensors").exists()
    header = (out / "logs" / "progress.csv").read_text().splitlines()[0].split(",")
    assert "train/reward" in header and "budget/prompt_evals" in header
    assert (out / "curve.csv").exists()
    assert "best prompt" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--set", "num_generations=1"], "num_generations must be an integer >= 2"),
    (["--set", "meta_prompt=Write a prompt."], "has no {description} placeholder"),
])
def test_train_grpo_bad_input_one_line_errors(train_cli, tiny_model_dir, tmp_path, capsys, args, message):
    code = train_cli(["train", "--model", str(tiny_model_dir), "--agent", "grpo", "--out", str(tmp_path / "r"), *args])
    assert code == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "r" / "summary.json").exists()


@pytest.mark.integration
def test_train_grpo_sst2_end_to_end_smollm(train_cli, smollm32, fsc16, tmp_path, capsys):
    """GRPO with LoRA on SmolLM2 (policy and task LM share the weights) on the shared SST-2 data,
    a tiny budget: it trains, selects on dev and writes every file."""
    from rlprompt.rewards.evaluate import evaluate_prompts

    out = tmp_path / "sst2"
    code = train_cli(["train", "--task", "sst-2", "--data-dir", str(fsc16), "--seed", "42", "--agent", "grpo",
                      "--budget", "16", "--set", "num_generations=4", "--set", "prompts_per_step=1", "--set",
                      "examples_per_episode=8", "--out", str(out), "--progress", "off", "--no-test",
                      "--dtype", "float32"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == smollm32.name and summary["status"] == "completed"
    assert summary["prompt_evals"] == 16 and summary["test_accuracy"] is None
    assert summary["forward_tokens"] > 0 and summary["extra"]["lora"] is True
    assert (out / "prompt.policy" / "adapter_model.safetensors").exists()
    assert (out / "logs" / "progress.csv").exists()
    task = load_task("sst-2", data_dir=fsc16, seed=42)
    assert_run_reports_its_prompt(out, smollm32, task)  # the dev accuracy is the saved prompt's
    saved = json.loads((out / "prompt.json").read_text())
    engine = ScoringEngine(smollm32, task.verbalizers, task.template)
    head = dataclasses.replace(task, test=task.test[:32])  # a full test pass is minutes on CPU
    result = evaluate_prompts(engine, head, [saved["tokens"]], split="test")[0]
    assert result.prompt == saved["prompt"] and result.n_examples == 32
    assert_accuracy(result.accuracy, engine, head, saved["tokens"], "test")
