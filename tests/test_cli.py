"""`rlprompt` driven like a user: subprocesses, exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "rlprompt.cli", *args], capture_output=True, text=True, timeout=timeout,
        cwd=cwd, env=env, stdin=subprocess.DEVNULL,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("rlprompt: error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_and_version():
    assert run("--help").returncode == 0
    assert "rlprompt" in run("--version").stdout


def test_tasks_lists_known_tasks():
    proc = run("tasks")
    assert proc.returncode == 0
    for name in ("demo", "sst-2", "sst-5", "agnews", "trec", "yelp-5", "dbpedia"):
        assert name in proc.stdout


def test_eval_writes_json(tiny_model_dir, tmp_path):
    out = tmp_path / "sub" / "eval.json"
    proc = run("eval", "--model", str(tiny_model_dir), "--prompt", " it was", "--prompt", "", "--reward", "gap",
               "--split", "dev", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "examples/s" in proc.stdout and "' it was'" in proc.stdout
    data = json.loads(out.read_text())
    assert [r["prompt"] for r in data["results"]] == [" it was", ""]
    first = data["results"][0]
    assert first["n_examples"] == 32 and 0 <= first["accuracy"] <= 1 and first["reward_name"] == "gap"
    assert len(first["per_class_accuracy"]) == 2 and data["counters"]["prompt_evals"] == 2
    assert not list(out.parent.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--task", "sst-3"], "sst-3"),
        (["--task", "sst-2", "--data-dir", "/no/such/dir"], "/no/such/dir"),
        (["--template", "{sentence} only"], "{prompt} is missing"),
        (["--reward", "no_such_module_xyz:fn"], "no_such_module_xyz"),
        (["--reward", "nonsense"], "nonsense"),
        (["--verbalizers", " great"], "verbalizer"),
        (["--max-examples", "0"], "max_examples"),
        (["--out", "/dev/null/x.json"], "is a file"),
    ],
)
def test_eval_bad_input(tiny_model_dir, args, match):
    proc = run("eval", "--model", str(tiny_model_dir), "--prompt", " it", *args)
    assert match in one_line_error(proc)


def test_eval_unknown_model():
    assert "cannot load model" in one_line_error(run("eval", "--model", "/no/such/model-folder"))


@pytest.mark.integration
def test_eval_on_sst2_with_smollm2(fsc16, tmp_path, smollm):
    out = tmp_path / "e.json"
    proc = run("eval", "--task", "sst-2", "--data-dir", str(fsc16), "--seed", "42", "--split", "dev",
               "--prompt", " It was", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())["results"][0]
    assert result["n_examples"] == 32 and 0.3 <= result["accuracy"] <= 1.0


def test_env_prompt_scores_like_rlprompt_eval(tiny_model_dir, tmp_path):
    """A hand-fed action sequence gives the prompt text and accuracy that `rlprompt eval` reports."""
    from rlprompt.envs import DiscretePromptEnv
    from rlprompt.lm import load_lm

    env = DiscretePromptEnv("demo", load_lm(str(tiny_model_dir), device="cpu"), prompt_length=3,
                            reward="accuracy", split="dev")
    env.reset(seed=0)
    info: dict = {}
    for action in (3, 1, 4):
        _, _, terminated, _, info = env.step(action)
    assert terminated
    words = [env.vocab[a] for a in (3, 1, 4)]
    assert env.prompt_tokens == words and info["prompt"] == env.prompt
    out = tmp_path / "eval.json"
    proc = run("eval", "--model", str(tiny_model_dir), "--split", "dev", "--prompt", env.prompt, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["results"][0]["accuracy"] == pytest.approx(info["accuracy"], abs=1e-6)
