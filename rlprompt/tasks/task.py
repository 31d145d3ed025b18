"""A classification task: examples, verbalizers and the template that joins them.

A :class:`Task` is plain data. Loaders (``table.py``, ``fewshot.py``, ``hf.py``,
``demo.py``) build one; the scoring engine reads its texts, labels, template and
verbalizers. Construction validates everything it can without a tokenizer;
:meth:`Task.check_verbalizers` does the rest once a tokenizer is known.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from rlprompt.errors import ConfigError, DataError
from rlprompt.lm.template import CAUSAL_TEMPLATE, MASKED_TEMPLATE, Template

if TYPE_CHECKING:
    import torch

SplitName = Literal["train", "dev", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "dev", "test")


@dataclass(frozen=True)
class Example:
    """One labelled input.

    :param text: the input text that fills ``{sentence}``.
    :param label: class id, ``0 <= label < num_classes`` (index into the verbalizers).
    """

    text: str
    label: int


@dataclass(kw_only=True)
class Task:
    """Data, verbalizers and template for one few-shot classification task.

    :param name: short task name, e.g. ``"sst-2"``.
    :param verbalizers: one word per class, in label order; the LM's log-probability of
        each is the class score. Keep the leading space for byte-level BPE tokenisers
        (``" great"``, not ``"great"``).
    :param train: training examples (the split a prompt is optimised on).
    :param dev: validation examples (prompt selection, early stopping).
    :param test: held-out examples for the final report. Every split must be non-empty.
    :param label_names: human-readable class names, in label order; defaults to the
        stripped verbalizers. Table loaders accept these names in the label column.
    :param template: where the input and prompt go; ``None`` gives
        ``"{sentence} {prompt}"`` (causal) or ``"{sentence} {prompt} <mask> ."`` (masked).
    :param masked: the task LM is a masked LM (the template must hold ``<mask>``).
    :param source: where the data came from (a folder, a file, a dataset id), for reports.
    :param meta: free-form facts about how the task was built (seed, k-shot), for reports.
    :raises ConfigError: bad template or verbalizers.
    :raises DataError: an empty split or a label outside ``[0, num_classes)``.
    """

    name: str
    verbalizers: list[str]
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    label_names: list[str] | None = None
    template: str | None = None
    masked: bool = False
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.verbalizers = list(self.verbalizers)
        _check_verbalizer_strings(self.name, self.verbalizers)
        if self.label_names is None:
            self.label_names = [v.strip() for v in self.verbalizers]
        self.label_names = list(self.label_names)
        if len(self.label_names) != len(self.verbalizers):
            raise ConfigError(
                f"task {self.name!r}: {len(self.label_names)} label names {self.label_names} but "
                f"{len(self.verbalizers)} verbalizers {self.verbalizers}; give one name per class"
            )
        default_names = self.label_names == [v.strip() for v in self.verbalizers]
        check_distinct_names(self.label_names, self.verbalizers if default_names else None, self.name)
        if self.template is None:
            self.template = MASKED_TEMPLATE if self.masked else CAUSAL_TEMPLATE
        Template.parse(self.template, masked=self.masked)
        for split in SPLITS:
            examples = list(getattr(self, split))
            setattr(self, split, examples)
            self._check_split(split, examples)

    def _check_split(self, split: SplitName, examples: list[Example]) -> None:
        where = f"task {self.name!r}" + (f" ({self.source})" if self.source else "")
        if not examples:
            raise DataError(f"{where}: the {split} split is empty; every task needs train, dev and test")
        n = self.num_classes
        for i, ex in enumerate(examples):
            if not isinstance(ex, Example):
                raise DataError(f"{where}: {split}[{i}] is a {type(ex).__name__}, expected Example")
            if not isinstance(ex.text, str):
                raise DataError(f"{where}: {split}[{i}] text is {type(ex.text).__name__}, expected str")
            if isinstance(ex.label, bool) or not isinstance(ex.label, int) or not 0 <= ex.label < n:
                raise DataError(
                    f"{where}: {split}[{i}] has label {ex.label!r}; labels must be integers 0..{n - 1} "
                    f"({n} verbalizers {self.verbalizers})"
                )

    # -- views ---------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Number of classes (= number of verbalizers)."""
        return len(self.verbalizers)

    @property
    def parsed_template(self) -> Template:
        """The template, parsed."""
        assert self.template is not None
        return Template.parse(self.template, masked=self.masked)

    def split(self, split: SplitName) -> list[Example]:
        """The examples of one split.

        :param split: ``"train"``, ``"dev"`` or ``"test"``.
        :raises ConfigError: unknown split name.
        """
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, split)

    def texts(self, split: SplitName) -> list[str]:
        """Input texts of one split, in order."""
        return [ex.text for ex in self.split(split)]

    def labels(self, split: SplitName) -> list[int]:
        """Class ids of one split, in order."""
        return [ex.label for ex in self.split(split)]

    def label_tensor(self, split: SplitName) -> torch.Tensor:
        """Class ids of one split as a LongTensor of shape [E]."""
        import torch

        return torch.tensor(self.labels(split), dtype=torch.long)

    def class_counts(self, split: SplitName) -> list[int]:
        """Number of examples per class in one split, in label order."""
        counts = Counter(self.labels(split))
        return [counts.get(c, 0) for c in range(self.num_classes)]

    def with_overrides(self, *, template: str | None = None, verbalizers: list[str] | None = None) -> Task:
        """A copy with another template and/or verbalizers (validated again).

        :param template: new template, or ``None`` to keep the current one.
        :param verbalizers: new verbalizers (same number of classes), or ``None`` to keep them.
        :raises ConfigError: the new values are invalid or change the number of classes.
        """
        changes: dict[str, Any] = {}
        if template is not None:
            changes["template"] = template
        if verbalizers is not None:
            verbalizers = list(verbalizers)
            if len(verbalizers) != self.num_classes:
                raise ConfigError(
                    f"task {self.name!r} has {self.num_classes} classes {self.label_names}; "
                    f"got {len(verbalizers)} verbalizers {verbalizers}"
                )
            changes["verbalizers"] = verbalizers
        return replace(self, **changes) if changes else self

    def check_verbalizers(self, tokenizer: Any, single_token: bool = False) -> list[list[int]]:
        """Tokenise the verbalizers and check they can be scored.

        :param tokenizer: a Hugging Face tokenizer (called as
            ``tokenizer(v, add_special_tokens=False).input_ids``).
        :param single_token: require each verbalizer to be exactly one token (masked LMs
            and the single-position read-out need this).
        :return: the token ids of each verbalizer, in label order.
        :raises ConfigError: a verbalizer yields no tokens, more than one token when
            ``single_token`` is set, or the same tokens as another verbalizer.
        """
        return check_verbalizers(self.verbalizers, tokenizer, single_token=single_token, task=self.name)


