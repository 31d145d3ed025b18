"""The comparison's outputs: ``results.jsonl``, ``summary.md`` and ``curves.png``.

``results.jsonl`` holds one JSON object per finished (method, seed) run; a re-run of the
same comparison reads it to skip what is done. Every write replaces the whole file
atomically (it is small), so a crash never leaves half a line behind.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlprompt.io import _strict, atomic_write_bytes

RESULTS = "results.jsonl"
SUMMARY = "summary.md"
CURVES = "curves.png"
CONFIG = "config.json"


class ResultsLog:
    """``results.jsonl`` of one comparison folder.

    :param folder: the comparison's ``--out`` folder.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / RESULTS
        self.records: list[dict[str, Any]] = self._read()

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                # Only a foreign edit can cause this (writes are atomic); keep going without it.
                print(f"rlprompt: warning: {self.path}:{number} is not JSON; ignoring that line", file=sys.stderr)
                continue
            if isinstance(record, dict) and "method" in record and "seed" in record:
                records.append(record)
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Add one run's record and rewrite the file atomically."""
        self.records.append(record)
        text = "".join(json.dumps(_strict(r), allow_nan=False, ensure_ascii=False) + "\n" for r in self.records)
        atomic_write_bytes(self.path, text.encode("utf-8"))

    def latest(self) -> dict[tuple[str, int], dict[str, Any]]:
        """The last record of each (method, seed)."""
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for r in self.records:
            out[(r["method"], int(r["seed"]))] = r
        return out


@dataclass
class MethodRow:
    """One method's results over seeds (finished runs only)."""

    method: str
    runs: list[dict[str, Any]]
    failed: list[dict[str, Any]]

    def _values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.runs if r.get(key) is not None]

    def mean_std(self, key: str) -> tuple[float, float]:
        vals = self._values(key)
        if not vals:
            return math.nan, math.nan
        return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else math.nan)

    @property
    def best_run(self) -> dict[str, Any] | None:
        """The run whose prompt did best on dev (ties: higher test is NOT used; first seed wins)."""
        runs = [r for r in self.runs if r.get("dev_accuracy") is not None]
        return max(runs, key=lambda r: r["dev_accuracy"]) if runs else None


def method_rows(records: Iterable[dict[str, Any]], methods: Sequence[str]) -> list[MethodRow]:
    """Group the latest record of each (method, seed) by method, in ``methods`` order."""
    from rlprompt.experiments.runner import FINISHED

    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        latest[(r["method"], int(r["seed"]))] = r
    rows = []
    for m in methods:
        mine = [r for (meth, _), r in sorted(latest.items()) if meth == m]
        rows.append(MethodRow(m, [r for r in mine if r.get("status") in FINISHED],
                              [r for r in mine if r.get("status") not in FINISHED]))
    return rows


def _pct(mean: float, std: float | None = None) -> str:
    """``"81.2 (3.4)"``; no spread for one seed (std None or NaN)."""
    if math.isnan(mean):
        return "n/a"
    return f"{100 * mean:.1f}" if std is None or math.isnan(std) else f"{100 * mean:.1f} ({100 * std:.1f})"


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_table(rows: Sequence[MethodRow], task: str) -> list[str]:
    """The Markdown table: one row per method; test accuracy mean (std) over seeds (on a generation
    task the task's metric, then one column per other metric, each x 100 where it lies in [0, 1])."""
    metric = next((r["metric"] for row in rows for r in row.runs if r.get("metric")), None)
    names = list(dict.fromkeys(k for row in rows for r in row.runs for k in (r.get("test_metrics") or {})
                               if k != metric))
    what = "acc %" if metric is None else f"{metric} x100"
    extra = "".join(f" {n} |" for n in names)
    lines = [
        f"| method | {task} test {what} mean (std) | dev {what} | seeds |{extra} prompt evals | LM fwd+bwd tokens "
        "| dtype | wall s | best prompt (on dev) |",
        "|---|---|---|---|" + "---|" * len(names) + "---|---|---|---|---|",
    ]
    for row in rows:
        cells = "".join(f" {_metric_cell(row, n)} |" for n in names)
        test, test_sd = row.mean_std("test_accuracy")
        dev, _ = row.mean_std("dev_accuracy")
        evals, _ = row.mean_std("prompt_evals")
        fwd, _ = row.mean_std("forward_tokens")
        bwd, _ = row.mean_std("backward_tokens")
        toks = fwd + (0.0 if math.isnan(bwd) else bwd)
        dtypes = ",".join(sorted({str(r.get("dtype")) for r in row.runs if r.get("dtype")})) or "n/a"
        wall, _ = row.mean_std("wall_seconds")
        best = row.best_run
        prompt = "" if best is None else (_short(repr(best.get("prompt"))) if best.get("prompt_kind") == "discrete"
                                          else f"soft: {best.get('artefact') or ''} "
                                               f"(nearest tokens {_short(repr(best.get('prompt')))})")
        seeds = f"{len(row.runs)}" + (f" (+{len(row.failed)} failed)" if row.failed else "")
        lines.append(
            f"| {row.method} | {_pct(test, test_sd)} | {_pct(dev)} | {seeds} |{cells} "
            f"{'n/a' if math.isnan(evals) else f'{evals:.1f}'} | {'n/a' if math.isnan(toks) else f'{toks:.3g}'} | "
            f"{dtypes} | {'n/a' if math.isnan(wall) else f'{wall:.0f}'} | {_cell(prompt)} |"
        )
    return lines


