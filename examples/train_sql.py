"""Train a discrete prompt with RLPrompt's soft Q-learning (frozen LM + trainable MLP).

The policy starts as the task LM's own next-token distribution after a short task
description and a training input (LM-prior sampling) and learns to prefer prompts with a
high reward on the training examples; the best prompt on dev is kept.

Run from the repository root (SST-2 from the shared 16-shot data, or the built-in demo
task when that folder is missing)::

    python examples/train_sql.py --budget 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlprompt.agents.rl.sql.agent import SoftQLearning
from rlprompt.agents.rl.sql.config import SQLConfig
from rlprompt.lm import ScoringEngine, load_lm
from rlprompt.tasks import load_task

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsc16"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=300, help="prompt evaluations")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("runs/example-sql"))
    args = parser.parse_args()

    task = load_task("sst-2", data_dir=DATA, seed=args.seed) if (DATA / "sst-2").is_dir() else load_task("demo")
    lm = load_lm("smollm2-135m")
    engine = ScoringEngine(lm, task.verbalizers, task.template)
    config = SQLConfig(seed=args.seed, prompt_length=5, reward="gap", batch_size=16, examples_per_episode=16)
    agent = SoftQLearning(engine, task, config, out_dir=args.out)
    agent.learn(args.budget, progress=True)
    summary = agent.write_outputs(test=True)  # prompt.json, prompt.policy.safetensors, summary.json
    print(f"best prompt {summary.prompt!r}: dev {summary.dev_accuracy:.3f}, test {summary.test_accuracy:.3f}")
    print(f"spent {summary.prompt_evals} prompt evaluations, {summary.forward_tokens} LM tokens; files in {args.out}")

    # Load it back (no pickle: JSON + safetensors) and sample from the learned policy.
    again = SoftQLearning.load(args.out / "prompt.json", engine, task)
    prompts, _, _ = again.sample(4)
    print("policy samples:", [engine.decode(p) for p in prompts])


if __name__ == "__main__":
    main()
