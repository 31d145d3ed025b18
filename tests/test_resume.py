"""Checkpoints, resume and reproducibility (issue 9): a stopped run continues where its last
checkpoint left it and ends exactly as an uninterrupted run with the same seed; the same
seed twice gives the same result on CPU; `rlprompt train` survives SIGKILL."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import word_sentiment_task

from rlprompt.agents import Budget, get_agent_class, get_config_class
from rlprompt.agents.core.checkpoint import (
    FOLDER,
    checkpoint_folder,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)
from rlprompt.errors import ConfigError
from rlprompt.lm import ScoringEngine
from rlprompt.tasks import Example, Task

# Small, fast settings per agent (each run spends its whole budget in well under a second or two).
OPTIONS: dict[str, tuple[int, dict[str, Any]]] = {
    "random": (60, {"batch_size": 8}),
    "lm-prior": (50, {"batch_size": 8}),
    "cma": (60, {"popsize": 6, "intrinsic_dim": 20}),
    "pgpe": (60, {"popsize": 6, "intrinsic_dim": 20, "init_samples": 3}),
    "soft-prompt": (40, {"eval_every": 2, "batch_size": 4}),
    "sql": (60, {"batch_size": 8}),
    "ppo": (80, {"n_envs": 4, "prompt_length": 2, "n_steps": 2, "batch_size": 8, "vocab": "words",
                 "max_vocab": 64}),
    "sac": (80, {"n_envs": 4, "prompt_length": 2, "intrinsic_dim": 4, "learning_starts": 8}),
}
EXACT = ["random", "lm-prior", "cma", "pgpe", "soft-prompt", "sql"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task() -> Task:
    return word_sentiment_task(16)


def make(method: str, tiny_lm, task: Task, out: Path | None, *, seed: int = 0, checkpoint_every: float = 0,
         cls: type | None = None, **changes: Any):
    """A fresh agent on a fresh engine (a new process would build both anew)."""
    _, options = OPTIONS[method]
    config = get_config_class(method)(seed=seed, checkpoint_every=checkpoint_every, **{**options, **changes})
    engine = ScoringEngine(tiny_lm, task.verbalizers, task.template)
    return (cls or get_agent_class(method))(engine, task, config, out_dir=out)


def stopping_after(method: str, spent: int) -> type:
    """The agent class, raising Ctrl-C's exception at once (no checkpoint of its own) once
    ``spent`` prompt evaluations are spent, as a crash or a second Ctrl-C would."""
    base = get_agent_class(method)

    def tick(self, train_score=None):
        base.tick(self, train_score)
        if self.budget.used >= spent:
            raise KeyboardInterrupt

    return type(f"Stopping{base.__name__}", (base,), {"tick": tick})


def result(agent) -> dict[str, Any]:
    """What two runs must share: the selection, the spend and the whole curve (train scores included)."""
    s = agent.summary()
    top = [(c.text, c.dev_accuracy, c.dev_score) for c in agent.tracker.top]
    curve = [(p.prompt_evals, p.dev_accuracy, p.best_dev_accuracy, None if math.isnan(p.train_score) else p.train_score)
             for p in agent.tracker.curve]
    return {"prompt": s.prompt, "dev": s.dev_accuracy, "prompt_evals": s.prompt_evals, "top": top, "curve": curve}


def numbers(state: Any) -> list[float]:
    """Every number in a learned state (nested lists, tuples and dicts), in order."""
    if isinstance(state, int | float):
        return [float(state)]
    return [n for part in (state.values() if isinstance(state, dict) else state) for n in numbers(part)]


def learned_state(agent) -> Any:
    """The agent's own final state, which a resume must reproduce bit for bit."""
    if agent.name in ("random", "lm-prior"):
        return sorted(agent._seen)
    if agent.name == "cma":
        return agent._es.mean.tolist()
    if agent.name == "pgpe":
        return [agent._mu.tolist(), agent._log_sigma.tolist()]
    if agent.name == "soft-prompt":
        return agent._soft.detach().tolist()
    if agent.name == "sql":
        return {k: v.tolist() for k, v in agent.q_net.state_dict().items()}
    raise AssertionError(agent.name)