def _check_verbalizer_strings(task: str, verbalizers: list[str]) -> None:
    if len(verbalizers) < 2:
        raise ConfigError(f"task {task!r}: needs at least 2 verbalizers (one per class), got {verbalizers}")
    for i, v in enumerate(verbalizers):
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(
                f"task {task!r}: verbalizer {i} is {v!r}; each verbalizer must be a non-empty word "
                f"such as ' great'"
            )
    dupes = sorted(v for v, n in Counter(verbalizers).items() if n > 1)
    if dupes:
        raise ConfigError(f"task {task!r}: verbalizers {dupes} repeat; each class needs its own word")


def check_columns(text_column: str | Sequence[str] | None, label_column: str | None) -> None:
    """Refuse column choices that cannot be right: an empty name, or the text read from the
    label column (every prompt would be scored on the answer itself).

    :raises ConfigError: naming the choice.
    """
    texts = [text_column] if isinstance(text_column, str) else list(text_column or ())
    for role, col in [*(("text", t) for t in texts), ("label", label_column)]:
        if col is not None and not str(col).strip():
            raise ConfigError(f"the {role} column name is empty; give a column of the data (--{role}-column NAME)")
    if label_column is not None and label_column in texts:
        raise ConfigError(
            f"the text column and the label column are both {label_column!r}: the input would be the answer; "
            "give the column holding the text (--text-column NAME) and the one holding the label (--label-column)"
        )


