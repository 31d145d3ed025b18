"""The ``rlprompt`` command: one entry of :data:`COMMANDS` per sub-command (a name, a function
that adds its arguments, a function that runs it), each in its own module of :mod:`rlprompt.cli`,
imported when the command is used. Errors caused by input end with a one-line
``rlprompt: error: ...`` on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rlprompt import __version__
from rlprompt.cli.common import EXIT_INPUT, EXIT_INTERRUPTED
from rlprompt.errors import ConfigError, RLPromptError, first_line


@dataclass(frozen=True)
class Command:
    """One sub-command: help text, argument builder, runner."""

    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "eval": Command("score prompts on a task split (accuracy, per-class accuracy, reward)",
                    lambda p: _lazy("rlprompt.cli.eval", "add_eval_args")(p),
                    lambda a: _lazy("rlprompt.cli.eval", "run_eval")(a)),
    "tasks": Command("list the known tasks and their verbalizers",
                     lambda p: _lazy("rlprompt.cli.tasks", "add_tasks_args")(p),
                     lambda a: _lazy("rlprompt.cli.tasks", "run_tasks")(a)),
    "train": Command("learn a prompt with an RL agent under a budget of prompt evaluations",
                     lambda p: _lazy("rlprompt.cli.train", "add_train_args")(p),
                     lambda a: _lazy("rlprompt.cli.train", "run_train")(a)),
    "tune": Command("find a prompt by gradient soft prompt tuning or a black-box baseline",
                    lambda p: _lazy("rlprompt.cli.tune", "add_tune_args")(p),
                    lambda a: _lazy("rlprompt.cli.tune", "run_tune")(a)),
    "compare": Command("run several methods on the same task, seeds and budget; write a table and a plot",
                       lambda p: _lazy("rlprompt.cli.compare", "add_compare_args")(p),
                       lambda a: _lazy("rlprompt.cli.compare", "run_compare")(a)),
    "demo": Command("the main job: manual prompts vs an RL agent vs soft prompt tuning, on the embedded model",
                    lambda p: _lazy("rlprompt.cli.demo", "add_demo_args")(p),
                    lambda a: _lazy("rlprompt.cli.demo", "run_demo")(a)),
}


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """A function from a command module, imported when the command is used."""
    import importlib

    return getattr(importlib.import_module(module), name)


class _Parser(argparse.ArgumentParser):
    """argparse with rlprompt's error line: ``rlprompt: error: <message> (see <command> --help)``."""

    def error(self, message: str) -> typing.NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"rlprompt: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rlprompt", description="Find prompts for a frozen language model with reinforcement learning."
    )
    parser.add_argument("--version", action="version", version=f"rlprompt {__version__}")
    parser.add_argument("-v", "--verbose", "--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name, cmd in COMMANDS.items():
        cmd.add_args(sub.add_parser(name, help=cmd.help, description=cmd.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlprompt`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries(args.verbose)
    # Like `python -m`: plug-ins given as "module:function" may live in the working folder.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        for flag in ("seed", "agent_seed"):
            value = getattr(args, flag, None)
            if isinstance(value, int) and value < 0:
                raise ConfigError(f"--{flag.replace('_', '-')} must be 0 or more, got {value}")
        timeout = getattr(args, "reward_timeout", None)
        if timeout is None:
            return COMMANDS[args.command].run(args)
        from rlprompt.rewards.registry import plugin_timeout

        with plugin_timeout(timeout):
            return COMMANDS[args.command].run(args)
    except RLPromptError as exc:
        if args.verbose:
            raise
        print(f"rlprompt: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("rlprompt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # a plug-in called sys.exit: never a silent success
        if args.verbose:
            raise
        print(f"rlprompt: error: something called sys.exit({exc.code!r}) during the run (a plug-in?); "
              "the run did not finish (see --debug)", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, the traceback with --debug
        if args.verbose:
            raise
        first = first_line(exc)
        print(f"rlprompt: error: {type(exc).__name__}: {first} (an unexpected failure; rerun with --debug "
              "for the traceback)", file=sys.stderr)
        return 1


def _quiet_libraries(verbose: bool) -> None:
    """Keep transformers' loading chatter off the terminal unless asked for."""
    import logging

    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
