"""The ``rlprompt`` command.

Each sub-command is one entry of :data:`COMMANDS` (a name, a function that adds its
arguments, a function that runs it). Errors caused by input end with a one-line
``rlprompt: error: ...`` on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlprompt import __version__
from rlprompt.errors import ConfigError, RLPromptError

EXIT_INPUT = 2
EXIT_INTERRUPTED = 130


# -- shared argument groups ------------------------------------------------------------


def add_task_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task and data")
    g.add_argument("--task", default="demo", help="task name (see `rlprompt tasks`); default: the built-in demo")
    g.add_argument("--data-dir", type=Path, help="few-shot folder <task>/<seed>/{train,dev}.tsv + <task>/test.tsv")
    g.add_argument("--seed", type=int, default=42, help="few-shot split seed (and sampling seed)")
    g.add_argument("--train-file", type=Path, help="CSV/TSV/JSONL training file")
    g.add_argument("--dev-file", type=Path, help="CSV/TSV/JSONL validation file")
    g.add_argument("--test-file", type=Path, help="CSV/TSV/JSONL test file")
    g.add_argument("--hf", metavar="DATASET", help="a Hugging Face dataset id or local dataset path")
    g.add_argument("--hf-config", help="the Hugging Face dataset configuration")
    g.add_argument("--k-shot", type=int, default=16, help="examples per class drawn from --hf data")
    g.add_argument("--text-column", help="column holding the input text")
    g.add_argument("--label-column", help="column holding the label (integer or class name)")
    g.add_argument("--template", help='template with {sentence} and {prompt}, e.g. "{sentence} {prompt}"')
    g.add_argument("--verbalizers", nargs="+", metavar="WORD",
                   help='one word per class in label order, e.g. " terrible" " great" (mind the leading space)')


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task LM")
    g.add_argument("--model", default="smollm2-135m",
                   help="'smollm2-135m' (embedded), a Hugging Face id, a model folder or a .gguf file")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    g.add_argument("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16")
    g.add_argument("--reward-timeout", type=float, metavar="SECONDS",
                   help="stop with an error when one call of a custom reward (pkg.module:fn) takes longer")


def load_task_from_args(args: argparse.Namespace, masked: bool = False) -> Any:
    from rlprompt.tasks import load_task

    return load_task(
        args.task, data_dir=args.data_dir, seed=args.seed, train_file=args.train_file, dev_file=args.dev_file,
        test_file=args.test_file, hf=args.hf, hf_config=args.hf_config, k_shot=args.k_shot,
        template=args.template, verbalizers=args.verbalizers, text_column=args.text_column,
        label_column=args.label_column, masked=masked,
    )


def build_engine(args: argparse.Namespace) -> tuple[Any, Any]:
    """Load the LM, the task (checked against the LM's tokenizer) and the scoring engine."""
    from rlprompt.lm import ScoringEngine, load_lm

    lm = load_lm(args.model, device=args.device, dtype=args.dtype)
    task = load_task_from_args(args, masked=lm.kind == "masked")
    task.check_verbalizers(lm.tokenizer, single_token=lm.kind == "masked")
    return ScoringEngine(lm, task.verbalizers, task.template), task


# -- rlprompt eval ----------------------------------------------------------------------


def add_eval_args(p: argparse.ArgumentParser) -> None:
    add_task_args(p)
    add_model_args(p)
    g = p.add_argument_group("evaluation")
    g.add_argument("--prompt", action="append", dest="prompts", metavar="TEXT",
                   help='prompt text; repeat to compare several (default: the empty prompt)')
    g.add_argument("--split", default="test", choices=["train", "dev", "test"])
    g.add_argument("--reward", default="accuracy",
                   help="reward: accuracy, log-likelihood, gap, balanced-accuracy, balanced-gap, or pkg.module:fn")
    g.add_argument("--max-examples", type=int, help="evaluate on the first N examples only")
    g.add_argument("--soft-prompt", type=Path, metavar="PATH",
                   help="score a saved soft prompt (a .safetensors file or a PEFT prompt-tuning folder) "
                        "instead of --prompt")
    g.add_argument("--out", type=Path, help="write the results as JSON here")


def run_eval(args: argparse.Namespace) -> int:
    from rlprompt.io import write_json
    from rlprompt.rewards.evaluate import evaluate_prompts

    if args.out is not None:
        _check_writable(args.out)
    if args.soft_prompt is not None and args.prompts:
        raise ConfigError("give --prompt or --soft-prompt, not both")
    engine, task = build_engine(args)
    prompts: list[Any] = args.prompts or [""]
    placement = "prefix"
    if args.soft_prompt is not None:
        from rlprompt.agents.peft_format import load_soft_prompt

        embeds, meta = load_soft_prompt(args.soft_prompt, token_dim=engine.lm.input_embeddings().embedding_dim)
        prompts, placement = [embeds], str(meta.get("placement") or meta.get("config", {}).get("placement", "prefix"))
    results = evaluate_prompts(
        engine, task, prompts, split=args.split, reward=args.reward, max_examples=args.max_examples,
        progress=sys.stderr.isatty(), placement=placement,
    )
    names = task.label_names
    print(f"task {task.name} ({task.source}), split {args.split}, {results[0].n_examples} examples, "
          f"model {engine.lm.name} on {engine.lm.device}, reward {results[0].reward_name}")
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
            "template": task.template, "verbalizers": list(task.verbalizers), "label_names": list(names),
            "results": [r.as_dict() for r in results], "counters": engine.counters.as_dict(),
        })
        print(f"wrote {args.out}")
    return 0


