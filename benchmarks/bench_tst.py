"""Text style transfer on Yelp (RLPrompt's second benchmark): every method at one budget, both directions.

Tasks ``yelp-0to1`` (negative -> positive) and ``yelp-1to0`` from the shared ``tst`` folder;
SmolLM2-135M writing after RLPrompt's template ``'{prompt} "{input}" "'`` (greedy, at most 40
tokens, ended by the closing quote); 5-token prompts; seeds 13, 21, 42. One prompt evaluation
is a prompt scored on the 8 training inputs (drawn per seed from the first half of
``dev.<source>.txt``); the budget is 500 of them; 16 selection inputs (a dev evaluation costs 2).
The training reward is RLPrompt's (content + style) / 2 shaped to [-20, 80]; selection and the
report use the joint score (mean over sentences of content x style x fluency). Test: the 500
test inputs of each direction, with BLEU against the human rewrites.

Evaluators built here (RLPrompt's are not available offline): style = a TF-IDF + logistic
regression classifier trained on the second halves of ``dev.0.txt`` / ``dev.1.txt`` (disjoint
from every input; its held-out accuracy is printed); content = cosine similarity of
all-MiniLM-L6-v2 embeddings to the input; fluency = min(1, per-token likelihood of the output
relative to its input under the frozen LM).

Methods: no prompt, the hand-written instructions (best on dev), LM-prior sampling, random
search and soft Q-learning. Each direction is one ``rlprompt compare`` folder under ``--out``
(default ``benchmarks/results/tst/<task>``): a re-run skips finished runs. Also measured in the
same run: generation throughput (generated tokens/s, prompt evaluations/s).

Run: ``python benchmarks/bench_tst.py [--seeds 42] [--report] [--json out.json]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from protocol import protocol_parser

from rlprompt.io import write_json

BENCH = Path(__file__).resolve().parent
DEFAULT_DATA = BENCH.parents[1] / "shared" / "data" / "tst"
DEFAULT_OUT = BENCH / "results" / "tst"
TASKS = ["yelp-0to1", "yelp-1to0"]
METHODS = ["no-prompt", "manual", "lm-prior", "random", "sql"]
RL = ["sql", "ppo", "grpo"]
METRICS = ["joint", "style", "similarity", "bleu", "fluency"]


def throughput(args: argparse.Namespace) -> dict[str, float]:
    """Generated tokens/s and prompt evaluations/s of the engine on 8 prompts x the 8 training inputs."""
    from rlprompt.lm import load_lm
    from rlprompt.lm.generation import GenerationEngine
    from rlprompt.rewards.evaluate_text import TextObjective
    from rlprompt.tasks.style_transfer import load_style_transfer

    task = load_style_transfer("yelp-0to1", args.data_dir, seed=42, n_train=8, n_dev=16)
    engine = GenerationEngine(load_lm(args.model), task.template, settings=task.settings)
    objective = TextObjective(engine, task)
    prompts = ["Rewrite the negative review as a positive one:", "Here is the text, made positive:", "",
               "Positive version:", "Make it nice:", "The happy review:", "Good news:", "Rewritten:"]
    objective.score(prompts[:1], "train")  # warm-up (loads the evaluators)
    before = engine.counters.copy()
    start = time.perf_counter()
    objective.score(prompts, "train")
    wall = time.perf_counter() - start
    spent = engine.counters - before
    clf = objective.context.shared["style"]
    return {"generated_tokens_per_s": round(spent.generated_tokens / spent.seconds, 1),
            "prompt_evals_per_s": round(len(prompts) / wall, 3),
            "generate_share_of_wall": round(spent.seconds / wall, 3),
            "style_classifier_held_out_accuracy": round(clf.held_out_accuracy, 4)}


def instruction_template(task: str) -> str:
    """RLPrompt's template after the task's first hand-written instruction: the learned prompt extends it."""
    from rlprompt.experiments.manual import manual_prompts
    from rlprompt.lm.generation import GENERATION_TEMPLATE

    return manual_prompts(task)[0] + GENERATION_TEMPLATE


def run_task(task: str, args: argparse.Namespace) -> None:
    from rlprompt.cli.compare import method_options
    from rlprompt.experiments import InProcessExecutor, compare
    from rlprompt.experiments.config import CompareConfig

    task_args: dict[str, Any] = {"data_dir": str(args.data_dir), "n_train": 8, "n_dev": 16}
    if args.instruction:
        task_args["template"] = instruction_template(task)
    config = CompareConfig(
        task=task, task_args=task_args, seeds=list(args.seeds),
        methods=list(args.methods), budget=args.budget, model=args.model, prompt_length=5, reward=args.reward,
        options=method_options(args.set, list(args.methods)),
    )
    start = time.perf_counter()
    result = compare(config, args.out / task, executor=InProcessExecutor(), progress=args.progress)
    print(f"[{task}] {result.ran} runs now, {result.skipped} already finished, {len(result.failed)} failed, "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def read_task(folder: Path, suffix: str = "") -> dict[str, dict[str, list[float]]]:
    """method -> metric -> values over seeds (x 100), from a task's results.jsonl; with ``suffix``
    the methods are named ``<method>-<suffix>`` (a variant run in its own folder, ``--with``)."""
    from rlprompt.experiments.results import ResultsLog
    from rlprompt.experiments.runner import FINISHED

    out: dict[str, dict[str, list[float]]] = {}
    if not (folder / "results.jsonl").exists():
        return out
    for (method, _), r in sorted(ResultsLog(folder).latest().items()):
        if r.get("status") not in FINISHED or r.get("test_accuracy") is None:
            continue
        row = out.setdefault(f"{method}-{suffix}" if suffix else method, {m: [] for m in [*METRICS, "wall"]})
        row["joint"].append(100 * float(r["test_accuracy"]))
        for m in METRICS[1:]:
            value = (r.get("test_metrics") or {}).get(m)
            if value is not None:
                row[m].append(100 * float(value))
        row["wall"].append(float(r.get("wall_seconds") or 0))
    return out


def extends_instruction(folder: Path) -> bool:
    """True when the runs in ``folder`` used a template with text before ``{prompt}`` (``--instruction``):
    their no-prompt row is then that hand-written instruction alone, a baseline of the target."""
    import json

    from rlprompt.lm.template import Template

    config = folder / "config.json"
    template = json.loads(config.read_text()).get("task_args", {}).get("template") if config.exists() else None
    return bool(template) and bool(Template.parse(template).head.strip())


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def report(args: argparse.Namespace, figures: dict[str, Any]) -> dict[str, Any]:
    wall = 0.0
    beats: list[bool] = []
    for task in args.tasks:
        rows = read_task(args.out / task)
        family = {m: m for m in rows}
        instructions = {m for m in rows if m == "no-prompt" and extends_instruction(args.out / task)}
        for suffix, folder in args.variants:
            variant_rows = read_task(folder / task, suffix)
            rows.update(variant_rows)
            family.update({m: m.removesuffix(f"-{suffix}") for m in variant_rows})
            if extends_instruction(folder / task):
                instructions |= {m for m in variant_rows if family[m] == "no-prompt"}
        print(f"\n{task}: test, 500 inputs, mean over seeds (x 100); budget {args.budget} prompt evaluations")
        width = max([11, *(len(m) + 1 for m in rows)])
        print(f"{'method':<{width}}" + "".join(f"{m:>11}" for m in METRICS) + f"{'joint sd':>10}{'seeds':>7}")
        order = METHODS + RL
        for method in sorted(rows, key=lambda m: (order.index(family[m]) if family[m] in order else len(order), m)):
            row = rows[method]
            sd = statistics.stdev(row["joint"]) if len(row["joint"]) > 1 else math.nan
            print(f"{method:<{width}}" + "".join(f"{_mean(row[m]):>11.1f}" for m in METRICS)
                  + f"{sd:>10.1f}{len(row['joint']):>7}")
            for m in METRICS:
                figures[f"{task}/{method}/{m}"] = round(_mean(row[m]), 2)
            figures[f"{task}/{method}/seeds"] = len(row["joint"])
            wall += sum(row["wall"])
        rl = [m for m in rows if family[m] in RL]
        if rl and "manual" in rows and "lm-prior" in rows:
            best = max(rl, key=lambda m: _mean(rows[m]["joint"]))
            # every manual and LM-prior row counts, a variant folder's too, and an instruction alone
            baseline = max(_mean(rows[m]["joint"]) for m in rows
                           if family[m] in ("manual", "lm-prior") or m in instructions)
            margin = _mean(rows[best]["joint"]) - baseline
            figures[f"{task}/rl_margin"] = round(margin, 2)
            beats.append(margin > 0)
            print(f"target: {best} joint minus the best hand-written instruction or LM-prior row = {margin:+.1f}")
    figures["target_met_directions"] = sum(beats)
    figures["wall_hours"] = round(wall / 3600, 2)
    print(f"\ntarget (RL joint above the hand-written instruction and LM-prior): met in {sum(beats)}/{len(beats)} "
          f"directions measured; wall time of the runs so far {wall / 3600:.1f} h")
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = protocol_parser(__doc__, data=DEFAULT_DATA, out=DEFAULT_OUT, tasks=TASKS, methods=METHODS,
                             budget=500)
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput measurement")
    parser.add_argument("--reward", help="every method's training reward (rlprompt compare --reward; default "
                        "RLPrompt's 'tst'); selection and the report stay on the joint score. Give such runs "
                        "their own --out")
    parser.add_argument("--instruction", action="store_true", help="every method's prompt extends the task's "
                        "first hand-written instruction (template '<instruction>{prompt} \"{input}\" \"'; "
                        "no-prompt is then that instruction alone); give such runs their own --out")
    args = parser.parse_args(argv)
    if args.instruction and "manual" in args.methods and not args.report:
        parser.error("--instruction with 'manual' would write an instruction after an instruction; the manual "
                     "row is in the standard folder (report it with --with)")
    figures: dict[str, Any] = {"budget": args.budget, "seeds": ",".join(map(str, args.seeds))}
    if not args.no_throughput and not args.report:
        figures.update(throughput(args))
        print("throughput: " + ", ".join(f"{k} {v}" for k, v in figures.items() if k not in ("budget", "seeds")))
    if not args.report:
        for task in args.tasks:
            run_task(task, args)
    report(args, figures)
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
