"""Where the runs of a comparison execute: in this process, or as Ray tasks.

An executor takes the pending (method, seed) pairs and hands each finished run's record
to a callback as soon as it exists, so results are saved one run at a time and a
comparison stopped half-way keeps every finished run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from rlprompt.errors import ConfigError, first_line
from rlprompt.experiments.config import CompareConfig
from rlprompt.experiments.runner import run_one

OnRecord = Callable[[dict[str, Any]], None]
OnStart = Callable[[str, int], None]


class Executor(Protocol):
    """Runs (method, seed) pairs of a comparison."""

    name: str

    def run(self, config: CompareConfig, jobs: Sequence[tuple[str, int]], out: Path, on_record: OnRecord,
            on_start: OnStart, progress: bool) -> None:
        """Run every job; call ``on_start`` before and ``on_record`` after each."""


class InProcessExecutor:
    """One run after the other in this process; the task LM is loaded once and shared."""

    name = "inprocess"

    def run(self, config: CompareConfig, jobs: Sequence[tuple[str, int]], out: Path, on_record: OnRecord,
            on_start: OnStart, progress: bool) -> None:
        for method, seed in jobs:
            on_start(method, seed)
            on_record(run_one(config, method, seed, out, progress=progress))


def _ray_run_one(config: dict[str, Any], method: str, seed: int, out: str, threads: int,
                 reward_timeout: float | None = None) -> dict[str, Any]:
    """A Ray task: one run in a worker process (which loads the LM once and keeps it)."""
    import torch

    from rlprompt.rewards.registry import plugin_timeout

    torch.set_num_threads(max(1, threads))
    with plugin_timeout(reward_timeout):  # the driver's --reward-timeout holds in the worker too
        return run_one(CompareConfig.from_dict(config), method, seed, out, progress=False)


class RayExecutor:
    """Each (method, seed) is a Ray task, spread over the cores of this machine or a cluster.

    Workers write their run folders under ``out`` themselves, so on a multi-node cluster
    ``out`` must be on a file system every node sees; the records come back to this
    process, which alone writes ``results.jsonl``.

    :param address: a Ray cluster address (``ray://host:10001`` or ``auto``); None starts a
        local Ray instance for the comparison and stops it afterwards.
    :param cpus_per_run: CPUs reserved per run (also its torch thread count).
    :param gpus_per_run: GPUs reserved per run (fractions share a GPU).
    :param num_cpus: CPUs of a local instance (None: all of this machine's).
    """

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: int = 1, gpus_per_run: float = 0.0,
                 num_cpus: int | None = None) -> None:
        if cpus_per_run < 1:
            raise ConfigError(f"--ray-cpus-per-run must be at least 1, got {cpus_per_run}")
        if gpus_per_run < 0:
            raise ConfigError(f"--ray-gpus-per-run must not be negative, got {gpus_per_run}")
        self.address = address
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.num_cpus = num_cpus

    def run(self, config: CompareConfig, jobs: Sequence[tuple[str, int]], out: Path, on_record: OnRecord,
            on_start: OnStart, progress: bool) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'rlprompt[ray]' (or pip install ray)") from None
        del progress  # workers have no terminal
        started_here = not ray.is_initialized()
        if started_here:
            try:
                if self.address:
                    ray.init(address=self.address, log_to_driver=False)
                else:
                    ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
            except Exception as exc:  # Ray's connection errors are of many types
                raise ConfigError(f"cannot start Ray{f' at {self.address!r}' if self.address else ''}: "
                                  f"{first_line(exc, type(exc).__name__)}") from None
        from rlprompt.rewards.registry import _PLUGIN_TIMEOUT

        reward_timeout = _PLUGIN_TIMEOUT.get()
        remote = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=0)(_ray_run_one)
        pending: dict[Any, tuple[str, int]] = {}
        try:
            for method, seed in jobs:
                on_start(method, seed)
                ref = remote.remote(config.as_dict(), method, seed, str(out.resolve()), self.cpus_per_run,
                                    reward_timeout)
                pending[ref] = (method, seed)
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                method, seed = pending.pop(done[0])
                try:
                    record = ray.get(done[0])
                except Exception as exc:  # the worker died (out of memory, killed): record and go on
                    first = first_line(exc)
                    record = {"method": method, "seed": seed, "task": config.task, "model": config.model,
                              "budget": config.budget, "status": "failed",
                              "error": f"Ray worker failed: {type(exc).__name__}: {first}"}
                on_record(record)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if started_here:
                ray.shutdown()


def get_executor(name: str, **kwargs: Any) -> Executor:
    """An executor by name: ``inprocess`` (default) or ``ray``.

    :raises ConfigError: an unknown name.
    """
    if name == "inprocess":
        return InProcessExecutor()
    if name == "ray":
        return RayExecutor(**kwargs)
    raise ConfigError(f"unknown --executor {name!r}; use 'inprocess' or 'ray'")
