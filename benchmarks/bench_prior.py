"""The SB3 prompt prior (``--set ppo.prior=true``): its context run once against run per prefix.

One PPO rollout of the quality protocol reads the prior at every step of 32 episodes of 5
tokens: 160 prefixes of 0-4 tokens after one context (a task description and an SST-2
training input, about 40 tokens). Side by side, in one run, on SmolLM2-135M:

- full: each prefix run with its context (``next_token_logits`` on context + prefix), what
  the prior did before the shared cache;
- cached: the context's key/value cache built once and shared (``ContextLogits``), each
  prefix runs only its own tokens.

Printed: LM tokens and milliseconds per rollout (median of ``--repeats``), and the largest
difference of the two log-prior tables. With ``--json PATH`` the same figures as a flat JSON
object.

Run: ``python benchmarks/bench_prior.py [--repeats 5] [--json out.json]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from rlprompt.envs.vocab import candidate_vocab
from rlprompt.io import write_json
from rlprompt.lm import load_lm
from rlprompt.lm.sampling import ContextLogits, next_token_logits

CONTEXT = ("Classify the sentiment of the review: negative or positive.\n\n"
           "a gorgeous , witty , seductive movie that rarely misses a beat .")


def rollout_prefixes(vocab: np.ndarray, episodes: int, length: int, seed: int) -> list[list[int]]:
    """Every prefix of ``episodes`` random prompts of ``length`` candidate tokens (empty included)."""
    rng = np.random.default_rng(seed)
    prompts = [vocab[rng.integers(len(vocab), size=length)].tolist() for _ in range(episodes)]
    return [p[:t] for p in prompts for t in range(length)]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--dtype", default="auto", help="the LM's dtype (auto: bfloat16 on a CPU with native bf16)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=64, help="prefixes per LM forward (PromptPrior's chunk)")
    parser.add_argument("--json", help="also write the figures as a flat JSON object")
    args = parser.parse_args(argv)
    lm = load_lm(args.model, dtype=args.dtype)
    words = np.asarray(candidate_vocab(lm.tokenizer, lm.model.get_output_embeddings().weight.shape[0]))
    tokens = torch.as_tensor(words)
    context = list(lm.tokenizer(CONTEXT).input_ids)
    prefixes = rollout_prefixes(words, args.episodes, 5, seed=0)
    chunks = [prefixes[i:i + args.chunk] for i in range(0, len(prefixes), args.chunk)]

    def full() -> tuple[torch.Tensor, int]:
        outs, spent = [], 0
        for c in chunks:
            logits, cost = next_token_logits(lm, [context + p for p in c], tokens)
            outs.append(logits)
            spent += cost["forward_tokens"]
        return torch.cat(outs), spent

    def cached() -> tuple[torch.Tensor, int]:
        shared = ContextLogits(lm, context, tokens)  # built per rollout: counted in its time and tokens
        outs, spent = [], shared.cost["forward_tokens"]
        for c in chunks:
            logits, cost = shared(c)
            outs.append(logits)
            spent += cost["forward_tokens"]
        return torch.cat(outs), spent

    figures: dict[str, float] = {"prefixes": len(prefixes), "context_tokens": len(context)}
    tables = {}
    for name, fn in (("full", full), ("cached", cached)):
        fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            tables[name], spent = fn()
            times.append(1000 * (time.perf_counter() - start))
        figures[f"{name}_ms"] = round(statistics.median(times), 1)
        figures[f"{name}_tokens"] = spent
    p_full, p_cached = (torch.softmax(tables[n], -1) for n in ("full", "cached"))
    diff = (torch.log_softmax(tables["full"], -1) - torch.log_softmax(tables["cached"], -1)).abs().max()
    figures["max_abs_logprob_diff"] = round(float(diff), 4)
    # what a policy sees: the total-variation distance of the two distributions, per prefix
    figures["max_total_variation"] = round(float(0.5 * (p_full - p_cached).abs().sum(-1).max()), 4)
    figures["speedup"] = round(figures["full_ms"] / figures["cached_ms"], 2)
    print(f"{len(prefixes)} prefixes (one rollout) after a {len(context)}-token context, {lm.name}, "
          f"{lm.dtype}, median of {args.repeats}")
    print(f"{'prior':<8} {'LM tokens':>10} {'ms':>9}")
    for name in ("full", "cached"):
        print(f"{name:<8} {figures[f'{name}_tokens']:>10} {figures[f'{name}_ms']:>9.1f}")
    print(f"speed-up {figures['speedup']:.2f}x; largest |log-prior difference| {figures['max_abs_logprob_diff']}, "
          f"largest total-variation distance {figures['max_total_variation']}")
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
