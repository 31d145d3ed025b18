"""``rlprompt compare``: every method on one task, budget and seed set.

::

    rlprompt compare --task sst-2 --data-dir ../shared/data/fsc16 --seeds 13,21,42 \\
        --methods manual,random,lm-prior,ppo,sql,cma,soft-prompt --budget 2000 --out runs/cmp

writes ``results.jsonl``, ``summary.md`` and ``curves.png`` to ``--out`` (see
:mod:`rlprompt.experiments.compare`); re-running it skips the finished runs.
``rlprompt demo`` (:mod:`rlprompt.cli.demo`) is a small one on the embedded defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rlprompt.agents.core.config import SELECTION_RULES
from rlprompt.cli.common import add_model_args, add_task_args
from rlprompt.errors import ConfigError

DEFAULT_METHODS = "manual,random,lm-prior,ppo,sql,cma,soft-prompt"


def add_run_args(g: argparse._ArgumentGroup, default_out: str = "runs/compare-<task>") -> None:
    g.add_argument("--out", type=Path, help=f"output folder (default: {default_out})")
    g.add_argument("--force", action="store_true",
                   help="if --out holds another comparison, move its files aside into previous-<time>/")
    g.add_argument("--test-examples", type=int,
                   help="score selected prompts on a seeded, label-stratified sample of N test examples")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="agents' progress bars (default: when stderr is a terminal)")


def add_compare_args(p: argparse.ArgumentParser) -> None:
    """Arguments of ``rlprompt compare``."""
    add_task_args(p)
    add_model_args(p)
    g = p.add_argument_group("comparison")
    g.add_argument("--seeds", help="few-shot split seeds, comma-separated, e.g. 13,21,42 (default: --seed)")
    g.add_argument("--methods", default=DEFAULT_METHODS,
                   help=f"comma-separated methods (default {DEFAULT_METHODS}); `manual` is the task's manual "
                        "prompts selected on dev; the rest are agents (rlprompt train/tune) and "
                        "soft-prompt-prefix")
    g.add_argument("--budget", type=int, default=2000, help="prompt evaluations per (method, seed)")
    g.add_argument("--prompt-length", type=int, default=5, help="tokens (or soft tokens) per prompt, every method")
    g.add_argument("--reward", help="training reward of every method that takes one (default: each method's own)")
    g.add_argument("--selection", default="dev", choices=SELECTION_RULES,
                   help="how every method picks its prompt: dev (best dev accuracy, default) or pooled (best on "
                        "train and dev together; the extra train scores are charged to the budget)")
    g.add_argument("--set", action="append", metavar="METHOD.NAME=VALUE",
                   help="an option of one method, e.g. --set sql.batch_size=8 --set soft-prompt.placement=prefix")
    g.add_argument("--manual-prompt", action="append", metavar="TEXT",
                   help="a prompt of the `manual` method (repeat; default: the task's list)")
    add_run_args(g)
    x = p.add_argument_group("execution")
    x.add_argument("--executor", default="inprocess", choices=["inprocess", "ray"],
                   help="inprocess (default): one run after the other; ray: each run is a Ray task")
    x.add_argument("--ray-address", help="an existing Ray cluster (e.g. auto or ray://host:10001); "
                                         "default: start a local Ray instance")
    x.add_argument("--ray-cpus-per-run", type=int, default=1, help="CPUs (torch threads) per Ray task")
    x.add_argument("--ray-gpus-per-run", type=float, default=0.0, help="GPUs per Ray task (fractions share one)")


def _task_args(args: argparse.Namespace) -> dict[str, Any]:
    values = {
        "data_dir": args.data_dir, "train_file": args.train_file, "dev_file": args.dev_file,
        "test_file": args.test_file, "hf": args.hf, "hf_config": args.hf_config, "template": args.template,
        "verbalizers": args.verbalizers, "text_column": args.text_column, "label_column": args.label_column,
        "file_format": getattr(args, "file_format", None),
    }
    from rlprompt.cli.common import generation_settings, is_generation
    from rlprompt.lm.generation import GenerationSettings
    from rlprompt.tasks.style_transfer import STYLE_SETTINGS, is_style_task

    if is_generation(args):  # a generation task: its own options, JSON-ready for config.json
        if not is_style_task(args.task):
            values.update(input_column=args.input_column, reference_column=args.reference_column)
        if values.pop("hf", None) is not None:
            raise ConfigError("rlprompt compare reads a generation task from --train-file/--dev-file/--test-file "
                              "or a style-transfer folder, not --hf yet (train and eval take --hf)")
        for flag in ("verbalizers", "text_column", "label_column"):
            if values.pop(flag, None) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')} is for classification tasks; a generation task "
                                  "takes --input-column and --reference-column")
        base = STYLE_SETTINGS if is_style_task(args.task) else GenerationSettings()
        settings = generation_settings(args, base)
        changed = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()
                   if getattr(base, k) != v}
        if changed:
            values["generation"] = changed
        if is_style_task(args.task):
            values.update(n_train=args.n_train, n_dev=args.n_dev)
    out = {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items() if v is not None}
    if args.hf is not None:
        out["k_shot"] = args.k_shot
    return out


def method_options(items: list[str] | None, methods: list[str]) -> dict[str, dict[str, str]]:
    """``{method: {name: value}}`` of ``--set METHOD.NAME=VALUE`` items, each method one of ``methods``."""
    options: dict[str, dict[str, str]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        method, dot, name = key.strip().rpartition(".")
        if not sep or not dot or not method or not name:
            raise ConfigError(f"--set {item!r}: expected METHOD.NAME=VALUE, e.g. --set sql.batch_size=8")
        if method not in methods:
            raise ConfigError(f"--set {item!r}: method {method!r} is not in --methods ({', '.join(methods)})")
        options.setdefault(method, {})[name.strip()] = value
    return options


def build_compare_config(args: argparse.Namespace, methods: str, seeds: str | None) -> Any:
    """The :class:`~rlprompt.experiments.CompareConfig` of the parsed flags.

    :raises ConfigError: bad seeds, methods, budget or options.
    """
    from rlprompt.experiments.config import CompareConfig, parse_methods, parse_seeds

    method_list = parse_methods(methods)
    seed_list = parse_seeds(seeds) if seeds is not None else [args.seed]
    if isinstance(args.budget, bool) or args.budget < 1:
        raise ConfigError(f"--budget must be a positive number of prompt evaluations, got {args.budget}")
    return CompareConfig(
        task=args.task, task_args=_task_args(args), seeds=seed_list, methods=method_list, budget=args.budget,
        model=args.model, device=args.device, dtype=args.dtype, prompt_length=args.prompt_length,
        reward=args.reward, test_examples=args.test_examples, selection=getattr(args, "selection", "dev"),
        options=method_options(getattr(args, "set", None), method_list),
        manual_prompts=getattr(args, "manual_prompt", None),
        partial_weights=bool(getattr(args, "allow_partial_weights", False)),
    )


def _check_task(config: Any) -> None:
    """Check the device and dtype and load the first seed's task now, so bad input fails before any run."""
    from rlprompt.experiments.runner import load_run_task
    from rlprompt.lm.loading import resolve_device, resolve_dtype

    resolve_dtype(config.dtype, resolve_device(config.device))

    load_run_task(config, config.seeds[0])


