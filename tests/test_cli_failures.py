"""Every path out of ``rlprompt.cli.main`` ends in exit 0 with outputs, or non-zero with one line
``rlprompt: error: ...`` (a traceback only with ``--debug``): subcommands driven with each kind of
failing plug-in (a syntax error, a raise or a ``sys.exit`` at import, a reward calling
``sys.exit(0)``) and invalid option values (a negative seed, a device the engine cannot use)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, one_error_line

from rlprompt.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

PLUGINS = {
    "rlp_syntax_error": "def reward(logprobs, labels)\n    return logprobs\n",
    "rlp_raises_at_import": "raise RuntimeError('plug-in broken at import')\n",
    "rlp_exits_at_import": "import sys\nsys.exit(0)\n",
    "rlp_exits_in_call": "import sys\n\ndef reward(logprobs, labels):\n    sys.exit(0)\n",
}
MATCH = {"rlp_syntax_error": "SyntaxError", "rlp_raises_at_import": "plug-in broken at import",
         "rlp_exits_at_import": "SystemExit", "rlp_exits_in_call": "sys.exit(0)"}


def commands(model: Path, out: Path) -> dict[str, list[str]]:
    common = ["--model", str(model), "--dtype", "float32", "--device", "cpu"]
    return {
        "eval": ["eval", *common, "--out", str(out / "eval.json")],
        "train": ["train", *common, "--agent", "random", "--budget", "4", "--prompt-length", "2", "--out",
                  str(out / "train")],
        "compare": ["compare", *common, "--methods", "random", "--budget", "4", "--prompt-length", "2", "--out",
                    str(out / "compare")],
    }


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name, text in PLUGINS.items():
        (folder / f"{name}.py").write_text(text)
        sys.modules.pop(name, None)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def _run(argv: list[str], capsys: Any) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse only
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "train", "compare"])
@pytest.mark.parametrize("plugin", list(PLUGINS))
def test_failing_plugins(command: str, plugin: str, plugins: Path, tiny_model_dir: Path, tmp_path: Path,
                         capsys: Any) -> None:
    argv = [*commands(tiny_model_dir, tmp_path / "out")[command], "--reward", f"{plugin}:reward"]
    code, err = _run(argv, capsys)
    assert code != 0, err
    assert "Traceback" not in err, err
    if command == "compare" and code == 1:  # the run is recorded as failed, with its error
        records = (tmp_path / "out" / "compare" / "results.jsonl").read_text()
        assert "failed" in records and MATCH[plugin] in records, records
    else:
        assert code == 2 and MATCH[plugin] in one_error_line(err), err


@pytest.mark.parametrize("command", ["eval", "train", "compare"])
@pytest.mark.parametrize(("option", "match"), [
    (["--seed", "-1"], "--seed must be 0 or more"),
    (["--device", "meta"], "device 'meta'"),
])
def test_invalid_option_values(command: str, option: list[str], match: str, tiny_model_dir: Path, tmp_path: Path,
                               capsys: Any) -> None:
    code, err = _run([*commands(tiny_model_dir, tmp_path / "out")[command], *option], capsys)
    assert code == 2 and match in one_error_line(err), err


def _subprocess(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = cli_env(cwd)
    return subprocess.run([sys.executable, "-m", "rlprompt.cli", *argv], capture_output=True, text=True,
                          timeout=180, cwd=cwd, env=env, stdin=subprocess.DEVNULL)


def test_reward_calling_sys_exit_0_is_not_a_success(plugins: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """As a real process: exit code 2 and one line, not 0 with no output."""
    argv = [*commands(tiny_model_dir, tmp_path / "out")["eval"], "--reward", "rlp_exits_in_call:reward"]
    proc = _subprocess(argv, plugins)
    assert proc.returncode == 2, proc.stderr
    assert "sys.exit(0)" in one_error_line(proc.stderr)
    assert not (tmp_path / "out" / "eval.json").exists()
    debug = _subprocess(["--debug", *argv], plugins)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
