"""No silently wrong result: inputs that used to run and print a number that was false.

- a model folder whose weights do not match its config (a renamed, an extra or a wrongly shaped
  tensor) is refused, naming the tensors; ``--allow-partial-weights`` accepts it explicitly;
- a reward plug-in that writes into the logprobs (or labels) it is given cannot change the
  reported accuracy;
- ``--verbalizers`` with another class count than the known task's, or verbalizers that are one
  class name once stripped, are refused;
- the text column pointing at the label column is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import CORPUS, one_error_line

from rlprompt.cli import main
from rlprompt.errors import ConfigError, ModelLoadError
from rlprompt.rewards import Reward
from rlprompt.rewards.builtin import accuracy

pytestmark = pytest.mark.usefixtures("one_thread")

RENAMED = "model.layers.0.mlp.up_proj.weight"


def _edit_weights(src: Path, dst: Path, edit: Any) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    tensors = load_file(str(dst / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-weights")
    return {
        "renamed": _edit_weights(tiny_model_dir, root / "renamed",
                                 lambda t: t.__setitem__("model.layers.0.mlp.upp.weight", t.pop(RENAMED))),
        "missing": _edit_weights(tiny_model_dir, root / "missing", lambda t: t.pop(RENAMED)),
        "extra": _edit_weights(tiny_model_dir, root / "extra",
                               lambda t: t.__setitem__("model.layers.9.extra.weight", torch.zeros(2))),
        "shape": _edit_weights(tiny_model_dir, root / "shape", lambda t: t.__setitem__(RENAMED, torch.zeros(3, 3))),
    }


def _eval(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    try:
        code = main(["eval", "--dtype", "float32", "--device", "cpu", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(("kind", "named"), [
    ("renamed", [RENAMED, "model.layers.0.mlp.upp.weight", "missing", "unexpected"]),
    ("missing", [RENAMED, "missing"]),
    ("extra", ["model.layers.9.extra.weight", "unexpected"]),
    ("shape", [RENAMED, "(3, 3) vs (64, 32)", "wrong shape"]),
])
def test_mismatched_weights_are_an_error_naming_them(kind: str, named: list[str], bad_models: dict[str, Path],
                                                     capsys: Any) -> None:
    code, _, err = _eval(["--model", str(bad_models[kind])], capsys)
    line = one_error_line(err)
    assert code == 2
    for text in named:
        assert text in line, line
    assert "--allow-partial-weights" in line


def test_partial_weights_load_when_asked_for(bad_models: dict[str, Path], capsys: Any) -> None:
    from rlprompt.lm import load_lm

    with pytest.raises(ModelLoadError, match="missing"):
        load_lm(str(bad_models["renamed"]), device="cpu", dtype="float32")
    assert load_lm(str(bad_models["renamed"]), device="cpu", dtype="float32", partial_weights=True) is not None
    code, out, err = _eval(["--model", str(bad_models["shape"]), "--allow-partial-weights"], capsys)
    assert code == 0, err
    assert "examples/s" in out


def test_matching_weights_still_load(tiny_model_dir: Path, capsys: Any) -> None:
    code, out, err = _eval(["--model", str(tiny_model_dir)], capsys)
    assert code == 0, err


# -- reward plug-ins cannot alter the metrics ---------------------------------------------------

PLUGIN = '''
import torch

def inplace(logprobs, labels):
    """Makes every example look right, in place, then returns a constant."""
    logprobs[:, torch.arange(labels.shape[0]), labels] = 100.0
    labels.zero_()
    return torch.zeros(logprobs.shape[0])

def own_accuracy(logprobs, labels):
    return torch.zeros(logprobs.shape[0]), {"accuracy": torch.ones(logprobs.shape[0])}
'''


def test_in_place_reward_does_not_change_accuracy(tiny_model_dir: Path, tmp_path: Path, capsys: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rlp_inplace_reward.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    results = {}
    for reward in ("accuracy", "rlp_inplace_reward:inplace", "rlp_inplace_reward:own_accuracy"):
        out = tmp_path / f"{reward.replace(':', '-')}.json"
        code, _, err = _eval(["--model", str(tiny_model_dir), "--reward", reward, "--out", str(out)], capsys)
        assert code == 0, err
        results[reward] = json.loads(out.read_text())["results"][0]
    reference = results["accuracy"]
    assert reference["accuracy"] < 1.0  # a random tiny LM: the in-place write would make it 1.0
    for reward in ("rlp_inplace_reward:inplace", "rlp_inplace_reward:own_accuracy"):
        got = results[reward]
        assert got["accuracy"] == reference["accuracy"]
        assert got["per_class_accuracy"] == reference["per_class_accuracy"]
        assert got["diagnostics"]["accuracy"] == pytest.approx(reference["accuracy"])
    assert results["rlp_inplace_reward:own_accuracy"]["diagnostics"]["reward_accuracy"] == 1.0


def test_reward_gets_copies_and_gradients_still_flow() -> None:
    logprobs = torch.tensor([[[0.0, -5.0], [0.0, -5.0]]], requires_grad=True)
    labels = torch.tensor([1, 1])
    seen = {}

    def writes(lp: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        seen["same"] = lp.data_ptr() == logprobs.data_ptr()
        out = lp[:, :, 1].sum(-1)
        lab.fill_(0)
        return out

    out = Reward(writes)(logprobs, labels)
    assert not seen["same"] and labels.tolist() == [1, 1]
    assert out.diagnostics["accuracy"].tolist() == [0.0] == accuracy(logprobs, labels).tolist()
    out.rewards.sum().backward()
    assert logprobs.grad is not None and logprobs.grad[0, :, 1].tolist() == [1.0, 1.0]


# -- verbalizers that redefine or merge classes -------------------------------------------------


def _tsv(path: Path, labels: list[str], header: str = "sentence\tlabel") -> Path:
    path.write_text(header + "\n" + "".join(f"{CORPUS[i % len(CORPUS)]}\t{lab}\n" for i, lab in enumerate(labels)))
    return path


@pytest.fixture
def named_files(tmp_path: Path) -> list[str]:
    f = _tsv(tmp_path / "names.tsv", ["great", "terrible", "great", "terrible"])
    return ["--train-file", str(f), "--dev-file", str(f), "--test-file", str(f)]


@pytest.mark.parametrize("extra", [
    [],  # the built-in demo (2 classes)
    ["--task", "sst-2", "--data-dir", "{fsc}"],
    ["--task", "sst-2", "--files"],
])
def test_verbalizer_count_of_a_known_task(extra: list[str], tiny_model_dir: Path, tmp_path: Path,
                                          named_files: list[str], capsys: Any) -> None:
    fsc = tmp_path / "fsc"
    (fsc / "sst-2" / "42").mkdir(parents=True)
    for name in ("42/train.tsv", "42/dev.tsv", "test.tsv"):
        _tsv(fsc / "sst-2" / name, ["0", "1", "0", "1"])
    argv = [a.format(fsc=fsc) for a in extra if a != "--files"] + (named_files if "--files" in extra else [])
    code, _, err = _eval(["--model", str(tiny_model_dir), *argv, "--verbalizers", " a", " b", " c"], capsys)
    line = one_error_line(err)
    assert code == 2 and "gives 3 words" in line and "has 2 classes" in line, line


def test_a_new_task_may_have_its_own_class_count(tiny_model_dir: Path, named_files: list[str], capsys: Any,
                                                 tmp_path: Path) -> None:
    f = _tsv(tmp_path / "ids.tsv", ["0", "1", "2", "1"])
    files = ["--train-file", str(f), "--dev-file", str(f), "--test-file", str(f)]
    for task in ([], ["--task", "my-three-way"]):  # files with the default name, or a name of one's own
        code, _, err = _eval(["--model", str(tiny_model_dir), *task, *files, "--verbalizers", " a", " b", " c"],
                             capsys)
        assert code == 0, err


def test_verbalizers_colliding_after_stripping(tiny_model_dir: Path, named_files: list[str], capsys: Any) -> None:
    code, _, err = _eval(["--model", str(tiny_model_dir), "--task", "mine", *named_files,
                          "--verbalizers", " great", "great"], capsys)
    line = one_error_line(err)
    assert code == 2 and "' great' and 'great'" in line and "class name 'great'" in line, line
    from rlprompt.tasks import Example, Task

    with pytest.raises(ConfigError, match="label names 'Good' and ' Good'"):
        Task(name="t", verbalizers=[" a", " b"], label_names=["Good", " Good"], train=[Example("x", 0)],
             dev=[Example("x", 0)], test=[Example("x", 1)])


# -- impossible column choices ------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "argv", "match"), [
    (".tsv", ["--text-column", "label"], "both 'label'"),
    (".jsonl", ["--text-column", "label"], "both 'label'"),
    (".tsv", ["--text-column", "sentence", "--label-column", "sentence"], "both 'sentence'"),
    (".tsv", ["--text-column", " "], "text column name is empty"),
])
def test_impossible_columns(suffix: str, argv: list[str], match: str, tiny_model_dir: Path, tmp_path: Path,
                            capsys: Any) -> None:
    f = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        f.write_text("".join(json.dumps({"sentence": s, "label": i % 2}) + "\n" for i, s in enumerate(CORPUS)))
    else:
        _tsv(f, ["0", "1"] * 3)
    code, _, err = _eval(["--model", str(tiny_model_dir), "--train-file", str(f), "--dev-file", str(f),
                          "--test-file", str(f), *argv], capsys)
    line = one_error_line(err)
    assert code == 2 and match in line, line


def test_hf_text_column_is_label_column() -> None:
    from rlprompt.tasks.task import check_columns

    with pytest.raises(ConfigError, match="both 'label'"):
        check_columns(["sentence", "label"], "label")
    check_columns(["premise", "hypothesis"], "label")


# -- messages that send the user the right way --------------------------------------------------


def test_whitespace_only_lines_are_skipped_and_a_directory_says_so(tmp_path: Path) -> None:
    from rlprompt.errors import DataError
    from rlprompt.tasks.table import load_table

    f = tmp_path / "spaces.tsv"
    f.write_text("sentence\tlabel\na good film\t1\n   \n\t\n \t \na bad film\t0\n    \n")
    assert [e.label for e in load_table(f, num_classes=2)] == [1, 0]
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(DataError, match="is a directory") as err:
        load_table(folder, num_classes=2)
    assert "delimiter" not in str(err.value)