def execute(config: Any, args: argparse.Namespace, executor: Any) -> int:
    """Run the comparison and print its table; 0 when every run finished, 1 when some failed."""
    from rlprompt.experiments import compare

    out = args.out or Path("runs") / f"compare-{config.task}"
    _check_task(config)
    print(f"comparing {', '.join(config.methods)} on {config.task} with {config.model}: seeds "
          f"{', '.join(map(str, config.seeds))}, budget {config.budget} prompt evaluations each; writing {out}",
          file=sys.stderr, flush=True)
    from rlprompt.io import lock_folder

    with lock_folder(out, "compare"):  # one writer per folder: no lost results.jsonl record
        result = compare(config, out, executor=executor, force=args.force, progress=args.progress)
    print("\n".join(result.table))
    failed = ", ".join(f"{r['method']}/s{r['seed']}" for r in result.failed)
    print(f"\nruns: {result.ran} run now, {result.skipped} already finished; {len(result.failed)} failed"
          + (f" ({failed})" if failed else ""))
    print(f"table: {result.summary_path}")
    print(f"plot:  {result.curves if result.curves else 'none (no run finished)'}")
    print(f"runs:  {result.out / 'results.jsonl'}")
    return 1 if result.failed else 0


def run_compare(args: argparse.Namespace) -> int:
    """Run ``rlprompt compare``."""
    from rlprompt.experiments import get_executor

    config = build_compare_config(args, args.methods, args.seeds)
    kwargs = {}
    if args.executor == "ray":
        kwargs = {"address": args.ray_address, "cpus_per_run": args.ray_cpus_per_run,
                  "gpus_per_run": args.ray_gpus_per_run}
    return execute(config, args, get_executor(args.executor, **kwargs))


# -- rlprompt demo ------------------------------------------------------------------------
