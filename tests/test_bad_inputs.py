"""The bad-input matrix: every way a user can feed `rlprompt` something wrong.

Each row of :data:`CASES` is one bad input, run through the CLI; each must end with a
non-zero exit (2), no traceback, a last stderr line ``rlprompt: error: ...`` that names
the problem, and no file left in the ``--out`` folder (no half-written or temp files).

Rows marked ``subprocess=True`` run ``python -m rlprompt.cli`` in a child process: those
that need process-level behaviour (a reward that never returns, a full disk, a file-size
limit, file permissions) and a few others. The rest call :func:`rlprompt.cli.main` in this
process (same parser and error handling; a subprocess costs about 3 s of imports each).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from conftest import CORPUS, build_tiny_causal, cli_env

from rlprompt.cli import main

REWARDS_MODULE = "rlp_bad_rewards"
MARKER_ENV = "RLPROMPT_TEST_MARKER"


class Exploit:
    """A pickle payload that writes a marker file when unpickled (what a malicious .bin does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def write_exploit(path: Path, marker: Path) -> Path:
    """A pickle file that would create ``marker`` if anything unpickled it."""
    path.write_bytes(pickle.dumps({"weight": Exploit(marker)}))
    return path


def _save_model(model: Any, tokenizer: Any, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _tsv(path: Path, rows: list[tuple[str, str]], header: str = "sentence\tlabel") -> Path:
    path.write_text(header + "\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows), encoding="utf-8")
    return path


def _unk_model(folder: Path) -> Path:
    """A tiny Llama with a word-level tokenizer that has an <unk> token (so a word can be out of vocabulary)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["<pad>", "<eos>", "<unk>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=fast.pad_token_id)
    return _save_model(LlamaForCausalLM(cfg), fast, folder)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_lm: Any, tiny_masked_lm: Any) -> SimpleNamespace:
    """Every model folder (tiny random LMs), data file, reward module, soft prompt: built once."""
    from safetensors.torch import save_file
    root = tmp_path_factory.mktemp("bad-inputs")
    w = SimpleNamespace(root=root)
    w.model = _save_model(tiny_lm.model, tiny_lm.tokenizer, root / "model")
    w.masked = _save_model(tiny_masked_lm.model, tiny_masked_lm.tokenizer, root / "masked")
    w.unk_model = _unk_model(root / "unk-model")
    broken = build_tiny_causal(seed=1, layers=1)
    with torch.no_grad():
        broken.model.model.norm.weight[3] = float("nan")
    w.nan_weights = _save_model(broken.model, broken.tokenizer, root / "nan-weights")
    overflow = build_tiny_causal(seed=1, layers=1)
    with torch.no_grad():  # finite weights, but the head's sums overflow to inf - inf = NaN
        overflow.model.model.norm.weight.fill_(3e38)
    w.nan_logits = _save_model(overflow.model, overflow.tokenizer, root / "nan-logits")
    w.empty_model = root / "empty-model"
    w.empty_model.mkdir()
    w.broken_config = root / "broken-config"
    w.broken_config.mkdir()
    (w.broken_config / "config.json").write_text("{this is not json")
    (w.broken_config / "model.safetensors").write_bytes((w.model / "model.safetensors").read_bytes())
    w.pickle_model = root / "pickle-model"
    w.pickle_model.mkdir()
    tiny_lm.model.config.save_pretrained(w.pickle_model)
    tiny_lm.tokenizer.save_pretrained(w.pickle_model)
    write_exploit(w.pickle_model / "pytorch_model.bin", root / "PWNED-model")
    w.corrupt_model = root / "corrupt-safetensors-model"
    w.corrupt_model.mkdir()
    tiny_lm.model.config.save_pretrained(w.corrupt_model)
    tiny_lm.tokenizer.save_pretrained(w.corrupt_model)
    (w.corrupt_model / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")

    # -- data ---------------------------------------------------------------------------
    d = root / "data"
    d.mkdir()
    rows = [(s, str(i % 2)) for i, s in enumerate(CORPUS)]
    w.train, w.dev, w.test = (_tsv(d / f"{s}.tsv", rows) for s in ("train", "dev", "test"))
    w.fsc = root / "fsc16"
    for folder in (w.fsc, root / "fsc16-no-test"):
        (folder / "sst-2" / "42").mkdir(parents=True)
        _tsv(folder / "sst-2" / "42" / "train.tsv", rows)
        _tsv(folder / "sst-2" / "42" / "dev.tsv", rows)
    _tsv(w.fsc / "sst-2" / "test.tsv", rows)
    w.fsc_no_test = root / "fsc16-no-test"
    w.unreadable = _tsv(d / "unreadable.tsv", rows)
    w.unreadable.chmod(0)
    w.a_dir = d / "folder.tsv"
    w.a_dir.mkdir()
    w.latin1 = d / "latin1.tsv"
    w.latin1.write_bytes("sentence\tlabel\nun film tr\u00e8s ennuyeux\t0\n".encode("latin-1"))
    w.empty = d / "empty.tsv"
    w.empty.write_text("")
    w.header_only = _tsv(d / "header-only.tsv", [])
    w.huge = d / "huge-line.tsv"
    with w.huge.open("w") as f:  # a 50 MB line: a file whose line breaks were lost
        f.write("sentence\tlabel\n" + "great " * (50 * 2**20 // 6) + "\t1\n")
    w.data_txt = _tsv(d / "data.txt", rows)
    w.long_text = _tsv(d / "long-text.tsv", [("great film " * 400, "1")])
    w.dup_header = _tsv(d / "dup-header.tsv", rows, header="sentence\tsentence")
    w.names_ok = _tsv(d / "names-ok.tsv", [(s, ("negative", "positive")[i % 2]) for i, s in enumerate(CORPUS)])
    w.names_bad = _tsv(d / "names-bad.tsv", [(CORPUS[0], "positive"), (CORPUS[1], "neutral")])
    w.out_of_range = _tsv(d / "out-of-range.tsv", [(CORPUS[0], "1"), (CORPUS[1], "7")])
    w.read_only = root / "read-only"
    w.read_only.mkdir()
    w.read_only.chmod(0o555)

    # -- plug-in rewards ------------------------------------------------------------------
    w.rewards = root / "rewards"
    w.rewards.mkdir()
    (w.rewards / f"{REWARDS_MODULE}.py").write_text(
        "import time\nimport torch\n\n"
        "def hang(logprobs, labels):\n    while True:\n        time.sleep(1)\n\n"
        "def wrong_shape(logprobs, labels):\n    return torch.zeros(logprobs.shape[0] + 1)\n\n"
        "def nan(logprobs, labels):\n    return torch.full((logprobs.shape[0],), float('nan'))\n"
    )
    (w.rewards / "disk_full.py").write_text(
        "import errno, os, sys\n\n"
        "def full(fd):\n    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n\n"
        "os.fsync = full  # the data is written, then the disk reports it is full\n"
        "from rlprompt.cli import main\n\nsys.exit(main(sys.argv[1:]))\n"
    )

    # -- soft prompts -----------------------------------------------------------------------
    hidden = tiny_lm.model.get_input_embeddings().embedding_dim
    w.peft_lora = root / "peft-lora"
    w.peft_lora.mkdir()
    (w.peft_lora / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    save_file({"base_model.model.lora_A.weight": torch.zeros(8, hidden)},
              str(w.peft_lora / "adapter_model.safetensors"))
    w.peft_dim = root / "peft-dim"
    w.peft_dim.mkdir()
    (w.peft_dim / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 2, "token_dim": 16}))
    save_file({"prompt_embeddings": torch.zeros(2, 16)}, str(w.peft_dim / "adapter_model.safetensors"))
    w.corrupt_soft = root / "corrupt.safetensors"
    w.corrupt_soft.write_bytes(b"\xff" * 64)
    w.pickle_soft = write_exploit(root / "pickled.safetensors", root / "PWNED-soft")
    return w


# -- the matrix ---------------------------------------------------------------------------------

EVAL = ["eval", "--model", "{model}", "--out", "{out}/eval.json"]
TRAIN = ["train", "--model", "{model}", "--out", "{out}/run", "--budget", "4", "--prompt-length", "2"]
TUNE = ["tune", "--model", "{model}", "--out", "{out}/run", "--budget", "4"]


def files(train: str = "{train}") -> list[str]:
    """Task-from-files arguments with a chosen training file."""
    return ["--task", "sst-2", "--train-file", train, "--dev-file", "{dev}", "--test-file", "{test}"]


@dataclass(frozen=True)
class Case:
    """One bad input: CLI arguments (``{name}`` filled from the world), text the error names."""

    argv: list[str]
    match: str
    subprocess: bool = False
    model: str = "model"
    started: bool = False
    """The error comes after learning began: the run's logs, best prompt and a summary with status "failed"
    may stay (never a temp file)."""


CASES: dict[str, Case] = {
    # -- tasks and data
    "unknown-task": Case([*EVAL, "--task", "sst-3"], "sst-3", subprocess=True),
    "empty-task-name": Case([*EVAL, "--task", ""], "task"),
    "known-task-without-data": Case([*EVAL, "--task", "sst-2"], "needs data"),
    "missing-data-dir": Case([*EVAL, "--task", "sst-2", "--data-dir", "{root}/no-such-dir"], "no-such-dir"),
    "missing-task-folder": Case([*EVAL, "--task", "trec", "--data-dir", "{fsc}"], "trec"),
    "missing-seed-folder": Case([*EVAL, "--task", "sst-2", "--data-dir", "{fsc}", "--seed", "13"], "seed 13"),
    "data-dir-without-test.tsv": Case([*EVAL, "--task", "sst-2", "--data-dir", "{fsc_no_test}"], "test.tsv"),
    "missing-test-file": Case([*EVAL, "--task", "sst-2", "--train-file", "{train}", "--dev-file", "{dev}"],
                              "test_file"),
    "no-such-data-file": Case([*EVAL, *files("{root}/nope.tsv")], "nope.tsv"),
    "unreadable-file": Case([*EVAL, *files("{unreadable}")], "unreadable.tsv: cannot read", subprocess=True),
    "data-file-is-a-folder": Case([*EVAL, *files("{a_dir}")], "folder.tsv: is a directory"),
    "unknown-extension": Case([*EVAL, *files("{data_txt}")], "extension"),
    "non-utf8-text": Case([*EVAL, *files("{latin1}")], "not UTF-8"),
    "empty-file": Case([*EVAL, *files("{empty}")], "empty"),
    "header-only-file": Case([*EVAL, *files("{header_only}")], "no examples"),
    "huge-line-50MB": Case([*EVAL, *files("{huge}")], "huge-line.tsv:2", subprocess=True),
    "text-beyond-context": Case([*EVAL, "--task", "sst-2", "--train-file", "{train}", "--dev-file", "{dev}",
                                 "--test-file", "{long_text}"], "context"),
    "duplicate-header": Case([*EVAL, *files("{dup_header}")], "twice"),
    "unknown-label-name": Case([*EVAL, *files("{names_bad}")],
                               "names-bad.tsv:3: column 'label': unknown label 'neutral'"),
    "label-out-of-range": Case([*EVAL, *files("{out_of_range}")], "out-of-range.tsv:3"),
    # -- verbalizers and template
    "one-verbalizer": Case([*EVAL, "--verbalizers", " great"], "verbalizer"),
    "empty-verbalizer": Case([*EVAL, "--verbalizers", "", " great"], "verbalizer"),
    "duplicate-verbalizers": Case([*EVAL, "--verbalizers", " great", " great"], "repeat"),
    "out-of-vocabulary-verbalizer": Case([*EVAL, "--verbalizers", " great", " zyzzyva"], "zyzzyva", model="unk_model"),
    "multi-token-verbalizer-on-masked-lm": Case([*EVAL, "--verbalizers", " great", " zyzzyvaqq"], "zyzzyvaqq",
                                                model="masked"),
    "template-without-prompt": Case([*EVAL, "--template", "{{sentence}} only"], "{prompt}"),
    "template-without-sentence": Case([*EVAL, "--template", "{{prompt}} only"], "{sentence}"),
    "template-unknown-field": Case([*EVAL, "--template", "{{sentence}} {{prompt}} {{label}}"], "label"),
    # -- the model
    "unknown-model-name": Case([*EVAL], "no-such-model-xyz", model="no_such", subprocess=True),
    "missing-model-folder": Case([*EVAL], "no-such-folder", model="no_such_folder"),
    "empty-model-folder": Case([*EVAL], "config.json", model="empty_model"),
    "broken-config.json": Case([*EVAL], "cannot load model", model="broken_config"),
    "corrupt-model-safetensors": Case([*EVAL], "cannot load model", model="corrupt_model"),
    "pickle-only-model-folder": Case([*EVAL], "pickle", model="pickle_model", subprocess=True),
    "nan-weights": Case([*EVAL], "NaN", model="nan_weights"),
    "nan-logits": Case([*EVAL], "NaN", model="nan_logits", subprocess=True),
    "bad-device": Case([*EVAL, "--device", "quantum"], "quantum"),
    "bad-dtype": Case([*EVAL, "--dtype", "float13"], "float13"),
    # -- agents, methods, budgets, seeds
    "unknown-agent": Case([*TRAIN, "--agent", "dqn"], "dqn"),
    "agent-does-not-fit-space": Case([*TRAIN, "--agent", "sac", "--space", "discrete"], "sac"),
    "unknown-space": Case([*TRAIN, "--space", "hyperbolic"], "hyperbolic"),
    "budget-zero": Case([*TRAIN, "--budget", "0"], "--budget"),
    "budget-negative": Case([*TUNE, "--budget", "-5"], "--budget"),
    "budget-text": Case([*TRAIN, "--budget", "ten"], "--budget", subprocess=True),
    "prompt-length-zero": Case([*TRAIN, "--prompt-length", "0"], "--prompt-length"),
    "unknown-option": Case([*TRAIN, "--set", "warp_speed=9"], "warp_speed"),
    "unknown-method": Case([*TUNE, "--method", "gradient-magic"], "gradient-magic"),
    "tune-prompt-length-zero": Case([*TUNE, "--method", "soft-prompt", "--prompt-length", "0"], "prompt_length"),
    "prompt-length-beyond-context": Case([*TUNE, "--method", "soft-prompt", "--prompt-length", "400"], "context"),
    "seed-as-text": Case([*EVAL, "--seed", "forty-two"], "--seed"),
    "agent-seed-as-text": Case([*TRAIN, "--agent-seed", "x"], "--agent-seed"),
    "set-seed-as-text": Case([*TRAIN, "--set", "seed=abc"], "seed"),
    "max-examples-zero": Case([*EVAL, "--max-examples", "0"], "max_examples"),
    # -- soft prompts and PEFT folders
    "peft-of-another-type": Case([*EVAL, "--soft-prompt", "{peft_lora}"], "LORA"),
    "peft-of-another-token-dim": Case([*EVAL, "--soft-prompt", "{peft_dim}"], "token_dim"),
    "corrupt-safetensors": Case([*EVAL, "--soft-prompt", "{corrupt_soft}"], "not a valid safetensors"),
    "pickle-as-soft-prompt": Case([*EVAL, "--soft-prompt", "{pickle_soft}"], "not a valid safetensors"),
    "soft-prompt-missing": Case([*EVAL, "--soft-prompt", "{root}/gone.safetensors"], "does not exist"),
    # -- rewards
    "unknown-reward": Case([*EVAL, "--reward", "nonsense"], "nonsense"),
    "reward-module-missing": Case([*EVAL, "--reward", "no_such_mod_xyz:fn"], "no_such_mod_xyz"),
    "reward-function-missing": Case([*EVAL, "--reward", f"{REWARDS_MODULE}:nope"], "nope"),
    "reward-wrong-shape": Case([*EVAL, "--reward", f"{REWARDS_MODULE}:wrong_shape"], "shape"),
    "reward-returns-nan": Case([*EVAL, "--reward", f"{REWARDS_MODULE}:nan"], "non-finite"),
    "reward-hangs": Case([*EVAL, "--reward", f"{REWARDS_MODULE}:hang", "--reward-timeout", "2"],
                         "did not return within 2", subprocess=True),
    "reward-hangs-in-train": Case([*TRAIN, "--reward", f"{REWARDS_MODULE}:hang", "--reward-timeout", "2"],
                                  "did not return within 2", subprocess=True, started=True),
    "reward-timeout-text": Case([*EVAL, "--reward-timeout", "soon"], "--reward-timeout"),
    "reward-timeout-zero": Case([*EVAL, "--reward", f"{REWARDS_MODULE}:nan", "--reward-timeout", "0"],
                                "--reward-timeout"),
    # -- outputs
    "out-is-below-a-file": Case(["eval", "--model", "{model}", "--out", "/dev/null/x.json"], "is a file"),
    "out-folder-not-writable": Case(["eval", "--model", "{model}", "--out", "{read_only}/eval.json"],
                                    "not writable", subprocess=True),
    "train-out-folder-not-writable": Case(["train", "--model", "{model}", "--out", "{read_only}/run"],
                                          "not writable", subprocess=True),
    "disk-full": Case([*EVAL], "the disk is full", subprocess=True),
    "file-size-limit": Case([*EVAL], "ulimit", subprocess=True),
}
assert len(CASES) >= 60


def _drop_root_overrides() -> None:
    """In the child: as root, drop the capabilities that ignore file permissions (so chmod counts)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone after exec
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _file_size_limit() -> None:
    """In the child: files may not grow past 64 bytes; writes then fail with EFBIG (not SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))


def run_cli(name: str, case: Case, w: SimpleNamespace, out: Path, capsys: Any,
            monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Run one case; returns (exit code, stderr)."""
    paths = {k: str(v) for k, v in vars(w).items()} | {"out": str(out), "no_such": "no-such-model-xyz",
                                                       "no_such_folder": str(w.root / "no-such-folder")}
    paths["model"] = paths[case.model]
    argv = [a.format(**paths) for a in case.argv]
    if not case.subprocess:
        monkeypatch.syspath_prepend(str(w.rewards))
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        return code, capsys.readouterr().err
    command = [sys.executable, "-m", "rlprompt.cli", *argv]
    preexec: Callable[[], None] | None = _drop_root_overrides
    if name == "disk-full":
        command = [sys.executable, str(w.rewards / "disk_full.py"), *argv]
    elif name == "file-size-limit":
        preexec = _file_size_limit
    # Offline, as on a machine without the hub (otherwise an unknown model name waits on the network).
    env = cli_env(PYTHONWARNINGS="ignore", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=w.rewards, env=env,
                          stdin=subprocess.DEVNULL, preexec_fn=preexec)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_bad_input(name: str, world: SimpleNamespace, tmp_path: Path, capsys: Any,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    out = tmp_path / "out"
    code, err = run_cli(name, case, world, out, capsys, monkeypatch)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2, f"exit {code}: {err[-2000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert lines and lines[-1].startswith("rlprompt: error: "), err[-2000:]
    assert case.match in lines[-1], lines[-1]
    assert len(lines[-1]) < 600, lines[-1]
    left = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    if case.started:  # what was found is kept, with a summary that names the failure
        assert not [p for p in left if ".tmp" in p.name], left
        summaries = [json.loads(p.read_text()) for p in left if p.name == "summary.json"]
        assert all(s["status"] == "failed" and case.match in s["message"] for s in summaries), summaries
    else:
        assert not left, f"files left in --out: {left}"
    assert not list(world.read_only.iterdir())


def test_labels_as_class_names_load(world: SimpleNamespace, tmp_path: Path, capsys: Any) -> None:
    """A label column holding the task's class names is valid input (not in the matrix: it must work)."""
    out = tmp_path / "eval.json"
    code = main(["eval", "--model", str(world.model), *[a.format(train=world.names_ok, dev=world.names_ok,
                 test=world.names_ok) for a in files()], "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["results"][0]["n_examples"] == len(CORPUS)


def test_marker_never_written(world: SimpleNamespace) -> None:
    """No case above unpickled the crafted files (run last: after the matrix in file order)."""
    assert not (world.root / "PWNED-model").exists()
    assert not (world.root / "PWNED-soft").exists()


def test_disk_full_leaves_no_temp_file(world: SimpleNamespace, tmp_path: Path) -> None:
    """The atomic write removes its temp file when the disk fills after the data went out."""
    from rlprompt.errors import ConfigError
    from rlprompt.io import write_json

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real = os.fsync
    os.fsync = full
    try:
        with pytest.raises(ConfigError, match="the disk is full"):
            write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.fsync = real
    assert list(tmp_path.iterdir()) == []
