"""``compare``: every method on the same task, LM, seeds and budget, and who wins.

::

    from rlprompt.experiments import CompareConfig, compare

    config = CompareConfig(task="sst-2", task_args={"data_dir": "../shared/data/fsc16"},
                           seeds=[13, 21, 42], methods=["manual", "random", "ppo", "soft-prompt"],
                           budget=2000)
    result = compare(config, "runs/cmp")
    print("\\n".join(result.table))

The output folder holds ``config.json`` (what was compared), ``results.jsonl`` (one line
per run), ``summary.md``, ``curves.png`` and ``runs/<method>-s<seed>/`` (each run's
curve, prompt, summary and checkpoint). Running the same comparison again skips the
finished (method, seed) pairs and redoes failed or interrupted ones (an interrupted
agent continues from its checkpoint). A folder holding another comparison (another
task, model, budget...) is refused unless ``force``, which moves its files aside into
``previous-<time>/`` rather than deleting them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlprompt.errors import ConfigError
from rlprompt.experiments.config import CompareConfig, config_differences
from rlprompt.experiments.executors import Executor, InProcessExecutor
from rlprompt.experiments.results import (
    CONFIG,
    CURVES,
    RESULTS,
    SUMMARY,
    ResultsLog,
    method_rows,
    summary_table,
    write_curves,
    write_summary,
)
from rlprompt.experiments.runner import FINISHED


@dataclass
class CompareResult:
    """What a comparison wrote.

    :param out: the output folder.
    :param records: the latest record of every (method, seed) of the comparison.
    :param table: the Markdown method table (also in ``summary.md``).
    :param ran: runs executed by this call.
    :param skipped: runs found finished and skipped.
    :param failed: runs of this comparison whose latest record is a failure.
    :param curves: the plot, or None when no run has finished.
    """

    out: Path
    records: list[dict[str, Any]]
    table: list[str]
    ran: int = 0
    skipped: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    curves: Path | None = None

    @property
    def summary_path(self) -> Path:
        return self.out / SUMMARY


def _merged(stored: CompareConfig, wanted: CompareConfig) -> CompareConfig:
    """``wanted`` with the seeds and methods already in the folder added (results keep them)."""
    seeds = wanted.seeds + [s for s in stored.seeds if s not in wanted.seeds]
    methods = wanted.methods + [m for m in stored.methods if m not in wanted.methods]
    options = {**{m: o for m, o in stored.options.items() if m in methods}, **wanted.options}
    values = {**wanted.as_dict(), "seeds": seeds, "methods": methods, "options": options}
    return CompareConfig.from_dict(values)


def prepare_folder(out: Path, config: CompareConfig, force: bool = False) -> CompareConfig:
    """Check ``out`` against ``config`` and write ``config.json``; returns the folder's config.

    :raises ConfigError: the folder holds another comparison (naming the differences) and
        ``force`` is false, or it holds results without a ``config.json``.
    """
    from rlprompt.io import write_json

    stored_path = out / CONFIG
    folder_config = config
    if stored_path.exists():
        try:
            stored = CompareConfig.from_dict(json.loads(stored_path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ConfigError) as exc:
            if not force:
                raise ConfigError(f"{stored_path} is not a comparison config ({exc}); use another --out, "
                                  "or --force to move the folder's results aside") from None
            stored = None
        diffs = [] if stored is None else config_differences(stored, config)
        if stored is None or diffs:
            if not force:
                raise ConfigError(f"--out {str(out)!r} holds results of another comparison ({'; '.join(diffs)}); "
                                  "use another --out, or --force to move them aside")
            _move_aside(out)
        else:
            folder_config = _merged(stored, config)
    elif (out / RESULTS).exists():
        if not force:
            raise ConfigError(f"--out {str(out)!r} holds {RESULTS} but no {CONFIG}, so it cannot be checked; "
                              "use another --out, or --force to move them aside")
        _move_aside(out)
    write_json(stored_path, folder_config.as_dict())
    return folder_config


def _move_aside(out: Path) -> Path:
    """Move a previous comparison's files into ``out/previous-<time>/`` (nothing is deleted)."""
    target = out / time.strftime("previous-%Y%m%d-%H%M%S")
    n = 1
    while target.exists():
        target = out / f"{target.name}-{n}"
        n += 1
    target.mkdir(parents=True)
    for name in (CONFIG, RESULTS, SUMMARY, CURVES, "runs"):
        if (out / name).exists():
            (out / name).rename(target / name)
    print(f"rlprompt: moved the previous comparison's files to {target}", file=sys.stderr)
    return target


