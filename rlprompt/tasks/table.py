"""Labelled examples from CSV, TSV and JSONL files.

Formats are chosen by extension (``.csv``, ``.tsv``/``.tab``, ``.jsonl``/``.ndjson``/``.json``)
unless ``delimiter`` is given. CSV is read with standard quoting; TSV with
``csv.QUOTE_NONE`` because SST-style text holds bare quotes (``" a "great" film"``),
so a TSV field cannot contain a tab. Every file needs a header row (CSV/TSV) or
object keys (JSONL) naming the text and label columns.

Errors name the file and line (``path:line: ...``), the column and the bad value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlprompt.errors import ConfigError, DataError
from rlprompt.tasks.rows import large_fields, read_rows, table_format
from rlprompt.tasks.task import Example, Task, check_columns, class_names

__all__ = ["LabelParser", "load_table", "read_rows", "table_format", "task_from_files"]

TEXT_COLUMNS = ("sentence", "text")
"""Text columns tried in order when none is named."""

MAX_TEXT_CHARS = 1_000_000
"""Longest example text accepted (characters): far beyond any task LM's context, so a longer
"line" is almost always a file without line breaks. Texts that fit this limit but not the
model's context are refused by the scoring engine, which names the example (never truncated)."""


class LabelParser:
    """Turns a raw label value (int, digit string or class name) into a class id.

    :param num_classes: number of classes; integers outside ``[0, num_classes)`` are rejected.
    :param label_names: class names in label order, accepted in place of ids.
    :param label_map: extra ``name -> class id`` entries (checked first), e.g.
        ``{"pos": 1, "neg": 0}``.
    :raises ConfigError: a ``label_map`` id is out of range.
    """

    def __init__(
        self,
        num_classes: int,
        label_names: Sequence[str] | None = None,
        label_map: Mapping[str, int] | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.names: dict[str, int] = {}
        for i, name in enumerate(label_names or ()):
            self.names.setdefault(str(name).strip(), i)
        for name, i in (label_map or {}).items():
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_classes:
                raise ConfigError(
                    f"label_map[{name!r}] = {i!r} is not a class id 0..{num_classes - 1}; "
                    f"map each label name to an integer id"
                )
            self.names[str(name).strip()] = i

    def __call__(self, raw: Any) -> int:
        """Class id of ``raw``.

        :raises ValueError: with a message (no location) when ``raw`` is not a known label;
            callers add the file, line and column.
        """
        if isinstance(raw, str):
            key = raw.strip()
            if key in self.names:
                return self.names[key]
            try:
                value = int(key)
            except ValueError:
                known = ", ".join(repr(n) for n in self.names) or "none"
                raise ValueError(
                    f"unknown label {raw!r}; use a class id 0..{self.num_classes - 1} or a label name "
                    f"({known})"
                ) from None
        elif isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        else:
            raise ValueError(f"label {raw!r} is a {type(raw).__name__}; use an integer id or a label name")
        if not 0 <= value < self.num_classes:
            raise ValueError(
                f"label {value} is out of range; this task has {self.num_classes} classes "
                f"(0..{self.num_classes - 1})"
            )
        return value


def load_table(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str = "label",
    num_classes: int | None = None,
    label_names: Sequence[str] | None = None,
    label_map: Mapping[str, int] | None = None,
    delimiter: str | None = None,
) -> list[Example]:
    """Read labelled examples from a CSV, TSV or JSONL file.

    :param path: the file. An empty file is an error; a header with no rows gives ``[]``.
    :param text_column: column holding the text; ``None`` tries ``"sentence"`` then ``"text"``.
    :param label_column: column holding the label (an integer id or a class name).
    :param num_classes: number of classes; defaults to ``len(label_names)`` or, without
        names, to the largest id in ``label_map`` plus one. Must be known somehow.
    :param label_names: class names in label order, accepted in the label column.
    :param label_map: extra ``name -> class id`` entries for the label column.
    :param delimiter: override the format chosen by extension (``","``, ``"\\t"``, ``"jsonl"``).
    :return: the examples, in file order.
    :raises DataError: unreadable file, not UTF-8, missing or duplicate columns, a row with
        the wrong number of fields, an empty text, or a bad label; the message names the file
        and line (and column).
    :raises ConfigError: the number of classes cannot be known, or the format cannot be told.
    """
    path = Path(path)
    check_columns(text_column, label_column)
    if num_classes is None:
        if label_names:
            num_classes = len(label_names)
        elif label_map:
            num_classes = max(label_map.values()) + 1
        else:
            raise ConfigError(f"{path}: pass num_classes, label_names or label_map to check the labels")
    parse_label = LabelParser(num_classes, label_names, label_map)
    header, rows = read_rows(path, delimiter)
    if header is not None:
        text_column = _pick_text_column(path, header, text_column, label_column)
    with large_fields():
        return _examples(path, rows, header, text_column, label_column, parse_label)


def _examples(
    path: Path,
    rows: Iterable[tuple[int, dict[str, Any]]],
    header: list[str] | None,
    text_column: str | None,
    label_column: str,
    parse_label: LabelParser,
) -> list[Example]:
    examples: list[Example] = []
    for line, row in rows:
        if header is None:  # JSONL: every object names its own keys
            text_column = text_column or _pick_text_column(path, list(row), None, label_column)
            missing = [c for c in (text_column, label_column) if c not in row]
            if missing:
                raise DataError(
                    f"{path}:{line}: no key {missing[0]!r}; this object has keys {sorted(row)}; "
                    f"every line needs {text_column!r} and {label_column!r}"
                )
        assert text_column is not None
        value = row[text_column]
        if not isinstance(value, str):
            raise DataError(
                f"{path}:{line}: column {text_column!r} holds {type(value).__name__} {value!r}; expected text"
            )
        if not value.strip():
            raise DataError(f"{path}:{line}: column {text_column!r} is empty; every example needs a text")
        if len(value) > MAX_TEXT_CHARS:
            raise DataError(
                f"{path}:{line}: column {text_column!r} is {len(value):,} characters long, over the limit of "
                f"{MAX_TEXT_CHARS:,}; is the file missing line breaks? split or shorten the text"
            )
        try:
            label = parse_label(row[label_column])
        except ValueError as err:
            raise DataError(f"{path}:{line}: column {label_column!r}: {err}") from None
        examples.append(Example(value, label))
    return examples


def _pick_text_column(path: Path, columns: list[str], text_column: str | None, label_column: str) -> str:
    if text_column is None:
        found = [c for c in TEXT_COLUMNS if c in columns and c != label_column]
        if not found:
            raise DataError(
                f"{path}: no text column: looked for {' or '.join(map(repr, TEXT_COLUMNS))} and found "
                f"columns {columns}; name it with --text-column (text_column=)"
            )
        text_column = found[0]
    for role, col in (("text", text_column), ("label", label_column)):
        if col not in columns:
            raise DataError(
                f"{path}:1: no {role} column {col!r}; the columns present are {columns}; "
                f"pick one with --{role}-column ({role}_column=)"
            )
    return text_column


def task_from_files(
    train_file: str | Path,
    dev_file: str | Path,
    test_file: str | Path,
    *,
    verbalizers: Sequence[str],
    name: str = "custom",
    label_names: Sequence[str] | None = None,
    label_map: Mapping[str, int] | None = None,
    text_column: str | None = None,
    label_column: str = "label",
    delimiter: str | None = None,
    template: str | None = None,
    masked: bool = False,
) -> Task:
    """Build a :class:`Task` from three table files (see :func:`load_table`).

    :param train_file: training examples.
    :param dev_file: validation examples.
    :param test_file: test examples.
    :param verbalizers: one word per class, in label order.
    :param name: task name.
    :param label_names: class names in label order (accepted in the label column, as are
        the stripped verbalizers).
    :param label_map: extra ``name -> class id`` entries for the label column.
    :param text_column: text column; ``None`` tries ``"sentence"`` then ``"text"``.
    :param label_column: label column.
    :param delimiter: override the format chosen by extension.
    :param template: task template (``None``: the default for ``masked``).
    :param masked: the task LM is a masked LM.
    :raises DataError: a file is bad or holds no examples.
    :raises ConfigError: bad verbalizers, label names or template.
    """
    verbalizers = list(verbalizers)
    if label_names is not None and len(label_names) != len(verbalizers):
        raise ConfigError(
            f"{len(label_names)} label names {list(label_names)} but {len(verbalizers)} verbalizers "
            f"{verbalizers}; give one of each per class"
        )
    names = class_names(verbalizers, label_names, name)
    # The verbalizers (stripped) are accepted as label names too, after label_names.
    aliases = {v.strip(): i for i, v in enumerate(verbalizers) if v.strip() not in names}
    aliases.update(label_map or {})
    splits: dict[str, list[Example]] = {}
    for split, file in (("train", train_file), ("dev", dev_file), ("test", test_file)):
        examples = load_table(
            file,
            text_column=text_column,
            label_column=label_column,
            num_classes=len(verbalizers),
            label_names=names,
            label_map=aliases,
            delimiter=delimiter,
        )
        if not examples:
            raise DataError(
                f"{file}: holds no examples (only a header?); the {split} split needs at least one"
            )
        splits[split] = examples
    return Task(
        name=name,
        verbalizers=verbalizers,
        label_names=names,
        template=template,
        masked=masked,
        source=f"files {train_file}, {dev_file}, {test_file}",
        **splits,  # type: ignore[arg-type]
    )
