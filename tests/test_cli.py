"""`rlprompt` driven like a user: subprocesses, exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_accuracy

from rlprompt.tasks import load_task


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


def printed_row(stdout: str, prompt: str) -> list[float]:
    """The numbers `rlprompt eval` prints for one prompt: accuracy, balanced accuracy, reward,
    then each class's accuracy."""
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith(repr(prompt) + " ")]
    return [float(x) for x in re.findall(r"-?\d+\.\d+", line[len(repr(prompt)):])]


def assert_eval_output(proc: subprocess.CompletedProcess[str], data: dict, model: str, task,  # noqa: ANN001
                       dtype: str = "auto") -> None:
    """Every result of `rlprompt eval --out`: the accuracy is the prompt's (recomputed from the
    engine's scores on the same model), the per-class accuracies average to it, and the table
    printed on stdout shows the numbers written to the JSON."""
    from rlprompt.lm import ScoringEngine, load_lm

    engine = ScoringEngine(load_lm(model, device="cpu", dtype=dtype), task.verbalizers, task.template)
    labels = task.label_tensor(data["split"])
    counts = [int((labels == c).sum()) for c in range(len(task.verbalizers))]
    for r in data["results"]:
        assert_accuracy(r["accuracy"], engine, task, r["prompt"], data["split"])
        per_class = r["per_class_accuracy"]
        assert sum(a * n for a, n in zip(per_class, counts, strict=True)) / sum(counts) == pytest.approx(r["accuracy"])
        assert r["balanced_accuracy"] == pytest.approx(sum(per_class) / len(per_class))
        printed = printed_row(proc.stdout, r["prompt"])
        assert printed == pytest.approx([r["accuracy"], r["balanced_accuracy"], r["reward"], *per_class], abs=6e-4), \
            (printed, r)


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
               "--split", "dev", "--out", str(out), "--dtype", "float32")
    assert proc.returncode == 0, proc.stderr
    assert "examples/s" in proc.stdout and "' it was'" in proc.stdout
    data = json.loads(out.read_text())
    assert [r["prompt"] for r in data["results"]] == [" it was", ""]
    first = data["results"][0]
    assert first["n_examples"] == 32 and first["reward_name"] == "gap" and first["diagnostics"]["accuracy"] == \
        pytest.approx(first["accuracy"])
    assert len(first["per_class_accuracy"]) == 2 and data["counters"]["prompt_evals"] == 2
    assert_eval_output(proc, data, str(tiny_model_dir), load_task("demo"), dtype="float32")
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
    data = json.loads(out.read_text())
    assert data["results"][0]["n_examples"] == 32 and data["results"][0]["prompt"] == " It was"
    assert_eval_output(proc, data, "smollm2-135m", load_task("sst-2", data_dir=fsc16, seed=42))


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
