"""``rlprompt tune``: gradient soft prompt tuning and the black-box baselines.

::

    rlprompt tune --task sst-2 --data-dir ../shared/data/fsc16 --seed 42 --method soft-prompt \\
        --placement prefix --budget 2000 --export-peft out/peft --out runs/soft-prefix

Methods come from the agent registry (:data:`rlprompt.agents.AGENTS`); their options
are generated from the agents' config dataclasses (one flag per field, its help text
from the field's metadata), so the CLI never holds a second copy of the defaults.
A flag that does not apply to the chosen method is an error. ``--seed`` is both the
few-shot split seed and the agent's seed.

Outputs (with ``--out DIR``): ``curve.csv``, the best prompt (``prompt.json`` or
``prompt.safetensors``) and ``summary.json`` (dev and test accuracy of the prompt
selected on dev, prompt evaluations, LM tokens, wall time, curve). Ctrl-C leaves the
best prompt so far and the summary there.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlprompt.agents.core.options import parse_bool
from rlprompt.cli.common import add_model_args, add_task_args, build_engine, check_folder_writable
from rlprompt.errors import ConfigError

SHARED_FIELDS = {"seed"}  # set from the task arguments, not from a flag of their own


# -- options generated from the config dataclasses ----------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser_for(hint: Any) -> tuple[Callable[[str], Any], list[str] | None]:
    """(string -> value, choices) for a config field's type hint."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return str, [m.value for m in hint]
    if hint is bool:
        return _boolean, None
    if hint in (int, float, str):
        return hint, None
    raise TypeError(f"no CLI parser for config type {hint!r}")


