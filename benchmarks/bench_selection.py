"""Is a method's best prompt lost to search or to selection? Every dev-checked candidate of a
run, scored on test.

Per method: one run on the task (default SST-2 seed 42, 1,000 prompt evaluations, 5-token
prompts) that keeps every candidate it checked on dev (``keep_top``), then the best
``--max-candidates`` of them by dev are scored on train and on the full test split. Printed per
method: how many candidates were checked on dev, the test accuracy of the prompt best-on-dev
selection picks, of the best candidate on test (the oracle: what a perfect selection could get
from this search), the mean test accuracy of the top 5 by dev, the rank correlation of dev and
test over the candidates, and what two other selection rules would pick: best on train, and
best on train and dev pooled (64 examples on SST-2 instead of 32).

When one method's oracle is above another's but its selected prompt is not, the search found
better prompts and selection lost them.

Run: ``python benchmarks/bench_selection.py [--methods lm-prior,sql,random] [--budget 1000] [--json out.json]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rlprompt.io import write_json

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsc16"


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation with average ranks for ties (dev accuracies tie often); NaN below 3 points
    or for a constant input."""
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def run_method(name: str, engine: Any, task: Any, args: argparse.Namespace) -> dict[str, Any]:
    from rlprompt.agents import get_agent_class
    from rlprompt.agents.core.tracking import pooled_accuracy
    from rlprompt.rewards.evaluate import evaluate_prompts

    cls = get_agent_class(name)
    agent = cls(engine, task, cls.config_class(seed=args.seed, prompt_length=5, keep_top=args.keep))
    start = time.perf_counter()
    agent.learn(args.budget, progress=args.progress)
    learn_s = time.perf_counter() - start
    cands = agent.tracker.top[: args.max_candidates]  # best first by (dev accuracy, dev log-likelihood)
    if not cands:
        raise SystemExit(f"{name} checked no candidate on dev within {args.budget} prompt evaluations")
    ids = [list(c.prompt) for c in cands]
    n_train, n_dev = len(task.texts("train")), len(task.texts("dev"))
    train = [r.accuracy for r in evaluate_prompts(engine, task, ids, split="train")]
    test = [r.accuracy for r in evaluate_prompts(engine, task, ids, split="test", progress=args.progress,
                                                max_examples=args.test_examples)]
    dev = [c.dev_accuracy for c in cands]
    pooled = [pooled_accuracy(t, d, n_train, n_dev) for t, d in zip(train, dev, strict=True)]

    def pick(score: list[float]) -> int:  # ties: the earlier (higher on dev) candidate
        return max(range(len(score)), key=lambda i: (score[i], -i))

    oracle = max(range(len(test)), key=lambda i: test[i])
    return {
        "method": name, "checked_on_dev": len(agent.tracker.top), "scored_on_test": len(cands),
        "learn_seconds": learn_s, "selected_test": test[0], "selected_dev": dev[0], "selected": cands[0].text,
        "oracle_test": test[oracle], "oracle": cands[oracle].text, "oracle_dev": dev[oracle],
        "top5_mean_test": statistics.fmean(test[:5]), "spearman_dev_test": spearman(dev, test),
        "train_pick_test": test[pick(train)], "pooled_pick_test": test[pick(pooled)],
        "pooled_pick": cands[pick(pooled)].text,
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst-2")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=42, help="the split seed and the agents' seed")
    parser.add_argument("--methods", type=lambda s: s.split(","), default=["lm-prior", "sql", "random"])
    parser.add_argument("--budget", type=int, default=1000, help="prompt evaluations per run")
    parser.add_argument("--keep", type=int, default=10_000, help="dev-checked candidates kept per run")
    parser.add_argument("--max-candidates", type=int, default=40, help="best candidates by dev scored on test")
    parser.add_argument("--test-examples", type=int, help="a seeded, label-stratified sample of N test examples "
                        "(rlprompt compare's --test-examples; default: the whole split)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--json", type=Path, help="also write the figures as a flat JSON object")
    args = parser.parse_args(argv)

    from rlprompt.lm import ScoringEngine, load_lm
    from rlprompt.tasks import load_task

    lm = load_lm(args.model)
    task = load_task(args.task, data_dir=args.data_dir, seed=args.seed)
    rows = []
    for name in args.methods:
        engine = ScoringEngine(lm, task.verbalizers, task.template)
        rows.append(run_method(name, engine, task, args))
        print(f"  {name}: done in {rows[-1]['learn_seconds']:.0f} s of learning", file=sys.stderr, flush=True)

    n_test = len(task.texts("test"))
    print(f"Selection against search: {task.name} seed {args.seed}, {args.budget} prompt evaluations per run, "
          f"test accuracy % on {min(args.test_examples or n_test, n_test)} of {n_test} test examples of the best "
          f"{args.max_candidates} "
          f"candidates by dev")
    head = (f"{'method':<10} {'on dev':>6} {'selected':>8} {'oracle':>6} {'top-5':>6} {'rho':>5} "
            f"{'by train':>8} {'by pooled':>9}  selected / oracle prompt")
    print(head)
    figures: dict[str, float] = {"budget": args.budget, "seed": args.seed}
    for r in rows:
        print(f"{r['method']:<10} {r['checked_on_dev']:>6} {100 * r['selected_test']:>8.1f} "
              f"{100 * r['oracle_test']:>6.1f} {100 * r['top5_mean_test']:>6.1f} {r['spearman_dev_test']:>5.2f} "
              f"{100 * r['train_pick_test']:>8.1f} {100 * r['pooled_pick_test']:>9.1f}  "
              f"{r['selected']!r} / {r['oracle']!r}")
        for key in ("checked_on_dev", "selected_test", "selected_dev", "oracle_test", "oracle_dev", "top5_mean_test",
                    "spearman_dev_test", "train_pick_test", "pooled_pick_test", "learn_seconds"):
            figures[f"{r['method']}.{key}"] = float(r[key])
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