# -- rlprompt tasks ---------------------------------------------------------------------


def add_tasks_args(p: argparse.ArgumentParser) -> None:
    del p  # no options


def run_tasks(args: argparse.Namespace) -> int:
    from rlprompt.tasks import list_tasks

    rows = list_tasks()
    print(f"{'task':<10} {'classes':>7}  {'verbalizers':<60} source")
    for row in rows:
        verbs = ", ".join(repr(v) for v in row.verbalizers)
        if len(verbs) > 60:
            verbs = verbs[:56] + " ..."
        print(f"{row.name:<10} {row.classes:>7}  {verbs:<60} {row.source}")
    return 0


# -- the registry and main --------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One sub-command: help text, argument builder, runner."""

    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "eval": Command("score prompts on a task split (accuracy, per-class accuracy, reward)", add_eval_args, run_eval),
    "tasks": Command("list the known tasks and their verbalizers", add_tasks_args, run_tasks),
    "train": Command("learn a prompt with an RL agent under a budget of prompt evaluations",
                     lambda p: _lazy("rlprompt.cli_train", "add_train_args")(p),
                     lambda a: _lazy("rlprompt.cli_train", "run_train")(a)),
    "tune": Command("find a prompt by gradient soft prompt tuning or a black-box baseline",
                    lambda p: _lazy("rlprompt.cli_tune", "add_tune_args")(p),
                    lambda a: _lazy("rlprompt.cli_tune", "run_tune")(a)),
    "compare": Command("run several methods on the same task, seeds and budget; write a table and a plot",
                       lambda p: _lazy("rlprompt.cli_compare", "add_compare_args")(p),
                       lambda a: _lazy("rlprompt.cli_compare", "run_compare")(a)),
    "demo": Command("the main job: manual prompts vs an RL agent vs soft prompt tuning, on the embedded model",
                    lambda p: _lazy("rlprompt.cli_compare", "add_demo_args")(p),
                    lambda a: _lazy("rlprompt.cli_compare", "run_demo")(a)),
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
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name, cmd in COMMANDS.items():
        cmd.add_args(sub.add_parser(name, help=cmd.help, description=cmd.help))
    return parser


def _check_writable(path: Path) -> None:
    """Fail before any expensive work when the output cannot be written."""
    from rlprompt.errors import ConfigError

    folder = path.parent if path.parent != Path("") else Path(".")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot write {str(path)!r}: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"cannot write {str(path)!r}: folder {str(existing)!r} is not writable")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlprompt`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries(args.verbose)
    # Like `python -m`: plug-ins given as "module:function" may live in the working folder.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
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


def _quiet_libraries(verbose: bool) -> None:
    """Keep transformers' loading chatter off the terminal unless asked for."""
    import logging

    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
