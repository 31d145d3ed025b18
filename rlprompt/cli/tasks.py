"""``rlprompt tasks``: list the known tasks."""

from __future__ import annotations

import argparse


def add_tasks_args(p: argparse.ArgumentParser) -> None:
    del p  # no options


def run_tasks(args: argparse.Namespace) -> int:
    from rlprompt.tasks import list_tasks

    rows = list_tasks()
    print(f"{'task':<10} {'classes':>7}  {'verbalizers':<60} source")
    for row in rows:
        verbs = ", ".join(repr(v) for v in row.verbalizers)
        if len(verbs) > 60:
            verbs = verbs[:56] + " ..."
        print(f"{row.name:<10} {row.classes:>7}  {verbs:<60} {row.source}")
    print("\ngeneration tasks (the LM writes; a reward on the text scores it; --data-dir ../shared/data/tst):")
    for name, what in GENERATION_TASKS.items():
        print(f"{name:<17} {what}")
    print("any CSV/TSV/JSONL files with --input-column (and --reference-column) make a generation task too")
    return 0


GENERATION_TASKS = {
    "yelp-0to1": "Yelp sentiment transfer, negative -> positive (500 test inputs with human rewrites)",
    "yelp-1to0": "Yelp sentiment transfer, positive -> negative (500 test inputs with human rewrites)",
    "shakespeare-0to1": "Shakespearean -> modern English (100-shot; no references)",
    "shakespeare-1to0": "modern -> Shakespearean English (100-shot; no references)",
}
