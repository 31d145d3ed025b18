"""Does bfloat16 change the prompt an agent selects? The same agents, seeds and budget in
bfloat16 and in float32, side by side.

Per agent and seed: learn on SST-2 seed-42 train (32 examples) with the task LM in bfloat16 and
again in float32, select on dev, then score both selected prompts on the full test split
(1,821 examples) *in float32*. Random search draws the same candidates in both dtypes (its
stream depends on the seed only), so it isolates selection. LM-prior sampling and soft
Q-learning sample their candidates from the LM's own next-token distribution, which the dtype
moves, so in those the candidates themselves differ too (the same seed draws other prompts).

The issue's bar: the selected prompt is the same, or its test accuracy differs by at most 0.5
points.

Run: ``python benchmarks/bench_dtype_selection.py [--agents random,lm-prior,sql] [--seeds 13,42]
[--budget 300] [--json out.json]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rlprompt.io import write_json

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsc16"


def learn_and_select(name: str, lm: Any, task: Any, seed: int, budget: int) -> tuple[str, list[int], float, float]:
    """(prompt text, token ids, dev accuracy, learning seconds) of one agent run."""
    from rlprompt.agents import get_agent_class
    from rlprompt.lm import ScoringEngine

    cls = get_agent_class(name)
    engine = ScoringEngine(lm, task.verbalizers, task.template)
    agent = cls(engine, task, cls.config_class(seed=seed, prompt_length=5, reward="gap"))
    start = time.perf_counter()
    agent.learn(budget, progress=False)
    seconds = time.perf_counter() - start
    best = agent.tracker.best
    return best.text, list(best.prompt), best.dev_accuracy, seconds


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst-2")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--agents", type=lambda s: s.split(","), default=["random", "lm-prior", "sql"])
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[13, 42])
    parser.add_argument("--budget", type=int, default=300, help="prompt evaluations per run")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--json", type=Path, help="also write the figures as a flat JSON object")
    args = parser.parse_args(argv)

    from rlprompt.lm import ScoringEngine, load_lm
    from rlprompt.rewards.evaluate import evaluate_prompts
    from rlprompt.tasks import load_task

    task = load_task(args.task, data_dir=args.data_dir, seed=42)
    lms = {dt: load_lm(args.model, dtype=dt) for dt in ("bfloat16", "float32")}
    reference = ScoringEngine(lms["float32"], task.verbalizers, task.template)
    rows: list[dict[str, Any]] = []
    for name in args.agents:
        for seed in args.seeds:
            row: dict[str, Any] = {"agent": name, "seed": seed}
            for dt, lm in lms.items():
                text, ids, dev, seconds = learn_and_select(name, lm, task, seed, args.budget)
                row.update({f"{dt}_prompt": text, f"{dt}_ids": ids, f"{dt}_dev": dev, f"{dt}_seconds": seconds})
            texts = [row["bfloat16_prompt"], row["float32_prompt"]]
            results = evaluate_prompts(reference, task, [row["bfloat16_ids"], row["float32_ids"]], split="test",
                                       progress=sys.stderr.isatty())
            row["bfloat16_test"], row["float32_test"] = results[0].accuracy, results[1].accuracy
            row["same"] = row["bfloat16_ids"] == row["float32_ids"]
            row["diff_points"] = 100 * abs(row["bfloat16_test"] - row["float32_test"])
            rows.append(row)
            print(f"  {name} seed {seed}: bf16 {texts[0]!r} ({row['bfloat16_test']:.4f}), "
                  f"fp32 {texts[1]!r} ({row['float32_test']:.4f})", file=sys.stderr)

    n_test = len(task.texts("test"))
    print(f"Selected prompts in bfloat16 vs float32: {task.name} seed-42 train, {args.budget} prompt evaluations, "
          f"test accuracy on {n_test} test examples scored in float32")
    print(f"{'agent':<10} {'seed':>4} {'same':>5} {'bf16 test':>9} {'fp32 test':>9} {'|diff| pts':>10} "
          f"{'bf16 s':>7} {'fp32 s':>7}  prompts (bf16 / fp32)")
    figures: dict[str, float] = {"budget": args.budget, "test_examples": n_test}
    for r in rows:
        print(f"{r['agent']:<10} {r['seed']:>4} {'yes' if r['same'] else 'no':>5} {100 * r['bfloat16_test']:>9.1f} "
              f"{100 * r['float32_test']:>9.1f} {r['diff_points']:>10.2f} {r['bfloat16_seconds']:>7.0f} "
              f"{r['float32_seconds']:>7.0f}  {r['bfloat16_prompt']!r} / {r['float32_prompt']!r}")
        key = f"{r['agent']}[{r['seed']}]"
        figures.update({f"{key}.same": float(r["same"]), f"{key}.bf16_test": r["bfloat16_test"],
                        f"{key}.fp32_test": r["float32_test"], f"{key}.diff_points": r["diff_points"],
                        f"{key}.bf16_seconds": r["bfloat16_seconds"], f"{key}.fp32_seconds": r["float32_seconds"]})
    ok = [r["same"] or r["diff_points"] <= 0.5 for r in rows]
    figures["runs_within_bar"] = float(sum(ok))
    figures["runs"] = float(len(rows))
    print(f"{sum(ok)} of {len(rows)} runs select the same prompt or one within 0.5 test points")
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
