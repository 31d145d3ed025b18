"""``rlprompt train``: learn a prompt with an RL agent under a budget of prompt evaluations.

::

    rlprompt train --task sst-2 --data-dir ../shared/data/fsc16 --seed 42 \\
        --agent sql --budget 2000 --reward gap --prompt-length 5 --out runs/sst2-sql

The agent learns on the training split and keeps the best prompts by dev accuracy (the
RLPrompt protocol: select on dev, report test). ``--out`` receives ``curve.csv`` (one row
per dev evaluation), the agent's training logs (``logs/progress.csv``, and TensorBoard
event files when ``tensorboard`` is installed), the best prompt (``prompt.json`` for a
discrete prompt, ``prompt.safetensors`` for a soft one), the policy
(``prompt.policy.safetensors``) and ``summary.json`` (dev and test accuracy, prompt
evaluations, LM tokens, wall time). Ctrl-C keeps the best prompt so far and the summary.

Agents are looked up in :data:`rlprompt.agents.AGENTS` by ``(--agent, --space)``
(:data:`SPACE_NAMES`); any option of the agent's config can be set with
``--set NAME=VALUE`` (``--list-options`` shows them).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

from rlprompt.agents.core.options import describe_options, parse_value
from rlprompt.cli.common import (
    EXIT_INTERRUPTED,
    add_model_args,
    add_task_args,
    build_engine,
    check_writable,
    is_generation,
)
from rlprompt.errors import ConfigError

SPACES = ("discrete", "soft")

SPACE_NAMES: dict[tuple[str, str], str] = {
    ("ppo", "discrete"): "ppo",
    ("a2c", "discrete"): "a2c",
    ("maskable-ppo", "discrete"): "maskable-ppo",
    ("sql", "discrete"): "sql",
    ("grpo", "discrete"): "grpo",
    ("rloo", "discrete"): "rloo",
    ("ppo", "soft"): "ppo-soft",
    ("sac", "soft"): "sac",
    ("td3", "soft"): "td3",
}
"""``(--agent, --space)`` -> registry name, for names that differ per space."""

def _import(target: str) -> type:
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def resolve_agent(agent: str, space: str) -> type:
    """The agent class for ``--agent`` on ``--space``, from the agent registry.

    :raises ConfigError: unknown space, unknown agent, or an agent that writes the other kind of prompt.
    """
    from rlprompt.agents.registry import AGENTS

    if space not in SPACES:
        raise ConfigError(f"--space {space!r} is not known; use 'discrete' or 'soft'")
    name = SPACE_NAMES.get((agent, space), agent)
    if name in AGENTS:
        cls = _import(AGENTS[name].agent)
    else:
        fits = sorted({a for (a, s) in SPACE_NAMES if s == space})
        other = [s for (a, s) in SPACE_NAMES if a == agent and s != space]
        if other:
            raise ConfigError(f"agent {agent!r} writes {other[0]} prompts, not {space} ones; use --space {other[0]}, "
                              f"or one of {', '.join(fits)} with --space {space}")
        known = sorted({a for (a, _) in SPACE_NAMES} | {n for n, spec in AGENTS.items() if spec.command == "tune"})
        raise ConfigError(f"unknown agent {agent!r}; known: {', '.join(known)}")
    kind = getattr(cls, "prompt_kind", "")
    if kind and kind != space:
        raise ConfigError(f"agent {agent!r} writes {kind} prompts, not {space} ones; use --space {kind}")
    return cls


def build_config(config_class: type, args: argparse.Namespace) -> Any:
    """The agent's config from the common flags and ``--set NAME=VALUE`` overrides.

    :raises ConfigError: an unknown option name, a value of the wrong type, or one the
        config refuses (its ``__post_init__`` message).
    """
    hints = typing.get_type_hints(config_class)
    names = {f.name for f in dataclasses.fields(config_class)}
    values: dict[str, Any] = {"seed": args.agent_seed if args.agent_seed is not None else args.seed}
    if "prompt_length" in names:
        values["prompt_length"] = args.prompt_length
    if "reward" in names and args.reward is not None and not is_generation(args):
        values["reward"] = args.reward
    for item in args.set or []:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            close = ", ".join(sorted(names))
            raise ConfigError(f"--set {item!r}: {config_class.__name__} has no option {key!r}; options: {close}")
        values[key] = parse_value(text, hints[key], key)
    try:
        return config_class(**values)
    except TypeError as exc:
        raise ConfigError(f"{config_class.__name__}: {exc}") from None


# -- the command ---------------------------------------------------------------------------


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Arguments of ``rlprompt train``."""
    add_task_args(p)
    add_model_args(p)
    g = p.add_argument_group("training")
    g.add_argument("--agent", default="sql", help="ppo, a2c, maskable-ppo, sql, grpo, rloo (discrete); "
                   "ppo, sac, td3 (soft)")
    g.add_argument("--space", default="discrete", help="discrete (token prompts) or soft (embedding prompts)")
    g.add_argument("--budget", type=int, default=2000,
                   help="prompt evaluations to spend (one prompt scored on one batch of examples = 1)")
    g.add_argument("--reward",
                   help="training reward: gap (default), accuracy, log-likelihood, ... or pkg.module:fn; on a "
                        "generation task a text reward: tst, bleu, chrf, similarity, style, fluency, ... "
                        "(default: the task's), several as 'bleu=0.5,similarity=0.5'")
    g.add_argument("--prompt-length", type=int, default=5, help="tokens (or soft tokens) per prompt")
    g.add_argument("--agent-seed", type=int, help="seed of the agent's randomness (default: --seed)")
    g.add_argument("--set", action="append", metavar="NAME=VALUE", help="set an option of the agent's config")
    g.add_argument("--list-options", action="store_true", help="print the agent's options and exit")
    g.add_argument("--out", type=Path, help="output folder (default: runs/<task>-<agent>-<space>-s<seed>)")
    g.add_argument("--no-test", action="store_true", help="skip the test-split evaluation of the selected prompt")
    g.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar (auto: on a terminal)")
    g.add_argument("--resume", action="store_true",
                   help="continue from <out>/checkpoint (same options; written every checkpoint_every seconds, "
                        "on Ctrl-C and on SIGTERM)")


