"""Evaluating one prompt on a whole split: time, throughput, LM tokens and peak memory.

What ``rlprompt eval --task sst-2 --data-dir DATA --seed 42 --prompt " My rating: the movie
was" --split test`` does, through the public API: :func:`rlprompt.rewards.evaluate.evaluate_prompts`
on :func:`rlprompt.tasks.load_task` with a fresh :class:`~rlprompt.lm.ScoringEngine` (every
input is encoded once, in batches of similar length). The time is the evaluation only (the
model is loaded before); the peak RSS is the whole process's (model included), as the CLI's.

Run: ``python benchmarks/bench_eval_split.py [--dtype auto|float32] [--json out.json]``
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

from rlprompt.io import write_json
from rlprompt.lm import ScoringEngine, load_lm
from rlprompt.rewards.evaluate import evaluate_prompts
from rlprompt.tasks import load_task

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsc16"


def peak_rss_mib() -> float:
    """The process's peak resident memory so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--task", default="sst-2")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--split", default="test", choices=["train", "dev", "test"])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompt", default=" My rating: the movie was")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="the LM's dtype (auto: bfloat16 on CPUs with native bf16)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--json", type=Path, help="also write the figures as a flat JSON object")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    lm = load_lm(args.model, dtype=args.dtype)
    task = load_task(args.task, data_dir=args.data_dir, seed=args.seed)
    engine = ScoringEngine(lm, task.verbalizers, task.template)
    rss_loaded = peak_rss_mib()
    start = time.perf_counter()
    (result,) = evaluate_prompts(engine, task, [args.prompt], split=args.split)
    seconds = time.perf_counter() - start
    c = engine.counters
    n = result.n_examples
    figures: dict[str, object] = {
        "task": args.task, "split": args.split, "model": args.model,
        "dtype": str(lm.dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
        "prompt": args.prompt, "examples": n, "accuracy": result.accuracy,
        "seconds": seconds, "examples_per_s": n / seconds,
        "forward_tokens": c.forward_tokens, "forward_calls": c.forward_calls,
        "tokens_per_example": c.forward_tokens / n,
        "cached_examples_after": engine.cached_examples, "cached_mib_after": engine.cached_bytes / 2**20,
        "peak_rss_mib_after_load": rss_loaded, "peak_rss_mib": peak_rss_mib(),
    }
    print(f"{args.model} ({figures['dtype']}, {figures['threads']} threads): prompt {args.prompt!r} on "
          f"{args.task} {args.split} ({n} examples), accuracy {result.accuracy:.4f}")
    rows = [
        ("seconds", f"{seconds:.1f}"),
        ("examples/s", f"{n / seconds:.1f}"),
        ("forward tokens", f"{c.forward_tokens:,}"),
        ("forward calls", f"{c.forward_calls}"),
        ("tokens per example", f"{c.forward_tokens / n:.1f}"),
        ("kept input caches", f"{engine.cached_examples} ({engine.cached_bytes / 2**20:.0f} MiB)"),
        ("peak RSS after load", f"{rss_loaded:.0f} MiB"),
        ("peak RSS", f"{figures['peak_rss_mib']:.0f} MiB"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value:>14}")
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
