"""What the protocol benchmarks share (``bench_quality.py``, ``bench_tst.py``): their common flags.

Each protocol is a set of ``rlprompt compare`` folders, one per task, that accumulate over
several sittings; these flags say which tasks, seeds and methods to run, at what budget, and
where the folders are.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def variant(text: str) -> tuple[str, Path]:
    """``SUFFIX=FOLDER`` of ``--with``."""
    suffix, sep, folder = text.partition("=")
    if not sep or not suffix or not folder:
        raise argparse.ArgumentTypeError(
            f"expected SUFFIX=FOLDER, e.g. prior=benchmarks/results/quality-ppo-prior; got {text!r}")
    return suffix, Path(folder)


def protocol_parser(doc: str, *, data: Path, out: Path, tasks: list[str], methods: list[str],
                    budget: int) -> argparse.ArgumentParser:
    """An argument parser with the protocol flags and these defaults (a benchmark adds its own)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=data)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", type=lambda s: s.split(","), default=tasks)
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[13, 21, 42])
    parser.add_argument("--methods", type=lambda s: s.split(","), default=methods)
    parser.add_argument("--budget", type=int, default=budget)
    parser.add_argument("--report", action="store_true", help="only report what the folders hold")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--json", type=Path, help="also write the figures as a flat JSON object")
    parser.add_argument("--set", action="append", metavar="METHOD.NAME=VALUE",
                        help="an option of one method (rlprompt compare --set); a method keeps the options "
                             "it was first run with in a folder")
    parser.add_argument("--with", dest="variants", action="append", default=[], type=variant,
                        metavar="SUFFIX=FOLDER", help="report also the runs of another protocol folder (a variant "
                        "run with other --set options), its methods named <method>-SUFFIX")
    return parser
