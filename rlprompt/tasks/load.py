"""One entry point that picks the loader: :func:`load_task`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from rlprompt.errors import ConfigError
from rlprompt.tasks.demo import demo_task
from rlprompt.tasks.fewshot import load_fewshot
from rlprompt.tasks.hf import load_hf
from rlprompt.tasks.registry import get_task_spec, normalize_task_name
from rlprompt.tasks.table import task_from_files
from rlprompt.tasks.task import Task

DATA_DIR_ENV = "RLPROMPT_DATA_DIR"
"""Environment variable naming a default fsc16-layout folder for known tasks."""


def load_task(
    task: str = "demo",
    *,
    data_dir: str | Path | None = None,
    seed: int = 42,
    train_file: str | Path | None = None,
    dev_file: str | Path | None = None,
    test_file: str | Path | None = None,
    hf: str | bool | None = None,
    hf_config: str | None = None,
    k_shot: int = 16,
    template: str | None = None,
    verbalizers: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    label_map: Mapping[str, int] | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    masked: bool = False,
    file_format: str | None = None,
) -> Task:
    """Load a task from whichever source the arguments name.

    The first that applies wins:

    1. ``train_file``/``dev_file``/``test_file``: three CSV/TSV/JSONL files (all three
       needed; verbalizers from ``verbalizers`` or the registered ``task``).
    2. ``hf``: a Hugging Face dataset, ``k_shot`` per class drawn with ``seed``;
       ``hf=True`` uses the registered task's dataset, a string names a dataset id or a
       local dataset path.
    3. ``data_dir`` (or the ``RLPROMPT_DATA_DIR`` environment variable, for a task other
       than ``demo``): the fsc16 layout ``<data_dir>/<task>/<seed>/{train,dev}.tsv``.
    4. ``task == "demo"``: the built-in generated task.

    :param task: task name (a registry name such as ``"sst-2"``, or any name for files).
    :param data_dir: fsc16-layout folder.
    :param seed: split seed (fsc16 seed folder, or the k-shot draw for ``hf``).
    :param train_file: training file.
    :param dev_file: validation file.
    :param test_file: test file.
    :param hf: Hugging Face dataset: ``True`` for the task's own, or an id / local path.
    :param hf_config: dataset configuration name.
    :param k_shot: examples per class for ``hf`` draws.
    :param template: override the template.
    :param verbalizers: override the verbalizers (one per class, label order).
    :param label_names: class names (accepted in label columns).
    :param label_map: extra ``name -> class id`` entries for label columns.
    :param text_column: text column of files or datasets.
    :param label_column: label column of files or datasets.
    :param masked: the task LM is a masked LM (default template holds ``<mask>``).
    :param file_format: ``"csv"``, ``"tsv"`` or ``"jsonl"`` for the three files, overriding their
        extensions (a process substitution such as ``<(cat data.tsv)`` has none).
    :raises ConfigError: unknown task, incomplete file arguments, or bad overrides.
    :raises DataError: the data cannot be read.
    """
    files = (train_file, dev_file, test_file)
    key = normalize_task_name(task)
    if verbalizers is not None:
        # "demo" is only the default name when the data comes from files or a dataset.
        own_data = key != "demo" or all(f is None for f in files) and hf in (None, False)
        if own_data:
            _check_class_count(task, list(verbalizers))
    if any(f is not None for f in files):
        names = ("train_file", "dev_file", "test_file")
        missing = [n for n, f in zip(names, files, strict=True) if f is None]
        if missing:
            raise ConfigError(
                f"missing {', '.join(missing)}: a task from files needs train, dev and test files "
                f"(reuse the dev file as test if you have no test set)"
            )
        if verbalizers is None:
            spec = get_task_spec(task)  # raises, listing known tasks, when it is not one
            verbalizers = spec.verbalizers
            label_names = label_names or spec.label_names
        assert train_file is not None and dev_file is not None and test_file is not None
        return task_from_files(
            train_file,
            dev_file,
            test_file,
            verbalizers=list(verbalizers),
            name=task,
            label_names=label_names,
            label_map=label_map,
            text_column=text_column,
            label_column=label_column or "label",
            template=template,
            masked=masked,
            delimiter=format_delimiter(file_format),
        )
    if hf is not None and hf is not False:
        if hf is True:
            spec = get_task_spec(task)
            if spec.hf_path is None:
                raise ConfigError(f"task {spec.name!r} has no Hugging Face dataset; drop hf")
            source, task_arg = spec.name, None
        else:
            source, task_arg = hf, (key if key != "demo" else None)
        return load_hf(
            source,
            hf_config,
            k_shot=k_shot,
            seed=seed,
            task=task_arg,
            text_column=text_column,
            label_column=label_column,
            verbalizers=verbalizers,
            label_names=label_names,
            template=template,
            masked=masked,
        )
    if key == "demo" and data_dir is None:
        verbs = list(verbalizers) if verbalizers else None
        return demo_task(template=template, verbalizers=verbs, masked=masked)
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is not None:
        return load_fewshot(
            data_dir,
            task,
            seed,
            verbalizers=verbalizers,
            label_names=label_names,
            template=template,
            masked=masked,
        )
    spec = get_task_spec(task)  # unknown names fail here, with suggestions
    ways: list[str] = []
    if spec.fewshot:
        ways.append(f"data_dir=<folder with {spec.name}/<seed>/train.tsv> (or ${DATA_DIR_ENV})")
    if spec.hf_path:
        ways.append(f"hf=True (Hugging Face dataset {spec.hf_path})")
    ways.append("train_file/dev_file/test_file")
    raise ConfigError(f"task {spec.name!r} needs data: pass {' or '.join(ways)}")


def _check_class_count(task: str, verbalizers: list[str]) -> None:
    """Verbalizers for a known task must give one word per class of that task: three words on
    SST-2 would silently make it another task (a class with no examples, a different chance level).

    :raises ConfigError: the counts differ (the message says how to define a new task instead).
    """
    try:
        spec = get_task_spec(task)
    except ConfigError:
        return  # not a known task: the verbalizers define it
    if len(verbalizers) != len(spec.verbalizers):
        raise ConfigError(
            f"--verbalizers gives {len(verbalizers)} words but task {spec.name!r} has {len(spec.verbalizers)} "
            f"classes ({', '.join(spec.label_names)}); give one word per class in label order, or define a "
            "new task under a name of your own (--task NAME with --train-file/--dev-file/--test-file)"
        )


FILE_FORMATS = {"csv": ",", "tsv": "\t", "jsonl": "jsonl"}


def format_delimiter(file_format: str | None) -> str | None:
    """The reader of ``--format csv|tsv|jsonl`` (None: by each file's extension)."""
    if file_format is None:
        return None
    if file_format not in FILE_FORMATS:
        raise ConfigError(f"--format {file_format!r} is not known; use csv, tsv or jsonl")
    return FILE_FORMATS[file_format]
