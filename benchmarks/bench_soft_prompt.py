"""Benchmark: gradient soft prompt tuning and the black-box baselines (issue 6).

Two parts, in one run, on SmolLM2-135M and the few-shot SST-2 folder:

1. Step time of one soft-prompt training step (5 soft tokens, a batch of 16 train
   examples: forward, cross-entropy over the classes, backward, Adam update):
   rlprompt's suffix placement (cached input) vs its prefix placement (full forward and
   backward) vs PEFT's own PromptTuning (``get_peft_model``) on the same model and batch.
2. Test accuracy of the prompt selected on dev after the same budget of prompt
   evaluations, for soft-prompt (suffix and prefix), CMA-ES, random search and LM-prior
   sampling, over the few-shot seeds; mean and std.

Presets (the issue's protocol is ``--full``):

- default (quick, meant to fit in 15 minutes on a 2-core CPU): seed 42, budget 60, the
  first 100 test examples, 2 timed steps.
- ``--full``: seeds 13 21 42, budget 2,000, the whole test set, 5 timed steps. On a
  2-core CPU this takes hours (prefix placement is a full forward and backward per
  step); use a GPU (``--device cuda``).

Any flag overrides its preset value. On a CPU shared with other jobs, ``--threads 1``
avoids thread oversubscription (measured here under load: suffix step 6.9 s with 2
threads, 1.3 s with 1). ``--json PATH`` writes flat JSON
(``{"step_s/suffix": ..., "test_acc/soft-prompt-prefix/mean": ...}``).

    python benchmarks/bench_soft_prompt.py --seeds 42 --budget 60 --methods soft-prompt-suffix random
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rlprompt.agents import get_agent_class, get_config_class
from rlprompt.io import write_json
from rlprompt.lm import ScoringEngine, load_lm
from rlprompt.tasks import load_task

REPO = Path(__file__).resolve().parents[1]

# benchmark row name -> (registry method, config overrides)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "soft-prompt-suffix": ("soft-prompt", {"placement": "suffix"}),
    "soft-prompt-prefix": ("soft-prompt", {"placement": "prefix"}),
    "cma": ("cma", {}),
    "random": ("random", {}),
    "lm-prior": ("lm-prior", {}),
}
PRESETS = {
    "quick": {"seeds": [42], "budget": 60, "test_examples": 100, "steps": 2},
    "full": {"seeds": [13, 21, 42], "budget": 2000, "test_examples": 0, "steps": 5},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- part 1: step time -------------------------------------------------------------------


def _rlprompt_step(engine: ScoringEngine, texts: list[str], labels: torch.Tensor, placement: str,
                   soft: torch.nn.Parameter, opt: torch.optim.Optimizer) -> None:
    logprobs = engine.score_soft(soft.unsqueeze(0), texts, placement=placement, grad=True)
    loss = torch.nn.functional.cross_entropy(logprobs[0], labels)
    opt.zero_grad()
    loss.backward()
    opt.step()


def _peft_setup(lm: Any, engine: ScoringEngine, texts: list[str], n_tokens: int) -> tuple[Any, Any, Any]:
    from peft import PromptTuningConfig, get_peft_model

    model = get_peft_model(lm.model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n_tokens))
    tok = lm.tokenizer
    enc = tok(texts, padding=True, return_tensors="pt", padding_side="right").to(lm.device)
    params = [p for p in model.parameters() if p.requires_grad]
    return model, enc, torch.optim.Adam(params, lr=1e-2)


def _peft_step(model: Any, enc: Any, labels: torch.Tensor, class_ids: torch.Tensor, n_tokens: int,
               opt: torch.optim.Optimizer) -> None:
    out = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
    last = enc.attention_mask.sum(-1) - 1 + n_tokens  # the last real position, after the virtual tokens
    logits = out.logits[torch.arange(len(last), device=last.device), last]
    loss = torch.nn.functional.cross_entropy(torch.log_softmax(logits.float(), -1)[:, class_ids], labels)
    opt.zero_grad()
    loss.backward()
    opt.step()


def bench_step_time(lm: Any, engine: ScoringEngine, task: Any, steps: int, n_tokens: int = 5,
                    batch: int = 16) -> dict[str, float]:
    """Mean seconds per training step (after one warm-up step) for the three implementations."""
    texts, labels = task.texts("train")[:batch], task.label_tensor("train")[:batch].to(lm.device)
    table = lm.input_embeddings().weight
    out: dict[str, float] = {}
    for placement in ("suffix", "prefix"):
        soft = torch.nn.Parameter(table[100 : 100 + n_tokens].detach().float().clone())
        opt = torch.optim.Adam([soft], lr=1e-2)
        _rlprompt_step(engine, texts, labels, placement, soft, opt)  # warm-up (builds the input cache)
        start = time.perf_counter()
        for _ in range(steps):
            _rlprompt_step(engine, texts, labels, placement, soft, opt)
        out[placement] = (time.perf_counter() - start) / steps
        log(f"step time {placement}: {out[placement]:.3f} s")
    # PEFT last: it wraps the shared model (prompt tuning injects no layers, the base stays usable).
    class_ids = torch.tensor([ids[0] for ids in engine.verbalizer_ids], device=lm.device)
    model, enc, opt = _peft_setup(lm, engine, texts, n_tokens)
    with torch.enable_grad():
        _peft_step(model, enc, labels, class_ids, n_tokens, opt)
        start = time.perf_counter()
        for _ in range(steps):
            _peft_step(model, enc, labels, class_ids, n_tokens, opt)
    out["peft"] = (time.perf_counter() - start) / steps
    log(f"step time peft: {out['peft']:.3f} s")
    return out


# -- part 2: accuracy at equal budget ----------------------------------------------------------


def run_method(row: str, engine: ScoringEngine, task: Any, seed: int, budget: int) -> dict[str, Any]:
    method, overrides = METHODS[row]
    config = get_config_class(method)(**overrides, seed=seed)
    agent = get_agent_class(method)(engine, task, config)
    agent.learn(budget, progress=False)
    s = agent.summary(test=True)
    return {"row": row, "seed": seed, "test_acc": s.test_accuracy, "dev_acc": s.dev_accuracy,
            "prompt_evals": s.prompt_evals, "lm_tokens": s.forward_tokens + s.backward_tokens,
            "learn_s": s.wall_seconds, "prompt": s.prompt, "status": s.status}


def summarise(results: list[dict[str, Any]], rows: list[str]) -> list[dict[str, Any]]:
    table = []
    for row in rows:
        rs = [r for r in results if r["row"] == row]
        accs = [r["test_acc"] for r in rs]
        table.append({
            "row": row, "n": len(rs), "mean": statistics.mean(accs), "std": statistics.pstdev(accs),
            "dev": statistics.mean(r["dev_acc"] for r in rs), "evals": statistics.mean(r["prompt_evals"] for r in rs),
            "tokens": statistics.mean(r["lm_tokens"] for r in rs), "learn_s": statistics.mean(r["learn_s"] for r in rs),
        })
    return table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="the issue's protocol (seeds 13 21 42, budget 2000, all test)")
    p.add_argument("--seeds", type=int, nargs="+", help="few-shot seeds")
    p.add_argument("--budget", type=int, help="prompt evaluations per run")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--test-examples", type=int, help="evaluate on the first N test examples (0: all)")
    p.add_argument("--steps", type=int, help="timed steps per implementation (0 skips the step-time part)")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "fsc16")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a CPU shared with other jobs)")
    p.add_argument("--json", type=Path, help="write flat JSON results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = PRESETS["full" if args.full else "quick"]
    seeds = args.seeds or preset["seeds"]
    budget = args.budget or preset["budget"]
    n_test = preset["test_examples"] if args.test_examples is None else args.test_examples
    steps = preset["steps"] if args.steps is None else args.steps

    t0 = time.perf_counter()
    lm = load_lm(args.model, device=args.device)
    tasks = {s: load_task("sst-2", data_dir=args.data_dir, seed=s) for s in seeds}
    if n_test:
        tasks = {s: dataclasses.replace(t, test=t.test[:n_test]) for s, t in tasks.items()}
    first = tasks[seeds[0]]
    # One engine for every run: the test inputs' caches are computed once and shared.
    rows_needed = len(first.test) + 64 * len(seeds) + 64
    engine = ScoringEngine(lm, first.verbalizers, first.template, cache_examples=rows_needed)
    log(f"{'full' if args.full else 'quick'} preset: seeds {seeds}, budget {budget}, {len(first.test)} test examples, "
        f"{steps} timed steps, model {lm.name} on {lm.device}")

    flat: dict[str, Any] = {"budget": budget, "seeds": seeds, "test_examples": len(first.test),
                            "device": str(lm.device), "model": lm.name}
    results = []
    for seed in seeds:
        for row in args.methods:
            log(f"seed {seed} {row}: learning ({budget} prompt evaluations)")
            r = run_method(row, engine, tasks[seed], seed, budget)
            results.append(r)
            log(f"seed {seed} {row}: test {r['test_acc']:.4f} dev {r['dev_acc']:.4f} in {r['learn_s']:.1f} s; "
                f"prompt {r['prompt']!r}")
    table = summarise(results, args.methods)

    step = bench_step_time(lm, engine, first, steps) if steps > 0 else {}

    print(f"\nSST-2 ({', '.join(map(str, seeds))}), {lm.name} on {lm.device}, budget {budget} prompt evaluations, "
          f"{len(first.test)} test examples")
    print(f"{'method':<20} {'test acc':>16} {'dev acc':>8} {'evals':>7} {'LM tokens':>11} {'learn s':>8}")
    for t in table:
        print(f"{t['row']:<20} {t['mean']:>9.4f} ± {t['std']:.4f} {t['dev']:>8.4f} {t['evals']:>7.0f} "
              f"{t['tokens']:>11.0f} {t['learn_s']:>8.1f}")
        for key in ("mean", "std", "dev", "evals", "tokens", "learn_s"):
            flat[f"test_acc/{t['row']}/{key}" if key in ("mean", "std") else f"{key}/{t['row']}"] = t[key]
    for r in results:
        flat[f"test_acc/{r['row']}/seed{r['seed']}"] = r["test_acc"]
    if step:
        print(f"\nstep time (5 soft tokens, batch 16, forward + backward + Adam), mean of {steps} steps:")
        for name in ("suffix", "prefix", "peft"):
            print(f"  {name:<8} {step[name]:8.3f} s   ({step['peft'] / step[name]:5.1f}x faster than PEFT)")
            flat[f"step_s/{name}"] = step[name]
        flat["speedup/suffix_vs_peft"] = step["peft"] / step["suffix"]
        flat["speedup/suffix_vs_prefix"] = step["prefix"] / step["suffix"]
    flat["total_s"] = time.perf_counter() - t0
    print(f"\ntotal {flat['total_s']:.0f} s")
    if args.json is not None:
        write_json(args.json, flat)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
