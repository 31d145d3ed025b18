"""Tasks: labelled data, verbalizers and a template.

Build a task with :func:`load_task` (it picks the loader: files, Hugging Face
datasets, the fsc16 few-shot folder, or the built-in ``demo``), or with a loader
directly. :func:`list_tasks` lists the registered task specs.
"""

from __future__ import annotations

from rlprompt.tasks.demo import demo_examples, demo_task
from rlprompt.tasks.fewshot import FEWSHOT_SEEDS, load_fewshot
from rlprompt.tasks.hf import load_hf
from rlprompt.tasks.load import DATA_DIR_ENV, load_task
from rlprompt.tasks.registry import TASKS, TaskRow, TaskSpec, get_task_spec, list_tasks, register_task
from rlprompt.tasks.table import LabelParser, load_table, task_from_files
from rlprompt.tasks.task import SPLITS, Example, Task, check_verbalizers

__all__ = [
    "DATA_DIR_ENV",
    "FEWSHOT_SEEDS",
    "SPLITS",
    "TASKS",
    "Example",
    "LabelParser",
    "Task",
    "TaskRow",
    "TaskSpec",
    "check_verbalizers",
    "demo_examples",
    "demo_task",
    "get_task_spec",
    "list_tasks",
    "load_fewshot",
    "load_hf",
    "load_table",
    "load_task",
    "register_task",
    "task_from_files",
]