def run_train(args: argparse.Namespace) -> int:
    """Run ``rlprompt train``; returns the exit code (130 when interrupted)."""
    cls = resolve_agent(args.agent, args.space)
    if args.list_options:
        print(describe_options(cls.config_class))
        return 0
    if isinstance(args.budget, bool) or args.budget < 1:
        raise ConfigError(f"--budget must be a positive number of prompt evaluations, got {args.budget}")
    if args.prompt_length < 1:
        raise ConfigError(f"--prompt-length must be at least 1, got {args.prompt_length}")
    config = build_config(cls.config_class, args)
    out = args.out or Path("runs") / f"{args.task}-{args.agent}-{args.space}-s{args.seed}"
    check_writable(out / "summary.json")
    from rlprompt.io import lock_folder

    with lock_folder(out, "train"):  # one writer per folder (a resume included)
        return _train(args, cls, config, out)


def _train(args: argparse.Namespace, cls: Any, config: Any, out: Path) -> int:
    engine, task = build_engine(args)
    agent = cls(engine, task, config, out_dir=out)
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    print(f"training {args.agent} ({args.space}) on {task.name} with {engine.lm.name}: budget {args.budget} "
          f"prompt evaluations, reward {_reward_name(agent)}; writing {out}", file=sys.stderr)
    try:
        agent.learn(args.budget, progress=progress, resume=args.resume)
    except KeyboardInterrupt:
        best = agent.tracker.best
        shown = f"{best.text!r} (dev {best.dev_accuracy:.3f})" if best else "none yet"
        print(f"rlprompt: interrupted; best prompt so far {shown}; summary in {out / 'summary.json'}",
              file=sys.stderr)
        if (out / "checkpoint").is_dir():
            print("rlprompt: continue with the same command and --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    summary = agent.write_outputs(test=not args.no_test and agent.tracker.best is not None)
    print_summary(summary, out)
    return 0


def _reward_name(agent: Any) -> str:
    return agent.objective.reward.name if agent.generation else getattr(agent.config, "reward", "?")


def print_summary(summary: Any, out: Path) -> None:
    """The result of a run, in a few lines (on a generation task the task's metric, then the others)."""
    test = "not evaluated" if summary.test_accuracy is None else f"{summary.test_accuracy:.4f}"
    dev = "none" if summary.dev_accuracy is None else f"{summary.dev_accuracy:.4f}"
    what = summary.extra.get("metric", "acc")
    print(f"status      {summary.status}: {summary.message}")
    print(f"best prompt {summary.prompt!r}")
    print(f"dev {what:<7} {dev}")
    print(f"test {what:<6} {test}")
    if summary.extra.get("test_metrics"):
        print("test scores " + ", ".join(f"{k} {v:.4f}" for k, v in summary.extra["test_metrics"].items()))
    print(f"spent       {summary.prompt_evals:.1f} of {summary.budget} prompt evaluations, "
          f"{summary.forward_tokens} + {summary.backward_tokens} LM forward + backward tokens, "
          f"{summary.dtype}, {summary.wall_seconds:.1f} s")
    print(f"wrote       {out}")
