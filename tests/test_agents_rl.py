"""RL agents (SB3 PPO/A2C/MaskablePPO/SAC/TD3, soft Q-learning) and `rlprompt train`.

The learning tests use a synthetic task on the tiny random LM where one token is the
right prompt: every label is " great", the reward is the label's log-likelihood, and the
tiny LM (tied embeddings) scores " great" highest after the prompt " great" (3 standard
deviations above the other 63 candidate words). Random choice writes it 1 time in 64.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import assert_accuracy, assert_run_reports_its_prompt, assert_selected_is_best_on_dev, one_error_line

from rlprompt.agents.rl.sb3 import algorithms as sb3
from rlprompt.agents.rl.sql.agent import SoftQLearning, SQLConfig
from rlprompt.cli.train import resolve_agent
from rlprompt.errors import ConfigError
from rlprompt.lm import ScoringEngine
from rlprompt.rewards import register_reward
from rlprompt.tasks import load_task

VOCAB = {"vocab": "words", "max_vocab": 64}
TEST_RL = {"prompt_length": 1, "reward": "log-likelihood", "n_envs": 16, "examples_per_episode": None}


pytestmark = pytest.mark.usefixtures("one_thread")


def sb3_first_step_probs(agent) -> np.ndarray:
    """The policy's action probabilities on the empty prompt [K]."""
    obs = agent.venv.reset()
    obs_t, _ = agent.model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        dist = agent.model.policy.get_distribution(obs_t)
    return dist.distribution.probs[0].cpu().numpy()


@pytest.mark.parametrize("cls, extra", [
    (sb3.PPOAgent, {"n_steps": 2, "batch_size": 32, "learning_rate": 3e-3}),
    (sb3.A2CAgent, {"n_steps": 1, "learning_rate": 3e-3}),
    (sb3.PPOAgent, {"n_steps": 2, "batch_size": 32, "learning_rate": 1e-2, "n_epochs": 10, "tie_head": True}),
    (sb3.MaskablePPOAgent, {"n_steps": 2, "batch_size": 32, "learning_rate": 3e-3}),
], ids=["ppo", "a2c", "ppo-tied-head", "maskable-ppo"])
def test_sb3_discrete_agents_learn_the_right_token(great_engine, great_id, great_task, cls, extra):
    agent = cls(great_engine, great_task, cls.config_class(seed=0, **TEST_RL, **VOCAB, **extra))
    k = len(agent.env.vocab)
    agent.learn(400, progress=False)
    great = int(np.flatnonzero(agent.env.vocab == great_id)[0])
    probs = sb3_first_step_probs(agent)
    assert probs[great] > 5 / k, f"policy writes ' great' with p={probs[great]:.3f}; random 1/{k}"
    assert agent.predict() == [great_id]
    assert agent.budget.used <= 400
    assert_selected_is_best_on_dev(agent)


def test_sql_learns_the_right_token(great_engine, great_id, great_task):
    cfg = SQLConfig(seed=0, prompt_length=1, reward="log-likelihood", batch_size=16, **VOCAB)
    agent = SoftQLearning(great_engine, great_task, cfg)
    before, _, _ = agent.sample(256)
    agent.learn(300, progress=False)
    after, _, _ = agent.sample(256)
    g = great_id
    share_before = np.mean([p == [g] for p in before])
    share_after = np.mean([p == [g] for p in after])
    assert share_after > max(5 / 64, 2 * share_before), (share_before, share_after)
    assert agent.predict() == [g]
    assert agent.budget.used <= 300
    assert_selected_is_best_on_dev(agent)


@pytest.mark.parametrize("cls, extra", [
    (sb3.SoftPPOAgent, {"n_steps": 2, "batch_size": 32, "learning_rate": 3e-3}),
    (sb3.SACAgent, {"learning_starts": 32, "batch_size": 64, "train_freq": 1, "gradient_steps": 8}),
    (sb3.TD3Agent, {"learning_starts": 32, "batch_size": 64, "train_freq": 1, "gradient_steps": 16,
                    "learning_rate": 3e-3}),
], ids=["ppo-soft", "sac", "td3"])
def test_soft_agents_learn_above_random(great_engine, great_task, cls, extra):
    agent = cls(great_engine, great_task, cls.config_class(seed=0, intrinsic_dim=8, **TEST_RL, **extra))
    agent.learn(400, progress=False)
    texts = great_task.texts("train")

    def reward(actions: np.ndarray) -> np.ndarray:
        embeds = agent.env.action_map(actions).reshape(len(actions), 1, -1)
        return great_engine.score_soft(embeds, texts)[:, :, 1].mean(1).cpu().numpy()  # mean log p(great)

    rng = np.random.default_rng(0)
    random = reward(rng.uniform(-1, 1, size=(64, 8)).astype(np.float32))
    action, _ = agent.model.predict(agent.venv.reset(), deterministic=True)
    learned = reward(action[:1])[0]
    assert learned > random.mean() + 1.0 * random.std(), (learned, random.mean(), random.std())
    assert agent.budget.used <= 400
    assert_selected_is_best_on_dev(agent)


