"""The 16-shot folder layout of LM-BFF / RLPrompt ("fsc16").

::

    <data_dir>/<task>/<seed>/train.tsv    k examples per class
    <data_dir>/<task>/<seed>/dev.tsv      k examples per class
    <data_dir>/<task>/test.tsv            the full test set (shared by all seeds)

Each file has a header (``sentence<TAB>label`` or ``text<TAB>label``) and integer
labels from 0. The usual seeds are 13, 21, 42, 87 and 100.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rlprompt.errors import ConfigError, DataError
from rlprompt.tasks.registry import TASKS, normalize_task_name
from rlprompt.tasks.table import load_table
from rlprompt.tasks.task import Example, Task, class_names

FEWSHOT_SEEDS = (13, 21, 42, 87, 100)


def _listing(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return ", ".join(names) or "none"


def load_fewshot(
    data_dir: str | Path,
    task: str,
    seed: int = 42,
    *,
    verbalizers: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    template: str | None = None,
    masked: bool = False,
) -> Task:
    """Load one seed's split of a task in the fsc16 layout.

    :param data_dir: the folder holding one sub-folder per task.
    :param task: task folder name, e.g. ``"sst-2"``; its verbalizers come from the task
        registry unless ``verbalizers`` is given.
    :param seed: the split's seed folder (13, 21, 42, 87 or 100 in fsc16).
    :param verbalizers: one word per class (required for a task not in the registry).
    :param label_names: class names in label order (default: the registry's or the stripped verbalizers).
    :param template: task template (``None``: the default for ``masked``).
    :param masked: the task LM is a masked LM.
    :raises DataError: the folder, the task or the seed is missing, or a file is bad.
    :raises ConfigError: an unregistered task without verbalizers.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder; pass the folder holding <task>/<seed>/train.tsv")
    key = normalize_task_name(task)
    spec = TASKS.get(key)
    task_dir = root / key if (root / key).is_dir() else root / task
    if not task_dir.is_dir():
        raise DataError(f"{task_dir}: no folder for task {task!r}; tasks in {root}: {_listing(root)}")
    seed_dir = task_dir / str(seed)
    if not seed_dir.is_dir():
        raise DataError(f"{seed_dir}: no split for seed {seed}; seeds present: {_listing(task_dir)}")
    if verbalizers is None:
        if spec is None:
            raise ConfigError(f"task {task!r} is not a known task; pass its verbalizers (one word per class)")
        verbalizers = spec.verbalizers
        if label_names is None:
            label_names = spec.label_names
    verbalizers = list(verbalizers)
    names = class_names(verbalizers, label_names, task)
    splits: dict[str, list[Example]] = {}
    for split, path in (
        ("train", seed_dir / "train.tsv"),
        ("dev", seed_dir / "dev.tsv"),
        ("test", task_dir / "test.tsv"),
    ):
        if not path.is_file():
            raise DataError(
                f"{path}: missing; the fsc16 layout is <task>/<seed>/train.tsv, dev.tsv and <task>/test.tsv"
            )
        splits[split] = load_table(path, num_classes=len(verbalizers), label_names=names)
        if not splits[split]:
            raise DataError(f"{path}: holds no examples; the {split} split needs at least one")
    return Task(
        name=spec.name if spec is not None else task,
        verbalizers=verbalizers,
        label_names=names,
        template=template,
        masked=masked,
        source=f"{task_dir} (seed {seed})",
        meta={"seed": seed, "data_dir": str(root)},
        **splits,  # type: ignore[arg-type]
    )
