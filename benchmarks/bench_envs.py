"""Environment throughput: one env, 8 envs one after another, the batched vector env.

On SST-2 seed 42 train (32 examples), SmolLM2-135M, 5-token prompts from the default
word vocabulary, random actions, measured side by side in one run (rounds interleave
the set-ups so that machine noise hits them alike; the median round is reported):

- (a) one ``DiscretePromptEnv``, dense reward: env steps per second;
- (b) 8 such envs (sharing one engine and its input caches) stepped one after another;
- (c) ``PromptVectorEnv`` with 8 sub-envs: one engine call per step for all 8;
- the cost of one dense-reward episode against one final-reward episode (wall time and
  LM forward tokens), and, for reference, a final-reward episode that extends the prompt
  token by token instead of scoring it once at the end.

Targets (issue 4): (c) at least 3x (b); a dense episode at most 1.5x a final one.

Run: ``python benchmarks/bench_envs.py [--rounds 3] [--device auto] [--json out.json]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rlprompt.envs import DiscretePromptEnv, PromptVectorEnv
from rlprompt.io import write_json
from rlprompt.lm import ScoringEngine, load_lm
from rlprompt.tasks import load_task

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsc16"
N_ENVS = 8
PROMPT_LENGTH = 5


def episode_runner(env: DiscretePromptEnv, rng: np.random.Generator) -> Callable[[], int]:
    """One episode of random actions; returns the steps taken."""

    def run() -> int:
        env.reset(seed=int(rng.integers(1 << 31)))
        for _ in range(PROMPT_LENGTH):
            env.step(int(rng.integers(env.action_space.n)))
        return PROMPT_LENGTH

    return run


def sequential_runner(envs: list[DiscretePromptEnv], rng: np.random.Generator) -> Callable[[], int]:
    """One episode in each of several envs, stepped one after another; returns env steps."""

    def run() -> int:
        for env in envs:
            env.reset(seed=int(rng.integers(1 << 31)))
        for _ in range(PROMPT_LENGTH):
            for env in envs:
                env.step(int(rng.integers(env.action_space.n)))
        return PROMPT_LENGTH * len(envs)

    return run


def vector_runner(venv: PromptVectorEnv, rng: np.random.Generator) -> Callable[[], int]:
    """One episode of every sub-env (PROMPT_LENGTH batched steps); returns env steps."""

    def run() -> int:
        venv.reset(seed=int(rng.integers(1 << 31)))
        for _ in range(PROMPT_LENGTH):
            venv.step(rng.integers(venv.single_action_space.n, size=venv.num_envs))
        return PROMPT_LENGTH * venv.num_envs

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (median reported)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as a flat JSON object")
    args = parser.parse_args()

    task = load_task("sst-2", data_dir=args.data_dir, seed=42)
    lm = load_lm(args.model, device=args.device)
    engine = ScoringEngine(lm, task.verbalizers, task.template)
    rng = np.random.default_rng(0)

    def env(**kwargs: object) -> DiscretePromptEnv:
        return DiscretePromptEnv(task, engine=engine, prompt_length=PROMPT_LENGTH, **kwargs)

    final = env(reward_mode="final")
    final_extend = env(reward_mode="final")
    final_extend.episodes.incremental = True  # the alternative SCORE_FINAL_ONCE rules out
    setups: dict[str, Callable[[], int]] = {
        "a_one_env_dense": episode_runner(env(reward_mode="dense"), rng),
        "b_8_envs_sequential_dense": sequential_runner([env(reward_mode="dense") for _ in range(N_ENVS)], rng),
        "c_vector_env_8_dense": vector_runner(PromptVectorEnv(N_ENVS, env(reward_mode="dense")), rng),
        "final_episode": episode_runner(final, rng),
        "final_episode_extend": episode_runner(final_extend, rng),
    }
    seconds: dict[str, list[float]] = {name: [] for name in setups}
    tokens: dict[str, int] = {}
    steps: dict[str, int] = {}
    for run in setups.values():  # warm-up: input caches, kernels
        run()
    for i in range(args.rounds):
        for name, run in setups.items():
            before = engine.counters.forward_tokens
            start = time.perf_counter()
            steps[name] = run()
            seconds[name].append(time.perf_counter() - start)
            tokens[name] = engine.counters.forward_tokens - before
        print(f"round {i + 1}: " + "  ".join(f"{name} {values[-1]:.2f}s" for name, values in seconds.items()),
              flush=True)

    med = {name: statistics.median(values) for name, values in seconds.items()}
    rate = {name: steps[name] / med[name] for name in setups}
    dense_episode = med["a_one_env_dense"]
    figures: dict[str, object] = {
        "model": lm.name,
        "device": str(lm.device),
        "dtype": str(lm.dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
        "examples": len(task.texts("train")),
        "prompt_length": PROMPT_LENGTH,
        "vocab_size": int(final.action_space.n),
        "rounds": args.rounds,
        "a_one_env_dense_steps_per_s": rate["a_one_env_dense"],
        "b_8_envs_sequential_steps_per_s": rate["b_8_envs_sequential_dense"],
        "c_vector_env_8_steps_per_s": rate["c_vector_env_8_dense"],
        "vector_over_sequential": rate["c_vector_env_8_dense"] / rate["b_8_envs_sequential_dense"],
        "dense_episode_s": dense_episode,
        "final_episode_s": med["final_episode"],
        "final_extend_episode_s": med["final_episode_extend"],
        "dense_over_final": dense_episode / med["final_episode"],
        "dense_episode_forward_tokens": tokens["a_one_env_dense"],
        "final_episode_forward_tokens": tokens["final_episode"],
        "final_extend_episode_forward_tokens": tokens["final_episode_extend"],
    }

    print(f"{lm.name} on {figures['device']} ({figures['dtype']}, {figures['torch_threads']} threads), "
          f"SST-2 seed 42 train ({figures['examples']} examples), {PROMPT_LENGTH}-token prompts, "
          f"K={figures['vocab_size']} words, median of {args.rounds} rounds")
    print(f"{'set-up':<44}{'env steps/s':>12}{'s/episode':>11}{'LM tokens/ep':>14}")
    rows = [
        ("(a) 1 env, dense", "a_one_env_dense", 1),
        (f"(b) {N_ENVS} envs one after another, dense", "b_8_envs_sequential_dense", N_ENVS),
        (f"(c) vector env, {N_ENVS} sub-envs, dense", "c_vector_env_8_dense", N_ENVS),
        ("1 env, final (scored once at the end)", "final_episode", 1),
        ("1 env, final (extended token by token)", "final_episode_extend", 1),
    ]
    for label, name, per in rows:
        print(f"{label:<44}{rate[name]:>12.2f}{med[name] / per:>11.3f}{tokens[name] // per:>14d}")
    print(f"vector env / sequential envs: {figures['vector_over_sequential']:.2f}x (target >= 3x)")
    print(f"dense episode / final episode: {figures['dense_over_final']:.2f}x (target <= 1.5x)")
    if args.json:
        write_json(args.json, figures)


if __name__ == "__main__":
    main()