@pytest.mark.parametrize("budget", [37, 100])
def test_budget_stops_learning_at_the_budget(great_engine, great_task, budget):
    for agent in (sb3.PPOAgent(great_engine, great_task, sb3.PPOConfig(seed=1, n_envs=8, **VOCAB)),
                  SoftQLearning(great_engine, great_task, SQLConfig(seed=1, batch_size=8, **VOCAB))):
        start, n = great_engine.counters.example_evals, len(great_task.texts("train"))
        agent.learn(budget, progress=False)
        spent = (great_engine.counters.example_evals - start) / n  # whole-training-split evaluations
        summary = agent.summary()
        assert spent == pytest.approx(summary.prompt_evals) and summary.prompt_evals <= budget + 1e-9
        assert spent >= budget - 10  # what an episode batch cannot use is spent on dev checks
        assert summary.forward_tokens > 0
        assert_selected_is_best_on_dev(agent)


def test_sql_save_load_round_trip(great_engine, great_task, tmp_path):
    agent = SoftQLearning(great_engine, great_task, SQLConfig(seed=2, batch_size=8, top_k=20, **VOCAB))
    agent.learn(40, progress=False)
    path = agent.save(tmp_path / "prompt.json")
    assert SoftQLearning.policy_path(path).exists()
    loaded = SoftQLearning.load(path, great_engine, great_task)
    assert loaded.predict() == agent.predict()
    assert loaded.config == agent.config
    for (name, a), (_, b) in zip(agent.q_net.state_dict().items(), loaded.q_net.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    h = torch.randn(3, great_engine.lm.input_embeddings().embedding_dim, device=great_engine.device)
    assert torch.allclose(agent.policy_logits(h)[0], loaded.policy_logits(h)[0])
    # The frozen LM's table is not saved and not copied.
    assert agent.q_net._head[0] is great_engine.model.get_output_embeddings().weight
    assert all("embed" not in k for k in agent.q_net.state_dict())


def test_sql_alpha_start_anneals_geometrically_over_the_budget(great_engine, great_task):
    agent = SoftQLearning(great_engine, great_task, SQLConfig(seed=4, batch_size=8, alpha=0.25, alpha_start=1.0,
                                                              **VOCAB))
    assert agent.alpha == 0.25  # no budget: the trained policy's (a loaded agent's) temperature
    seen: list[tuple[float, float]] = []
    real_step = agent.train_step

    def spy(*args):
        seen.append((agent.budget.used / agent.budget.limit, agent.alpha))
        return real_step(*args)

    agent.train_step = spy
    agent.learn(60, progress=False)
    assert len(seen) >= 8
    for frac, alpha in seen:
        assert alpha == pytest.approx(1.0 * 0.25 ** frac)
    assert seen[0][1] > 0.7 and seen[-1][1] < 0.35  # hot while few rewards are known, cold at the end
    assert agent.alpha == pytest.approx(0.25, rel=0.05)
    fixed = SoftQLearning(great_engine, great_task, SQLConfig(seed=4, batch_size=8, alpha=0.25, **VOCAB))
    fixed.learn(20, progress=False)
    assert fixed.alpha == 0.25


@pytest.mark.parametrize("cls", [sb3.PPOAgent, sb3.SACAgent], ids=["ppo", "sac"])
def test_sb3_save_load_round_trip(great_engine, great_task, tmp_path, cls):
    extra = VOCAB if cls.space == "discrete" else {"intrinsic_dim": 4}
    agent = cls(great_engine, great_task, cls.config_class(seed=3, n_envs=4, prompt_length=2, **extra))
    agent.learn(40, progress=False)
    path = agent.save(tmp_path / cls.artefact_name)
    loaded = cls.load(path, great_engine, great_task)
    before = agent.model.policy.state_dict()
    after = loaded.model.policy.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    if cls.space == "discrete":
        assert loaded.predict() == agent.predict()
    else:
        assert torch.allclose(loaded.predict(), agent.predict())
    table = great_engine.lm.input_embeddings().weight
    assert not any(v.data_ptr() == table.data_ptr() for v in before.values())


def test_features_extractor_shares_the_frozen_table(great_engine, great_task):
    agent = sb3.PPOAgent(great_engine, great_task, sb3.PPOConfig(n_envs=2, **VOCAB))
    extractor = agent.model.policy.features_extractor
    table = great_engine.lm.input_embeddings().weight
    assert extractor._table[0] is table and not table.requires_grad
    assert all(p.data_ptr() != table.data_ptr() for p in agent.model.policy.parameters())
    device = agent.model.device  # where SB3 puts the observations
    obs = {"prompt": torch.tensor([[-1.0, 3.0, -1.0, -1.0, -1.0]], device=device),
           "step": torch.tensor([[1.0]], device=device)}
    emb = extractor.embed_prompt(obs["prompt"])
    assert torch.equal(emb[0, 1], table[int(agent.env.vocab[3])]) and emb[0, 0].abs().sum() == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 0}, "alpha must be a positive number"),
    ({"alpha_start": -1.0}, "alpha_start must be a positive number or None"),
    ({"reward_norm": "zz"}, "reward_norm 'zz' is not known"),
    ({"vocab": "all"}, "vocab 'all' is not known"),
    ({"context": "{nope}"}, "is not a valid template"),
])
def test_sql_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SQLConfig(**kwargs)


