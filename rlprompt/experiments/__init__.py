"""Experiments: the comparison harness behind ``rlprompt compare`` and ``rlprompt demo``.

- :mod:`~rlprompt.experiments.config`: :class:`CompareConfig` (what is compared) and method names;
- :mod:`~rlprompt.experiments.runner`: one (method, seed) run, :func:`run_one`;
- :mod:`~rlprompt.experiments.executors`: in-process and Ray executors;
- :mod:`~rlprompt.experiments.results`: ``results.jsonl``, ``summary.md``, ``curves.png``;
- :mod:`~rlprompt.experiments.compare`: :func:`compare`, which ties them together.
"""

from rlprompt.experiments.compare import CompareResult, compare
from rlprompt.experiments.config import CompareConfig, known_methods, parse_methods, parse_seeds
from rlprompt.experiments.executors import InProcessExecutor, RayExecutor, get_executor
from rlprompt.experiments.manual import MANUAL_PROMPTS, manual_prompts
from rlprompt.experiments.runner import run_one

__all__ = [
    "MANUAL_PROMPTS",
    "CompareConfig",
    "CompareResult",
    "InProcessExecutor",
    "RayExecutor",
    "compare",
    "get_executor",
    "known_methods",
    "manual_prompts",
    "parse_methods",
    "parse_seeds",
    "run_one",
]
