"""The reward protocol, stated once, and the one wrapper every reward is called through.

Protocol
--------
A reward function is any callable ::

    fn(logprobs, labels) -> rewards
    fn(logprobs, labels) -> (rewards, diagnostics)

- ``logprobs``: float tensor [P, E, C]: for each of P prompts, E examples and C
  classes, ``log p(verbalizer_c | context)`` under the frozen LM. These are NOT
  renormalised over the classes (rows need not sum to one);
  ``logprobs.log_softmax(-1)`` renormalises them.
- ``labels``: long tensor [E], class ids in ``[0, C)``.
- ``rewards``: float tensor [P], one reward per prompt; higher is better.
- ``diagnostics`` (optional): ``dict[str, Tensor [P]]`` of extra per-prompt numbers
  to log (e.g. ``"gap"``).

Rewards should be built from torch ops so they stay differentiable where the
maths allows: the gradient soft-prompt baseline back-propagates through them.

:class:`Reward` calls a reward function and checks what comes back; every
caller (envs, agents, evaluation) goes through it, so a bad plug-in fails the
same way everywhere with a :class:`~rlprompt.errors.RewardError` naming it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import torch

from rlprompt.errors import RewardError
from rlprompt.rewards.builtin import accuracy

RewardFn: TypeAlias = Callable[
    [torch.Tensor, torch.Tensor], torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]
]
"""``fn(logprobs [P, E, C], labels [E]) -> rewards [P]`` or ``(rewards [P], {name: Tensor [P]})``."""


@dataclass
class RewardOutput:
    """What :class:`Reward` returns.

    :param rewards: float tensor [P], one reward per prompt (keeps its autograd graph).
    :param diagnostics: per-prompt extras, each a tensor [P]. Always holds ``"accuracy"``, computed
        by :class:`Reward` from logprobs the function never saw (a function's own ``"accuracy"``
        is kept as ``"reward_accuracy"``).
    """

    rewards: torch.Tensor
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)


def reward_name(fn: Any) -> str:
    """A readable name for a reward callable: ``module:qualname`` where known."""
    name = getattr(fn, "reward_name", None)
    if isinstance(name, str):
        return name
    inner = getattr(fn, "func", None)  # functools.partial
    target = inner if inner is not None else fn
    qual = getattr(target, "__qualname__", None) or type(target).__qualname__
    module = getattr(target, "__module__", None)
    return f"{module}:{qual}" if module else qual


class Reward:
    """A reward function plus the checks around calling it.

    :param fn: a callable following the protocol above.
    :param name: how errors and logs refer to it (default: ``module:qualname``).
    :param timeout: seconds to wait for ``fn``; ``None`` waits forever. With a timeout
        the function runs in a daemon thread; when it overruns, :class:`RewardError` is
        raised but the thread CANNOT be killed and keeps running (and holding whatever
        it holds) in the background until it returns on its own.
    :raises RewardError: ``fn`` is not callable, or ``timeout`` is not positive.
    """

    def __init__(self, fn: RewardFn, name: str | None = None, timeout: float | None = None) -> None:
        if not callable(fn):
            raise RewardError(f"reward {name or fn!r} is a {type(fn).__name__}, not a callable")
        if timeout is not None and not timeout > 0:
            raise RewardError(f"reward timeout must be a positive number of seconds, got {timeout!r}")
        self.fn = fn
        self.name = name or reward_name(fn)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Reward({self.name!r}" + (f", timeout={self.timeout}" if self.timeout else "") + ")"

    def __call__(self, logprobs: torch.Tensor, labels: torch.Tensor) -> RewardOutput:
        """Score P prompts.

        :param logprobs: float tensor [P, E, C] of per-class log-probabilities.
        :param labels: long tensor [E] of class ids.
        :return: rewards [P] and diagnostics.
        :raises RewardError: bad inputs, or the function raised, timed out, or returned a
            wrong type, a wrong shape, or non-finite values.
        """
        labels = self._check_inputs(logprobs, labels)
        # The function gets its own copies (clone keeps the autograd graph): a reward that writes
        # into what it is given cannot change the accuracy computed here or by the caller.
        result = self._run(logprobs.clone(), labels.clone())
        return self._check_output(result, logprobs, labels)

    # -- checks --------------------------------------------------------------

    def _check_inputs(self, logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(logprobs, torch.Tensor) or logprobs.dim() != 3 or not logprobs.is_floating_point():
            got = tuple(logprobs.shape) if isinstance(logprobs, torch.Tensor) else type(logprobs).__name__
            raise RewardError(f"reward {self.name!r}: logprobs must be a float tensor [P, E, C], got {got}")
        if not isinstance(labels, torch.Tensor):
            labels = torch.as_tensor(labels, dtype=torch.long)
        _, e, c = logprobs.shape
        if e == 0 or c < 2:
            raise RewardError(
                f"reward {self.name!r}: logprobs has shape {list(logprobs.shape)}; need at least one "
                f"example (E) and two classes (C)"
            )
        if labels.dim() != 1 or labels.shape[0] != e or labels.dtype not in (torch.long, torch.int32):
            raise RewardError(
                f"reward {self.name!r}: labels must be an integer tensor [E] = [{e}], got "
                f"{labels.dtype} {list(labels.shape)}"
            )
        if int(labels.min()) < 0 or int(labels.max()) >= c:
            raise RewardError(
                f"reward {self.name!r}: labels must lie in [0, {c}) for C = {c} classes, got values "
                f"from {int(labels.min())} to {int(labels.max())}"
            )
        return labels.to(device=logprobs.device, dtype=torch.long)

    def _run(self, logprobs: torch.Tensor, labels: torch.Tensor) -> Any:
        return call_reward(self.fn, self.name, self.timeout, logprobs, labels)

    def _check_output(self, result: Any, logprobs: torch.Tensor, labels: torch.Tensor) -> RewardOutput:
        p = logprobs.shape[0]
        diagnostics: dict[str, torch.Tensor] = {}
        if isinstance(result, tuple):
            if len(result) != 2 or not isinstance(result[1], dict):
                kinds = ", ".join(type(r).__name__ for r in result)
                raise RewardError(
                    f"reward {self.name!r} returned a tuple of {len(result)} ({kinds}); expected "
                    f"rewards [P] or (rewards [P], dict of diagnostics)"
                )
            result, diag = result
            for key, value in diag.items():
                diagnostics[str(key)] = self._check_tensor(value, p, f"diagnostic {key!r}")
        rewards = self._check_tensor(result, p, "rewards")
        bad = int((~torch.isfinite(rewards)).sum())
        if bad:
            raise RewardError(
                f"reward {self.name!r} returned {bad} non-finite value(s) (NaN or inf) out of {p}; "
                f"guard divisions and logs of zero"
            )
        # "accuracy" is always the built-in one, from the logprobs the function never saw; a
        # function's own "accuracy" is kept as "reward_accuracy".
        if "accuracy" in diagnostics:
            diagnostics["reward_accuracy"] = diagnostics.pop("accuracy")
        with torch.no_grad():
            diagnostics["accuracy"] = accuracy(logprobs, labels)
        return RewardOutput(rewards, diagnostics)

    def _check_tensor(self, value: Any, p: int, what: str) -> torch.Tensor:
        if isinstance(value, (list, np.ndarray)):  # TRL's convention: a list of floats; numpy too
            value = self._as_tensor(value, p, what)
        if not isinstance(value, torch.Tensor):
            raise RewardError(
                f"reward {self.name!r} returned {what} of type {type(value).__name__}; expected a list of "
                f"floats, a numpy array or a torch tensor of shape [P] = [{p}]"
            )
        if tuple(value.shape) != (p,):
            raise RewardError(
                f"reward {self.name!r} returned {what} of shape {list(value.shape)}; expected [P] = [{p}], "
                f"one value per prompt"
            )
        if value.is_complex():
            raise RewardError(f"reward {self.name!r} returned complex {what}; expected real numbers")
        return value if value.is_floating_point() else value.float()

    def _as_tensor(self, value: list[Any] | np.ndarray, p: int, what: str) -> torch.Tensor:
        items = value.ravel().tolist() if isinstance(value, np.ndarray) else list(value)
        bad = sorted({type(v).__name__ for v in items
                      if isinstance(v, bool) or not isinstance(v, (int, float, np.number))})
        if bad:
            raise RewardError(
                f"reward {self.name!r} returned {what} holding {', '.join(bad)}; expected numbers, one per "
                f"prompt ([P] = [{p}])"
            )
        return torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=torch.float32)


def call_reward(fn: Callable[..., Any], name: str, timeout: float | None, *args: Any, **kwargs: Any) -> Any:
    """Call a reward function, turning whatever goes wrong into a :class:`RewardError` naming it.

    :param timeout: seconds to wait (None: forever). With a timeout the function runs in a
        daemon thread; when it overruns, :class:`RewardError` is raised but the thread CANNOT
        be killed and keeps running in the background until it returns on its own.
    :raises RewardError: the function raised, called ``sys.exit``, or did not return in time.
    """
    try:
        if timeout is None:
            return fn(*args, **kwargs)
        return _call_with_timeout(fn, name, timeout, args, kwargs)
    except RewardError:
        raise
    except SystemExit as err:  # would end the command as if it had succeeded (with code 0)
        raise RewardError(f"reward {name!r} called sys.exit({err.code!r}); a reward must return "
                          "rewards or raise") from err
    except Exception as err:
        raise RewardError(f"reward {name!r} raised {type(err).__name__}: {err}") from err


def _call_with_timeout(fn: Callable[..., Any], name: str, timeout: float, args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> Any:
    box: dict[str, Any] = {}
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def target() -> None:
        # Grad and inference modes are thread-local: carry the caller's over.
        try:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                box["result"] = fn(*args, **kwargs)
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    thread = threading.Thread(target=target, name=f"reward:{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise RewardError(
            f"reward {name!r} did not return within {timeout} s; its thread cannot be "
            f"killed and keeps running in the background; make the reward faster or raise the timeout"
        )
    if "error" in box:
        raise box["error"]
    return box["result"]
