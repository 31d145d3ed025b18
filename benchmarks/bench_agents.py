"""RL agents against black-box baselines and manual prompts, at one equal budget.

Per agent and seed: learn a discrete prompt (5 tokens by default) on the task's 16-shot
training split with a budget of prompt evaluations (dev checks included), select on dev,
then score the selected prompt on the full test split. Baselines under the same budget:
uniform random search over the same candidate vocabulary (``random``) and LM-prior
sampling (``lm-prior``); and the manual prompts of ``bench_manual.py``, selected on dev
(``manual``, no budget). The table gives test accuracy mean and std over seeds, dev
accuracy, wall time, LM forward tokens and prompt evaluations.

Run (the full benchmark)::

    python benchmarks/bench_agents.py --json runs/bench_agents.json

Shrink it while developing::

    python benchmarks/bench_agents.py --seeds 42 --budget 200 --agents sql lm-prior --test-examples 300

Speed: one engine (and its cached training and dev inputs) per seed is shared by every
agent; the test split is scored once per seed for all selected prompts together.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rlprompt.io import write_json

BENCH = Path(__file__).resolve().parent
DEFAULT_DATA = BENCH.parents[1] / "shared" / "data" / "fsc16"
DISCRETE_AGENTS = ["sql", "ppo", "a2c", "maskable-ppo", "random", "lm-prior"]


def make_agent(name: str, engine: Any, task: Any, seed: int, prompt_length: int, reward: str,
               examples_per_episode: int | None, out: Path | None) -> Any:
    """An agent by name, with the benchmark's shared options."""
    from rlprompt.cli.train import resolve_agent

    cls = resolve_agent(name, "discrete")
    options: dict[str, Any] = {"seed": seed, "prompt_length": prompt_length, "reward": reward}
    if name in ("sql", "grpo", "rloo", "ppo", "a2c", "maskable-ppo"):
        options["examples_per_episode"] = examples_per_episode
    return cls(engine, task, cls.config_class(**options), out_dir=out)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst-2")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42])
    parser.add_argument("--budget", type=int, default=2000, help="prompt evaluations per agent and seed")
    parser.add_argument("--agents", nargs="+", default=DISCRETE_AGENTS, help="agents to run (discrete)")
    parser.add_argument("--prompt-length", type=int, default=5)
    parser.add_argument("--reward", default="gap", help="training reward of every agent")
    parser.add_argument("--examples-per-episode", type=int, default=16,
                        help="training examples per prompt evaluation of the RL agents (the baselines use all)")
    parser.add_argument("--test-examples", type=int, help="score on the first N test examples only (quick look)")
    parser.add_argument("--no-manual", action="store_true", help="skip the manual prompts")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 can be faster on a CPU shared with others)")
    parser.add_argument("--out", type=Path, help="also keep each run's files (curve, prompt, summary) here")
    parser.add_argument("--json", type=Path, help="also write the figures as a flat JSON object")
    args = parser.parse_args(argv)

    from rlprompt.experiments.manual import MANUAL_PROMPTS
    from rlprompt.lm import ScoringEngine, load_lm
    from rlprompt.rewards.evaluate import evaluate_prompts
    from rlprompt.tasks import load_task

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    lm = load_lm(args.model)
    rows: dict[str, list[dict[str, Any]]] = {}
    start_all = time.perf_counter()
    for seed in args.seeds:
        # The built-in demo task (for a quick check of the script) takes no data folder.
        task = load_task("demo") if args.task == "demo" else load_task(args.task, data_dir=args.data_dir, seed=seed)
        engine = ScoringEngine(lm, task.verbalizers, task.template)
        chosen: dict[str, dict[str, Any]] = {}
        for name in args.agents:
            out = args.out / f"{name}-s{seed}" if args.out else None
            agent = make_agent(name, engine, task, seed, args.prompt_length, args.reward,
                               args.examples_per_episode, out)
            print(f"[seed {seed}] {name}: learning ({args.budget} prompt evaluations) ...", file=sys.stderr, flush=True)
            agent.learn(args.budget, progress=sys.stderr.isatty())
            s = agent.summary()
            chosen[name] = {"tokens": agent.predict(), "prompt": s.prompt, "dev": s.dev_accuracy,
                            "seconds": s.wall_seconds, "tokens_lm": s.forward_tokens, "evals": s.prompt_evals}
            print(f"[seed {seed}] {name}: {s.prompt!r} dev {s.dev_accuracy:.3f}, {s.wall_seconds:.0f} s, "
                  f"{s.prompt_evals} evals", file=sys.stderr, flush=True)
        if not args.no_manual:
            manual = MANUAL_PROMPTS.get(args.task, [""])
            t0 = time.perf_counter()
            dev = evaluate_prompts(engine, task, manual, split="dev")
            best = max(range(len(manual)), key=lambda i: dev[i].accuracy)
            chosen["manual"] = {"tokens": manual[best], "prompt": manual[best], "dev": dev[best].accuracy,
                                "seconds": time.perf_counter() - t0, "tokens_lm": 0, "evals": len(manual)}
        # One test pass per seed for every selected prompt (inputs encoded once).
        names = list(chosen)
        print(f"[seed {seed}] scoring {len(names)} selected prompts on test ...", file=sys.stderr, flush=True)
        test = evaluate_prompts(engine, task, [chosen[n]["tokens"] for n in names], split="test",
                                max_examples=args.test_examples)
        for n, r in zip(names, test, strict=True):
            rows.setdefault(n, []).append({**chosen[n], "seed": seed, "test": r.accuracy})
            print(f"[seed {seed}] {n:<13} test {r.accuracy:.4f}  {chosen[n]['prompt']!r}", file=sys.stderr, flush=True)

    total = time.perf_counter() - start_all
    figures: dict[str, float] = {"budget": args.budget, "seeds": len(args.seeds), "total_seconds": round(total, 1)}
    print(f"\n{args.task} 16-shot, {args.model}, {args.prompt_length}-token prompts, budget {args.budget} prompt "
          f"evaluations, seeds {args.seeds}, reward {args.reward}; total {total / 60:.1f} min")
    print(f"{'agent':<14} {'test acc':>16} {'dev acc':>8} {'wall s':>8} {'LM tokens':>11} {'evals':>6}  prompts")
    for name, runs in rows.items():
        tests = [r["test"] for r in runs]
        mean, std = statistics.mean(tests), (statistics.stdev(tests) if len(tests) > 1 else 0.0)
        dev = statistics.mean(r["dev"] for r in runs)
        secs = statistics.mean(r["seconds"] for r in runs)
        toks = statistics.mean(r["tokens_lm"] for r in runs)
        evals = statistics.mean(r["evals"] for r in runs)
        prompts = " | ".join(repr(r["prompt"]) for r in runs)
        print(f"{name:<14} {mean:>8.4f} ± {std:.4f} {dev:>8.3f} {secs:>8.0f} {toks:>11.0f} {evals:>6.0f}  {prompts}")
        figures.update({f"{name}.test_acc_mean": mean, f"{name}.test_acc_std": std, f"{name}.dev_acc_mean": dev,
                        f"{name}.wall_seconds": secs, f"{name}.lm_tokens": toks, f"{name}.prompt_evals": evals})
        for r in runs:
            figures[f"{name}.test_acc[seed={r['seed']}]"] = r["test"]
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    sys.exit(0 if main() else 1)
