"""``rlprompt demo``, the main job: a small comparison on the embedded defaults (the manual
prompt, random search, soft Q-learning writing discrete prompts, gradient soft prompt tuning)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlprompt.cli.compare import add_run_args, build_compare_config, execute
from rlprompt.errors import ConfigError

DEMO_METHODS = "manual,random,sql,soft-prompt"


def add_demo_args(p: argparse.ArgumentParser) -> None:
    """Arguments of ``rlprompt demo`` (a small comparison; every flag has a demo default)."""
    p.add_argument("--data-dir", type=Path,
                   help="a 16-shot folder (e.g. ../shared/data/fsc16): run on SST-2 instead of the built-in task")
    p.add_argument("--task", help="task (default: demo, or sst-2 with --data-dir)")
    p.add_argument("--seeds", default="42", help="seeds, comma-separated (default 42)")
    p.add_argument("--methods", default=DEMO_METHODS, help=f"methods (default {DEMO_METHODS})")
    p.add_argument("--budget", type=int, default=200, help="prompt evaluations per method (default 200)")
    p.add_argument("--model", default="smollm2-135m", help="task LM (default: the embedded SmolLM2-135M)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    g = p.add_argument_group("outputs")
    add_run_args(g, default_out="runs/demo-<task>")


def run_demo(args: argparse.Namespace) -> int:
    """Run ``rlprompt demo``: the manual prompt, random search, soft Q-learning and soft prompt tuning."""
    from rlprompt.experiments import InProcessExecutor

    task = args.task or ("sst-2" if args.data_dir is not None else "demo")
    if task != "demo" and args.data_dir is None:
        raise ConfigError(f"--task {task} needs --data-dir (the demo's own data is the built-in task)")
    ns = argparse.Namespace(
        task=task, data_dir=args.data_dir, seed=42, train_file=None, dev_file=None, test_file=None, hf=None,
        hf_config=None, k_shot=16, template=None, verbalizers=None, text_column=None, label_column=None,
        model=args.model, device=args.device, dtype=args.dtype, budget=args.budget, prompt_length=5, reward=None,
        test_examples=args.test_examples, set=None, manual_prompt=None,
        out=args.out or Path("runs") / f"demo-{task}", force=args.force, progress=args.progress,
    )
    config = build_compare_config(ns, args.methods, args.seeds)
    return execute(config, ns, InProcessExecutor())
