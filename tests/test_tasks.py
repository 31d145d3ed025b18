"""Tests for rlprompt.tasks: the Task type, loaders, registry and the demo task."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from rlprompt.errors import ConfigError, DataError
from rlprompt.lm.template import CAUSAL_TEMPLATE, MASKED_TEMPLATE
from rlprompt.tasks import (
    FEWSHOT_SEEDS,
    TASKS,
    Example,
    Task,
    check_verbalizers,
    demo_task,
    get_task_spec,
    list_tasks,
    load_fewshot,
    load_task,
    task_from_files,
)
from rlprompt.tasks.demo import _NEGATIVE, _POSITIVE

FSC16 = Path(os.environ.get("RLPROMPT_FSC16", Path(__file__).resolve().parents[2] / "shared/data/fsc16"))
needs_fsc16 = pytest.mark.skipif(
    not FSC16.is_dir(), reason=f"fsc16 data folder not found at {FSC16} (set RLPROMPT_FSC16)"
)

POLARITY = [" terrible", " great"]


def make_task(**kw: object) -> Task:
    args: dict[str, object] = {
        "name": "t",
        "verbalizers": POLARITY,
        "train": [Example("good film", 1), Example("bad film", 0)],
        "dev": [Example("great", 1)],
        "test": [Example("awful", 0)],
    }
    args.update(kw)
    return Task(**args)  # type: ignore[arg-type]


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


# -- Task ---------------------------------------------------------------------


def test_task_views_and_defaults() -> None:
    task = make_task()
    assert task.num_classes == 2
    assert task.label_names == ["terrible", "great"]
    assert task.template == CAUSAL_TEMPLATE
    assert task.texts("train") == ["good film", "bad film"]
    assert task.labels("train") == [1, 0]
    lt = task.label_tensor("train")
    assert lt.dtype == torch.long and lt.tolist() == [1, 0]
    assert task.class_counts("train") == [1, 1]
    assert task.parsed_template.prompt_after_input
    assert make_task(masked=True).template == MASKED_TEMPLATE


def test_task_with_overrides() -> None:
    task = make_task().with_overrides(template="{prompt} {sentence}", verbalizers=[" bad", " good"])
    assert task.verbalizers == [" bad", " good"] and not task.parsed_template.prompt_after_input
    with pytest.raises(ConfigError, match="2 classes"):
        make_task().with_overrides(verbalizers=[" a", " b", " c"])


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"template": "{sentence}"}, ConfigError, r"\{prompt\} is missing"),
        ({"template": CAUSAL_TEMPLATE, "masked": True}, ConfigError, "<mask>"),
        ({"verbalizers": [" great", " great"]}, ConfigError, "repeat"),
        ({"verbalizers": [" great", "  "]}, ConfigError, "verbalizer 1"),
        ({"verbalizers": [" great"]}, ConfigError, "at least 2"),
        ({"label_names": ["a"]}, ConfigError, "1 label names"),
        ({"dev": []}, DataError, "dev split is empty"),
        ({"test": [Example("x", 2)]}, DataError, r"test\[0\] has label 2"),
        ({"train": [Example("x", -1)]}, DataError, r"train\[0\] has label -1"),
        ({"train": [Example("x", True)]}, DataError, "has label True"),
        ({"train": [("x", 0)]}, DataError, "expected Example"),
    ],
)
def test_task_validation(kw: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make_task(**kw)


def test_task_split_name_checked() -> None:
    with pytest.raises(ConfigError, match="unknown split 'valid'"):
        make_task().texts("valid")  # type: ignore[arg-type]


# -- verbalizers against a real (tiny, trained in memory) tokenizer ------------


@pytest.fixture(scope="module")
def bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    corpus = [
        "the movie was great",
        "the movie was terrible",
        "it was good",
        "a great film",
        "a terrible film",
    ]
    tok.train_from_iterator(corpus * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_check_verbalizers_single_tokens(bpe_tokenizer) -> None:
    ids = make_task().check_verbalizers(bpe_tokenizer, single_token=True)
    assert [len(i) for i in ids] == [1, 1]
    assert bpe_tokenizer.convert_ids_to_tokens([ids[1][0]]) == ["Ġgreat"]


def test_check_verbalizers_multi_token_hint(bpe_tokenizer) -> None:
    task = make_task(verbalizers=["terrible", "great"])
    assert [len(i) for i in task.check_verbalizers(bpe_tokenizer)] == [2, 2]  # allowed without single_token
    with pytest.raises(ConfigError) as info:
        task.check_verbalizers(bpe_tokenizer, single_token=True)
    msg = str(info.value)
    assert "'terrible' is 2 tokens" in msg and "' terrible' is one token" in msg
    assert "' great' is one token, 'great' is another" in msg


def test_check_verbalizers_no_hint_when_no_variant_fits(bpe_tokenizer) -> None:
    with pytest.raises(ConfigError, match=r"' magnificent' is \d+ tokens.*leading space matters"):
        check_verbalizers([" great", " magnificent"], bpe_tokenizer, single_token=True)


def test_check_verbalizers_empty_and_duplicate_ids() -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"great": 0, "bad": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    with pytest.raises(ConfigError, match="'Great' and 'great' tokenise to the same ids"):
        check_verbalizers(["Great", "great"], hf_tok)
    with pytest.raises(ConfigError, match="verbalizer '' gives no tokens"):
        check_verbalizers(["", "great"], hf_tok)


# -- registry -------------------------------------------------------------------


def test_registry_lookup_and_suggestion() -> None:
    assert get_task_spec("SST_2").name == "sst-2"
    assert get_task_spec("trec").verbalizers[0] == " Description"
    with pytest.raises(ConfigError, match=r"unknown task 'sst2'; did you mean 'sst-2'\?.*agnews"):
        get_task_spec("sst2")


def test_list_tasks_rows() -> None:
    rows = list_tasks()
    assert rows[0].name == "demo"
    names = {r.name for r in rows}
    assert {
        "sst-2",
        "sst-5",
        "mr",
        "cr",
        "yelp-2",
        "yelp-5",
        "agnews",
        "subj",
        "trec",
        "dbpedia",
        "yahoo",
    } <= names
    by_name = {r.name: r for r in rows}
    assert by_name["dbpedia"].classes == 14 and by_name["yahoo"].classes == 10
    assert by_name["sst-5"].verbalizers == (" terrible", " bad", " okay", " good", " great")
    assert "fsc16" in by_name["sst-2"].source and "glue/sst2" in by_name["sst-2"].source
    for spec in TASKS.values():
        assert len(spec.verbalizers) == len(spec.label_names)


# -- tasks from files -------------------------------------------------------------


def _three_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    rows = "sentence\tlabel\na fine film\tgreat\na dull film\tterrible\n"
    return tuple(write(tmp_path / f"{s}.tsv", rows) for s in ("train", "dev", "test"))  # type: ignore[return-value]


def test_task_from_files(tmp_path: Path) -> None:
    task = task_from_files(*_three_files(tmp_path), verbalizers=POLARITY, name="mine")
    assert task.name == "mine" and task.labels("test") == [1, 0]
    assert "train.tsv" in task.source


def test_task_from_files_empty_split(tmp_path: Path) -> None:
    train, dev, _ = _three_files(tmp_path)
    test = write(tmp_path / "empty.tsv", "sentence\tlabel\n")
    with pytest.raises(DataError, match=r"empty\.tsv: holds no examples.*test split"):
        task_from_files(train, dev, test, verbalizers=POLARITY)


def test_load_task_from_files(tmp_path: Path) -> None:
    train, dev, test = _three_files(tmp_path)
    task = load_task("sst-2", train_file=train, dev_file=dev, test_file=test)  # verbalizers from registry
    assert task.verbalizers == POLARITY and task.label_names == ["negative", "positive"]
    assert task.labels("train") == [1, 0]  # stripped verbalizers are accepted as label names
    task = load_task(
        "mine",
        train_file=train,
        dev_file=dev,
        test_file=test,
        verbalizers=[" bad", " good"],
        label_map={"terrible": 0, "great": 1},
        template="{prompt} {sentence}",
    )
    assert task.labels("dev") == [1, 0] and task.template == "{prompt} {sentence}"
    with pytest.raises(ConfigError, match="missing test_file"):
        load_task("mine", train_file=train, dev_file=dev, verbalizers=POLARITY)
    with pytest.raises(ConfigError, match="unknown task 'mine'"):
        load_task("mine", train_file=train, dev_file=dev, test_file=test)


def test_load_task_dispatch_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLPROMPT_DATA_DIR", raising=False)
    with pytest.raises(ConfigError, match=r"task 'sst-2' needs data: pass data_dir=.* or hf=True"):
        load_task("sst-2")
    with pytest.raises(ConfigError, match="did you mean 'agnews'"):
        load_task("ag-news")


# -- demo ---------------------------------------------------------------------------


def test_demo_is_default_balanced_disjoint_deterministic() -> None:
    task = load_task()
    assert task.name == "demo" and task.verbalizers == POLARITY
    assert (len(task.train), len(task.dev), len(task.test)) == (32, 32, 200)
    assert task.class_counts("train") == [16, 16] and task.class_counts("test") == [100, 100]
    texts = [set(task.texts(s)) for s in ("train", "dev", "test")]
    assert sum(map(len, texts)) == 264 and not (
        texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2]
    )
    assert demo_task() == demo_task()
    assert demo_task(n_train=8).train == task.train[:8]


def test_demo_sentences_are_sst_style_and_unambiguous() -> None:
    task = demo_task()
    for ex in task.train + task.dev + task.test:
        assert ex.text == ex.text.lower() and ex.text.endswith(" .")
        words = set(ex.text.replace(" .", "").split())
        own, other = (_POSITIVE, _NEGATIVE) if ex.label == 1 else (_NEGATIVE, _POSITIVE)
        assert words & set(own), ex
        if " but " not in ex.text:
            assert not words & set(other), ex
    assert any(" but " in t for t in task.texts("test"))  # some contrast sentences


def test_demo_overrides() -> None:
    task = load_task(template="{prompt} {sentence}", verbalizers=[" bad", " good"])
    assert task.template == "{prompt} {sentence}" and task.verbalizers == [" bad", " good"]
    assert load_task(masked=True).template == MASKED_TEMPLATE


# -- fsc16 (the real benchmark folder, outside the repo) -----------------------------


@pytest.mark.integration
@needs_fsc16
@pytest.mark.parametrize(
    ("name", "classes", "test_size"),
    [("sst-2", 2, 1821), ("sst-5", 5, 2210), ("agnews", 4, 7600), ("trec", 6, 500)],
)
def test_fsc16_tasks(name: str, classes: int, test_size: int) -> None:
    task = load_fewshot(FSC16, name, 13)
    assert task.num_classes == classes
    assert task.class_counts("train") == [16] * classes and task.class_counts("dev") == [16] * classes
    assert len(task.test) == test_size
    assert task.verbalizers == list(TASKS[name].verbalizers)


@pytest.mark.integration
@needs_fsc16
def test_fsc16_seeds_share_test_and_differ_in_train(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = [load_fewshot(FSC16, "sst-2", seed) for seed in FEWSHOT_SEEDS]
    assert all(t.test == tasks[0].test for t in tasks)
    assert len({tuple(t.texts("train")) for t in tasks}) == len(FEWSHOT_SEEDS)
    assert any('"' in t for t in load_fewshot(FSC16, "agnews", 13).texts("test"))  # quotes kept (QUOTE_NONE)
    monkeypatch.setenv("RLPROMPT_DATA_DIR", str(FSC16))
    assert load_task("trec", seed=21).source.endswith("(seed 21)")


@pytest.mark.integration
@needs_fsc16
def test_fsc16_missing_seed_and_task() -> None:
    with pytest.raises(DataError, match=r"no split for seed 7; seeds present: 100, 13, 21, 42, 87"):
        load_fewshot(FSC16, "sst-2", 7)
    with pytest.raises(DataError, match=r"no folder for task 'mr'; tasks in .*: agnews, sst-2, sst-5, trec"):
        load_fewshot(FSC16, "mr", 13)


def test_fewshot_layout_on_tmp(tmp_path: Path) -> None:
    (tmp_path / "mine" / "1").mkdir(parents=True)
    write(tmp_path / "mine" / "1" / "train.tsv", "text\tlabel\na\t0\nb\t1\n")
    write(tmp_path / "mine" / "1" / "dev.tsv", "text\tlabel\nc\t0\n")
    with pytest.raises(DataError, match=r"mine/test\.tsv: missing"):
        load_fewshot(tmp_path, "mine", 1, verbalizers=POLARITY)
    write(tmp_path / "mine" / "test.tsv", "text\tlabel\nd\t1\n")
    with pytest.raises(ConfigError, match="pass its verbalizers"):
        load_fewshot(tmp_path, "mine", 1)
    assert load_fewshot(tmp_path, "mine", 1, verbalizers=POLARITY).texts("test") == ["d"]
    with pytest.raises(DataError, match="no such data folder"):
        load_fewshot(tmp_path / "nope", "mine", 1)
