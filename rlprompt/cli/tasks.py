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
    return 0
