"""Scoring throughput: the naive full-sequence method against the cached engine.

Both score the same 5-token prompts on SST-2 seed-42 train (32 examples) with
SmolLM2-135M, side by side in one run:

- naive: format "input + prompt" as text for every (prompt, example), tokenise,
  run the full sequence through the LM with full-vocabulary logits at every
  position, and read the verbalizers at the last position (as RLPrompt does);
- engine: :class:`rlprompt.lm.ScoringEngine` with each input's key/value cache
  computed once (timed separately) and reused, so a prompt costs its own tokens;
  also with ``normalize="classes"`` (only the verbalizer rows of the output head).

Run: ``python benchmarks/bench_scoring.py [--prompts 64] [--json out.json]``
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import sys
import time
from pathlib import Path

import torch

from rlprompt.lm import ScoringEngine, load_lm

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsc16"


def read_sst2(data_dir: Path) -> tuple[list[str], list[int]]:
    with open(data_dir / "sst-2" / "42" / "train.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def random_prompts(tokenizer, n: int, length: int, seed: int) -> list[str]:  # noqa: ANN001
    """n prompts of ``length`` whole-word tokens, as text."""
    rng = random.Random(seed)
    vocab = [
        i for tok, i in tokenizer.get_vocab().items()
        if tok.startswith("\u0120") and tok[1:].isalpha() and len(tok) > 3
    ]
    vocab.sort()
    return [tokenizer.decode(rng.sample(vocab, length)) for _ in range(n)]


def naive_scores(lm, prompts: list[str], texts: list[str], verbalizers: list[str]) -> torch.Tensor:  # noqa: ANN001
    """Full sequence per (prompt, example), one padded batch per prompt, full logits."""
    tok = lm.tokenizer
    tok.padding_side = "left"
    first_ids = torch.tensor([tok(v, add_special_tokens=False).input_ids[0] for v in verbalizers])
    out = []
    with torch.inference_mode():
        for p in prompts:
            batch = tok([f"{t}{p}" for t in texts], return_tensors="pt", padding=True).to(lm.device)
            logits = lm.model(**batch).logits  # [E, L, V]: every position, whole vocabulary
            out.append(torch.log_softmax(logits[:, -1].float(), -1)[:, first_ids])
    return torch.stack(out)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=64, help="prompts scored by each method")
    parser.add_argument("--prompt-length", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures as a flat JSON object")
    args = parser.parse_args(argv)

    lm = load_lm(args.model)
    texts, labels = read_sst2(args.data_dir)
    verbalizers = [" terrible", " great"]
    prompts = random_prompts(lm.tokenizer, args.prompts, args.prompt_length, seed=0)
    engine = ScoringEngine(lm, verbalizers)
    engine.score(prompts[:1], texts[:2], use_cache=False)  # warm-up (allocator, kernels)

    start = time.perf_counter()
    naive = naive_scores(lm, prompts, texts, verbalizers)
    t_naive = time.perf_counter() - start
    rss_naive = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    start = time.perf_counter()
    engine.score(prompts[:1], texts)  # builds the input cache
    t_cache = time.perf_counter() - start
    before = engine.counters.copy()
    start = time.perf_counter()
    fast = engine.score(prompts, texts)
    t_engine = time.perf_counter() - start
    spent = engine.counters - before
    rss_total = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # The same engine reading only the verbalizer rows of the output head.
    classes_engine = ScoringEngine(lm, verbalizers, normalize="classes")
    classes_engine.score(prompts[:1], texts)
    start = time.perf_counter()
    classes_engine.score(prompts, texts)
    t_classes = time.perf_counter() - start

    same_choice = float((naive.argmax(-1) == fast.argmax(-1)).float().mean())
    n_tokens_naive = sum(len(lm.tokenizer(f"{t}{p}").input_ids) for p in prompts for t in texts)
    figures = {
        "prompts": len(prompts),
        "examples": len(texts),
        "naive_evals_per_s": len(prompts) / t_naive,
        "engine_evals_per_s": len(prompts) / t_engine,
        "speedup": t_naive / t_engine,
        "engine_classes_evals_per_s": len(prompts) / t_classes,
        "speedup_classes": t_naive / t_classes,
        "engine_cache_build_s": t_cache,
        "naive_tokens_per_eval": n_tokens_naive / len(prompts),
        "engine_tokens_per_eval": spent.forward_tokens / len(prompts),
        "max_abs_diff": float((naive - fast).abs().max()),
        "same_argmax_fraction": same_choice,
        "peak_rss_after_naive_mib": rss_naive,
        "peak_rss_after_engine_mib": rss_total,
        "threads": torch.get_num_threads(),
    }
    print(f"Scoring {len(prompts)} prompts x {len(texts)} examples, {args.model}, "
          f"{args.prompt_length}-token prompts, {lm.device}, {torch.get_num_threads()} threads")
    print(f"{'method':<8} {'evals/s':>9} {'LM tokens/eval':>15} {'peak RSS MiB':>13}")
    print(f"{'naive':<8} {figures['naive_evals_per_s']:>9.2f} {figures['naive_tokens_per_eval']:>15.0f} "
          f"{rss_naive:>13.0f}")
    print(f"{'engine':<8} {figures['engine_evals_per_s']:>9.2f} {figures['engine_tokens_per_eval']:>15.0f} "
          f"{rss_total:>13.0f}")
    print(f"{'engine, normalize=classes':<8} {figures['engine_classes_evals_per_s']:>9.2f}")
    print(f"speedup engine/naive: {figures['speedup']:.1f}x (normalize=classes: {figures['speedup_classes']:.1f}x); "
          f"input cache built once in {t_cache:.2f} s")
    print(f"max |naive - engine| log-prob: {figures['max_abs_diff']:.2e}; same predicted class: "
          f"{same_choice:.3f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
