"""Scoring throughput and dtype agreement: the engine against two baselines, side by side.

All methods score the same 5-token prompts on SST-2 seed-42 train (32 examples) with
SmolLM2-135M, in one run:

- naive (float32): RLPrompt's way: format "input + prompt" as text for every (prompt,
  example), run the full sequence with full-vocabulary logits at every position, read the
  verbalizers at the last position;
- careful (the engine's dtype): what a careful user writes with plain transformers: all
  (prompt, example) pairs of a prompt batched, left padding, ``logits_to_keep=1`` (only the
  last position through the head);
- engine, in float32 and in the auto dtype (bfloat16 on a CPU with native bf16): each
  input's key/value cache built once (timed apart) and reused, so a prompt costs its own tokens.

Agreement: the rank correlation (Spearman) of RLPrompt's gap reward between the engine in
bfloat16 and in float32 over the same prompts, and the share of prompts whose predicted
class per example agrees.

Run: ``python benchmarks/bench_scoring.py [--prompts 64] [--json out.json]``
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import sys
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from rlprompt.io import write_json
from rlprompt.lm import ScoringEngine, load_lm
from rlprompt.rewards import get_reward

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsc16"


def read_sst2(data_dir: Path) -> tuple[list[str], list[int]]:
    with open(data_dir / "sst-2" / "42" / "train.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def random_prompts(tokenizer, n: int, length: int, seed: int) -> list[str]:  # noqa: ANN001
    """n prompts of ``length`` whole-word tokens, as text."""
    rng = random.Random(seed)
    vocab = sorted(
        i for tok, i in tokenizer.get_vocab().items()
        if tok.startswith("\u0120") and tok[1:].isalpha() and len(tok) > 3
    )
    return [tokenizer.decode(rng.sample(vocab, length)) for _ in range(n)]


def naive_scores(lm, prompts: list[str], texts: list[str], verbalizers: list[str]) -> torch.Tensor:  # noqa: ANN001
    """Full sequence per (prompt, example), one padded batch per prompt, full logits everywhere."""
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


def careful_scores(lm, prompts: list[str], texts: list[str], verbalizers: list[str],  # noqa: ANN001
                   prompts_per_batch: int = 4) -> torch.Tensor:
    """Plain transformers done carefully: batches of several prompts x all examples, left
    padding, and only the last position through the output head (``logits_to_keep=1``)."""
    tok = lm.tokenizer
    tok.padding_side = "left"
    first_ids = torch.tensor([tok(v, add_special_tokens=False).input_ids[0] for v in verbalizers])
    out = []
    with torch.inference_mode():
        for i in range(0, len(prompts), prompts_per_batch):
            group = prompts[i : i + prompts_per_batch]
            batch = tok([f"{t}{p}" for p in group for t in texts], return_tensors="pt", padding=True).to(lm.device)
            logits = lm.model(**batch, logits_to_keep=1).logits[:, -1].float()  # [G*E, V]
            out.append(torch.log_softmax(logits, -1)[:, first_ids].view(len(group), len(texts), -1))
    return torch.cat(out)


def timed(fn, *args) -> tuple[float, object]:  # noqa: ANN001
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def engine_run(lm, prompts: list[str], texts: list[str], verbalizers: list[str]) -> dict[str, object]:  # noqa: ANN001
    """Engine timings: the cache build, the prompts on a warm cache, and both together."""
    engine = ScoringEngine(lm, verbalizers)
    engine.score(prompts[:1], texts[:2], use_cache=False)  # warm-up (allocator, kernels)
    t_cold, _ = timed(engine.score, prompts[:1], texts)  # builds every input's cache
    before = engine.counters.copy()
    t_warm, scores = timed(engine.score, prompts, texts)
    spent = engine.counters - before
    return {"engine": engine, "cache_s": t_cold, "warm_s": t_warm, "scores": scores,
            "tokens_per_eval": spent.forward_tokens / len(prompts)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=64, help="prompts scored by each method")
    parser.add_argument("--naive-prompts", type=int, default=16, help="prompts for the slow naive method")
    parser.add_argument("--prompt-length", type=int, default=5)
    parser.add_argument("--dtype", default="auto", help="the engine's reduced dtype (auto: bfloat16 here)")
    parser.add_argument("--json", type=Path, help="also write the figures as a flat JSON object")
    args = parser.parse_args(argv)

    lm32 = load_lm(args.model, dtype="float32")
    lm_auto = load_lm(args.model, dtype=args.dtype)
    texts, labels = read_sst2(args.data_dir)
    verbalizers = [" terrible", " great"]
    prompts = random_prompts(lm32.tokenizer, args.prompts, args.prompt_length, seed=0)
    naive_prompts = prompts[: args.naive_prompts]

    naive_scores(lm32, naive_prompts[:1], texts[:2], verbalizers)  # warm-up
    t_naive, naive = timed(naive_scores, lm32, naive_prompts, texts, verbalizers)
    careful_scores(lm_auto, prompts[:1], texts[:2], verbalizers)
    t_careful, _ = timed(careful_scores, lm_auto, prompts, texts, verbalizers)
    e32 = engine_run(lm32, prompts, texts, verbalizers)
    eauto = engine_run(lm_auto, prompts, texts, verbalizers)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    gap = get_reward("gap")
    y = torch.tensor(labels)
    gap32 = gap(e32["scores"].float(), y).rewards.numpy()  # type: ignore[union-attr]
    gapauto = gap(eauto["scores"].float(), y).rewards.numpy()  # type: ignore[union-attr]
    same_class = float((e32["scores"].argmax(-1) == eauto["scores"].argmax(-1)).float().mean())  # type: ignore[union-attr]
    n = len(prompts)
    rate = {
        "naive_fp32": len(naive_prompts) / t_naive,
        f"careful_{lm_auto.dtype}".replace("torch.", ""): n / t_careful,
        "engine_fp32": n / float(e32["warm_s"]),
        f"engine_{lm_auto.dtype}".replace("torch.", ""): n / float(eauto["warm_s"]),
    }
    auto = str(lm_auto.dtype).replace("torch.", "")
    figures: dict[str, float] = {
        "prompts": n, "examples": len(texts), "threads": torch.get_num_threads(),
        **{f"{k}_evals_per_s": v for k, v in rate.items()},
        f"engine_{auto}_with_cache_build_evals_per_s": n / (float(eauto["warm_s"]) + float(eauto["cache_s"])),
        "speedup_engine_auto_vs_naive_fp32": rate[f"engine_{auto}"] / rate["naive_fp32"],
        "speedup_engine_auto_vs_careful_same_dtype": rate[f"engine_{auto}"] / rate[f"careful_{auto}"],
        "speedup_engine_auto_vs_engine_fp32": rate[f"engine_{auto}"] / rate["engine_fp32"],
        "engine_cache_build_s_fp32": float(e32["cache_s"]),
        f"engine_cache_build_s_{auto}": float(eauto["cache_s"]),
        "engine_tokens_per_eval": float(eauto["tokens_per_eval"]),
        "max_abs_diff_naive_vs_engine_fp32": float((naive - e32["scores"][: len(naive_prompts)]).abs().max()),  # type: ignore[index]
        f"gap_spearman_{auto}_vs_fp32": float(spearmanr(gapauto, gap32).statistic),
        f"same_predicted_class_{auto}_vs_fp32": same_class,
        "peak_rss_mib": rss,
    }
    print(f"Scoring {n} prompts x {len(texts)} examples (naive: {len(naive_prompts)} prompts), {args.model}, "
          f"{args.prompt_length}-token prompts, CPU, {torch.get_num_threads()} threads")
    print(f"{'method':<24} {'evals/s':>9} {'vs naive':>9}")
    for name, value in rate.items():
        print(f"{name:<24} {value:>9.2f} {value / rate['naive_fp32']:>8.1f}x")
    print(f"engine {auto} incl. cache build: {figures[f'engine_{auto}_with_cache_build_evals_per_s']:.2f} evals/s "
          f"(cache {figures[f'engine_cache_build_s_{auto}']:.2f} s); {figures['engine_tokens_per_eval']:.0f} "
          "LM tokens per evaluation")
    print(f"engine {auto} / careful {auto}: {figures['speedup_engine_auto_vs_careful_same_dtype']:.1f}x; "
          f"engine {auto} / engine fp32: {figures['speedup_engine_auto_vs_engine_fp32']:.2f}x")
    print(f"agreement: gap-reward Spearman {auto} vs fp32 {figures[f'gap_spearman_{auto}_vs_fp32']:.4f}; same "
          f"predicted class {same_class:.3f}; max |naive - engine fp32| "
          f"{figures['max_abs_diff_naive_vs_engine_fp32']:.1e}; peak RSS {rss:.0f} MiB")
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
