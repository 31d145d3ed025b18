"""One (method, seed) run of a comparison: learn under the budget, select on dev, score on test.

:func:`run_one` is what every executor calls, in this process or in a Ray worker. It
never raises for a method that fails: the failure becomes a record with
``status="failed"`` and the error (the traceback goes to ``error.txt`` in the run's
folder), so one crashing method does not stop the others. Ctrl-C does propagate, after
the agent has written its best prompt so far and its checkpoint.
"""

from __future__ import annotations

import time
import traceback
import typing
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from rlprompt.errors import ConfigError, first_line
from rlprompt.experiments.config import MANUAL, NO_PROMPT, CompareConfig, resolve_method
from rlprompt.experiments.manual import manual_prompts

FINISHED = ("completed", "early-stopped", "non-finite-loss")
"""Statuses of a run that a re-run skips (``failed`` and ``interrupted`` runs are redone)."""


def run_dir_name(method: str, seed: int) -> str:
    """Folder of a run inside ``<out>/runs``."""
    return f"{method}-s{seed}"


def build_agent_config(method: str, config: CompareConfig, seed: int) -> Any:
    """The agent's config for one run: the shared options, the alias's, then the user's.

    Shared: ``seed``, ``selection``, ``prompt_length`` and, when given, ``reward``.

    :raises ConfigError: an option the agent does not have, or a bad value.
    """
    from rlprompt.agents.core.options import parse_value
    from rlprompt.agents.registry import get_config_class

    agent_name, fixed = resolve_method(method)
    cls = get_config_class(agent_name)
    names = {f.name for f in fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {"seed": seed, "selection": config.selection}
    if "prompt_length" in names:
        values["prompt_length"] = config.prompt_length
    if config.reward is not None and "reward" in names and not is_generation_config(config):
        values["reward"] = config.reward  # (a generation task's text reward is the task's own)
    values.update(fixed)
    for key, value in config.options.get(method, {}).items():
        key = key.replace("-", "_")
        if key not in names:
            raise ConfigError(f"--set {method}.{key}: {cls.__name__} has no option {key!r}; "
                              f"options: {', '.join(sorted(names))}")
        values[key] = parse_value(value, hints[key], f"{method}.{key}") if isinstance(value, str) else value
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{method}: {exc}") from None


def check_methods(config: CompareConfig) -> None:
    """Build every method's config once (cheap, no LM), so bad options fail before any run.

    :raises ConfigError: an option a method does not have, or a bad value.
    """
    for method in config.methods:
        if method not in (MANUAL, NO_PROMPT):
            build_agent_config(method, config, config.seeds[0])


def is_generation_config(config: CompareConfig) -> bool:
    """True for a comparison on a generation task (a style-transfer name, or files with an input column)."""
    from rlprompt.tasks.style_transfer import is_style_task

    return is_style_task(config.task) or "input_column" in config.task_args


def load_run_task(config: CompareConfig, seed: int, masked: bool = False) -> Any:
    """The task of one seed."""
    from rlprompt.tasks import load_task

    if is_generation_config(config):
        return _load_generation_task(config, seed)
    return load_task(config.task, seed=seed, masked=masked, **config.task_args)


def _load_generation_task(config: CompareConfig, seed: int) -> Any:
    from dataclasses import replace

    from rlprompt.lm.generation import GenerationSettings
    from rlprompt.tasks.generation import generation_task_from_files
    from rlprompt.tasks.style_transfer import STYLE_SETTINGS, is_style_task, load_style_transfer

    args = dict(config.task_args)
    settings = args.pop("generation", None) or {}
    if "stop" in settings:
        settings["stop"] = tuple(settings["stop"])
    if is_style_task(config.task) and "input_column" not in args:
        task = load_style_transfer(config.task, args.pop("data_dir"), seed=seed, test_examples=config.test_examples,
                                   settings=replace(STYLE_SETTINGS, **settings), **args)
    else:
        from rlprompt.tasks.load import format_delimiter

        args.pop("data_dir", None)
        args["delimiter"] = format_delimiter(args.pop("file_format", None))
        files = [args.pop(k) for k in ("train_file", "dev_file", "test_file")]
        task = generation_task_from_files(config.task, *files, settings=replace(GenerationSettings(), **settings),
                                          **args)
    if config.reward is not None:
        task.reward = config.reward
        if not is_style_task(config.task):
            task.metric = config.reward
    return task


def build_run_engine(config: CompareConfig, seed: int) -> tuple[Any, Any]:
    """(engine, task) for one seed; the LM is loaded once per process and shared."""
    from rlprompt.lm import ScoringEngine, load_lm

    lm = load_lm(config.model, device=config.device, dtype=config.dtype, partial_weights=config.partial_weights)
    if is_generation_config(config):
        from rlprompt.lm.generation import GenerationEngine

        task = load_run_task(config, seed)
        return GenerationEngine(lm, task.template, settings=task.settings), task
    task = load_run_task(config, seed, masked=lm.kind == "masked")
    task.check_verbalizers(lm.tokenizer, single_token=lm.kind == "masked")
    return ScoringEngine(lm, task.verbalizers, task.template), task


def run_one(config: CompareConfig, method: str, seed: int, out: str | Path, *,
            progress: bool = False) -> dict[str, Any]:
    """Run one (method, seed) of ``config``; write its files under ``<out>/runs/<method>-s<seed>``.

    :param config: the comparison.
    :param method: one of ``config.methods``.
    :param seed: one of ``config.seeds``.
    :param out: the comparison's output folder.
    :param progress: show the agent's progress bar.
    :returns: the run's record (a line of ``results.jsonl``); ``status`` is ``"failed"``
        with ``error`` set when the method raised.
    """
    run_dir = Path(out) / "runs" / run_dir_name(method, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    base: dict[str, Any] = {"method": method, "seed": seed, "task": config.task, "model": config.model,
                            "budget": config.budget, "run_dir": str(Path("runs") / run_dir.name)}
    try:
        run = _run_manual if method in (MANUAL, NO_PROMPT) else _run_agent
        record = run(config, method, seed, run_dir, progress)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing method must not stop the comparison
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        from rlprompt.io import atomic_write_bytes

        atomic_write_bytes(run_dir / "error.txt", text.encode())
        message = first_line(exc)
        record = {"status": "failed", "error": f"{type(exc).__name__}: {message}".rstrip(": ")}
    record.setdefault("wall_seconds", round(time.perf_counter() - start, 3))
    return {**base, **record}


def _test_accuracy(evaluation: Any) -> dict[str, Any]:
    """The record's test fields from a :class:`~rlprompt.rewards.evaluate.PromptEvaluation` (or a
    generation task's :class:`~rlprompt.rewards.evaluate_text.GenerationEvaluation`: its metric, and
    every metric under ``test_metrics``)."""
    out = {"test_accuracy": evaluation.accuracy, "test_balanced_accuracy": evaluation.balanced_accuracy,
           "test_examples": evaluation.n_examples, "test_sample": evaluation.sample}
    if hasattr(evaluation, "metrics"):
        out["test_metrics"] = dict(evaluation.metrics)
        out["metric"] = evaluation.metric_name
    return out


def _generation_objective(engine: Any, task: Any) -> Any:
    from rlprompt.rewards.evaluate_text import TextObjective
    from rlprompt.tasks.style_transfer import is_style_task

    metrics = ["style", "similarity", "bleu", "fluency"] if is_style_task(task.name) else (
        ["bleu", "chrf"] if task.has_references("test") else [])
    return TextObjective(engine, task, metrics=metrics)


def _run_manual(config: CompareConfig, method: str, seed: int, run_dir: Path, progress: bool) -> dict[str, Any]:
    """Score the manual prompts on dev (charged), keep the best, score it on test."""
    del run_dir, progress  # the same signature as _run_agent
    from rlprompt.rewards.evaluate import evaluate_prompts

    engine, task = build_run_engine(config, seed)
    if method == NO_PROMPT:
        prompts = [""]
    else:
        prompts = config.manual_prompts if config.manual_prompts is not None else manual_prompts(task.name)
    before = engine.counters.copy()
    t0 = time.perf_counter()
    if getattr(task, "kind", "") == "generation":
        objective = _generation_objective(engine, task)
        dev = objective.evaluate(prompts, "dev")
        rank = _selection_scores(config, task, dev, lambda: objective.evaluate(prompts, "train"))
        spent = engine.counters - before
        wall = time.perf_counter() - t0
        best = max(range(len(prompts)), key=lambda i: (rank[i], -i))
        test = _test_accuracy(objective.evaluate([prompts[best]], "test")[0])
    else:
        dev = evaluate_prompts(engine, task, prompts, split="dev")
        rank = _selection_scores(config, task, dev, lambda: evaluate_prompts(engine, task, prompts, split="train"))
        spent = engine.counters - before
        wall = time.perf_counter() - t0
        best = max(range(len(prompts)), key=lambda i: (rank[i], -i))
        test = _test_accuracy(evaluate_prompts(engine, task, [prompts[best]], split="test",
                                               max_examples=config.test_examples)[0])
    evals = round(spent.example_evals / len(task.texts("train")), 3)  # the budget's unit
    return {
        "status": "completed", "prompt_kind": "discrete", "prompt": prompts[best], "artefact": None,
        "dev_accuracy": dev[best].accuracy, **test, "dtype": engine.lm.dtype_name,
        "prompt_evals": evals, "example_evals": int(spent.example_evals),
        "forward_tokens": int(spent.forward_tokens), "backward_tokens": 0, "wall_seconds": round(wall, 3),
        "curve": [[evals, dev[best].accuracy]],
        "options": {"prompts": prompts}, "candidates": {p: r.accuracy for p, r in zip(prompts, dev, strict=True)},
    }


def _selection_scores(config: CompareConfig, task: Any, dev: list[Any], train: Callable[[], list[Any]]) -> list[float]:
    """What the manual prompts are ranked by: dev accuracy, or with ``selection="pooled"`` the
    accuracy on train and dev together (as the agents rank their candidates)."""
    from rlprompt.agents.core.tracking import pooled_accuracy

    if config.selection != "pooled":
        return [r.accuracy for r in dev]
    n_train, n_dev = len(task.texts("train")), len(task.texts("dev"))
    return [pooled_accuracy(t.accuracy, d.accuracy, n_train, n_dev) for t, d in zip(train(), dev, strict=True)]


def _run_agent(config: CompareConfig, method: str, seed: int, run_dir: Path, progress: bool) -> dict[str, Any]:
    from rlprompt.agents.registry import get_agent_class

    agent_name, _ = resolve_method(method)
    agent_config = build_agent_config(method, config, seed)
    engine, task = build_run_engine(config, seed)
    agent = get_agent_class(agent_name)(engine, task, agent_config, out_dir=run_dir)
    agent.learn(config.budget, progress=progress, resume="auto")  # an interrupted run continues
    summary = agent.summary(test=False)
    record: dict[str, Any] = {
        "status": summary.status, "message": summary.message, "prompt_kind": summary.prompt_kind,
        "prompt": summary.prompt, "artefact": None, "dev_accuracy": summary.dev_accuracy,
        "test_accuracy": None, "test_balanced_accuracy": None, "test_examples": 0,
        "prompt_evals": summary.prompt_evals, "example_evals": summary.example_evals, "dtype": summary.dtype,
        "forward_tokens": summary.forward_tokens, "backward_tokens": summary.backward_tokens,
        "wall_seconds": summary.wall_seconds,
        "curve": [[p["prompt_evals"], p["best_dev_accuracy"]] for p in summary.curve],
        "options": summary.config,
    }
    if agent.tracker.best is not None:
        if agent.generation:
            objective = _generation_objective(engine, task)
            record.update(_test_accuracy(objective.evaluate([agent.predict()], "test")[0]))
        else:
            record.update(_test_accuracy(agent.evaluate("test", max_examples=config.test_examples)))
        artefact = run_dir / agent.artefact_name
        if artefact.exists():
            record["artefact"] = str(Path("runs") / run_dir.name / agent.artefact_name)
    elif summary.status in FINISHED:
        record["status"] = "failed"
        record["error"] = f"no prompt was selected ({summary.message})"
    return record
