"""Soft prompt tuning on SST-2, exported for PEFT, next to a black-box baseline.

    python examples/soft_prompt_tuning.py --data-dir ../shared/data/fsc16 --budget 200

1. learns 5 soft tokens by gradient descent (Lester et al. 2021) before the input
   (prefix placement, what PEFT does), keeping the best prompt on dev;
2. exports it in PEFT's prompt-tuning format and loads it back with PEFT;
3. runs random search over words with the same budget of prompt evaluations;
4. prints dev and test accuracy of both, and the soft prompt's nearest tokens.

The same from the command line:
``rlprompt tune --task sst-2 --data-dir ../shared/data/fsc16 --method soft-prompt --placement prefix
--budget 200 --export-peft runs/peft --out runs/soft``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rlprompt.agents import RandomSearch, SoftPromptConfig, SoftPromptTuning
from rlprompt.lm import ScoringEngine, load_lm
from rlprompt.tasks import load_task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data/fsc16"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--budget", type=int, default=200, help="prompt evaluations per method (a step costs 2)")
    p.add_argument("--test-examples", type=int, default=200, help="first N test examples (0: all; slow on CPU)")
    p.add_argument("--out", type=Path, default=Path("runs/example-soft-prompt"))
    args = p.parse_args()

    lm = load_lm("smollm2-135m")
    task = load_task("sst-2", data_dir=args.data_dir, seed=args.seed)
    if args.test_examples:
        task = dataclasses.replace(task, test=task.test[: args.test_examples])
    engine = ScoringEngine(lm, task.verbalizers, task.template)

    # 1. gradient soft prompt tuning, PEFT's placement
    config = SoftPromptConfig(prompt_length=5, placement="prefix", init="vocab", optimizer="adam", learning_rate=1e-2,
                              seed=args.seed)
    soft = SoftPromptTuning(engine, task, config, out_dir=args.out / "soft")
    soft.learn(args.budget, progress=True)
    soft_summary = soft.write_outputs(test=True)

    # 2. PEFT round trip: PeftModel.from_pretrained(base, folder) loads what we export
    folder = soft.export_peft(args.out / "peft")
    back = SoftPromptTuning.load(folder, engine, task)
    print(f"PEFT folder {folder} loads back with dev accuracy {back.tracker.best.dev_accuracy:.4f}")

    # 3. a black-box baseline under the same budget accounting
    search = RandomSearch(engine, task, out_dir=args.out / "random")
    search.learn(args.budget, progress=True)
    search_summary = search.write_outputs(test=True)

    # 4. results
    projection = soft.project(splits=("test",), soft_too=False)
    for s in (soft_summary, search_summary):
        print(f"{s.method:<12} dev {s.dev_accuracy:.4f} test {s.test_accuracy:.4f} "
              f"({s.prompt_evals} prompt evaluations, {s.wall_seconds:.0f} s)  prompt {s.prompt}")
    print(f"soft prompt's nearest tokens {projection['text']!r} keep test accuracy {projection['test_accuracy']:.4f}")


if __name__ == "__main__":
    main()
