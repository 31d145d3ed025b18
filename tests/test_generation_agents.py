"""Agents, ``rlprompt train`` and ``rlprompt eval`` on generation tasks (tiny in-memory LM), and the
bad inputs of a generation command: one line each, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import one_error_line

from rlprompt.agents import registry
from rlprompt.cli import main
from rlprompt.errors import ConfigError, DataError
from rlprompt.lm.generation import GenerationEngine, GenerationSettings
from rlprompt.tasks.generation import GenerationTask, TextExample

pytestmark = pytest.mark.usefixtures("one_thread")


def letters_reward(completions, **columns):
    """Share of the letter 'e' in what the LM writes (any text reward would do)."""
    return [c.count("e") / max(1, len(c)) for c in completions]


@pytest.fixture
def gen_task() -> GenerationTask:
    rows = [TextExample(f"the story number {i} was good", (f"a good story {i}",)) for i in range(12)]
    return GenerationTask(name="tiny-gen", train=rows[:4], dev=rows[4:8], test=rows[8:], template="{input} {prompt}",
                          settings=GenerationSettings(max_new_tokens=6, stop=()), reward=letters_reward)


@pytest.mark.parametrize("name", ["random", "lm-prior", "sql"])
def test_discrete_agents_learn_on_a_generation_task(name: str, tiny_lm, gen_task, tmp_path: Path) -> None:
    engine = GenerationEngine(tiny_lm, gen_task.template, settings=gen_task.settings)
    config = registry.get_config_class(name)(prompt_length=2, **({"batch_size": 4} if name != "random" else {}))
    agent = registry.get_agent_class(name)(engine, gen_task, config, out_dir=tmp_path)
    agent.learn(6, progress=False)
    summary = agent.write_outputs(test=True)
    assert summary.status == "completed" and summary.prompt_evals == pytest.approx(6.0)
    assert summary.extra["metric"] == summary.extra["reward"]
    assert 0 <= summary.test_accuracy <= 1
    # The selected prompt's dev score is the mean reward of what it makes the LM write on dev.
    best = agent.tracker.best
    again = agent.objective.score([list(best.prompt)], "dev").rewards[0]
    assert best.dev_accuracy == pytest.approx(again, abs=1e-6)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["extra"]["test_outputs"][0]["output"] is not None


@pytest.mark.parametrize("name", ["cma", "sac", "soft-prompt"])
def test_agents_that_cannot_run_on_generation_tasks_say_so(name: str, tiny_lm, gen_task) -> None:
    engine = GenerationEngine(tiny_lm, gen_task.template, settings=gen_task.settings)
    with pytest.raises(ConfigError, match="does not run on generation tasks.*grpo, lm-prior, .*ppo, random, .*sql"):
        registry.get_agent_class(name)(engine, gen_task, registry.get_config_class(name)())


def _files(folder: Path, refs: bool = True) -> list[str]:
    header = "source,target\n" if refs else "source\n"
    for split, n in (("train", 4), ("dev", 3), ("test", 3)):
        lines = [f"the film number {i} was fine" + (f",a fine film {i}" if refs else "") for i in range(n)]
        (folder / f"{split}.csv").write_text(header + "\n".join(lines) + "\n")
    return ["--train-file", str(folder / "train.csv"), "--dev-file", str(folder / "dev.csv"),
            "--test-file", str(folder / "test.csv"), "--input-column", "source"]


def _model(tiny_model_dir: Path) -> list[str]:
    return ["--model", str(tiny_model_dir), "--dtype", "float32", "--device", "cpu"]


def test_eval_on_a_generation_task_prints_and_writes_outputs(tiny_model_dir, tmp_path, capsys) -> None:
    args = ["eval", *_model(tiny_model_dir), *_files(tmp_path), "--reference-column", "target",
            "--max-new-tokens", "5", "--prompt", "Translate:", "--prompt", "", "--out", str(tmp_path / "e.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "chrf" in out and "bleu" in out and "->" in out
    data = json.loads((tmp_path / "e.json").read_text())
    assert len(data["results"]) == 2 and len(data["results"][0]["outputs"]) == 3
    assert data["results"][0]["outputs"][0]["references"] == ["a fine film 0"]


def test_train_on_a_generation_task_end_to_end(tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", *_model(tiny_model_dir), *_files(tmp_path), "--reference-column", "target",
            "--max-new-tokens", "4", "--agent", "sql", "--budget", "6", "--prompt-length", "2",
            "--set", "batch_size=4", "--out", str(out), "--reward", "chrf=1,bleu=0.5"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["extra"]["reward"] == "chrf,bleu=0.5" and summary["test_accuracy"] is not None
    assert "test scores" not in capsys.readouterr().out or True


@pytest.mark.parametrize("extra, match", [
    (["--reward", "accuracy"], "class log-probabilities"),
    (["--reward", "bleu"], "'bleu' needs references"),
    (["--max-new-tokens", "0"], "max_new_tokens"),
    (["--max-new-tokens", "5000"], "max_new_tokens"),
    (["--num-samples", "3"], "identical"),
    (["--lm-temperature", "0.5"], "add --lm-sample"),
    (["--verbalizers", " a", " b"], "classification"),
])
def test_bad_generation_commands_fail_in_one_line(extra, match, tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", *_model(tiny_model_dir), *_files(tmp_path, refs=False), "--agent", "random",
            "--budget", "2", "--prompt-length", "1", "--out", str(out), *extra]
    assert main(args) == 2
    assert match in one_error_line(capsys.readouterr().err)
    assert not (out / "summary.json").exists()


def test_a_missing_input_column_is_named(tiny_model_dir, tmp_path, capsys) -> None:
    files = _files(tmp_path)
    files[-1] = "text"
    assert main(["eval", *_model(tiny_model_dir), *files]) == 2
    assert "no column 'text'" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("name", ["ppo", "a2c"])
def test_sb3_agents_learn_on_a_generation_task(name: str, tiny_lm, gen_task, tmp_path: Path) -> None:
    engine = GenerationEngine(tiny_lm, gen_task.template, settings=gen_task.settings)
    config = registry.get_config_class(name)(prompt_length=2, n_envs=2, max_vocab=64)
    agent = registry.get_agent_class(name)(engine, gen_task, config, out_dir=tmp_path)
    agent.learn(8, progress=False)
    summary = agent.write_outputs(test=True)
    assert summary.status == "completed" and summary.prompt_evals <= 8 + 1e-9
    assert summary.extra["metric"] == summary.extra["reward"] and summary.test_accuracy is not None


def test_the_discrete_env_on_a_generation_task(tiny_lm, gen_task) -> None:
    from rlprompt.envs import DiscretePromptEnv

    env = DiscretePromptEnv(gen_task, tiny_lm, prompt_length=2, max_vocab=32)
    obs, info = env.reset(seed=0)
    assert info["prompt"] == ""
    _, reward, terminated, _, _ = env.step(3)
    assert reward == 0.0 and not terminated
    _, reward, terminated, _, info = env.step(4)
    assert terminated and info["score"] == pytest.approx(reward)
    want = letters_reward([c[0] for c in env.engine.generate([info_tokens(env)], gen_task.texts("train"))[0]])
    assert reward == pytest.approx(sum(want) / len(want))
    with pytest.raises(ConfigError, match="rewarded once"):
        DiscretePromptEnv(gen_task, tiny_lm, prompt_length=2, reward_mode="dense")


def info_tokens(env) -> list[int]:
    return env.episodes.prompt_tokens(0)


def test_grpo_on_a_generation_task(tiny_lm, gen_task, tmp_path: Path) -> None:
    from rlprompt.agents.rl.grpo.agent import GRPOAgent
    from rlprompt.agents.rl.grpo.config import GRPOAgentConfig

    engine = GenerationEngine(tiny_lm, gen_task.template, settings=gen_task.settings)
    config = GRPOAgentConfig(seed=0, prompt_length=2, lora=False, prompts_per_step=4, num_generations=2)
    agent = GRPOAgent(engine, gen_task, config, out_dir=tmp_path)
    agent.learn(8, progress=False)
    summary = agent.write_outputs(test=True)
    assert summary.status in ("completed", "early-stopped") and summary.prompt_evals <= 8 + 1e-9
    assert agent.tracker.best is not None and summary.test_accuracy is not None


def test_an_input_longer_than_the_context_fails_before_any_work(tiny_model_dir, tmp_path, capsys) -> None:
    files = _files(tmp_path)
    (tmp_path / "test.csv").write_text("source,target\n" + "word " * 300 + ",x\n")
    out = tmp_path / "run"
    assert main(["train", *_model(tiny_model_dir), *files, "--agent", "random", "--budget", "2",
                 "--prompt-length", "1", "--out", str(out)]) == 2
    assert "longest test input" in one_error_line(capsys.readouterr().err)
    assert not (out / "summary.json").exists()


def test_the_vector_env_on_a_generation_task(tiny_lm, gen_task) -> None:
    """N prompts written side by side, scored in one generation call, equal the single env's rewards."""
    import numpy as np

    from rlprompt.envs import DiscretePromptEnv, PromptVectorEnv

    env = DiscretePromptEnv(gen_task, tiny_lm, prompt_length=2, max_vocab=32)
    venv = PromptVectorEnv(3, env)
    venv.reset(seed=0)
    venv.step(np.array([1, 2, 3]))
    _, rewards, terminated, _, _ = venv.step(np.array([4, 5, 6]))
    assert terminated.all()
    single = []
    for a, b in ((1, 4), (2, 5), (3, 6)):
        env.reset(seed=0)
        env.step(a)
        single.append(env.step(b)[1])
    assert rewards == pytest.approx(single)


