"""Safe loading: no file a user may get from elsewhere is ever unpickled.

A crafted pickle whose ``__reduce__`` creates a marker file is fed to every loader of
user files (a model folder, a soft prompt, a PEFT folder, a checkpoint); each must
refuse it with an rlprompt error and the marker must not exist afterwards.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from rlprompt.errors import DataError, ModelLoadError

SOURCE = Path(__file__).resolve().parents[1] / "rlprompt"


class Exploit:
    """Unpickling this creates ``marker`` (stands in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a crafted pickle was unpickled"


def _pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"prompt_embeddings": Exploit(marker)}))
    return path


def _torch_save(path: Path, marker: Path) -> Path:
    torch.save({"prompt_embeddings": torch.zeros(2, 4), "x": Exploit(marker)}, path)
    return path


def test_the_exploit_works_when_unpickled(tmp_path: Path) -> None:
    """Guard: the payload really runs code when something unpickles it (so the tests below can fail)."""
    target = tmp_path / "ran"
    pickle.loads(_pickle(tmp_path / "p.bin", target).read_bytes())
    assert target.exists()


def test_model_folder_with_pickle_weights_is_refused(tmp_path: Path, marker: Path, tiny_lm: Any) -> None:
    from rlprompt.lm import load_lm

    folder = tmp_path / "model"
    folder.mkdir()
    tiny_lm.model.config.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    _torch_save(folder / "pytorch_model.bin", marker)
    with pytest.raises(ModelLoadError, match="pickle"):
        load_lm(str(folder), device="cpu", reuse=False)


@pytest.mark.parametrize("writer", [_pickle, _torch_save], ids=["pickle", "torch.save"])
@pytest.mark.parametrize("name", ["prompt.safetensors", "prompt.pt"])
def test_soft_prompt_file_with_pickle_is_refused(tmp_path: Path, marker: Path, writer: Any, name: str) -> None:
    from rlprompt.agents.gradient.peft_format import load_soft_prompt

    path = writer(tmp_path / name, marker)
    with pytest.raises(DataError, match="not a valid safetensors"):
        load_soft_prompt(path)


def test_peft_folder_with_pickle_is_refused(tmp_path: Path, marker: Path) -> None:
    from rlprompt.agents.gradient.peft_format import import_peft, load_soft_prompt

    folder = tmp_path / "peft"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 2, "token_dim": 4}))
    _torch_save(folder / "adapter_model.bin", marker)  # PEFT's old pickle format: never read
    with pytest.raises(DataError, match="adapter_model.safetensors is missing"):
        import_peft(folder)
    _pickle(folder / "adapter_model.safetensors", marker)  # a pickle under the safetensors name
    with pytest.raises(DataError, match="not a valid safetensors"):
        load_soft_prompt(folder)


def test_checkpoint_with_pickle_is_refused(tmp_path: Path, marker: Path) -> None:
    from rlprompt.agents.core.checkpoint import load_checkpoint

    folder = tmp_path / "run" / "checkpoint"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"format": "rlprompt-checkpoint"}))
    _torch_save(folder / "state.safetensors", marker)
    with pytest.raises(DataError, match="cannot read the checkpoint"):
        load_checkpoint(tmp_path / "run")


def test_cli_refuses_a_pickled_soft_prompt(tmp_path: Path, marker: Path, tiny_lm: Any, capsys: Any) -> None:
    from rlprompt.cli import main

    model = tmp_path / "model"
    tiny_lm.model.save_pretrained(model)
    tiny_lm.tokenizer.save_pretrained(model)
    bad = _torch_save(tmp_path / "prompt.safetensors", marker)
    assert main(["eval", "--model", str(model), "--soft-prompt", str(bad)]) == 2
    assert "not a valid safetensors" in capsys.readouterr().err


def test_source_never_unpickles() -> None:
    """No loader in rlprompt calls pickle, and torch.load only ever with weights_only=True."""
    offenders = []
    for path in SOURCE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        patterns = (r"\bpickle\.loads?\(", r"\bcloudpickle\b", r"\bjoblib\.load\(", r"allow_pickle=True")
        for pattern in patterns:
            offenders += [f"{path.name}: {m.group(0)}" for m in re.finditer(pattern, text)]
        for m in re.finditer(r"\btorch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                offenders.append(f"{path.name}: {m.group(0)}")
    assert not offenders, offenders

