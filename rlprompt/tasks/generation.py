"""A generation task: the frozen LM writes text for each input, and a reward scores the text.

Beside classification (:class:`~rlprompt.tasks.task.Task`), a :class:`GenerationTask` holds
inputs with optional references (one or several per input) and any other columns, a
template with ``{prompt}`` and ``{input}``, the LM's :class:`~rlprompt.lm.generation.GenerationSettings`
and the task's default reward on text (:mod:`rlprompt.rewards.text`). Loaders: the shared
style-transfer folder (:mod:`rlprompt.tasks.style_transfer`) and CSV/TSV/JSONL files
(:func:`generation_task_from_files`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rlprompt.errors import ConfigError, DataError
from rlprompt.lm.generation import GENERATION_TEMPLATE, GenerationSettings
from rlprompt.lm.template import Template
from rlprompt.tasks.task import SPLITS, SplitName

RESERVED_COLUMNS = ("prompts", "inputs", "references", "completions")
"""Names a reward receives from the engine; a task column may not take them."""


@dataclass(frozen=True)
class TextExample:
    """One input of a generation task.

    :param input: the text that fills ``{input}``.
    :param references: target texts (e.g. human rewrites), possibly none.
    :param columns: any other values of the row, by column name (passed to rewards).
    """

    input: str
    references: tuple[str, ...] = ()
    columns: Mapping[str, Any] = field(default_factory=dict)


def input_text(example: Any) -> str:
    """The input text of a classification :class:`~rlprompt.tasks.task.Example` or a :class:`TextExample`."""
    return example.input if isinstance(example, TextExample) else example.text


@dataclass(kw_only=True)
class GenerationTask:
    """Inputs, references, template, generation settings and default reward of a text task.

    :param name: short name, e.g. ``"yelp-0to1"``.
    :param train: inputs prompts are optimised on.
    :param dev: inputs for prompt selection.
    :param test: held-out inputs for the report. Every split must be non-empty.
    :param template: where the prompt and input go; default RLPrompt's ``'{prompt} "{input}" "'``.
    :param settings: how the LM writes (default: greedy, 32 tokens, stop at ``"`` or a newline).
    :param reward: the task's default reward spec (see :func:`~rlprompt.rewards.text.get_text_reward`).
    :param metric: the reward evaluations report as the task's score (default: ``reward``).
    :param description: one line saying what the LM should do (LM-prior sampling and soft
        Q-learning write prompts after it), e.g. ``"Rewrite the sentence as a positive one."``.
    :param source: where the data came from, for reports.
    :param meta: how the task was built (seed, direction), for reports.
    :param style_texts: unpaired sentences per style id, disjoint from the inputs, that a style
        classifier trains on (style-transfer tasks; see :mod:`rlprompt.rewards.style`).
    :raises DataError: an empty split, an empty input, a reference that is not text.
    :raises ConfigError: a bad template.
    """

    kind: ClassVar[str] = "generation"
    verbalizers: ClassVar[list[str]] = []  # reads no class words

    name: str
    train: list[TextExample]
    dev: list[TextExample]
    test: list[TextExample]
    template: str = GENERATION_TEMPLATE
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    reward: str = "chrf"
    metric: str | None = None
    description: str = "Rewrite the text."
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    style_texts: dict[int, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        Template.parse(self.template)
        if self.metric is None:
            self.metric = self.reward
        where = f"task {self.name!r}" + (f" ({self.source})" if self.source else "")
        for split in SPLITS:
            examples = list(getattr(self, split))
            setattr(self, split, examples)
            if not examples:
                raise DataError(f"{where}: the {split} split is empty; every task needs train, dev and test inputs")
            for i, ex in enumerate(examples):
                if not isinstance(ex, TextExample):
                    raise DataError(f"{where}: {split}[{i}] is a {type(ex).__name__}, expected TextExample")
                if not isinstance(ex.input, str) or not ex.input.strip():
                    raise DataError(f"{where}: {split}[{i}] has an empty input; every input needs some text")
                if any(not isinstance(r, str) for r in ex.references):
                    raise DataError(f"{where}: {split}[{i}] has a reference that is not text")
                bad = [c for c in ex.columns if c in RESERVED_COLUMNS]
                if bad:
                    raise DataError(f"{where}: column {bad[0]!r} is a name rewards receive from rlprompt; rename it")

    def texts(self, split: SplitName) -> list[str]:
        """The inputs of a split."""
        return [ex.input for ex in self.split(split)]

    def split(self, split: SplitName) -> list[TextExample]:
        """The examples of ``"train"``, ``"dev"`` or ``"test"``."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, split)

    def has_references(self, split: SplitName) -> bool:
        """True when every input of the split has at least one reference."""
        return all(ex.references for ex in self.split(split))

    def columns(self, split: SplitName, indices: Sequence[int] | None = None) -> dict[str, list[Any]]:
        """The columns a reward receives for the chosen inputs (all by default): ``inputs``,
        ``references`` (a list per input) and every task column present in all rows."""
        rows = self.split(split)
        rows = rows if indices is None else [rows[i] for i in indices]
        out: dict[str, list[Any]] = {"inputs": [r.input for r in rows],
                                     "references": [list(r.references) for r in rows]}
        shared = set(rows[0].columns).intersection(*(r.columns for r in rows[1:])) if rows else set()
        for name in sorted(shared):
            out[name] = [r.columns[name] for r in rows]
        return out


def generation_task_from_files(
    name: str,
    train_file: str | Path,
    dev_file: str | Path,
    test_file: str | Path,
    *,
    input_column: str = "input",
    reference_column: str | None = None,
    template: str = GENERATION_TEMPLATE,
    settings: GenerationSettings | None = None,
    reward: str | None = None,
    delimiter: str | None = None,
) -> GenerationTask:
    """A generation task from three CSV/TSV/JSONL files.

    :param input_column: the column that fills ``{input}``.
    :param reference_column: the column of references (None: no references). In JSONL a value
        may be a list of references; in CSV/TSV one per row (repeat the row for several).
    :param reward: the task's reward (default: chrF against the references, or the LM's fluency
        without references).
    :param delimiter: override the format chosen by extension.
    Other columns reach rewards under their own names.
    :raises DataError: a missing column, an empty input, a reference that is not text.
    """
    from rlprompt.tasks.table import read_rows

    if not input_column:
        raise ConfigError("input_column is empty; name the column that holds the inputs")
    if reference_column is not None and reference_column == input_column:
        raise ConfigError(f"input and reference column are both {input_column!r}; references must be other text")
    splits: dict[str, list[TextExample]] = {}
    for split, path in zip(SPLITS, (train_file, dev_file, test_file), strict=True):
        header, rows = read_rows(path, delimiter)
        for column in (input_column, reference_column):
            if column is not None and header is not None and column not in header:
                raise DataError(f"{path}: no column {column!r}; the header has {header}")
        out = []
        for line, row in rows:
            if input_column not in row:
                raise DataError(f"{path}:{line}: no key {input_column!r}; this row has {sorted(row)}")
            value = row[input_column]
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{path}:{line}: column {input_column!r} is empty or not text; every input needs text")
            refs: tuple[str, ...] = ()
            if reference_column is not None:
                raw = row.get(reference_column)
                refs = tuple(raw) if isinstance(raw, list) else (() if raw in (None, "") else (raw,))
                if any(not isinstance(r, str) for r in refs):
                    raise DataError(f"{path}:{line}: column {reference_column!r} holds {raw!r}; expected text")
            extra = {k: v for k, v in row.items() if k not in (input_column, reference_column)}
            out.append(TextExample(value, refs, extra))
        splits[split] = out
    return GenerationTask(name=name, train=splits["train"], dev=splits["dev"], test=splits["test"],
                          template=template, settings=settings or GenerationSettings(),
                          reward=reward or ("chrf" if reference_column else "fluency"),
                          source=str(Path(train_file).parent))
