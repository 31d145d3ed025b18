"""Tests for rlprompt.tasks: the Task type, loaders, registry and the demo task."""

from __future__ import annotations

import csv
import json
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
    load_hf,
    load_table,
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


# -- load_table: good files -----------------------------------------------------


def test_tsv_keeps_quotes_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", 'sentence\tlabel\r\na "great" film\t1\r\n\r\nit \'s bad\t0\r\n')
    examples = load_table(path, num_classes=2)
    assert examples == [Example('a "great" film', 1), Example("it 's bad", 0)]


def test_csv_quoting_and_label_names(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", 'label,text\npositive,"good, really ""good"""\nnegative,"two\nlines"\n')
    examples = load_table(path, label_names=["negative", "positive"])
    assert examples == [Example('good, really "good"', 1), Example("two\nlines", 0)]


def test_jsonl_with_label_map(tmp_path: Path) -> None:
    lines = [{"text": "fine", "label": "pos"}, {"text": "meh", "label": 0}, {"text": "ok", "label": "1"}]
    path = write(tmp_path / "a.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    examples = load_table(path, label_map={"pos": 1, "neg": 0})
    assert [e.label for e in examples] == [1, 0, 1]


def test_header_only_gives_empty_split(tmp_path: Path) -> None:
    assert load_table(write(tmp_path / "a.tsv", "sentence\tlabel\n"), num_classes=2) == []


def test_utf8_bom_and_explicit_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "\ufeffid,review,stars\n1,nice,1\n")
    assert load_table(path, text_column="review", label_column="stars", num_classes=2) == [Example("nice", 1)]


def test_huge_field(tmp_path: Path) -> None:
    big = "word " * 100_000  # 500k characters, beyond csv's default 131072 limit
    limit = csv.field_size_limit()
    path = write(tmp_path / "a.csv", f'text,label\n"{big}",0\n')
    assert load_table(path, num_classes=2)[0].text == big
    assert csv.field_size_limit() == limit  # restored


def test_explicit_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "text;label\nnice;1\n")
    assert load_table(path, num_classes=2, delimiter=";") == [Example("nice", 1)]


# -- load_table: bad files (type, and the message names the place and the fix) --


def _bad(path: Path, match: str, error: type[Exception] = DataError, **kw: object) -> str:
    kw.setdefault("num_classes", 2)
    with pytest.raises(error, match=match) as info:
        load_table(path, **kw)  # type: ignore[arg-type]
    msg = str(info.value)
    assert str(path) in msg
    assert "\n" not in msg
    return msg


def test_unknown_label_name(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", "sentence\tlabel\nok\tnegative\nfine\tpostive\n")
    msg = _bad(
        path, r"a\.tsv:3: column 'label': unknown label 'postive'", label_names=["negative", "positive"]
    )
    assert "'negative', 'positive'" in msg


def test_out_of_range_label(tmp_path: Path) -> None:
    _bad(
        write(tmp_path / "a.csv", "text,label\nok,0\nbad,2\n"),
        r"a\.csv:3: column 'label': label 2 is out of range",
    )
    _bad(
        write(tmp_path / "b.csv", "text,label\nok,-1\n"),
        r"b\.csv:2: column 'label': label -1 is out of range",
    )


def test_missing_column_lists_present(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", "sentence\ttarget\nok\t0\n")
    _bad(path, r"no label column 'label'; the columns present are \['sentence', 'target'\]")
    path = write(tmp_path / "b.tsv", "review\tlabel\nok\t0\n")
    _bad(path, r"no text column.*'sentence' or 'text'.*\['review', 'label'\]; pass text_column")


def test_duplicate_header(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", "sentence\tlabel\tlabel\nok\t0\t1\n")
    _bad(path, r"a\.tsv:1: header names column 'label' twice \(columns 2 and 3\)")


def test_empty_file(tmp_path: Path) -> None:
    _bad(write(tmp_path / "a.tsv", ""), "file is empty")
    _bad(write(tmp_path / "b.tsv", "\n\n"), "file is empty")


def test_non_utf8(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", b"sentence\tlabel\nok\t0\ncaf\xe9\t1\n")
    _bad(path, r"a\.tsv:3: byte 0xe9 at byte offset 23 \(column 4\) is not UTF-8")


def test_wrong_field_count(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", "sentence\tlabel\nok\t0\nhas\ta tab\t1\n")
    _bad(path, r"a\.tsv:3: expected 2 fields \(sentence, label\) but found 3; a tab inside the text")
    _bad(write(tmp_path / "b.csv", "text,label\nonly\n"), r"b\.csv:2: expected 2 fields .* found 1")


def test_malformed_csv_quote(tmp_path: Path) -> None:
    _bad(write(tmp_path / "a.csv", 'text,label\n"ok" x,1\n'), r"a\.csv:2: malformed CSV")


def test_empty_text(tmp_path: Path) -> None:
    _bad(write(tmp_path / "a.csv", "text,label\n  ,1\n"), r"a\.csv:2: column 'text' is empty")


def test_bad_jsonl(tmp_path: Path) -> None:
    _bad(
        write(tmp_path / "a.jsonl", '{"text": "a", "label": 0}\n{"text": "b" "label": 1}\n'),
        r"a\.jsonl:2: column 14",
    )
    _bad(write(tmp_path / "b.jsonl", '["a", 0]\n'), r"b\.jsonl:1: expected a JSON object")
    _bad(
        write(tmp_path / "c.jsonl", '{"text": "a", "label": 0}\n{"text": "b"}\n'),
        r"c\.jsonl:2: no key 'label'",
    )
    _bad(write(tmp_path / "d.jsonl", '{"text": 5, "label": 0}\n'), r"d\.jsonl:1: column 'text' holds int")
    _bad(
        write(tmp_path / "e.jsonl", '{"text": "a", "label": 0.5}\n'),
        r"e\.jsonl:1: column 'label': label 0\.5",
    )


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    _bad(write(tmp_path / "a.txt", "text\tlabel\n"), r"extension '\.txt'.*pass delimiter", ConfigError)
    _bad(tmp_path / "nope.tsv", "no such file")


def test_num_classes_needed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pass num_classes"):
        load_table(write(tmp_path / "a.tsv", "text\tlabel\n"))
    with pytest.raises(ConfigError, match=r"label_map\['x'\] = 5"):
        load_table(write(tmp_path / "b.tsv", "text\tlabel\n"), num_classes=2, label_map={"x": 5})


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


# -- Hugging Face datasets, from local copies (no hub here) ---------------------------


def _csv_dataset(folder: Path, n_per_class: int = 10, names: bool = False) -> Path:
    folder.mkdir()
    for split, n in (("train", n_per_class), ("test", 3)):
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for i in range(n):
                for label in (0, 1):
                    w.writerow([f"{split} {label} {i}", ["neg", "pos"][label] if names else label])
    return folder


def test_hf_local_csv_folder(tmp_path: Path) -> None:
    folder = _csv_dataset(tmp_path / "ds")
    task = load_hf(folder, k_shot=4, seed=1, verbalizers=POLARITY, cache_dir=tmp_path / "cache")
    assert task.class_counts("train") == [4, 4] and task.class_counts("dev") == [4, 4]
    assert not set(task.texts("train")) & set(task.texts("dev"))
    assert all(t.startswith("train ") for t in task.texts("train") + task.texts("dev"))
    assert sorted(task.texts("test")) == sorted(f"test {y} {i}" for i in range(3) for y in (0, 1))
    for ex in task.train + task.dev + task.test:
        assert ex.text.split()[1] == str(ex.label)
    again = load_hf(folder, k_shot=4, seed=1, verbalizers=POLARITY, cache_dir=tmp_path / "cache")
    other = load_hf(folder, k_shot=4, seed=2, verbalizers=POLARITY, cache_dir=tmp_path / "cache")
    assert again.train == task.train and other.train != task.train


def test_hf_string_labels_and_registered_task(tmp_path: Path) -> None:
    folder = _csv_dataset(tmp_path / "ds", names=True)
    task = load_hf(folder, k_shot=2, task="mr", label_names=["neg", "pos"], cache_dir=tmp_path / "c")
    assert task.name == "mr" and task.verbalizers == POLARITY
    assert all(ex.text.split()[1] == str(ex.label) for ex in task.train)


def test_hf_save_to_disk_classlabel_and_remap(tmp_path: Path) -> None:
    import datasets

    feats = datasets.Features(
        {
            "text": datasets.Value("string"),
            "coarse_label": datasets.ClassLabel(names=["ABBR", "ENTY", "DESC"]),
        }
    )
    rows = {"text": [f"q{i}" for i in range(12)], "coarse_label": [i % 3 for i in range(12)]}
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows, features=feats),
            "test": datasets.Dataset.from_dict(rows, features=feats),
        }
    )
    dd.save_to_disk(str(tmp_path / "saved"))
    task = load_hf(tmp_path / "saved", k_shot=2, label_column="coarse_label")
    assert task.verbalizers == [" ABBR", " ENTY", " DESC"] and task.label_names == ["ABBR", "ENTY", "DESC"]
    assert all(int(ex.text[1:]) % 3 == ex.label for ex in task.test)
    # a registered task's label order is applied (trec: HF ABBR=0 is RLPrompt's 'Expression' = 2)
    with pytest.raises(DataError, match="class 3 has 0 examples"):
        load_hf(tmp_path / "saved", k_shot=2, task="trec", text_column="text")


def test_hf_single_file_test_is_rest(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl",
        "".join(json.dumps({"sentence": f"s{i}", "label": i % 2}) + "\n" for i in range(20)),
    )
    task = load_hf(path, k_shot=3, verbalizers=POLARITY, cache_dir=tmp_path / "c")
    assert len(task.test) == 20 - 12
    assert not set(task.texts("test")) & (set(task.texts("train")) | set(task.texts("dev")))
    assert len(load_hf(path, k_shot=3, verbalizers=POLARITY, test_size=5, cache_dir=tmp_path / "c").test) == 5


def test_hf_errors(tmp_path: Path) -> None:
    folder = _csv_dataset(tmp_path / "ds", n_per_class=3)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"class 0 has 3 examples, fewer than the 8 needed for 4-shot"):
        load_hf(folder, k_shot=4, verbalizers=POLARITY, cache_dir=cache)
    with pytest.raises(DataError, match=r"no text column 'body'; columns present: \['text', 'label'\]"):
        load_hf(folder, k_shot=1, verbalizers=POLARITY, text_column="body", cache_dir=cache)
    with pytest.raises(ConfigError, match="pass verbalizers"):
        load_hf(folder, k_shot=1, cache_dir=cache)
    with pytest.raises(DataError, match="no split 'validation'"):
        load_hf(folder, k_shot=1, verbalizers=POLARITY, test_split="validation", cache_dir=cache)
    with pytest.raises(DataError, match="cannot load as a dataset"):
        load_hf(write(tmp_path / "bad.json", "{not json"), verbalizers=POLARITY, cache_dir=cache)


def test_hf_hub_unreachable_is_a_data_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # fail fast instead of retrying
    with pytest.raises(DataError, match=r"'glue/sst2'.*hub may be unreachable.*fsc16 folder") as info:
        load_task("sst-2", hf=True)
    assert info.value.__cause__ is not None


def test_load_task_hf_local_path(tmp_path: Path) -> None:
    import datasets

    rows = {"sentence": [f"s{i}" for i in range(8)], "label": [i % 2 for i in range(8)]}
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows), "validation": datasets.Dataset.from_dict(rows)}
    ).save_to_disk(str(tmp_path / "sst2"))
    task = load_task("sst-2", hf=str(tmp_path / "sst2"), k_shot=2, seed=3)
    assert task.name == "sst-2" and "test validation" in task.source and len(task.test) == 8