def class_names(verbalizers: Sequence[str], label_names: Sequence[str] | None, task: str = "task") -> list[str]:
    """The class names: ``label_names``, or the stripped verbalizers; checked distinct (before any
    data is read: a label column holding names is parsed with them).

    :raises ConfigError: two classes with one name (:func:`check_distinct_names`).
    """
    names = list(label_names) if label_names is not None else [v.strip() for v in verbalizers]
    check_distinct_names(names, list(verbalizers) if label_names is None else None, task)
    return names


def check_distinct_names(names: list[str], verbalizers: list[str] | None = None, task: str = "task") -> None:
    """Refuse class names that are the same once stripped: a label written as that name would
    map to the first of the classes, silently merging two of them.

    :raises ConfigError: naming the colliding classes (and their verbalizers, the default names).
    """
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        key = str(name).strip()
        if key in seen:
            j = seen[key]
            what = (f"verbalizers {verbalizers[j]!r} and {verbalizers[i]!r}" if verbalizers is not None
                    else f"label names {names[j]!r} and {names[i]!r}")
            raise ConfigError(
                f"task {task!r}: {what} (classes {j} and {i}) both give the class name {key!r}, so a label "
                f"written as {key!r} could not tell them apart; give each class its own word"
            )
        seen[key] = i


def _token_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def _space_hint(tokenizer: Any, verbalizer: str) -> str:
    """Suggest the leading-space variant when it tokenises to a single token."""
    alt = verbalizer.lstrip() if verbalizer[:1].isspace() else " " + verbalizer
    if len(_token_ids(tokenizer, alt)) == 1:
        return (
            f"; {alt!r} is one token: byte-level BPE tokenisers count the leading space as part of "
            f"the word (' great' is one token, 'great' is another)"
        )
    return "; note the leading space matters for byte-level BPE (' great' is one token, 'great' is another)"


def check_verbalizers(
    verbalizers: list[str], tokenizer: Any, *, single_token: bool = False, task: str = "task"
) -> list[list[int]]:
    """Tokenise verbalizers and check each yields usable, distinct tokens.

    :param verbalizers: one word per class.
    :param tokenizer: a Hugging Face tokenizer.
    :param single_token: require exactly one token per verbalizer.
    :param task: task name for error messages.
    :return: token ids per verbalizer.
    :raises ConfigError: see :meth:`Task.check_verbalizers`.
    """
    ids: list[list[int]] = []
    for v in verbalizers:
        toks = _token_ids(tokenizer, v)
        if not toks:
            raise ConfigError(f"task {task!r}: verbalizer {v!r} gives no tokens; choose a word the LM knows")
        if single_token and len(toks) > 1:
            pieces = tokenizer.convert_ids_to_tokens(toks)
            raise ConfigError(
                f"task {task!r}: verbalizer {v!r} is {len(toks)} tokens {pieces} (ids {toks}) but must be "
                f"one token{_space_hint(tokenizer, v)}"
            )
        ids.append(toks)
    seen: dict[tuple[int, ...], str] = {}
    for v, toks in zip(verbalizers, ids, strict=True):
        key = tuple(toks)
        if key in seen:
            raise ConfigError(
                f"task {task!r}: verbalizers {seen[key]!r} and {v!r} tokenise to the same ids {toks}; "
                f"the classes cannot be told apart"
            )
        seen[key] = v
    return ids
