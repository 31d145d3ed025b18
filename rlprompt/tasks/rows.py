"""Rows of CSV, TSV and JSONL files: format by extension, UTF-8 (a BOM allowed), blank lines skipped.

CSV is read with standard quoting; TSV with ``csv.QUOTE_NONE`` because SST-style text holds
bare quotes (``" a "great" film"``), so a TSV field cannot contain a tab. Errors name the file
and line (``path:line: ...``). Classification tables (:mod:`rlprompt.tasks.table`) and
generation tasks (:mod:`rlprompt.tasks.generation`) read their files through here.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlprompt.errors import ConfigError, DataError

_TSV = {".tsv", ".tab"}
_CSV = {".csv"}
_JSONL = {".jsonl", ".ndjson", ".json"}
# Fields may be long (documents); 2**31-1 is the largest limit every platform's C long takes.
_FIELD_LIMIT = 2**31 - 1


def table_format(path: Path, delimiter: str | None = None) -> str:
    """The reader for a file: ``"jsonl"``, or the CSV delimiter to use.

    :param path: the data file.
    :param delimiter: explicit delimiter (overrides the extension; ``"jsonl"`` forces JSONL).
    :raises ConfigError: unknown extension and no delimiter.
    """
    if delimiter is not None:
        return delimiter
    suffix = path.suffix.lower()
    if suffix in _TSV:
        return "\t"
    if suffix in _CSV:
        return ","
    if suffix in _JSONL:
        return "jsonl"
    raise ConfigError(
        f"{path}: cannot tell the format from the extension {suffix!r}; pass --format csv, tsv or jsonl (from "
        f"Python: delimiter=',', '\\t' or 'jsonl'), or rename the file to .csv, .tsv or .jsonl"
    )


def read_rows(path: str | Path, delimiter: str | None = None) -> tuple[list[str] | None, list[tuple[int, dict]]]:
    """The rows of a CSV, TSV or JSONL file as ``(line number, {column: value})``.

    :param path: the file (UTF-8, a BOM allowed); blank lines are skipped.
    :param delimiter: override the format chosen by extension (``","``, ``"\\t"``, ``"jsonl"``).
    :returns: the header (None for JSONL) and the rows in file order.
    :raises DataError: unreadable, empty or not UTF-8; duplicate columns; a malformed row.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file; give a .csv, .tsv or .jsonl file")
    fmt = table_format(path, delimiter)
    text = _read_utf8(path)
    if not text.strip():
        raise DataError(
            f"{path}: file is empty; expected a header row such as 'sentence<TAB>label' "
            f"and one example per line"
        )
    with large_fields():
        if fmt == "jsonl":
            return None, list(_jsonl_rows(path, text))
        reader = csv.reader(
            io.StringIO(text, newline=""),
            delimiter=fmt,
            quoting=csv.QUOTE_NONE if fmt == "\t" else csv.QUOTE_MINIMAL,
            strict=True,
        )
        try:
            header = next(reader)
        except csv.Error as err:
            raise DataError(f"{path}:1: malformed header: {err}; check the quoting") from None
        _check_header(path, header)
        return header, list(_csv_rows(path, reader, header, fmt))


def _read_utf8(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        start = bom + err.start
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise DataError(
            f"{path}:{line}: byte 0x{data[start]:02x} at byte offset {start} (column {column}) is not "
            f"UTF-8; re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


@contextmanager
def large_fields() -> Iterator[None]:
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, min(_FIELD_LIMIT, sys.maxsize)))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _csv_rows(
    path: Path, reader: Any, header: list[str], delimiter: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    prev = reader.line_num
    try:
        for fields in reader:
            line, prev = prev + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue  # a blank line, or one of spaces and delimiters only
            if len(fields) != len(header):
                hint = (
                    "; a tab inside the text splits it (TSV is read without quoting)"
                    if delimiter == "\t" and len(fields) > len(header)
                    else ""
                )
                raise DataError(
                    f"{path}:{line}: expected {len(header)} fields ({', '.join(header)}) but found "
                    f"{len(fields)}{hint}"
                )
            yield line, dict(zip(header, fields, strict=True))
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV: {err}; check the quoting") from None


def _check_header(path: Path, header: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if name in seen:
            raise DataError(
                f"{path}:1: header names column {name!r} twice (columns {seen[name]} and {i}); "
                f"rename one so the columns can be told apart"
            )
        seen[name] = i


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{line}: column {err.colno}: invalid JSON: {err.msg}") from None
        if not isinstance(obj, dict):
            raise DataError(
                f'{path}:{line}: expected a JSON object like {{"text": ..., "label": ...}}, '
                f"got {type(obj).__name__}"
            )
        yield line, obj
