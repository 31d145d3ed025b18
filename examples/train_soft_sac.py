"""Train a soft prompt with SAC (stable-baselines3): each action is one soft token.

Actions live in a 32-dimensional random projection of the LM's embedding space (as in
black-box tuning), mapped to embeddings scaled like the LM's own table. The best soft
prompt on dev is saved as safetensors (tensor "prompt_embeddings") with its nearest
tokens for reading. PPO and TD3 work the same way (``SoftPPOAgent``, ``TD3Agent``).

Run from the repository root::

    python examples/train_soft_sac.py --budget 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlprompt.agents import SACAgent
from rlprompt.agents.rl.sb3.config import SACConfig
from rlprompt.lm import ScoringEngine, load_lm
from rlprompt.tasks import load_task

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsc16"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=300, help="prompt evaluations")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("runs/example-sac"))
    args = parser.parse_args()

    task = load_task("sst-2", data_dir=DATA, seed=args.seed) if (DATA / "sst-2").is_dir() else load_task("demo")
    engine = ScoringEngine(load_lm("smollm2-135m"), task.verbalizers, task.template)
    config = SACConfig(seed=args.seed, prompt_length=5, reward="gap", n_envs=16, intrinsic_dim=32,
                       placement="suffix", examples_per_episode=16)
    agent = SACAgent(engine, task, config, out_dir=args.out)
    agent.learn(args.budget, progress=True)
    summary = agent.write_outputs(test=True)  # prompt.safetensors, prompt.policy.safetensors, summary.json
    print(f"best soft prompt {summary.prompt}: dev {summary.dev_accuracy:.3f}, test {summary.test_accuracy:.3f}")
    print(f"spent {summary.prompt_evals} prompt evaluations in {summary.wall_seconds:.0f} s; files in {args.out}")


if __name__ == "__main__":
    main()
