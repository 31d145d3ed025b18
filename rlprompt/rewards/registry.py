"""Reward lookup: one registry of names, plus import strings, entry points and callables.

:func:`get_reward` accepts, in this order:

1. a :class:`~rlprompt.rewards.base.Reward` (returned as is, or re-wrapped for a new timeout);
2. a Python callable following the reward protocol;
3. ``"package.module:function"`` (``function`` may be dotted, ``"mod:Class.method"``);
4. a registered name (built-ins: ``accuracy``, ``log-likelihood``, ``gap``,
   ``balanced-accuracy``, ``balanced-gap``; ``_`` and ``-`` are interchangeable);
5. the name of an entry point in the group ``rlprompt.rewards``, which installed
   packages declare in their ``pyproject.toml``::

       [project.entry-points."rlprompt.rewards"]
       my-reward = "mypkg.rewards:my_reward"

Plug-in rewards (import strings, entry points, callables) resolved inside
:func:`plugin_timeout` get that timeout unless one is given; the CLI's
``--reward-timeout`` sets it. Built-in rewards are never given a default timeout.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import importlib
from collections.abc import Iterator
from importlib import metadata

from rlprompt.errors import ConfigError, first_line
from rlprompt.rewards.base import Reward, RewardFn
from rlprompt.rewards.builtin import accuracy, balanced_accuracy, balanced_gap, gap, log_likelihood

ENTRY_POINT_GROUP = "rlprompt.rewards"

_REWARDS: dict[str, RewardFn] = {}
_PLUGIN_TIMEOUT: contextvars.ContextVar[float | None] = contextvars.ContextVar("plugin_timeout", default=None)


@contextlib.contextmanager
def plugin_timeout(seconds: float | None) -> Iterator[None]:
    """Within the block, plug-in rewards resolved by :func:`get_reward` time out after ``seconds``.

    :param seconds: the default timeout of each call of a plug-in reward; ``None`` waits forever.
    :raises ConfigError: ``seconds`` is not a positive number.
    """
    if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0 and seconds < float("inf")):
        raise ConfigError(f"--reward-timeout must be a positive number of seconds, got {seconds!r}")
    token = _PLUGIN_TIMEOUT.set(seconds)
    try:
        yield
    finally:
        _PLUGIN_TIMEOUT.reset(token)


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_reward(name: str, fn: RewardFn, *, overwrite: bool = False) -> None:
    """Register a reward function under a name.

    :param name: the name (``_`` and ``-`` are interchangeable when looking it up).
    :param fn: a callable following the reward protocol.
    :param overwrite: replace an existing reward of the same name.
    :raises ConfigError: the name is taken (and ``overwrite`` is false) or ``fn`` is not callable.
    """
    key = _key(name)
    if not callable(fn):
        raise ConfigError(f"reward {name!r}: {fn!r} is not callable")
    if key in _REWARDS and not overwrite:
        raise ConfigError(f"reward {name!r} is already registered; pass overwrite=True to replace it")
    _REWARDS[key] = fn


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {_key(ep.name): ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def list_rewards() -> list[str]:
    """Names :func:`get_reward` resolves: registered rewards, then entry points."""
    return sorted(_REWARDS) + sorted(set(_entry_points()) - set(_REWARDS))


def get_reward(spec: str | RewardFn | Reward, *, timeout: float | None = None) -> Reward:
    """Resolve a reward spec to a :class:`Reward` (the wrapper every reward is called through).

    :param spec: a :class:`Reward`, a callable, ``"package.module:function"``, a
        registered name, or an entry-point name (see the module docstring).
    :param timeout: seconds to wait for each call (see :class:`Reward`); ``None`` keeps
        a given :class:`Reward`'s own timeout, and gives a plug-in the :func:`plugin_timeout`.
    :raises ConfigError: unknown name (the message lists the known ones), an import string
        whose module or attribute cannot be found, or a target that is not callable.
    """
    if isinstance(spec, Reward):
        return spec if timeout is None else Reward(spec.fn, spec.name, timeout)
    plugin = _PLUGIN_TIMEOUT.get() if timeout is None else timeout
    if callable(spec):
        return Reward(spec, timeout=plugin)
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"reward spec {spec!r} is not a name, 'module:function' string or callable")
    if ":" in spec:
        return Reward(_import(spec), spec, plugin)
    key = _key(spec)
    if key in _REWARDS:
        return Reward(_REWARDS[key], key, timeout)
    eps = _entry_points()
    if key in eps:
        ep = eps[key]
        try:
            fn = ep.load()
        except Exception as err:
            raise ConfigError(
                f"reward entry point {ep.name!r} = {ep.value!r} (group {ENTRY_POINT_GROUP!r}) failed to "
                f"load: {type(err).__name__}: {err}"
            ) from err
        if not callable(fn):
            raise ConfigError(f"reward entry point {ep.name!r} = {ep.value!r} is not callable")
        return Reward(fn, f"{ep.name} ({ep.value})", plugin)
    from rlprompt.rewards import text_builtin  # noqa: F401  (registers the text rewards)
    from rlprompt.rewards.text import TEXT_REWARDS

    if key in TEXT_REWARDS:
        raise ConfigError(f"reward {spec!r} is a text reward (generation tasks: it scores what the LM writes); a "
                          f"classification task needs one on class log-probabilities: {', '.join(list_rewards())}")
    known = list_rewards()
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"unknown reward {spec!r}{hint} known rewards: {', '.join(known)}; or pass 'package.module:function'"
    )


def _import(spec: str) -> RewardFn:
    module_name, _, attr = spec.partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not module_name or not attr:
        raise ConfigError(f"reward {spec!r}: expected 'package.module:function'")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"reward {spec!r}: cannot import module {module_name!r} ({type(err).__name__}: {err}); "
            f"check it is installed or on PYTHONPATH"
        ) from err
    except (Exception, SystemExit) as err:  # a syntax error, or the module raised while imported
        where = f" ({err.filename}:{err.lineno})" if isinstance(err, SyntaxError) else ""
        raise ConfigError(
            f"reward {spec!r}: module {module_name!r} failed while being imported: {type(err).__name__}: "
            f"{first_line(err)}{where}"
        ) from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"reward {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"reward {spec!r}: {attr!r} is a {type(obj).__name__}, not a function")
    return obj  # type: ignore[return-value]


for _name, _fn in (
    ("accuracy", accuracy),
    ("log-likelihood", log_likelihood),
    ("gap", gap),
    ("balanced-accuracy", balanced_accuracy),
    ("balanced-gap", balanced_gap),
):
    register_reward(_name, _fn)