# -- exact resume ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", EXACT)
def test_killed_and_resumed_run_ends_as_an_uninterrupted_one(tiny_lm, task, tmp_path, method):
    budget, _ = OPTIONS[method]
    full = make(method, tiny_lm, task, tmp_path / "full").learn(budget, progress=False)
    stopped = make(method, tiny_lm, task, tmp_path / "run", cls=stopping_after(method, budget // 2))
    with pytest.raises(KeyboardInterrupt):
        stopped.learn(budget, progress=False)
    assert stopped.status == "interrupted" and stopped.budget.used < budget
    saved = load_checkpoint(tmp_path / "run")
    assert saved is not None and saved[1]["status"] == "running"
    assert 0 < saved[1]["budget"]["spent"]["example_evals"] / len(task.texts("train")) < budget
    # only safetensors and JSON in the checkpoint: nothing that unpickles
    assert sorted(p.name for p in (tmp_path / "run" / FOLDER).iterdir()) == ["state.json", "state.safetensors"]

    resumed = make(method, tiny_lm, task, tmp_path / "run").learn(budget, progress=False, resume=True)
    assert resumed.status == "completed"
    assert result(resumed) == result(full)
    if tiny_lm.device.type == "cpu":
        assert learned_state(resumed) == learned_state(full)
    else:  # CUDA's backward kernels (atomic adds) are not bit-reproducible; the result above still is
        assert torch.allclose(torch.tensor(numbers(learned_state(resumed))), torch.tensor(numbers(learned_state(full))),
                              atol=1e-4)
    assert resumed.evaluate("test").accuracy == full.evaluate("test").accuracy
    rows = (tmp_path / "run" / "curve.csv").read_text().splitlines()
    assert len(rows) == 1 + len(full.tracker.curve)  # the curve restarted from the checkpoint, no duplicates
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["prompt_evals"] == full.summary().prompt_evals


def test_signal_stops_at_a_checkpoint_and_resume_matches(tiny_lm, task, tmp_path):
    """A first SIGTERM (or Ctrl-C) stops at the next safe point after writing a checkpoint
    there; the old handlers are back afterwards."""
    budget, _ = OPTIONS["random"]
    base = get_agent_class("random")
    sent = {"done": False}

    def tick(self, train_score=None):
        base.tick(self, train_score)
        if self.budget.used >= budget // 2 and not sent["done"]:
            sent["done"] = True
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    agent = make("random", tiny_lm, task, tmp_path / "run", checkpoint_every=3600,
                 cls=type("Terminated", (base,), {"tick": tick}))
    with pytest.raises(KeyboardInterrupt):
        agent.learn(budget, progress=False)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert "SIGTERM" in agent.message and "resume" in agent.message
    tensors, meta = load_checkpoint(tmp_path / "run")
    assert meta["budget"]["spent"]["prompt_evals"] == agent.summary().prompt_evals  # saved where it stopped
    full = make("random", tiny_lm, task, None).learn(budget, progress=False)
    resumed = make("random", tiny_lm, task, tmp_path / "run").learn(budget, progress=False, resume="auto")
    assert result(resumed) == result(full)


@pytest.mark.parametrize("method", ["ppo", "sac"])
def test_sb3_agents_restore_their_networks_and_continue(tiny_lm, task, tmp_path, method):
    budget, _ = OPTIONS[method]
    stopped = make(method, tiny_lm, task, tmp_path / "run", cls=stopping_after(method, budget // 2))
    with pytest.raises(KeyboardInterrupt):
        stopped.learn(budget, progress=False)
    tensors, meta = load_checkpoint(tmp_path / "run")
    fresh = make(method, tiny_lm, task, tmp_path / "other")
    fresh.budget = Budget(fresh.engine, budget, train_examples=len(task.texts("train")))
    fresh.restore_state(tensors, meta)
    params = unflatten_state(meta["sb3"]["params"], tensors)
    after = fresh.model.policy.state_dict()
    assert all(torch.equal(after[k].cpu(), v) for k, v in params["policy"].items())
    assert fresh.model.num_timesteps == meta["sb3"]["num_timesteps"] > 0
    assert fresh.budget.used == meta["budget"]["spent"]["prompt_evals"]
    if method == "sac":
        assert fresh.model.replay_buffer.pos == meta["sb3"]["buffer"]["pos"] > 0

    resumed = make(method, tiny_lm, task, tmp_path / "run").learn(budget, progress=False, resume=True)
    s = resumed.summary()
    assert s.status == "completed" and budget - 2 * 5 <= s.prompt_evals <= budget
    assert len(resumed.tracker.curve) >= len(meta["tracker"]["curve"])
    assert resumed.model.num_timesteps > meta["sb3"]["num_timesteps"]


def test_resume_of_a_finished_run_spends_nothing_more(tiny_lm, task, tmp_path):
    budget, _ = OPTIONS["soft-prompt"]
    first = make("soft-prompt", tiny_lm, task, tmp_path / "run").learn(budget, progress=False)
    engine_before = first.engine.counters.copy()
    again = make("soft-prompt", tiny_lm, task, tmp_path / "run").learn(budget, progress=False, resume=True)
    assert result(again) == result(first) and again.status == "completed"
    assert again.engine.counters.prompt_evals == 0 and engine_before.prompt_evals > 0


@pytest.mark.parametrize("method", ["random", "sql"])
def test_resume_with_a_larger_budget_extends_a_finished_run(tiny_lm, task, tmp_path, method):
    first = make(method, tiny_lm, task, tmp_path / "run").learn(20, progress=False)
    assert first.status == "completed" and first.budget.used == 20
    more = make(method, tiny_lm, task, tmp_path / "run").learn(45, progress=False, resume=True)
    assert more.status == "completed" and more.budget.used == 45
    assert more.engine.counters.example_evals > 0  # it scored new prompts, not only restored the old ones
    assert more.tracker.best.dev_accuracy >= first.tracker.best.dev_accuracy
    assert len(more.tracker.curve) >= len(first.tracker.curve)


# -- refusals and fresh starts -----------------------------------------------------------------


def test_resume_refuses_a_missing_or_foreign_checkpoint(tiny_lm, task, tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume: no checkpoint"):
        make("random", tiny_lm, task, tmp_path / "run").learn(20, progress=False, resume=True)
    with pytest.raises(ConfigError, match="needs an out_dir"):
        make("random", tiny_lm, task, None).learn(20, progress=False, resume=True)
    make("random", tiny_lm, task, tmp_path / "run").learn(20, progress=False)
    with pytest.raises(ConfigError, match=r"belongs to another run \(seed=0 there, 1 here\)"):
        make("random", tiny_lm, task, tmp_path / "run", seed=1).learn(20, progress=False, resume="auto")
    with pytest.raises(ConfigError, match="budget: 20 there, 10 here.*--budget 20 or more"):
        make("random", tiny_lm, task, tmp_path / "run").learn(10, progress=False, resume=True)
    with pytest.raises(ConfigError, match="method: 'random' there, 'lm-prior' here"):
        make("lm-prior", tiny_lm, task, tmp_path / "run").learn(20, progress=False, resume=True)
    # an option added after the checkpoint was written: resumable at its default, not otherwise
    from rlprompt.agents.core.checkpoint import checkpoint_folder

    state = checkpoint_folder(tmp_path / "run") / "state.json"
    meta = json.loads(state.read_text())
    del meta["fingerprint"]["config"]["keep_top"]
    state.write_text(json.dumps(meta))
    make("random", tiny_lm, task, tmp_path / "run").learn(20, progress=False, resume=True)
    with pytest.raises(ConfigError, match=r"belongs to another run \(keep_top=\d+ there, 2 here\)"):
        make("random", tiny_lm, task, tmp_path / "run", keep_top=2).learn(20, progress=False, resume=True)
    # checkpoint_every may change between the runs; resume must be one of three values
    make("random", tiny_lm, task, tmp_path / "run", checkpoint_every=5).learn(20, progress=False, resume=True)
    with pytest.raises(ConfigError, match="resume must be False, True or 'auto'"):
        make("random", tiny_lm, task, tmp_path / "run").learn(20, progress=False, resume="yes")
    # an agent without checkpoint hooks says so, and writes no checkpoint
    plain = type("NoHooks", (get_agent_class("random"),), {"supports_resume": False})
    with pytest.raises(ConfigError, match="cannot resume from a checkpoint yet"):
        make("random", tiny_lm, task, tmp_path / "run", cls=plain).learn(20, progress=False, resume=True)
    make("random", tiny_lm, task, tmp_path / "plain", cls=plain).learn(20, progress=False, resume="auto")
    assert checkpoint_folder(tmp_path / "plain") is None


def test_fresh_start_replaces_an_old_checkpoint(tiny_lm, task, tmp_path):
    make("random", tiny_lm, task, tmp_path / "run").learn(20, progress=False)
    stopped = make("random", tiny_lm, task, tmp_path / "run", seed=1, cls=stopping_after("random", 100))
    stopped.learn(30, progress=False)  # resume=False: the seed-0 checkpoint is gone, the new one is seed 1's
    assert load_checkpoint(tmp_path / "run")[1]["fingerprint"]["config"]["seed"] == 1
    auto = make("random", tiny_lm, task, tmp_path / "auto").learn(20, progress=False, resume="auto")
    assert auto.status == "completed" and checkpoint_folder(tmp_path / "auto") is not None


def test_bad_checkpoint_every():
    with pytest.raises(ConfigError, match="checkpoint_every must be a number of seconds >= 0"):
        get_config_class("random")(checkpoint_every=-1)


# -- the checkpoint folder ---------------------------------------------------------------------


def test_checkpoint_folder_is_replaced_atomically(tmp_path):
    save_checkpoint(tmp_path, {"x": torch.arange(3)}, {"n": 1, "loss": float("nan")})
    save_checkpoint(tmp_path, {"x": torch.arange(4)}, {"n": 2, "loss": float("inf")})
    tensors, meta = load_checkpoint(tmp_path)
    assert meta["n"] == 2 and meta["loss"] == float("inf") and torch.equal(tensors["x"], torch.arange(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == [FOLDER]  # no temp or old folders left
    # a crash between the two renames leaves only the previous checkpoint, set aside: it is used
    os.replace(tmp_path / FOLDER, tmp_path / f".{FOLDER}.old")
    (tmp_path / ".checkpoint.half.tmp").mkdir()  # a half-written temp folder is ignored
    assert load_checkpoint(tmp_path)[1]["n"] == 2
    save_checkpoint(tmp_path, {"x": torch.arange(5)}, {"n": 3})
    assert load_checkpoint(tmp_path)[1]["n"] == 3 and not (tmp_path / f".{FOLDER}.old").exists()


def test_unreadable_checkpoint_is_a_clear_error(tiny_lm, task, tmp_path):
    from rlprompt.errors import DataError

    save_checkpoint(tmp_path, {"x": torch.arange(3)}, {"n": 1})
    (tmp_path / FOLDER / "state.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="cannot read the checkpoint .* delete it to start afresh"):
        load_checkpoint(tmp_path)
    # a checkpoint whose tensors were lost does not fit: a clear error, not a KeyError
    make("soft-prompt", tiny_lm, task, tmp_path / "run").learn(20, progress=False)
    tensors, meta = load_checkpoint(tmp_path / "run")
    del tensors["soft_prompt/prompt"]
    save_checkpoint(tmp_path / "run", tensors, meta)
    with pytest.raises(DataError, match="does not fit this soft-prompt agent .*delete it to start afresh"):
        make("soft-prompt", tiny_lm, task, tmp_path / "run").learn(20, progress=False, resume=True)


# -- reproducibility ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["random", "sql", "ppo", "soft-prompt"])
def test_same_seed_same_result_on_cpu(tiny_lm, task, method):
    budget, _ = OPTIONS[method]
    runs = []
    for _ in range(2):
        agent = make(method, tiny_lm, task, None, seed=7).learn(budget, progress=False)
        runs.append((result(agent), agent.evaluate("test").accuracy))
    assert runs[0] == runs[1]


# -- `rlprompt train` killed with SIGKILL and resumed -----------------------------------------------


def _write_split(path: Path, examples: list[Example]) -> Path:
    rows = ["sentence\tlabel"] + [f"{e.text}\t{e.label}" for e in examples]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_train_killed_with_sigkill_resumes_to_the_uninterrupted_result(tiny_model_dir, task, tmp_path):
    files = [_write_split(tmp_path / f"{name}.tsv", task.split(name)) for name in ("train", "dev", "test")]
    budget = 400

    def command(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "rlprompt.cli", "train", "--model", str(tiny_model_dir), "--task", "sst-2",
                "--train-file", str(files[0]), "--dev-file", str(files[1]), "--test-file", str(files[2]),
                "--verbalizers", " terrible", " great", "--agent", "sql", "--budget", str(budget), "--seed", "3",
                "--set", "batch_size=8", "--set", "checkpoint_every=0", "--progress", "off", "--out", str(out),
                *extra]

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(killed), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    spent, deadline = 0, time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            state = killed / FOLDER / "state.json"
            try:
                spent = json.loads(state.read_text())["budget"]["spent"]["prompt_evals"] if state.exists() else 0
            except (OSError, json.JSONDecodeError):  # renamed away between exists() and read
                spent = 0
            if spent >= budget // 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL and 0 < spent < budget
    assert not (killed / "summary.json").exists()  # killed mid-run: no summary, only the checkpoint

    resumed = subprocess.run(command(killed, "--resume"), env=env, capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run(command(tmp_path / "whole"), env=env, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
    assert whole.returncode == 0, whole.stderr
    a = json.loads((killed / "summary.json").read_text())
    b = json.loads((tmp_path / "whole" / "summary.json").read_text())
    for key in ("status", "prompt", "dev_accuracy", "test_accuracy", "prompt_evals"):
        assert a[key] == b[key], key
    assert [p["prompt_evals"] for p in a["curve"]] == [p["prompt_evals"] for p in b["curve"]]
    assert (killed / "logs" / "progress.1.csv").is_file() and (killed / "logs" / "progress.csv").is_file()
    assert json.loads((killed / "prompt.json").read_text())["tokens"] == \
        json.loads((tmp_path / "whole" / "prompt.json").read_text())["tokens"]


def test_tune_resume_flag(tiny_model_dir, task, tmp_path, capsys):
    """`rlprompt tune --resume` continues a finished or stopped run; it needs --out."""
    from rlprompt import cli

    out = tmp_path / "tune"
    args = ["tune", "--model", str(tiny_model_dir), "--method", "random", "--budget", "30", "--batch-size", "8",
            "--no-progress", "--no-project"]
    assert cli.main([*args, "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    assert cli.main([*args, "--out", str(out), "--resume"]) == 2
    assert "nothing to resume: no checkpoint" in capsys.readouterr().err
    assert cli.main([*args, "--out", str(out), "--checkpoint-every", "0"]) == 0
    first = json.loads((out / "summary.json").read_text())
    assert cli.main([*args, "--out", str(out), "--resume"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert (again["prompt"], again["prompt_evals"], again["test_accuracy"]) == \
        (first["prompt"], first["prompt_evals"], first["test_accuracy"])
