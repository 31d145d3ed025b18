"""Ctrl-C during one long engine call (a first step scoring 60,000 examples) stops within
seconds: the call is cut at a chunk boundary once the stop has waited past the grace period."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env

from rlprompt import stop

WORDS = ["good", "bad", "fine", "great", "awful", "nice", "poor", "okay"]


def _write_task(folder: Path, n_train: int) -> list[str]:
    rng = np.random.default_rng(0)
    rows = ["sentence\tlabel"] + [" ".join(rng.choice(WORDS, 12)) + f"\t{i % 2}" for i in range(n_train)]
    (folder / "train.tsv").write_text("\n".join(rows) + "\n")
    for split in ("dev", "test"):
        (folder / f"{split}.tsv").write_text("\n".join(rows[:41]) + "\n")
    return ["--train-file", str(folder / "train.tsv"), "--dev-file", str(folder / "dev.tsv"),
            "--test-file", str(folder / "test.tsv"), "--verbalizers", " bad", " good"]


def test_sigint_inside_a_long_first_step_stops_within_seconds(tiny_model_dir: Path, tmp_path: Path) -> None:
    files = _write_task(tmp_path, 60_000)  # one prompt evaluation: tens of seconds on the tiny LM
    out = tmp_path / "run"
    env = cli_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlprompt.cli", "train", "--model", str(tiny_model_dir), "--dtype", "float32",
         "--device", "cpu", *files, "--agent", "random", "--budget", "4", "--prompt-length", "2",
         "--out", str(out), "--no-test"], stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL)
    assert proc.stderr is not None
    for line in proc.stderr:  # the agent starts learning right after this line
        if line.startswith("training random"):
            break
    time.sleep(4.0)  # well inside the first step's one engine call
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        rest = proc.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run did not stop within 60 s of Ctrl-C")
    waited = time.monotonic() - sent
    assert proc.returncode == 130, rest
    # the grace period (3 s), a chunk, and writing the outputs; 30 s leaves room for a loaded
    # machine. Without the cut the step ran to its end (35 s idle, more under load) and was paid:
    # the budget shows which happened whatever the load.
    assert waited < 30, waited
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["prompt_evals"] < 1, summary["prompt_evals"]  # the first evaluation was cut, not finished


def test_check_raises_only_after_the_grace_period(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(stop.time, "monotonic", lambda: clock[0])
    stop.clear()
    stop.check()  # nothing requested: nothing happens
    stop.request()
    clock[0] += stop.GRACE_SECONDS - 0.5
    stop.check()
    clock[0] += 1.0
    with pytest.raises(KeyboardInterrupt):
        stop.check()
    stop.clear()
    stop.check()
