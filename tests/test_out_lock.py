"""One writer per output folder: a second ``compare``/``train``/``tune`` on an ``--out`` another
process holds is refused with one line naming the holder's pid; the lock goes with its holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli_env, one_error_line

from rlprompt.errors import ConfigError
from rlprompt.io import LOCK_NAME, lock_folder

HOLD = "import sys, time\nfrom rlprompt.io import lock_folder\nwith lock_folder(sys.argv[1], 'test'):\n" \
       "    print('locked', flush=True)\n    time.sleep(60)\n"


def _env() -> dict[str, str]:
    return cli_env()


@pytest.fixture
def held(tmp_path: Path):  # noqa: ANN201
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield out, proc.pid
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("command", [
    ["compare", "--methods", "random", "--budget", "4", "--prompt-length", "2"],
    ["train", "--agent", "random", "--budget", "4", "--prompt-length", "2"],
    ["tune", "--method", "random", "--budget", "4", "--prompt-length", "2"],
])
def test_second_writer_is_refused(command: list[str], held: tuple[Path, int], tiny_model_dir: Path) -> None:
    out, pid = held
    proc = subprocess.run([sys.executable, "-m", "rlprompt.cli", *command, "--model", str(tiny_model_dir),
                           "--dtype", "float32", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=180, env=_env(), stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc.stderr)
    assert f"pid {pid}" in line and "in use" in line, line
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written beside the holder's lock


def test_lock_is_released_and_removed(tmp_path: Path) -> None:
    with lock_folder(tmp_path, "test") as path:
        assert path.read_text().strip() == str(os.getpid())
    assert not path.exists()
    with lock_folder(tmp_path, "test"):
        pass


def test_lock_dies_with_its_holder(held: tuple[Path, int], tmp_path: Path) -> None:
    out, pid = held
    with pytest.raises(ConfigError, match=f"pid {pid}"), lock_folder(out, "test"):
        pass
    os.kill(pid, 9)
    deadline = time.time() + 10
    while True:
        try:
            with lock_folder(out, "test"):
                break
        except ConfigError:
            assert time.time() < deadline
            time.sleep(0.1)


def test_the_lock_is_reentrant_within_one_process(tmp_path: Path) -> None:
    with lock_folder(tmp_path, "outer") as path, lock_folder(tmp_path, "inner") as again:
        assert path == again and path.exists()
    assert not path.exists()


PYTHON_WRITERS = {
    "agent.learn": "from rlprompt.agents import RandomSearch\nfrom rlprompt.lm import ScoringEngine, load_lm\n"
                   "from rlprompt.tasks import load_task\nimport sys\ntask = load_task('demo')\n"
                   "lm = load_lm(sys.argv[2], device='cpu', dtype='float32')\n"
                   "RandomSearch(ScoringEngine(lm, task.verbalizers, task.template), task, out_dir=sys.argv[1])"
                   ".learn(4, progress=False)\n",
    "compare": "from rlprompt.experiments import compare\nfrom rlprompt.experiments.config import CompareConfig\n"
               "import sys\ncompare(CompareConfig(task='demo', methods=['random'], budget=4, model=sys.argv[2], "
               "device='cpu', dtype='float32', prompt_length=2), sys.argv[1])\n",
}


@pytest.mark.parametrize("writer", sorted(PYTHON_WRITERS))
def test_the_python_api_takes_the_lock_too(writer: str, held: tuple[Path, int], tiny_model_dir: Path) -> None:
    """An agent's learn() and compare() from Python: refused on a folder another process writes
    (a checkpoint being written while another process resumes from it included)."""
    out, pid = held
    proc = subprocess.run([sys.executable, "-c", PYTHON_WRITERS[writer], str(out), str(tiny_model_dir)],
                          capture_output=True, text=True, timeout=180, env=_env(), stdin=subprocess.DEVNULL)
    assert proc.returncode != 0 and f"pid {pid}" in proc.stderr and "ConfigError" in proc.stderr, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
