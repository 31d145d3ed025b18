"""The quality protocol: every method on four tasks and three seeds at one budget.

Tasks sst-2, sst-5, agnews and trec from the shared 16-shot folder; seeds 13, 21, 42;
SmolLM2-135M; 5-token prompts; each task's default template and verbalizers; a budget of
1,000 prompt evaluations per run (the budget unit: equal example evaluations for every
method); best-on-dev selection (``--selection pooled``: best on train and dev together).
Test on the full test split of sst-2 (1,821), sst-5 (2,210)
and trec (500); on agnews a seeded, label-stratified sample of 2,000 of its 7,600.

Each task is one ``rlprompt compare`` folder under ``--out`` (default
``benchmarks/results/quality/<task>``), so the protocol accumulates over several sittings:
a re-run skips finished runs and continues interrupted ones. ``--report`` only reads what is
there. Printed: per task a table of mean (std) test accuracy per method; the win matrix (in
how many tasks method A's mean beats method B's); the targets of the RL issue; with
``--json PATH`` the same figures as a flat JSON object. Each task's folder also holds its
``summary.md`` and learning-curve plot ``curves.png``.

Run: ``python benchmarks/bench_quality.py [--tasks sst-2] [--methods ...] [--report] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from protocol import protocol_parser

from rlprompt.agents.core.config import SELECTION_RULES
from rlprompt.io import write_json

BENCH = Path(__file__).resolve().parent
DEFAULT_DATA = BENCH.parents[1] / "shared" / "data" / "fsc16"
DEFAULT_OUT = BENCH / "results" / "quality"
TASKS = ["sst-2", "sst-5", "agnews", "trec"]
TEST_SAMPLE = {"agnews": 2000}  # the rest: the full test split
METHODS = ["manual", "random", "lm-prior", "cma", "soft-prompt", "sql", "ppo", "sac", "pgpe"]
DISCRETE_RL = ["sql", "ppo", "grpo", "a2c", "maskable-ppo"]
SOFT_RL = ["sac", "ppo-soft", "td3", "pgpe"]
# the README table's row names (``--markdown``); a variant (``--with``) is named after its method
LABELS = {"manual": "manual prompt", "random": "random search", "lm-prior": "LM-prior sampling",
          "sql": "soft Q-learning (discrete RL)", "ppo": "PPO (SB3, discrete RL)", "grpo": "GRPO (TRL, discrete RL)",
          "cma": "CMA-ES (soft)", "soft-prompt": "soft prompt tuning (gradient)",
          "sac": "SAC (soft RL, `init=lm-prior`)", "pgpe": "PGPE (soft RL)"}
COLUMNS = {"sst-2": "SST-2 (1,821)", "sst-5": "SST-5 (2,210)", "agnews": "AG News (2,000 of 7,600)",
           "trec": "TREC (500)"}


def run_task(task: str, args: argparse.Namespace) -> None:
    from rlprompt.cli.compare import method_options
    from rlprompt.experiments import InProcessExecutor, compare
    from rlprompt.experiments.config import CompareConfig

    methods = list(args.methods) + (list(args.sst2_extra) if task == "sst-2" else [])
    config = CompareConfig(
        task=task, task_args={"data_dir": str(args.data_dir)}, seeds=list(args.seeds), methods=methods,
        budget=args.budget, model=args.model, prompt_length=5, test_examples=TEST_SAMPLE.get(task),
        selection=args.selection, options=method_options(args.set, methods),
    )
    start = time.perf_counter()
    result = compare(config, args.out / task, executor=InProcessExecutor(), progress=args.progress)
    print(f"[{task}] {result.ran} runs now, {result.skipped} already finished, {len(result.failed)} failed, "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def read_task(folder: Path, suffix: str = "") -> dict[str, dict[str, Any]]:
    """method -> {"tests": [...], "seeds": [...], "wall": [...]} from a task's results.jsonl; with
    ``suffix`` the methods are named ``<method>-<suffix>`` (a variant run in its own folder)."""
    from rlprompt.experiments.results import ResultsLog
    from rlprompt.experiments.runner import FINISHED

    out: dict[str, dict[str, Any]] = {}
    config = folder / "config.json"
    options = json.loads(config.read_text(encoding="utf-8")).get("options") or {} if config.exists() else {}
    for (method, seed), r in sorted(ResultsLog(folder).latest().items()):
        if r.get("status") not in FINISHED or r.get("test_accuracy") is None:
            continue
        name = f"{method}-{suffix}" if suffix else method
        sets = " ".join(f"--set {method}.{k}={v}" for k, v in (options.get(method) or {}).items())
        row = out.setdefault(name, {"tests": [], "seeds": [], "wall": [], "curves": [], "family": method,
                                    "variant": f"`{sets}`" if suffix and sets else suffix})
        row["curves"].append([(float(x), float(y)) for x, y in r.get("curve") or []])
        row["tests"].append(100 * float(r["test_accuracy"]))
        row["seeds"].append(seed)
        row["wall"].append(float(r.get("wall_seconds") or 0))
    return out


def best_dev_at(curve: list[tuple[float, float]], budget: float) -> float:
    """Best-so-far dev accuracy of a curve [(prompt evaluations, best dev)] once ``budget`` is spent."""
    return max((best for spent, best in curve if spent <= budget), default=math.nan)


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def report(args: argparse.Namespace) -> dict[str, Any]:
    tables = {task: read_task(args.out / task) for task in args.tasks}
    for suffix, folder in args.variants:
        for task in args.tasks:
            tables[task].update(read_task(folder / task, suffix))
    order = ["manual", "random", "lm-prior", "sql", "ppo", "grpo", "a2c", "maskable-ppo", "cma", "soft-prompt",
             *SOFT_RL]
    family = {m: r["family"] for t in tables.values() for m, r in t.items()}
    methods = sorted(family, key=lambda m: (order.index(family[m]) if family[m] in order else len(order), m))
    figures: dict[str, Any] = {"budget": args.budget, "seeds": ",".join(map(str, args.seeds))}
    wall = 0.0
    for task, rows in tables.items():
        scope = f"a seeded label-stratified sample of {TEST_SAMPLE[task]}" if task in TEST_SAMPLE else "full test split"
        print(f"\n{task} ({scope}), test accuracy %, mean (std) over seeds, {args.budget} prompt evaluations")
        print(f"{'method':<14} {'mean':>6} {'std':>6} {'seeds':>6}")
        for m in methods:
            if m not in rows:
                continue
            tests = rows[m]["tests"]
            sd = statistics.stdev(tests) if len(tests) > 1 else math.nan
            print(f"{m:<14} {mean(tests):>6.1f} {sd:>6.1f} {len(tests):>6}")
            figures[f"{task}/{m}/test_mean"] = round(mean(tests), 2)
            figures[f"{task}/{m}/test_std"] = None if math.isnan(sd) else round(sd, 2)
            figures[f"{task}/{m}/seeds"] = len(tests)
            wall += sum(rows[m]["wall"])
    figures["wall_hours"] = round(wall / 3600, 2)
    # -- the win matrix: in how many tasks (with both measured) A's mean beats B's ----------------
    print("\nwin matrix: tasks where the row method's mean beats the column method's")
    print(" " * 14 + "".join(f"{m[:8]:>9}" for m in methods))
    for a in methods:
        cells = []
        for b in methods:
            both = [t for t in tables.values() if a in t and b in t]
            wins = sum(mean(t[a]["tests"]) > mean(t[b]["tests"]) for t in both)
            cells.append(f"{wins}/{len(both)}" if a != b else "-")
            if a != b:
                figures[f"wins/{a}/{b}"] = wins
        print(f"{a:<14}" + "".join(f"{c:>9}" for c in cells))
    targets(tables, figures)
    if args.markdown:
        args.markdown.write_text(markdown_table(tables, methods, len(args.seeds)), encoding="utf-8")
        print(f"\nthe README table: {args.markdown}")
    print(f"\nwall time of the runs so far: {figures['wall_hours']:.1f} h")
    return figures


def markdown_table(tables: dict[str, dict[str, Any]], methods: list[str], seeds: int) -> str:
    """The README's "Which method should I use?" table: mean (std) per task, the best per task in bold,
    fewer seeds than the protocol's marked, and the mean of the tasks where a method ran on all."""
    def label(m: str) -> str:
        row = next(t[m] for t in tables.values() if m in t)
        name = LABELS.get(row["family"], row["family"])
        return f"{name}, {row['variant']}" if row["variant"] else name

    best = {task: max((mean(r["tests"]) for r in rows.values()), default=math.nan) for task, rows in tables.items()}
    lines = ["| test acc %, mean (std) over seeds | " + " | ".join(COLUMNS.get(t, t) for t in tables)
             + f" | mean of {len(tables)} |", "|---" * (len(tables) + 2) + "|"]
    for m in methods:
        cells, values = [], []
        for task, rows in tables.items():
            if m not in rows:
                cells.append("-")
                continue
            tests = rows[m]["tests"]
            cell = f"{mean(tests):.1f}" + (f" ({statistics.stdev(tests):.1f})" if len(tests) > 1 else "")
            if len(tests) < seeds:
                cell += f" [{len(tests)} seed{'s' if len(tests) > 1 else ''}]"
            cells.append(f"**{cell}**" if mean(tests) == best[task] else cell)
            values.append(mean(tests))
        overall = f"{mean(values):.1f}" if len(values) == len(tables) else "-"
        lines.append(f"| {label(m)} | " + " | ".join(cells) + f" | {overall} |")
    return "\n".join(lines) + "\n"


