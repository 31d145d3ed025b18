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
    g.add_argument("--dtype", default="auto",
                   help="auto (bfloat16 on CUDA and on CPUs with native bf16, else float32), float32, bfloat16")
    g.add_argument("--allow-partial-weights", action="store_true",
                   help="accept a model folder whose weights miss tensors of its config (they are random) or "
                        "hold others; by default that is an error naming them")
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

    lm = load_lm(args.model, device=args.device, dtype=args.dtype,
                 partial_weights=getattr(args, "allow_partial_weights", False))
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
