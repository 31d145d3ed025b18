"""Few-shot tasks drawn from Hugging Face ``datasets`` (hub ids or local copies).

``datasets`` is imported inside :func:`load_hf`, so importing rlprompt stays fast
and works without it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlprompt.errors import ConfigError, DataError, first_line
from rlprompt.tasks.registry import TASKS, TaskSpec, normalize_task_name
from rlprompt.tasks.table import LabelParser
from rlprompt.tasks.task import Example, Task, check_columns
from rlprompt.tasks.task import class_names as checked_class_names

_TEXT_GUESSES = ("sentence", "text", "content")
_LOCAL_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def load_hf(
    name: str | Path,
    config: str | None = None,
    *,
    k_shot: int = 16,
    seed: int = 42,
    task: str | None = None,
    text_column: str | Sequence[str] | None = None,
    label_column: str | None = None,
    verbalizers: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    template: str | None = None,
    masked: bool = False,
    train_split: str = "train",
    test_split: str | None = None,
    test_size: int | None = None,
    cache_dir: str | Path | None = None,
) -> Task:
    """Draw a k-shot task from a Hugging Face dataset.

    Train and dev each get ``k_shot`` examples per class, drawn disjointly (seeded) from
    ``train_split``. Test is the whole ``test_split`` (or ``test_size`` rows of it); where
    the dataset has no test or validation split, test is the train rows not drawn.

    :param name: a registered task name (``"sst-2"``: uses its dataset, columns and
        verbalizers), a hub dataset id (``"ag_news"``), or a local path: a folder saved
        with ``save_to_disk``, a folder of ``train.csv``/``test.csv`` (or JSON/Parquet)
        files, or one such file.
    :param config: dataset configuration name (e.g. ``"sst2"`` for ``"glue"``).
    :param k_shot: examples per class in each of train and dev.
    :param seed: seed of the draw; the same seed gives the same split.
    :param task: registered task whose verbalizers and columns apply to a local copy.
    :param text_column: text column, or several joined with a space (default: the
        task's, else the first of ``sentence``, ``text``, ``content``).
    :param label_column: label column (default: the task's, else ``"label"``).
    :param verbalizers: one word per class; default: the task's, else ``" " + name`` for
        each of the dataset's ``ClassLabel`` names.
    :param label_names: class names in label order (string labels are matched to these).
    :param template: task template (``None``: the default for ``masked``).
    :param masked: the task LM is a masked LM.
    :param train_split: the split k-shot train and dev are drawn from.
    :param test_split: the labelled split used as test (default: the task's, else
        ``"test"``, else ``"validation"``).
    :param test_size: keep a seeded random sample of this many test rows.
    :param cache_dir: where ``datasets`` caches prepared data.
    :raises DataError: the dataset cannot be loaded (hub unreachable, bad path), a column
        is missing, a class has fewer than ``2 * k_shot`` examples, or a label is bad.
    :raises ConfigError: no verbalizers can be found, or bad arguments.
    """
    if k_shot < 1:
        raise ConfigError(f"k_shot must be at least 1, got {k_shot}")
    path = Path(name).expanduser()
    local = path.exists()
    spec = _spec_for(task if task is not None else (None if local else str(name)))
    if not local and spec is not None and spec.hf_path is None:
        raise ConfigError(
            f"task {spec.name!r} has no Hugging Face dataset; load it with load_task({spec.name!r})"
        )
    if local:
        label = str(path)
    else:
        label = _hub_id(spec.hf_path if spec else str(name), config or (spec.hf_config if spec else None))
    dsets = _load(path if local else None, spec, str(name), config, cache_dir)
    if train_split not in dsets:
        raise DataError(f"dataset {label}: no split {train_split!r}; splits present: {sorted(dsets)}")
    train_ds = dsets[train_split]
    columns = list(train_ds.column_names)
    text_cols = _text_columns(label, columns, text_column, spec)
    label_col = label_column or (spec.label_column if spec else "label")
    check_columns(text_cols, label_col)
    if label_col not in columns:
        raise DataError(f"dataset {label}: no label column {label_col!r}; columns present: {columns}")
    verbalizers, label_names = _verbalizers(label, train_ds, label_col, spec, verbalizers, label_names)
    order = spec.hf_label_order if spec is not None else None
    parse = LabelParser(len(verbalizers), label_names)

    def labels_of(ds: Any, split: str) -> list[int]:
        out = []
        for row, raw in enumerate(ds[label_col]):
            try:
                value = parse(raw)
            except ValueError as err:
                raise DataError(
                    f"dataset {label} split {split!r} row {row}: column {label_col!r}: {err}"
                    + ("; an unlabelled test split? pass test_split='validation'" if raw == -1 else "")
                ) from None
            out.append(order[value] if order else value)
        return out

    rng = random.Random(seed)
    train_labels = labels_of(train_ds, train_split)
    train_idx, dev_idx, rest_idx = _kshot(label, train_split, train_labels, len(verbalizers), k_shot, rng)
    test_name = test_split or (spec.test_split if spec else None)
    if test_name is None:
        test_name = next((s for s in ("test", "validation") if s in dsets), None)
    if test_name is not None and test_name not in dsets:
        raise DataError(f"dataset {label}: no split {test_name!r}; splits present: {sorted(dsets)}")
    if test_name is None:
        test_ds, test_idx, test_labels_all = train_ds, rest_idx, train_labels
        test_name = f"{train_split} (rows not drawn)"
    else:
        test_ds = dsets[test_name]
        test_labels_all = labels_of(test_ds, test_name)
        test_idx = list(range(len(test_ds)))
    if test_size is not None and test_size < len(test_idx):
        test_idx = sorted(rng.sample(test_idx, test_size))

    def examples(ds: Any, idx: list[int], labels: list[int]) -> list[Example]:
        rows = ds.select(idx)
        cols = [rows[c] for c in text_cols]
        texts = [" ".join(str(v) for v in parts if v) for parts in zip(*cols, strict=True)]
        return [Example(t, labels[i]) for t, i in zip(texts, idx, strict=True)]

    return Task(
        name=spec.name if spec is not None else Path(str(name)).name,
        verbalizers=list(verbalizers),
        label_names=list(label_names),
        train=examples(train_ds, train_idx, train_labels),
        dev=examples(train_ds, dev_idx, train_labels),
        test=examples(test_ds, test_idx, test_labels_all),
        template=template,
        masked=masked,
        source=f"{'local dataset' if local else 'HF'} {label} ({k_shot}-shot, seed {seed}, test {test_name})",
        meta={"seed": seed, "k_shot": k_shot},
    )


def _spec_for(name: str | None) -> TaskSpec | None:
    if name is None:
        return None
    return TASKS.get(normalize_task_name(name))


def _hub_id(path: str | None, config: str | None) -> str:
    return f"{path}/{config}" if config else str(path)


def _load(
    local: Path | None, spec: TaskSpec | None, name: str, config: str | None, cache_dir: str | Path | None
) -> dict[str, Any]:
    """The dataset's splits as a dict; every failure becomes a DataError."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            "loading Hugging Face datasets needs the 'datasets' package: pip install 'rlprompt[datasets]'"
        ) from None
    cache = str(cache_dir) if cache_dir is not None else None
    try:
        if local is None:
            hub_path = spec.hf_path if spec is not None else name
            hub_config = config or (spec.hf_config if spec is not None else None)
            loaded = datasets.load_dataset(hub_path, hub_config, cache_dir=cache)
        elif local.is_dir() and ((local / "dataset_dict.json").exists() or (local / "state.json").exists()):
            loaded = datasets.load_from_disk(str(local))
        elif local.is_dir():
            loaded = datasets.load_dataset(str(local), cache_dir=cache)
        else:
            fmt = _LOCAL_FORMATS.get(local.suffix.lower())
            if fmt is None:
                raise ConfigError(
                    f"{local}: cannot load a {local.suffix!r} file; use .csv, .tsv, .json, .jsonl or .parquet"
                )
            kwargs = {"delimiter": "\t"} if local.suffix.lower() == ".tsv" else {}
            loaded = datasets.load_dataset(fmt, data_files={"train": str(local)}, cache_dir=cache, **kwargs)
    except ConfigError:
        raise
    except Exception as err:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
        msg = first_line(err)
        if local is not None:
            raise DataError(f"{local}: cannot load as a dataset: {type(err).__name__}: {msg}") from err
        hub = _hub_id(spec.hf_path if spec else name, config or (spec.hf_config if spec else None))
        raise DataError(
            f"cannot load Hugging Face dataset {hub!r}: {type(err).__name__}: {msg}. The hub may be "
            f"unreachable (offline?); use the fsc16 folder (--data-dir), local files "
            f"(--train-file/--dev-file/--test-file) or a local copy of the dataset (a path)"
        ) from err
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    return dict(loaded)


def _text_columns(
    label: str, columns: list[str], text_column: str | Sequence[str] | None, spec: TaskSpec | None
) -> list[str]:
    if text_column is None:
        if spec is not None:
            text_column = spec.text_column
        else:
            text_column = next((c for c in _TEXT_GUESSES if c in columns), None)
            if text_column is None:
                raise DataError(
                    f"dataset {label}: no text column (looked for {', '.join(_TEXT_GUESSES)}); "
                    f"columns present: {columns}; name it with --text-column (text_column=)"
                )
    cols = [text_column] if isinstance(text_column, str) else list(text_column)
    for col in cols:
        if col not in columns:
            raise DataError(f"dataset {label}: no text column {col!r}; columns present: {columns}")
    return cols


def _verbalizers(
    label: str,
    ds: Any,
    label_col: str,
    spec: TaskSpec | None,
    verbalizers: Sequence[str] | None,
    label_names: Sequence[str] | None,
) -> tuple[list[str], list[str]]:
    class_names = getattr(ds.features[label_col], "names", None)
    if verbalizers is None:
        if spec is not None:
            verbalizers = spec.verbalizers
            label_names = label_names or spec.label_names
        elif class_names:
            verbalizers = [" " + n for n in class_names]
        else:
            raise ConfigError(
                f"dataset {label}: pass --verbalizers (one word per class, in label order); "
                f"column {label_col!r} has no class names to derive them from"
            )
    if label_names is None:
        label_names = class_names if class_names and len(class_names) == len(verbalizers) else None
    return list(verbalizers), checked_class_names(verbalizers, label_names, label)


def _kshot(
    label: str, split: str, labels: list[int], num_classes: int, k: int, rng: random.Random
) -> tuple[list[int], list[int], list[int]]:
    """Indices of k per class for train, k per class for dev (disjoint), and the rest."""
    by_class: list[list[int]] = [[] for _ in range(num_classes)]
    for i, y in enumerate(labels):
        by_class[y].append(i)
    train: list[int] = []
    dev: list[int] = []
    for c, idx in enumerate(by_class):
        if len(idx) < 2 * k:
            raise DataError(
                f"dataset {label} split {split!r}: class {c} has {len(idx)} examples, fewer than the "
                f"{2 * k} needed for {k}-shot train and dev; lower k_shot"
            )
        rng.shuffle(idx)
        train += idx[:k]
        dev += idx[k : 2 * k]
    rng.shuffle(train)
    rng.shuffle(dev)
    drawn = set(train) | set(dev)
    rest = [i for i in range(len(labels)) if i not in drawn]
    return train, dev, rest


def load_hf_generation(
    path: str, *, name: str = "hf-generation", config: str | None = None, input_column: str = "input",
    reference_column: str | None = None, seed: int = 42, n_train: int = 16, n_dev: int = 32,
    test_examples: int | None = None, **task_kwargs: Any,
) -> Any:
    """A generation task from a Hugging Face dataset (a hub id, or a local dataset folder or file).

    ``n_train`` training and ``n_dev`` selection inputs are drawn with ``seed`` from the ``train``
    split (dev from ``validation``/``dev`` when there is one); the test split is ``test`` (else
    ``validation``), all of it or a seeded sample of ``test_examples``. A reference value may be a
    string or a list of strings; other columns reach rewards under their own names.

    :param task_kwargs: passed to :class:`~rlprompt.tasks.generation.GenerationTask` (template,
        settings, reward, ...).
    :raises DataError: the dataset cannot be loaded, lacks a column, or an input is empty.
    """
    from rlprompt.tasks.generation import GenerationTask, TextExample

    local = Path(path) if Path(path).exists() else None
    splits = _load(local, None, path, config, None)
    if "train" not in splits:
        raise DataError(f"dataset {path!r} has no 'train' split (it has {sorted(splits)})")
    dev_name = next((s for s in ("validation", "dev") if s in splits), None)
    test_name = next((s for s in ("test", "validation") if s in splits and s != dev_name), None) or dev_name
    if test_name is None:
        raise DataError(f"dataset {path!r} needs a 'test' or 'validation' split beside 'train' "
                        f"(it has {sorted(splits)})")
    rng = random.Random(seed)

    def rows(split: str, k: int | None, skip: frozenset[int] = frozenset()) -> tuple[list[Any], frozenset[int]]:
        ds = splits[split]
        for column in (input_column, reference_column):
            if column is not None and column not in ds.column_names:
                raise DataError(f"dataset {path!r} split {split!r} has no column {column!r}; "
                                f"it has {ds.column_names}")
        pool = [i for i in range(len(ds)) if i not in skip]
        picked = sorted(rng.sample(pool, min(k, len(pool)))) if k is not None else pool
        out = []
        for i in picked:
            row = ds[i]
            value = row[input_column]
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"dataset {path!r} split {split!r} row {i}: {input_column!r} is empty or not text")
            raw = row.get(reference_column) if reference_column else None
            refs = tuple(raw) if isinstance(raw, list) else (() if raw in (None, "") else (str(raw),))
            extra = {k: v for k, v in row.items() if k not in (input_column, reference_column)}
            out.append(TextExample(value, refs, extra))
        return out, frozenset(picked)

    train, used = rows("train", n_train)
    dev, _ = rows(dev_name, n_dev) if dev_name and dev_name != test_name else rows("train", n_dev, used)
    test, _ = rows(test_name, test_examples)
    reward = task_kwargs.pop("reward", None) or ("chrf" if reference_column else "fluency")
    return GenerationTask(name=name, train=train, dev=dev, test=test, reward=reward, source=f"HF {path}",
                          meta={"seed": seed, "n_train": len(train), "n_dev": len(dev)}, **task_kwargs)
