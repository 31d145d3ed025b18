"""Train a discrete prompt with PPO (stable-baselines3) on the batched prompt environment.

``n_envs`` prompts are written side by side, one token per step, and scored with one
engine call per step; the policy embeds the prompt so far with the frozen LM's own
embedding table (shared, not copied) and a small trainable MLP. A2C and MaskablePPO
work the same way (``A2CAgent``/``A2CConfig``, ``MaskablePPOAgent``/``MaskablePPOConfig``).

Run from the repository root::

    python examples/train_ppo.py --budget 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlprompt.agents import PPOAgent
from rlprompt.agents.rl.sb3.config import PPOConfig
from rlprompt.lm import ScoringEngine, load_lm
from rlprompt.tasks import load_task

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsc16"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=300, help="prompt evaluations")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("runs/example-ppo"))
    args = parser.parse_args()

    task = load_task("sst-2", data_dir=DATA, seed=args.seed) if (DATA / "sst-2").is_dir() else load_task("demo")
    engine = ScoringEngine(load_lm("smollm2-135m"), task.verbalizers, task.template)
    config = PPOConfig(seed=args.seed, prompt_length=5, reward="gap", n_envs=16, n_steps=10, batch_size=80,
                       examples_per_episode=16)
    agent = PPOAgent(engine, task, config, out_dir=args.out)  # logs/progress.csv: SB3's training log
    agent.learn(args.budget, progress=True)
    summary = agent.write_outputs(test=True)
    print(f"best prompt {summary.prompt!r}: dev {summary.dev_accuracy:.3f}, test {summary.test_accuracy:.3f}")
    print(f"spent {summary.prompt_evals} prompt evaluations in {summary.wall_seconds:.0f} s; files in {args.out}")


if __name__ == "__main__":
    main()
