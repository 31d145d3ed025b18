"""Best-so-far dev at given budgets and test accuracy, per method, of finished compare folders.

Reads ``rlprompt compare`` output folders (their ``results.jsonl``), for instance the soft
Q-learning ablations in ``benchmarks/results/ablation-sql/``, and prints one row per (folder,
method): best dev at each ``--at`` budget and test accuracy, mean (std) over seeds. With
``--json PATH`` the same figures as a flat JSON object. Runs nothing.

Run: ``python benchmarks/report_curves.py benchmarks/results/quality/sst-2
benchmarks/results/ablation-sql/* --at 300,1000``
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import Any

from bench_quality import best_dev_at, read_task

from rlprompt.io import write_json


def spread(values: list[float]) -> str:
    """``mean (std)`` of percentages; a run with no dev check yet at that budget (NaN) is left out
    and counted as ``[n of m runs]``."""
    measured = [v for v in values if not math.isnan(v)]
    if not measured:
        return "-"
    std = statistics.stdev(measured) if len(measured) > 1 else 0.0
    missing = f" [{len(measured)} of {len(values)} runs]" if len(measured) < len(values) else ""
    return f"{statistics.fmean(measured):.1f} ({std:.1f}){missing}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="rlprompt compare output folders")
    parser.add_argument("--at", type=lambda s: [int(x) for x in s.split(",")], default=[300, 1000],
                        help="budgets (prompt evaluations) at which to read the best-so-far dev curve")
    parser.add_argument("--json", type=Path, help="also write the figures as a flat JSON object")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {}
    print(" | ".join(["folder", "method", "seeds", *[f"dev@{b}" for b in args.at], "test"]))
    for folder in args.folders:
        for method, row in read_task(folder).items():
            devs = [[100 * best_dev_at(c, b) for c in row["curves"]] for b in args.at]
            cells = [spread(d) for d in devs] + [spread(row["tests"])]
            print(" | ".join([folder.name, method, ",".join(map(str, row["seeds"])), *cells]))
            key = f"{folder.name}.{method}"
            for b, d in zip(args.at, devs, strict=True):
                measured = [v for v in d if not math.isnan(v)]
                figures[f"{key}.dev_at_{b}"] = statistics.fmean(measured) if measured else None
            figures[f"{key}.test"] = statistics.fmean(row["tests"])
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
