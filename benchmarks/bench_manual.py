"""Manual prompt baselines: the floor that optimised prompts must beat.

Scores the empty prompt and a handful of hand-written prompts on a task's full
test split (SST-2: 1,821 examples) with the default template "{sentence} {prompt}".

Run: ``python benchmarks/bench_manual.py [--task sst-2] [--seed 42] [--json out.json]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rlprompt.experiments.manual import MANUAL_PROMPTS
from rlprompt.io import write_json
from rlprompt.lm import ScoringEngine, load_lm
from rlprompt.rewards.evaluate import evaluate_prompts
from rlprompt.tasks import load_task

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsc16"
# Other templates for the same task (template, prompt): the input part is still cached.
OTHER_TEMPLATES = {
    "sst-2": [("Review: {sentence} {prompt}", " Sentiment:"),
              ("Review: {sentence} {prompt}", " Overall, the movie was"),
              ("Movie review: {sentence} {prompt}", " Did the critic like it? The movie was")],
}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst-2", choices=sorted(MANUAL_PROMPTS))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=42, help="split seed (the test set is the same for all)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-examples", type=int, help="first N test examples only (quick look)")
    parser.add_argument("--other-templates", action="store_true",
                        help="also score a few other templates (each re-caches the test inputs)")
    parser.add_argument("--json", type=Path, help="also write the figures as a flat JSON object")
    args = parser.parse_args(argv)

    lm = load_lm(args.model)
    task = load_task(args.task, data_dir=args.data_dir, seed=args.seed)
    engine = ScoringEngine(lm, task.verbalizers, task.template)
    prompts = MANUAL_PROMPTS[args.task]
    start = time.perf_counter()
    results = evaluate_prompts(engine, task, prompts, split="test", max_examples=args.max_examples,
                               progress=sys.stderr.isatty())
    seconds = time.perf_counter() - start
    print(f"Manual prompts on {task.name} test ({results[0].n_examples} examples), {args.model}, "
          f"template {task.template!r}, {seconds:.0f} s")
    print(f"{'prompt':<32} {'accuracy':>8} {'balanced':>8}")
    figures: dict[str, float] = {"examples": results[0].n_examples, "seconds": seconds}
    for r in results:
        print(f"{r.prompt!r:<32} {r.accuracy:>8.4f} {r.balanced_accuracy:>8.4f}")
        figures[f"accuracy[{r.prompt.strip() or '<empty>'}]"] = r.accuracy
    if args.other_templates:
        for template, prompt in OTHER_TEMPLATES.get(args.task, []):
            variant = task.with_overrides(template=template)
            eng = ScoringEngine(lm, variant.verbalizers, variant.template)
            (r,) = evaluate_prompts(eng, variant, [prompt], split="test", max_examples=args.max_examples,
                                    progress=sys.stderr.isatty())
            r.prompt = f"{template} | {prompt}"
            results.append(r)
            print(f"{r.prompt!r:<32} {r.accuracy:>8.4f} {r.balanced_accuracy:>8.4f}")
            figures[f"accuracy[{template}|{prompt.strip()}]"] = r.accuracy
    best = max(results, key=lambda r: r.accuracy)
    figures["best_accuracy"] = best.accuracy
    print(f"best: {best.prompt!r} {best.accuracy:.4f}")
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