def _line(record: dict[str, Any]) -> str:
    status = record.get("status")
    if status not in FINISHED:
        return f"{record['method']} seed {record['seed']}: {status}: {record.get('error') or record.get('message')}"
    test = record.get("test_accuracy")
    return (f"{record['method']} seed {record['seed']}: dev {record.get('dev_accuracy', float('nan')):.3f}, "
            f"test {'n/a' if test is None else f'{test:.3f}'}, {float(record.get('prompt_evals') or 0):.1f} evals, "
            f"{float(record.get('wall_seconds') or 0):.0f} s, prompt {record.get('prompt')!r}")


def compare(config: CompareConfig, out: str | Path, *, executor: Executor | None = None, force: bool = False,
            progress: bool | None = None, log: Callable[[str], None] | None = None) -> CompareResult:
    """Run every (method, seed) of ``config`` not finished in ``out``; write the three outputs.

    :param config: the comparison.
    :param out: output folder (created).
    :param executor: where runs execute (default: in this process, one after the other).
    :param force: move another comparison's results in ``out`` aside instead of refusing.
    :param progress: agents' progress bars (default: when stderr is a terminal).
    :param log: where a line per run goes (default: stderr).
    :returns: the records, the table and the counts.
    :raises ConfigError: ``out`` holds another comparison, or another process is writing there (the
        folder's lock, ``out/.rlprompt.lock``, is held while comparing); an executor that cannot start.
    """
    from rlprompt.io import lock_folder

    with lock_folder(out, "compare"):  # one writer per folder: no lost results.jsonl record
        return _compare_in(config, out, executor=executor, force=force, progress=progress, log=log)


def _compare_in(config: CompareConfig, out: str | Path, *, executor: Executor | None, force: bool,
                progress: bool | None, log: Callable[[str], None] | None) -> CompareResult:
    from rlprompt.experiments.runner import check_methods

    check_methods(config)  # a bad option fails now, not after hours of other runs
    out = Path(out)
    executor = executor or InProcessExecutor()
    progress = sys.stderr.isatty() if progress is None else progress
    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create --out {str(out)!r}: {exc.strerror or exc}") from None
    folder_config = prepare_folder(out, config, force)
    results = ResultsLog(out)
    done = {k for k, r in results.latest().items() if r.get("status") in FINISHED}
    jobs = [(m, s) for s in config.seeds for m in config.methods if (m, s) not in done]
    skipped = len(config.seeds) * len(config.methods) - len(jobs)
    if skipped:
        say(f"{skipped} finished run(s) found in {out / RESULTS}; skipping them")
    counter = {"n": 0}

    def on_start(method: str, seed: int) -> None:
        counter["n"] += 1
        say(f"[{counter['n']}/{len(jobs)}] {method} seed {seed}: running (budget {config.budget} prompt evaluations)")

    def on_record(record: dict[str, Any]) -> None:
        results.append(record)
        say(f"  -> {_line(record)}")
        write_summary(out, folder_config, results.records)  # keep summary.md current as runs land

    try:
        executor.run(config, jobs, out, on_record, on_start, progress)
    finally:
        write_summary(out, folder_config, results.records)
        curves = write_curves(out, folder_config, results.records)
    latest = results.latest()
    mine = [latest[(m, s)] for s in config.seeds for m in config.methods if (m, s) in latest]
    rows = method_rows(mine, config.methods)
    return CompareResult(
        out=out, records=mine, table=summary_table(rows, config.task), ran=len(jobs), skipped=skipped,
        failed=[r for r in mine if r.get("status") not in FINISHED], curves=curves,
    )
