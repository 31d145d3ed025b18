"""Tests for rlprompt.tasks' table loader (CSV/TSV/JSONL): good files, and bad files whose
one-line message names the place and the fix."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_tasks import write

from rlprompt.errors import ConfigError, DataError
from rlprompt.tasks import Example, load_table

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
    _bad(path, r"no text column.*'sentence' or 'text'.*\['review', 'label'\]; name it with --text-column")


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
    _bad(write(tmp_path / "a.txt", "text\tlabel\n"), r"extension '\.txt'.*--format csv, tsv or jsonl", ConfigError)
    _bad(tmp_path / "nope.tsv", "no such file")


def test_num_classes_needed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pass num_classes"):
        load_table(write(tmp_path / "a.tsv", "text\tlabel\n"))
    with pytest.raises(ConfigError, match=r"label_map\['x'\] = 5"):
        load_table(write(tmp_path / "b.tsv", "text\tlabel\n"), num_classes=2, label_map={"x": 5})


def test_format_flag_reads_a_process_substitution(tiny_model_dir, tmp_path) -> None:
    """A path without an extension (``<(cat data.tsv)``) needs --format; the message says so."""
    import shutil
    import subprocess
    import sys

    from conftest import cli_env

    if shutil.which("bash") is None:
        pytest.skip("bash is not available")
    data = tmp_path / "d.tsv"
    data.write_text("sentence\tlabel\ngood film\t1\nbad film\t0\n")
    cmd = (f"{sys.executable} -m rlprompt.cli eval --model {tiny_model_dir} --dtype float32 --device cpu "
           f"--train-file <(cat {data}) --dev-file <(cat {data}) --test-file <(cat {data}) "
           f"--verbalizers ' bad' ' good'")
    env = cli_env()
    missing = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 2 and "--format" in missing.stderr and "Traceback" not in missing.stderr
    given = subprocess.run(["bash", "-c", cmd + " --format tsv"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert given.returncode == 0, given.stderr
    assert "2 examples" in given.stdout
