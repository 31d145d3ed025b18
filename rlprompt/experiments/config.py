"""What a comparison is: the task, the model, the seeds, the methods and one budget.

A :class:`CompareConfig` is plain data (JSON-ready, no torch), so it can travel to a Ray
worker and be stored as ``config.json`` beside the results. Two configs describe the
same comparison when their :meth:`CompareConfig.fingerprint` agree; seeds and methods
are not part of it, so a finished comparison can grow by a method or a seed.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from rlprompt.errors import ConfigError

MANUAL = "manual"
"""The manual prompts of the task, selected on dev (:mod:`rlprompt.experiments.manual`)."""
NO_PROMPT = "no-prompt"
"""The empty prompt: the template alone (a floor every method should clear)."""

METHOD_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "soft-prompt-prefix": ("soft-prompt", {"placement": "prefix"}),
    "soft-prompt-suffix": ("soft-prompt", {"placement": "suffix"}),
}
"""Comparison names for a registered agent with fixed options."""


def known_methods() -> list[str]:
    """Every name ``--methods`` accepts: ``manual``, the agent registry and the aliases."""
    from rlprompt.agents.registry import AGENTS

    return sorted({MANUAL, NO_PROMPT, *AGENTS, *METHOD_ALIASES})


def resolve_method(name: str) -> tuple[str, dict[str, Any]]:
    """``(registry name, fixed options)`` of a comparison method (``manual`` -> ``("manual", {})``).

    :raises ConfigError: an unknown name (with the closest known one and the full list).
    """
    from rlprompt.agents.registry import AGENTS

    if name in (MANUAL, NO_PROMPT):
        return name, {}
    if name in METHOD_ALIASES:
        agent, options = METHOD_ALIASES[name]
        return agent, dict(options)
    if name in AGENTS:
        return name, {}
    known = known_methods()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown method {name!r} in --methods{hint}; known methods: {', '.join(known)}")


def parse_seeds(text: str) -> list[int]:
    """``"13,21,42"`` -> ``[13, 21, 42]``.

    :raises ConfigError: an empty list, a seed that is not an integer, or a repeated seed.
    """
    parts = [p.strip() for p in str(text).replace(" ", ",").split(",") if p.strip()]
    if not parts:
        raise ConfigError("--seeds is empty; give integers separated by commas, e.g. --seeds 13,21,42")
    seeds = []
    for p in parts:
        try:
            seeds.append(int(p))
        except ValueError:
            raise ConfigError(f"--seeds: {p!r} is not an integer; give integers separated by commas, "
                              "e.g. --seeds 13,21,42") from None
    dupes = sorted({s for s in seeds if seeds.count(s) > 1})
    if dupes:
        raise ConfigError(f"--seeds repeats {', '.join(map(str, dupes))}")
    return seeds


def parse_methods(text: str) -> list[str]:
    """``"manual,random,ppo"`` -> a checked list of method names.

    :raises ConfigError: an empty list, an unknown or a repeated method.
    """
    names = [p.strip() for p in str(text).split(",") if p.strip()]
    if not names:
        raise ConfigError("--methods is empty; e.g. --methods manual,random,ppo,soft-prompt")
    for name in names:
        resolve_method(name)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"--methods repeats {', '.join(dupes)}")
    return names


@dataclass
class CompareConfig:
    """One comparison: every (method, seed) pair runs with the same LM, task and budget.

    :param task: task name (``rlprompt tasks``).
    :param task_args: keyword arguments of :func:`rlprompt.tasks.load_task` other than
        the task and the seed (data folder, files, template, verbalizers; paths as str).
    :param seeds: few-shot split seeds; each is also the seed of the method's randomness.
    :param methods: method names (:func:`known_methods`).
    :param budget: prompt evaluations per (method, seed), counted by the scoring engine.
    :param model: the task LM (``smollm2-135m``, a hub id, a folder or a ``.gguf``).
    :param device: ``auto``, ``cpu``, ``cuda``...
    :param dtype: ``auto``, ``float32``, ``bfloat16``.
    :param prompt_length: tokens (or soft tokens) per prompt, for every method.
    :param reward: training reward for every method that takes one (None: each method's default).
    :param test_examples: score the selected prompt on a seeded, label-stratified sample of N test
        examples only (None: all).
    :param selection: how every method picks its prompt among those it checked: ``dev`` (best on
        dev) or ``pooled`` (best on train and dev together; the train scores are charged).
    :param options: per-method option overrides, ``{method: {option: value}}``.
    :param manual_prompts: the prompts of ``manual`` (None: the task's own list).
    :param partial_weights: accept model weights that do not match the model's config
        (``--allow-partial-weights``; by default an error).
    """

    task: str = "demo"
    task_args: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [13, 21, 42])
    methods: list[str] = field(default_factory=lambda: ["manual", "random", "ppo", "soft-prompt"])
    budget: int = 2000
    model: str = "smollm2-135m"
    device: str = "auto"
    dtype: str = "auto"
    prompt_length: int = 5
    reward: str | None = None
    test_examples: int | None = None
    selection: str = "dev"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    manual_prompts: list[str] | None = None
    partial_weights: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise ConfigError(f"--budget must be a positive number of prompt evaluations, got {self.budget!r}")
        if isinstance(self.prompt_length, bool) or not isinstance(self.prompt_length, int) or self.prompt_length < 1:
            raise ConfigError(f"--prompt-length must be at least 1, got {self.prompt_length!r}")
        if self.test_examples is not None and self.test_examples < 1:
            raise ConfigError(f"--test-examples must be at least 1, got {self.test_examples}")
        from rlprompt.agents.core.config import SELECTION_RULES

        if self.selection not in SELECTION_RULES:
            raise ConfigError(f"--selection {self.selection!r} is not known; "
                              f"choose one of {', '.join(SELECTION_RULES)}")
        if not self.seeds:
            raise ConfigError("a comparison needs at least one seed")
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ConfigError(f"seeds must be integers, got {seed!r}")
        if not self.methods:
            raise ConfigError("a comparison needs at least one method")
        for name in self.methods:
            resolve_method(name)
        for name in self.options:
            if name not in self.methods:
                raise ConfigError(f"options are set for {name!r}, which is not in --methods "
                                  f"({', '.join(self.methods)})")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CompareConfig:
        """The inverse of :meth:`as_dict` (unknown keys are refused).

        :raises ConfigError: a key that is not a field.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"comparison config has unknown keys: {', '.join(unknown)}")
        return cls(**values)

    def fingerprint(self) -> dict[str, Any]:
        """What must agree for results to be comparable (everything but seeds and methods).

        Per-method options are part of it only for methods present in both configs
        (see :func:`config_differences`).
        """
        out = self.as_dict()
        del out["seeds"], out["methods"]
        return out


def config_differences(stored: CompareConfig, wanted: CompareConfig) -> list[str]:
    """Readable differences that make ``stored`` results unfit for ``wanted``.

    Seeds and methods may differ (a comparison grows); a method's options may differ
    only when that method is new.
    """
    a, b = stored.fingerprint(), wanted.fingerprint()
    opts_a, opts_b = a.pop("options"), b.pop("options")
    diffs = [f"{k}: {a[k]!r} there, {b[k]!r} here" for k in a if a[k] != b[k]]
    for method in sorted(set(stored.methods) & set(wanted.methods)):
        if opts_a.get(method, {}) != opts_b.get(method, {}):
            diffs.append(f"options of {method}: {opts_a.get(method, {})!r} there, {opts_b.get(method, {})!r} here")
    return diffs
