"""Train a prompt-writing policy LM with TRL's GRPO (or RLOO) and keep the best prompt on dev.

The policy is SmolLM2-135M with LoRA adapters on the task LM's own (shared) weights. It
reads a task description and a training input, writes a short prompt, and TRL's
GRPOTrainer updates it with the task reward of that prompt on the training examples
(scored by the frozen task LM through rlprompt's scoring engine).

Run from the repository root (SST-2 from the shared 16-shot data, or the built-in demo
task when that folder is missing)::

    python examples/train_grpo.py --budget 300
    python examples/train_grpo.py --budget 300 --algorithm rloo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlprompt.agents.rl.grpo.agent import GRPOAgent, GRPOAgentConfig
from rlprompt.lm import ScoringEngine, load_lm
from rlprompt.tasks import load_task

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsc16"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=300, help="prompt evaluations")
    parser.add_argument("--algorithm", choices=["grpo", "rloo"], default="grpo")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("runs/example-grpo"))
    args = parser.parse_args()

    task = load_task("sst-2", data_dir=DATA, seed=args.seed) if (DATA / "sst-2").is_dir() else load_task("demo")
    lm = load_lm("smollm2-135m")
    engine = ScoringEngine(lm, task.verbalizers, task.template)
    config = GRPOAgentConfig(seed=args.seed, algorithm=args.algorithm, prompt_length=5, reward="gap",
                             num_generations=8, prompts_per_step=2, examples_per_episode=16)
    agent = GRPOAgent(engine, task, config, out_dir=args.out)
    agent.learn(args.budget, progress=True)
    summary = agent.write_outputs(test=True)  # prompt.json, prompt.policy/ (PEFT adapter), summary.json
    print(f"best prompt {summary.prompt!r}: dev {summary.dev_accuracy:.3f}, test {summary.test_accuracy:.3f}")
    print(f"spent {summary.prompt_evals} prompt evaluations in {summary.extra['steps']} steps; files in {args.out}")

    # Load it back (JSON + safetensors, no pickle) and let the trained policy write a few prompts.
    again = GRPOAgent.load(args.out / "prompt.json", engine, task)
    print("policy writes:", again.sample_prompts(4))


if __name__ == "__main__":
    main()