def test_sb3_config_errors(great_engine, great_task):
    with pytest.raises(ConfigError, match="n_steps must be a positive integer"):
        sb3.PPOConfig(n_steps=0)
    with pytest.raises(ConfigError, match="placement 'middle'"):
        sb3.SACConfig(placement="middle")
    agent = sb3.PPOAgent(great_engine, great_task, sb3.PPOConfig(n_envs=16, **VOCAB))
    # 16 episodes on 16 of the 32 training examples cost 8, plus 1 for a dev check
    with pytest.raises(ConfigError, match=r"a budget of 8.0 prompt evaluations cannot pay for one batch .*\(9.0\)"):
        agent.learn(8, progress=False)


# -- rlprompt train -------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--agent", "dqn"], "unknown agent 'dqn'"),
    (["--agent", "sac"], "agent 'sac' writes soft prompts, not discrete ones; use --space soft"),
    (["--agent", "a2c", "--space", "soft"], "agent 'a2c' writes discrete prompts"),
    (["--space", "audio"], "--space 'audio' is not known"),
    (["--budget", "0"], "--budget must be a positive number"),
    (["--task", "no-such-task"], "no-such-task"),
    (["--set", "nope=1"], "has no option 'nope'"),
    (["--set", "alpha=-1"], "alpha must be a positive number"),
    (["--set", "batch_size=many"], "--set batch_size='many'"),
    (["--set", "sql_loss=huber"], "sql_loss 'huber' is not known"),
])
def test_train_bad_input_one_line_errors(train_cli, tiny_model_dir, tmp_path, capsys, args, message):
    code = train_cli(["train", "--model", str(tiny_model_dir), "--out", str(tmp_path / "run"), *args])
    assert code == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "run" / "summary.json").exists()