def test_prompt_first_generation_tasks_sample_instructions(tiny_lm, gen_task) -> None:
    """LM-prior sampling and soft Q-learning write a prompt that comes before the input as an instruction."""
    import dataclasses

    from rlprompt.agents.search.lm_prior import INSTRUCTION_CONTEXT

    first = dataclasses.replace(gen_task, template='{prompt} "{input}" "')
    for name in ("lm-prior", "sql"):
        engine = GenerationEngine(tiny_lm, first.template, settings=first.settings)
        cls, config = registry.get_agent_class(name), registry.get_config_class(name)
        assert cls(engine, first, config()).context == INSTRUCTION_CONTEXT
        assert cls(engine, first, config(context="{example}:")).context == "{example}:"  # a chosen one is kept
        after = GenerationEngine(tiny_lm, gen_task.template, settings=gen_task.settings)
        assert cls(after, gen_task, config()).context == config().context  # prompt after the input
        fixed = dataclasses.replace(gen_task, template='Make it nice:{prompt} "{input}" "')
        assert cls(engine, fixed, config()).context == f"{INSTRUCTION_CONTEXT} Make it nice:"  # continues it


def test_a_generation_task_from_a_local_hf_dataset(tiny_model_dir, tmp_path, capsys) -> None:
    datasets = pytest.importorskip("datasets")
    rows = {"question": [f"what is {i} plus one" for i in range(30)], "answer": [[str(i + 1)] for i in range(30)],
            "level": ["easy"] * 30}
    folder = tmp_path / "qa"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                          "test": datasets.Dataset.from_dict({k: v[:5] for k, v in rows.items()})}).save_to_disk(folder)
    from rlprompt.tasks.hf import load_hf_generation

    task = load_hf_generation(str(folder), input_column="question", reference_column="answer", n_train=8, n_dev=4)
    assert len(task.train) == 8 and len(task.dev) == 4 and len(task.test) == 5
    assert not {e.input for e in task.train} & {e.input for e in task.dev}  # dev drawn from the rest of train
    assert task.test[0].references == ("1",) and task.columns("train")["level"] == ["easy"] * 8
    assert main(["eval", *_model(tiny_model_dir), "--task", "qa", "--hf", str(folder), "--input-column", "question",
                 "--reference-column", "answer", "--reward", "contains", "--max-new-tokens", "3"]) == 0
    assert "contains" in capsys.readouterr().out
    with pytest.raises(DataError, match="no column 'q'"):
        load_hf_generation(str(folder), input_column="q")