def _boolean(text: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _config_fields() -> dict[str, list[tuple[str, dataclasses.Field[Any], Any]]]:
    """field name -> [(method, field, type hint)] over every registered method's config."""
    from rlprompt.agents.registry import AGENTS, get_config_class

    out: dict[str, list[tuple[str, dataclasses.Field[Any], Any]]] = {}
    for method, spec in AGENTS.items():
        if spec.command != "tune":
            continue
        cls = get_config_class(method)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in SHARED_FIELDS:
                out.setdefault(f.name, []).append((method, f, hints[f.name]))
    return out


def _default_text(value: Any) -> str:
    return repr(value.value if isinstance(value, enum.Enum) else value)


# -- arguments --------------------------------------------------------------------------


def add_tune_args(p: argparse.ArgumentParser) -> None:
    """Add ``rlprompt tune``'s arguments (task, model, method, budget, outputs, method options)."""
    from rlprompt.agents.registry import AGENTS

    add_task_args(p)
    add_model_args(p)
    g = p.add_argument_group("tuning")
    methods = "; ".join(f"{name}: {spec.help}" for name, spec in AGENTS.items() if spec.command == "tune")
    g.add_argument("--method", default="soft-prompt", help=f"how to find the prompt ({methods})")
    g.add_argument("--budget", type=int, default=2000,
                   help="prompt evaluations to spend (a gradient step costs 2: forward and backward; "
                        "dev selection counts too)")
    g.add_argument("--out", type=Path, help="folder for curve.csv, the best prompt and summary.json")
    g.add_argument("--export-peft", type=Path, metavar="DIR",
                   help="also write the soft prompt as a PEFT prompt-tuning adapter folder (soft methods)")
    g.add_argument("--project", action=argparse.BooleanOptionalAction, default=True,
                   help="report the soft prompt's nearest vocabulary tokens and the test accuracy they keep")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    g.add_argument("--resume", action="store_true",
                   help="continue from <out>/checkpoint (needs --out; same options)")
    opts = p.add_argument_group("method options (from the agents' config dataclasses; default: the method's)")
    for name, entries in _config_fields().items():
        method, f, hint = entries[0]
        convert, choices = _parser_for(hint)
        used_by = ", ".join(m for m, _, _ in entries)
        values = {_default_text(fd.default) for _, fd, _ in entries}
        defaults = values.pop() if len(values) == 1 else "; ".join(
            f"{m}: {_default_text(fd.default)}" for m, fd, _ in entries)
        opts.add_argument(_flag(name), dest=f"opt_{name}", type=convert, choices=choices, default=None,
                          metavar=None if choices else name.upper(),
                          help=f"{f.metadata.get('help', '')} [{used_by}] (default {defaults})")


def build_config(method: str, args: argparse.Namespace) -> Any:
    """The method's config from the parsed flags (unset flags keep the config's defaults).

    :raises ConfigError: a flag that the method does not have, or a bad value.
    """
    from rlprompt.agents.registry import get_config_class

    cls = get_config_class(method)
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    foreign = sorted(k for k in given if k not in names)
    if foreign:
        flags = ", ".join(_flag(k) for k in foreign)
        raise ConfigError(f"{flags} does not apply to --method {method}; its options: "
                          f"{', '.join(_flag(n) for n in sorted(names - SHARED_FIELDS))}")
    return cls(**given, seed=args.seed)


# -- running ----------------------------------------------------------------------------


def run_tune(args: argparse.Namespace) -> int:
    """Run ``rlprompt tune``; returns the exit status."""
    from rlprompt.agents.registry import get_agent_class, get_spec

    if get_spec(args.method).command != "tune":  # unknown method: fail before loading anything
        raise ConfigError(f"{args.method!r} is an RL agent: run it with `rlprompt train --agent {args.method}`")
    config = build_config(args.method, args)
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out, the folder holding the checkpoint to continue from")
    if isinstance(args.budget, bool) or args.budget < 1:
        raise ConfigError(f"--budget must be a positive number of prompt evaluations, got {args.budget}")
    for path in (args.out, args.export_peft):
        if path is not None:
            check_folder_writable(path)
    agent_cls = get_agent_class(args.method)
    if args.export_peft is not None and agent_cls.prompt_kind != "soft":
        raise ConfigError(f"--export-peft needs a soft-prompt method (soft-prompt, cma), not {args.method!r}")
    from contextlib import nullcontext

    from rlprompt.io import lock_folder

    # One writer per folder (a resume included); without --out nothing is written.
    with nullcontext() if args.out is None else lock_folder(args.out, "tune"):
        return _tune(args, agent_cls, config)


def _tune(args: argparse.Namespace, agent_cls: Any, config: Any) -> int:
    engine, task = build_engine(args)
    agent = agent_cls(engine, task, config, out_dir=args.out)
    print(f"tune {args.method} on {task.name} ({task.source}), seed {args.seed}, model {engine.lm.name} on "
          f"{engine.lm.device}; budget {args.budget} prompt evaluations", flush=True)
    agent.learn(args.budget, progress=args.progress, resume=args.resume)
    if agent.status == "non-finite-loss":
        print(f"rlprompt: warning: {agent.message}", file=sys.stderr)
    if agent.prompt_kind == "soft" and args.project and agent.tracker.best is not None:
        agent.extra["projection"] = agent.project(splits=("test",), soft_too=False)
    summary = agent.write_outputs(test=True) if args.out is not None else agent.summary(test=True)
    if args.export_peft is not None and agent.tracker.best is not None:
        agent.export_peft(args.export_peft)
    _print_summary(summary, args)
    return 0


def _print_summary(s: Any, args: argparse.Namespace) -> None:
    print(f"status: {s.status} ({s.message})")
    print(f"prompt: {s.prompt}")
    dev = "n/a" if s.dev_accuracy is None else f"{s.dev_accuracy:.4f}"
    test = "n/a" if s.test_accuracy is None else f"{s.test_accuracy:.4f}"
    print(f"dev accuracy {dev}, test accuracy {test}")
    proj = s.extra.get("projection")
    if proj:
        print(f"nearest tokens ({proj['metric']}): {proj['text']!r} keep test accuracy {proj['test_accuracy']:.4f}")
    print(f"spent {s.prompt_evals:.1f}/{s.budget} prompt evaluations, LM tokens {s.forward_tokens} forward + "
          f"{s.backward_tokens} backward, {s.dtype}, {s.wall_seconds:.1f} s")
    if args.out is not None:
        print(f"wrote {args.out}/summary.json")
    if args.export_peft is not None:
        print(f"wrote PEFT adapter {args.export_peft}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rlprompt.cli tune ...``: the same as ``rlprompt tune ...``."""
    from rlprompt.cli.main import main as rlprompt_main

    return rlprompt_main(["tune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