def test_train_end_to_end_tiny(train_cli, tiny_model_dir, tiny_dir_lm, tmp_path, capsys):
    out = tmp_path / "run"
    code = train_cli(["train", "--model", str(tiny_model_dir), "--agent", "ppo", "--budget", "60", "--prompt-length",
                      "2", "--set", "n_envs=8", "--set", "net_arch=32", "--out", str(out), "--progress", "off",
                      "--dtype", "float32"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["prompt_evals"] <= 60
    assert summary["test_accuracy"] is not None and summary["config"]["n_envs"] == 8
    prompt = json.loads((out / "prompt.json").read_text())
    assert prompt["prompt"] == summary["prompt"] and len(prompt["tokens"]) == 2
    assert_run_reports_its_prompt(out, tiny_dir_lm, load_task("demo"))
    assert (out / "curve.csv").exists() and (out / "logs" / "progress.csv").exists()
    assert "best prompt" in capsys.readouterr().out


def test_train_soft_writes_safetensors(train_cli, tiny_model_dir, tiny_dir_lm, tmp_path):
    out = tmp_path / "soft"
    code = train_cli(["train", "--model", str(tiny_model_dir), "--agent", "td3", "--space", "soft", "--budget", "40",
                      "--prompt-length", "2", "--set", "n_envs=4", "--set", "learning_starts=8", "--out", str(out),
                      "--progress", "off", "--no-test", "--dtype", "float32"])
    assert code == 0
    from rlprompt.agents.gradient.peft_format import load_soft_prompt

    embeds, meta = load_soft_prompt(out / "prompt.safetensors", token_dim=32)
    assert embeds.shape == (2, 32) and meta["agent"] == "td3"
    summary = assert_run_reports_its_prompt(out, tiny_dir_lm, load_task("demo"))
    assert summary["prompt_kind"] == "soft" and summary["test_accuracy"] is None


def test_interrupt_leaves_best_prompt_and_summary(train_cli, tiny_model_dir, tiny_dir_lm, tmp_path, capsys):
    calls = {"n": 0}

    def interrupting(logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return logprobs.gather(-1, labels.view(1, -1, 1).expand(logprobs.shape[0], -1, 1)).squeeze(-1).mean(-1)

    register_reward("test-interrupting", interrupting, overwrite=True)
    out = tmp_path / "stopped"
    code = train_cli(["train", "--model", str(tiny_model_dir), "--agent", "sql", "--budget", "500", "--reward",
                      "test-interrupting", "--set", "batch_size=8", "--out", str(out), "--progress", "off",
                      "--dtype", "float32"])
    assert code == 130
    assert "best prompt so far" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["prompt"]
    assert json.loads((out / "prompt.json").read_text())["prompt"] == summary["prompt"]
    assert_run_reports_its_prompt(out, tiny_dir_lm, load_task("demo"))


def test_resolve_agent_covers_every_rl_agent():
    for agent, space in [("ppo", "discrete"), ("a2c", "discrete"), ("maskable-ppo", "discrete"), ("sql", "discrete"),
                         ("ppo", "soft"), ("sac", "soft"), ("td3", "soft")]:
        cls = resolve_agent(agent, space)
        assert cls.prompt_kind == space


@pytest.mark.integration
def test_train_sst2_end_to_end_smollm(train_cli, smollm32, fsc16, tmp_path, capsys):
    """Train, select on dev and write every file on SmolLM2 + shared SST-2 (the full test-split
    evaluation, ~1 min on an idle 2-core CPU, is left to the tiny-model test and the benchmark)."""
    from rlprompt.rewards.evaluate import evaluate_prompts

    out = tmp_path / "sst2"
    code = train_cli(["train", "--task", "sst-2", "--data-dir", str(fsc16), "--seed", "42", "--agent", "sql",
                      "--budget", "16", "--set", "batch_size=8", "--set", "examples_per_episode=8", "--out", str(out),
                      "--progress", "off", "--no-test", "--dtype", "float32"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == smollm32.name and summary["status"] == "completed"
    assert summary["prompt_evals"] <= 16 and summary["test_accuracy"] is None
    assert summary["forward_tokens"] > 0 and summary["wall_seconds"] > 0
    assert (out / "prompt.policy.safetensors").exists() and (out / "logs" / "progress.csv").exists()
    task = load_task("sst-2", data_dir=fsc16, seed=42)
    assert_run_reports_its_prompt(out, smollm32, task)  # the dev accuracy is the saved prompt's
    saved = json.loads((out / "prompt.json").read_text())
    engine = ScoringEngine(smollm32, task.verbalizers, task.template)
    head = dataclasses.replace(task, test=task.test[:32])  # a full test pass is minutes on CPU
    result = evaluate_prompts(engine, head, [saved["tokens"]], split="test")[0]
    assert result.prompt == saved["prompt"] and result.n_examples == 32
    assert_accuracy(result.accuracy, engine, head, saved["tokens"], "test")


def test_sb3_agent_without_out_dir_leaves_no_log_folder(great_engine, great_task, tmp_path, monkeypatch):
    """SB3's default logger makes an empty SB3-<time> folder in the temp directory per learn()."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    agent = sb3.PPOAgent(great_engine, great_task, sb3.PPOConfig(seed=0, n_steps=2, batch_size=32, **TEST_RL, **VOCAB))
    agent.learn(20, progress=False)
    assert agent.budget.used > 0 and not list(tmp_path.iterdir())
