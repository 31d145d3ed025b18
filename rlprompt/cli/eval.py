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
    g.add_argument("--reward",
                   help="reward: accuracy (default), log-likelihood, gap, balanced-accuracy, balanced-gap, or "
                        "pkg.module:fn; on a generation task a text reward (default: the task's)")
    g.add_argument("--metric", action="append", dest="metrics", metavar="REWARD",
                   help="generation tasks: another text reward to report (repeatable; e.g. bleu, fluency)")
    g.add_argument("--show", type=int, default=5, help="generation tasks: input -> output pairs to print")
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
    if getattr(task, "kind", "") == "generation":
        return _eval_generation(args, engine, task)
    if args.metrics:
        raise ConfigError("--metric is for generation tasks; on a classification task use --reward")
    prompts: list[Any] = args.prompts or [""]
    placement = "prefix"
    if args.soft_prompt is not None:
        from rlprompt.agents.gradient.peft_format import load_soft_prompt

        embeds, meta = load_soft_prompt(args.soft_prompt, token_dim=engine.lm.input_embeddings().embedding_dim)
        prompts, placement = [embeds], str(meta.get("placement") or meta.get("config", {}).get("placement", "prefix"))
    results = evaluate_prompts(
        engine, task, prompts, split=args.split, reward=args.reward or "accuracy", max_examples=args.max_examples,
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


STYLE_METRICS = ("style", "similarity", "bleu", "fluency")
"""What ``rlprompt eval`` reports on a style-transfer task beside its joint metric and reward."""


def _eval_generation(args: argparse.Namespace, engine: Any, task: Any) -> int:
    """``rlprompt eval`` on a generation task: the metric, the reward, other metrics, a few outputs."""
    from rlprompt.io import write_json
    from rlprompt.rewards.evaluate_text import TextObjective
    from rlprompt.tasks.style_transfer import is_style_task

    if args.soft_prompt is not None:
        raise ConfigError("--soft-prompt: the engine does not generate from soft prompts yet; give --prompt texts")
    if args.show < 0:
        raise ConfigError(f"--show must be 0 or more, got {args.show}")
    metrics = list(args.metrics or (STYLE_METRICS if is_style_task(task.name) else ()))
    if not args.metrics and task.has_references(args.split) and not is_style_task(task.name):
        metrics += ["bleu", "chrf"]
    objective = TextObjective(engine, task, metrics=metrics)
    prompts: list[str] = args.prompts or [""]
    results = objective.evaluate(prompts, args.split, max_examples=args.max_examples,
                                 progress=sys.stderr.isatty())
    scope = "" if results[0].sample == "all" else f" ({results[0].sample})"
    print(f"task {task.name} ({task.source}), split {args.split}, {results[0].n_examples} inputs{scope}, "
          f"model {engine.lm.name} on {engine.lm.device} ({engine.lm.dtype_name}), reward {objective.reward.name}")
    names = [objective.metric_name] + [k for k in results[0].metrics if k != objective.metric_name]
    print(f"{'prompt':<32} " + " ".join(f"{n:>10}" for n in names))
    for r in results:
        print(f"{r.prompt!r:<32} " + " ".join(f"{r.metrics.get(n, r.accuracy):>10.4f}" for n in names))
        for o in r.outputs[: args.show]:
            print(f"    {o['input'][:70]!r} -> {o['output'][:70]!r}")
    c = engine.counters
    print(f"{results[0].seconds:.1f} s; {c.generated_tokens} tokens written "
          f"({c.generated_tokens / max(results[0].seconds, 1e-9):.1f}/s), LM forward tokens {c.forward_tokens}")
    if args.out is not None:
        write_json(args.out, {
            "task": task.name, "source": task.source, "split": args.split, "model": engine.lm.name,
            "dtype": engine.lm.dtype_name, "template": task.template, "generation": engine.describe_settings(),
            "results": [r.as_dict() for r in results], "counters": c.as_dict(),
        })
        print(f"wrote {args.out} (every input -> output)")
    return 0