def _metric_cell(row: MethodRow, name: str) -> str:
    """Mean over seeds of one test metric: x 100 when its values lie in [0, 1], else as is."""
    vals = [float(r["test_metrics"][name]) for r in row.runs if name in (r.get("test_metrics") or {})]
    if not vals:
        return "n/a"
    mean = statistics.mean(vals)
    return f"{100 * mean:.1f}" if all(0 <= v <= 1 for v in vals) else f"{mean:.1f}"


def _evals(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1f}"


def write_summary(folder: str | Path, config: Any, records: Sequence[dict[str, Any]]) -> Path:
    """Write ``summary.md``: the method table, then one line per run (failures with their error)."""
    rows = method_rows(records, config.methods)
    scope = ("the full test split" if config.test_examples is None
             else f"a seeded (0), label-stratified sample of {config.test_examples} test examples")
    lines = [f"# Comparison: {config.task}, {config.model}", "",
             f"Budget {config.budget} prompt evaluations per run; seeds {', '.join(map(str, config.seeds))}; "
             f"{config.prompt_length}-token prompts; prompts selected on dev, accuracy on "
             f"{scope}.",
             "", *summary_table(rows, config.task), "", "## Runs", "",
             "| method | seed | status | dev acc % | test acc % | prompt evals | wall s | prompt or error |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for r in sorted(row.runs + row.failed, key=lambda r: int(r["seed"])):
            what = r.get("error") if r.get("status") not in ("completed", "early-stopped", "non-finite-loss") \
                else repr(r.get("prompt"))
            dev = r.get("dev_accuracy")
            test = r.get("test_accuracy")
            lines.append(f"| {r['method']} | {r['seed']} | {r.get('status')} | "
                         f"{'n/a' if dev is None else f'{100 * dev:.1f}'} | "
                         f"{'n/a' if test is None else f'{100 * test:.1f}'} | {_evals(r.get('prompt_evals'))} | "
                         f"{float(r.get('wall_seconds') or 0):.0f} | {_cell(str(what))} |")
    path = Path(folder) / SUMMARY
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path


def write_curves(folder: str | Path, config: Any, records: Sequence[dict[str, Any]]) -> Path | None:
    """Write ``curves.png``: best-so-far dev accuracy against prompt evaluations, per method.

    Each method's line is the mean over seeds of the best-so-far step function, and the
    shaded band spans the seeds' minimum to maximum. Returns None when nothing finished.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in method_rows(records, config.methods) if r.runs]
    if not rows:
        return None
    grid = np.linspace(0, config.budget, 201)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for row in rows:
        curves = []
        for run in row.runs:
            points = [(float(e), float(a)) for e, a in run.get("curve") or [] if a is not None]
            if not points:
                continue
            xs = np.array([p[0] for p in points])
            ys = np.maximum.accumulate(np.array([p[1] for p in points]))
            idx = np.searchsorted(xs, grid, side="right") - 1
            curves.append(np.where(idx >= 0, ys[np.clip(idx, 0, None)], np.nan))
        if not curves:
            continue
        stack = np.vstack(curves)
        # Only where every seed has a first dev evaluation: a mean over a changing set of
        # seeds could fall, which a best-so-far curve never does.
        stack = np.where(np.isfinite(stack).all(axis=0), stack, np.nan)
        mean, lo, hi = stack.mean(axis=0), stack.min(axis=0), stack.max(axis=0)
        (line,) = ax.plot(grid, 100 * mean, label=f"{row.method} ({len(curves)} seeds)", lw=1.8)
        if len(curves) > 1:
            ax.fill_between(grid, 100 * lo, 100 * hi, color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xlabel("prompt evaluations (engine counters)")
    ax.set_ylabel("best-so-far dev accuracy (%)")
    ax.set_title(f"{config.task}, {config.model}: mean over seeds, band = min..max")
    ax.set_xlim(0, config.budget)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(Path(folder) / CURVES, buf.getvalue())