def margin_se(agent: list[float], bar: list[float]) -> float:
    """Standard error of the difference of two seed means (NaN with fewer than two seeds on a side):
    how far a margin can move by the choice of seeds alone."""
    if len(agent) < 2 or len(bar) < 2:
        return math.nan
    return math.sqrt(statistics.variance(agent) / len(agent) + statistics.variance(bar) / len(bar))


def targets(tables: dict[str, dict[str, Any]], figures: dict[str, Any]) -> None:
    """The RL issue's targets 1-4 on what is measured: a task counts once its baselines ran, an agent
    only if it ran on every such task."""
    disc_rows, soft_rows, disc_se = [], [], []
    for task, rows in tables.items():
        if "random" not in rows or "lm-prior" not in rows:
            continue
        # targets 1 and 3 are about one agent: its margin on every task, not the best agent per task
        bar_method = max(("random", "lm-prior"), key=lambda b: mean(rows[b]["tests"]))
        bar = mean(rows[bar_method]["tests"])
        disc_rows.append({m: mean(r["tests"]) - bar for m, r in rows.items() if r["family"] in DISCRETE_RL})
        disc_se.append({m: margin_se(r["tests"], rows[bar_method]["tests"]) for m, r in rows.items()
                        if r["family"] in DISCRETE_RL})
        for m, margin in disc_rows[-1].items():
            figures[f"{task}/{m}/margin_over_search"] = round(margin, 2)
        if "cma" in rows:
            bar = max(mean(rows["cma"]["tests"]), mean(rows["random"]["tests"]))
            soft_rows.append({m: mean(r["tests"]) - bar for m, r in rows.items() if r["family"] in SOFT_RL})
    print("\ntargets (on the tasks measured so far):")
    # an agent counts only where it ran on every task of the comparison
    disc = {m: [r[m] for r in disc_rows] for m in disc_rows[0] if all(m in r for r in disc_rows)} if disc_rows else {}
    if disc:
        best = max(disc, key=lambda m: mean(disc[m]))
        figures["target1_discrete_rl_agent"] = best
        figures["target1_mean_margin"] = round(mean(disc[best]), 2)
        figures["target1_tasks_above"] = sum(v > 0 for v in disc[best])
        # the standard error of a mean margin over T tasks: sqrt(sum of the tasks' SE^2) / T
        se = {m: math.sqrt(sum(r[m] ** 2 for r in disc_se)) / len(disc_se) for m in disc}
        figures["target1_mean_margin_se"] = round(se[best], 2)
        each = ", ".join(f"{m} {mean(v):+.1f} (SE {se[m]:.1f}; {sum(x > 0 for x in v)}/{len(v)} tasks above)"
                         for m, v in sorted(disc.items(), key=lambda kv: -mean(kv[1])))
        print(f"  1. discrete RL agent minus max(random, LM-prior), mean over {len(disc_rows)} tasks: {each} "
              "(target: every task, mean >= +2)")
    if "sst-2" in tables:  # targets 2 and 4 ask for "the RL agent": discrete or soft
        rl = [m for m, r in tables["sst-2"].items() if r["family"] in DISCRETE_RL + SOFT_RL]
        if rl:
            best2 = max(rl, key=lambda m: mean(tables["sst-2"][m]["tests"]))
            figures["target2_sst2_best_rl"] = round(mean(tables["sst-2"][best2]["tests"]), 2)
            figures["target2_sst2_best_rl_agent"] = best2
            print(f"  2. SST-2 best RL agent {best2} {figures['target2_sst2_best_rl']:.1f}% (target >= 82)")
    # an agent counts only where it ran on every task that has CMA-ES
    soft_margins = ({m: mean([r[m] for r in soft_rows]) for m in soft_rows[0] if all(m in r for r in soft_rows)}
                    if soft_rows else {})
    if soft_margins:
        best = max(soft_margins, key=soft_margins.get)
        figures["target3_soft_rl_agent"] = best
        figures["target3_soft_rl_margin"] = round(soft_margins[best], 2)
        each = ", ".join(f"{m} {v:+.1f}" for m, v in sorted(soft_margins.items(), key=lambda kv: -kv[1]))
        print(f"  3. soft-vector RL agent minus max(CMA-ES, random), mean over {len(soft_rows)} tasks: {each} "
              f"(target > 0)")
    sst2 = tables.get("sst-2", {})
    rl4 = [m for m, r in sst2.items() if r["family"] in DISCRETE_RL + SOFT_RL]
    if rl4 and "lm-prior" in sst2:
        at = {m: 100 * mean([best_dev_at(c, 300) for c in sst2[m]["curves"]]) for m in [*rl4, "lm-prior"]}
        best = max(rl4, key=lambda m: at[m])
        figures["target4_sst2_dev_at_300_rl"], figures["target4_sst2_dev_at_300_lm_prior"] = (
            round(at[best], 2), round(at["lm-prior"], 2))
        print(f"  4. SST-2 best-so-far dev at 300 evaluations, mean over seeds: {best} {at[best]:.1f}% vs "
              f"LM-prior {at['lm-prior']:.1f}% (target: at or above)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = protocol_parser(__doc__, data=DEFAULT_DATA, out=DEFAULT_OUT, tasks=TASKS, methods=METHODS,
                             budget=1000)
    parser.add_argument("--sst2-extra", type=lambda s: [x for x in s.split(",") if x], default=["grpo"],
                        help="methods run on sst-2 only (default grpo: about 5x slower per evaluation)")
    parser.add_argument("--selection", default="dev", choices=SELECTION_RULES,
                        help="every method's selection rule (rlprompt compare --selection); give pooled runs "
                             "their own --out, e.g. benchmarks/results/quality-pooled")
    parser.add_argument("--markdown", type=Path, help="also write the README's table (markdown) to this file")
    args = parser.parse_args(argv)
    if not args.report:
        for task in args.tasks:
            run_task(task, args)
    figures = report(args)
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
