"""``rlprompt eval``: score prompts on a task split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rlprompt.cli.common import add_model_args, add_task_args, build_engine, check_writable
from rlprompt.errors import ConfigError


def add_eval_args(p: argparse.ArgumentParser) -> None:
    add_task_args(p)
    add_model_args(p)
    g = p.add_argument_group("evaluation")
    g.add_argument("--prompt", action="append", dest="prompts", metavar="TEXT",
                   help='prompt text; repeat to compare several (default: the empty prompt)')
    g.add_argument("--split", default="test", choices=["train", "dev", "test"])
    g.add_argument("--reward", default="accuracy",
                   help="reward: accuracy, log-likelihood, gap, balanced-accuracy, balanced-gap, or pkg.module:fn")
    g.add_argument("--max-examples", type=int, help="evaluate on a seeded, label-stratified sample of N examples")
    g.add_argument("--soft-prompt", type=Path, metavar="PATH",
                   help="score a saved soft prompt (a .safetensors file or a PEFT prompt-tuning folder) "
                        "instead of --prompt")
    g.add_argument("--out", type=Path, help="write the results as JSON here")


def run_eval(args: argparse.Namespace) -> int:
    from rlprompt.io import write_json
    from rlprompt.rewards.evaluate import evaluate_prompts

    if args.out is not None:
        check_writable(args.out)
    if args.soft_prompt is not None and args.prompts:
        raise ConfigError("give --prompt or --soft-prompt, not both")
    engine, task = build_engine(args)
    prompts: list[Any] = args.prompts or [""]
    placement = "prefix"
    if args.soft_prompt is not None:
        from rlprompt.agents.gradient.peft_format import load_soft_prompt

        embeds, meta = load_soft_prompt(args.soft_prompt, token_dim=engine.lm.input_embeddings().embedding_dim)
        prompts, placement = [embeds], str(meta.get("placement") or meta.get("config", {}).get("placement", "prefix"))
    results = evaluate_prompts(
        engine, task, prompts, split=args.split, reward=args.reward, max_examples=args.max_examples,
        progress=sys.stderr.isatty(), placement=placement,
    )
    names = task.label_names
    scope = "" if results[0].sample == "all" else f" ({results[0].sample})"
    print(f"task {task.name} ({task.source}), split {args.split}, {results[0].n_examples} examples{scope}, "
          f"model {engine.lm.name} on {engine.lm.device} ({engine.lm.dtype_name}), reward {results[0].reward_name}")
    header = f"{'prompt':<32} {'accuracy':>8} {'balanced':>8} {'reward':>12}  per class"
    print(header)
    for r in results:
        per = " ".join(f"{n}={a:.3f}" for n, a in zip(names, r.per_class_accuracy, strict=True))
        print(f"{r.prompt!r:<32} {r.accuracy:>8.4f} {r.balanced_accuracy:>8.4f} {r.reward:>12.4f}  {per}")
    print(f"{results[0].examples_per_s:.1f} examples/s (prompt x example pairs), {results[0].seconds:.1f} s; "
          f"LM forward tokens {engine.counters.forward_tokens}")
    if args.out is not None:
        write_json(args.out, {
            "task": task.name, "source": task.source, "split": args.split, "model": engine.lm.name,
            "dtype": engine.lm.dtype_name,
            "template": task.template, "verbalizers": list(task.verbalizers), "label_names": list(names),
            "results": [r.as_dict() for r in results], "counters": engine.counters.as_dict(),
        })
        print(f"wrote {args.out}")
    return 0
