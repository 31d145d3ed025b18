"""What every agent shares: the config base, the budgeted ``learn`` loop shell,
best-on-dev selection, progress, CSV curve, artefacts and the JSON run summary.

An agent is used in stable-baselines3's shape::

    agent = SoftPromptTuning(engine, task, SoftPromptConfig(placement="prefix"), out_dir="runs/x")
    agent.learn(budget=2000)           # prompt evaluations; see rlprompt.agents.budget
    prompt = agent.predict()           # the prompt selected on dev
    agent.save("runs/x/prompt.safetensors")
    summary = agent.summary(test=True) # dev and test accuracy, spend, curve

A subclass fills in :meth:`BaseAgent._learn` (the loop, which calls
:meth:`BaseAgent.evaluate_dev` to offer prompts for best-on-dev selection and
:meth:`BaseAgent.tick` to move the progress bar) and the prompt-kind methods, which
:class:`~rlprompt.agents.kinds.DiscreteAgent` and :class:`~rlprompt.agents.kinds.SoftAgent`
already provide.

Files in ``out_dir`` (written when learning ends, is interrupted, or stops on NaN):
``curve.csv`` (one row per dev evaluation), the best prompt (``prompt.json`` or
``prompt.safetensors``) and ``summary.json``; during learning, ``checkpoint/`` (see
:mod:`rlprompt.agents.checkpoint`), from which ``learn(budget, resume=True)`` continues.
A subclass makes itself resumable by calling :meth:`BaseAgent.safe_point` between loop
iterations and extending :meth:`BaseAgent.checkpoint_state` / :meth:`BaseAgent.restore_state`
with its loop position and learnable state (its ``_learn`` skips its fresh start when
:attr:`BaseAgent.resuming`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch

from rlprompt.agents.budget import Budget
from rlprompt.agents.configs import AgentConfig, check_positive, enum_choice
from rlprompt.agents.tracking import BestTracker, Candidate, CurveLogger, CurvePoint
from rlprompt.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rlprompt.lm import ScoringEngine
    from rlprompt.rewards.evaluate import PromptEvaluation
    from rlprompt.tasks import Task

__all__ = ["AgentConfig", "BaseAgent", "Budget", "LearningInterrupted", "RunSummary", "check_positive",
           "checkpoint_exists", "enum_choice"]

A = TypeVar("A", bound="BaseAgent")


class LearningInterrupted(KeyboardInterrupt):
    """Learning was stopped by Ctrl-C or SIGTERM (a ``KeyboardInterrupt``, so callers that
    catch Ctrl-C catch it too)."""


def checkpoint_exists(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a complete checkpoint to resume from."""
    from rlprompt.agents.checkpoint import checkpoint_folder

    return checkpoint_folder(out_dir) is not None


@dataclass
class RunSummary:
    """What a run produced and spent; written as ``summary.json``.

    :param method: agent name (``"soft-prompt"``, ``"cma"``, ...).
    :param task: task name.
    :param model: the task LM's name.
    :param status: ``"completed"``, ``"early-stopped"``, ``"non-finite-loss"``, ``"interrupted"``,
        ``"failed"`` (an error ended learning; ``message`` names it).
    :param message: a line about how it ended.
    :param prompt_kind: ``"discrete"`` or ``"soft"``.
    :param prompt: the selected prompt as text (a soft prompt: its nearest tokens).
    :param dev_accuracy: dev accuracy of the selected prompt.
    :param test_accuracy: its test accuracy (None when not evaluated).
    :param test_balanced_accuracy: its class-balanced test accuracy.
    :param budget: the prompt-evaluation limit.
    :param prompt_evals: prompt evaluations spent (dev selection included).
    :param forward_tokens: LM forward tokens spent while learning.
    :param backward_tokens: LM backward tokens spent while learning.
    :param wall_seconds: wall time of learning.
    :param engine_seconds: of which inside the scoring engine.
    :param config: the agent's options.
    :param task_meta: facts about the task (seed, source).
    :param extra: agent-specific results (e.g. the projected prompt's accuracy).
    :param curve: learning-curve points (see :class:`~rlprompt.agents.tracking.CurvePoint`).
    """

    method: str
    task: str
    model: str
    status: str
    message: str
    prompt_kind: str
    prompt: str | None
    dev_accuracy: float | None
    test_accuracy: float | None
    test_balanced_accuracy: float | None
    budget: int
    prompt_evals: int
    forward_tokens: int
    backward_tokens: int
    wall_seconds: float
    engine_seconds: float
    config: dict[str, Any]
    task_meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class BaseAgent(ABC):
    """Base class of every prompt-finding agent; see the module docstring.

    :param engine: the scoring engine (built with the task's verbalizers and template).
    :param task: the task: the agent learns on ``train`` and selects on ``dev``.
    :param config: the agent's options (its ``config_class``); default options when None.
    :param out_dir: folder for the curve, the best prompt and the summary; None writes nothing.
    :raises ConfigError: a config of the wrong class, or an engine that does not fit the task.
    """

    name: ClassVar[str] = ""
    """Registry name (``rlprompt tune --method NAME``)."""
    config_class: ClassVar[type[AgentConfig]] = AgentConfig
    prompt_kind: ClassVar[str] = ""
    """``"discrete"`` or ``"soft"``."""
    artefact_name: ClassVar[str] = ""
    """File name of the saved best prompt inside ``out_dir``."""
    supports_resume: ClassVar[bool] = False
    """True for an agent whose loop calls :meth:`safe_point` and whose state hooks save all
    of its state; others write no checkpoint, stop at once on Ctrl-C/SIGTERM and refuse
    ``resume=True``."""

    def __init__(self, engine: ScoringEngine, task: Task, config: AgentConfig | None = None, *,
                 out_dir: str | Path | None = None) -> None:
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}"
            )
        if list(engine.verbalizers) != list(task.verbalizers):
            raise ConfigError(
                f"engine verbalizers {engine.verbalizers!r} differ from task {task.name!r}'s "
                f"{list(task.verbalizers)!r}; build the engine with the task's verbalizers"
            )
        self.engine = engine
        self.task = task
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.tracker = BestTracker(keep=config.keep_top)
        self.budget: Budget | None = None
        self.status = "new"
        self.message = ""
        self.extra: dict[str, Any] = {}
        self.wall_seconds = 0.0
        self.resuming = False
        """True while :meth:`learn` continues from a checkpoint (``_learn`` then skips its fresh start)."""
        self._t0 = time.perf_counter()
        self._last_checkpoint = self._t0
        self._stop_requested = ""
        self._bar: Any = None
        self._curve_log: CurveLogger | None = None
        self._dev_texts = task.texts("dev")
        self._dev_labels = task.label_tensor("dev").to(engine.device)

    # -- what a prompt kind provides ------------------------------------------------

    @abstractmethod
    def score(self, prompts: Any, texts: Sequence[str]) -> torch.Tensor:
        """Class log-probs [P, E, C] of prompts (inference mode; charged by the engine)."""

    @abstractmethod
    def describe(self, prompt: Any) -> str:
        """A readable form of a prompt."""

    @abstractmethod
    def _freeze_prompt(self, prompt: Any) -> Any:
        """A detached copy of a prompt, to keep as a candidate."""

    @abstractmethod
    def save(self, path: str | Path) -> Path:
        """Save the selected prompt (and the options) to ``path``."""

    @classmethod
    @abstractmethod
    def load(cls: type[A], path: str | Path, engine: ScoringEngine, task: Task, **kwargs: Any) -> A:
        """An agent whose selected prompt is the one saved at ``path``."""

    # -- what an agent provides ------------------------------------------------------

    @abstractmethod
    def _learn(self) -> None:
        """The learning loop; spends at most ``self.budget`` (see :mod:`rlprompt.agents.budget`)."""

    # -- the shared loop shell -------------------------------------------------------

    def learn(self: A, budget: int | Budget, *, progress: bool | None = None,
              resume: bool | str = False) -> A:
        """Search for a prompt within ``budget`` prompt evaluations.

        With ``out_dir``, a checkpoint (``out_dir/checkpoint/``, see
        :mod:`rlprompt.agents.checkpoint`) is written every ``config.checkpoint_every``
        seconds at a safe point of the loop and always when learning stops. A first
        Ctrl-C (SIGINT) or SIGTERM stops at the next safe point, after writing a
        checkpoint; a second one stops at once (the last checkpoint stays). Either way
        the best prompt so far and the summary are written to ``out_dir`` and a
        ``KeyboardInterrupt`` propagates.

        :param budget: prompt evaluations (an int) or a :class:`Budget` to share.
        :param progress: show a progress bar (default: when stderr is a terminal).
        :param resume: False: start afresh (an old checkpoint in ``out_dir`` is removed);
            True: continue from ``out_dir/checkpoint/``; ``"auto"``: continue when a
            checkpoint exists, else start afresh. A resumed run restores the budget spent,
            the best prompts, the curve, the RNG states and the agent's own state.
        :returns: the agent.
        :raises ConfigError: ``resume=True`` without a checkpoint, or a checkpoint of
            another method, config, task, model or budget.
        """
        from rlprompt.agents.checkpoint import restore_global_rng_state

        self.budget = budget if isinstance(budget, Budget) else Budget(self.engine, budget)
        found = self._checkpoint_to_resume(resume)
        progress = sys.stderr.isatty() if progress is None else progress
        self._t0 = time.perf_counter()
        self.status, self.message = "running", ""
        self.resuming = found is not None
        self._stop_requested = ""
        if found is not None:
            try:
                self.restore_state(*found)
            except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as exc:
                raise DataError(f"the checkpoint in {str(self.out_dir / 'checkpoint')!r} does not fit this "
                                f"{self.name} agent ({type(exc).__name__}: {exc}); delete it to start afresh") from None
        if self.out_dir is not None:
            self._curve_log = CurveLogger(self.out_dir / "curve.csv", points=self.tracker.curve)
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.budget.limit, initial=min(self.budget.used, self.budget.limit),
                             desc=self.name, unit="eval", dynamic_ncols=True)
        self._last_checkpoint = time.perf_counter()
        handlers = self._install_signal_handlers()
        try:
            if found is not None:
                restore_global_rng_state(found[1]["rng"], found[0])
            if self.status == "running":
                self._learn()
            if self.status == "running":
                self.status = "completed"
                self.message = f"spent {self.budget.used} of {self.budget.limit} prompt evaluations"
            self.save_checkpoint()
        except KeyboardInterrupt:
            self.status = "interrupted"
            why = "SIGTERM" if self._stop_requested == "SIGTERM" else "Ctrl-C"
            self.message = f"interrupted ({why}); kept the best prompt found so far"
            if self.out_dir is not None and checkpoint_exists(self.out_dir):
                self.message += f"; continue with resume (--resume): {self.out_dir / 'checkpoint'}"
            self._finish()
            raise
        except Exception as exc:
            # Keep what was found (best prompt, curve, summary with the error), then report the error.
            self.status = "failed"
            self.message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            with contextlib.suppress(Exception):  # e.g. a full disk: the first error is the one to report
                self._finish()
            raise
        finally:
            self._restore_signal_handlers(handlers)
            self.resuming = False
        self._finish()
        return self

    # -- checkpoints -----------------------------------------------------------------------

    def safe_point(self) -> None:
        """Called by an agent's loop where its state is whole (between iterations): writes a
        checkpoint when one is due, and stops learning here when a stop was requested."""
        if self.out_dir is not None and (self._stop_requested or time.perf_counter() - self._last_checkpoint
                                         >= self.config.checkpoint_every):
            self.save_checkpoint()
        if self._stop_requested:
            raise LearningInterrupted(f"stopped by {self._stop_requested} at a checkpoint")

    def save_checkpoint(self) -> Path | None:
        """Write ``out_dir/checkpoint/`` now (atomically); None without ``out_dir``."""
        from rlprompt.agents.checkpoint import global_rng_state, save_checkpoint

        if self.out_dir is None or self.budget is None or not self.supports_resume:
            return None
        tensors, meta = self.checkpoint_state()
        meta["fingerprint"] = self.fingerprint()
        meta["rng"] = global_rng_state(tensors)
        folder = save_checkpoint(self.out_dir, tensors, meta)
        self._last_checkpoint = time.perf_counter()
        return folder

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """What a checkpoint holds: (tensors, JSON-ready meta). A subclass extends it
        (calling ``super()``) with its loop position and learnable/optimiser state."""
        from rlprompt.agents.checkpoint import flatten_state

        assert self.budget is not None
        tensors: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {
            "method": self.name, "status": self.status, "message": self.message,
            "wall_seconds": time.perf_counter() - self._t0,
            "budget": {"limit": self.budget.limit, "spent": self.budget.spent().as_dict()},
            "tracker": self.tracker.state(tensors),
            "extra": flatten_state(dict(self.extra), "extra", tensors),
        }
        return tensors, meta

    def restore_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Load what :meth:`checkpoint_state` saved (a subclass extends it, calling ``super()``).

        Called by :meth:`learn` after the budget is set up and before ``_learn``; the
        global RNG states are restored after it.
        """
        from rlprompt.agents.checkpoint import unflatten_state

        assert self.budget is not None
        self.budget.restore(meta["budget"]["spent"])
        self.tracker.restore(meta["tracker"], tensors)
        self.status, self.message = meta["status"], meta["message"]
        self.extra = dict(unflatten_state(meta["extra"], tensors))
        self._t0 = time.perf_counter() - float(meta["wall_seconds"])

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed: method, options (but
        ``checkpoint_every``), task name and data, model and budget."""
        import hashlib
        import json

        data = [self.task.template, list(self.task.verbalizers)]
        for split in ("train", "dev", "test"):
            data.append([self.task.texts(split), self.task.label_tensor(split).tolist()])
        digest = hashlib.sha256(json.dumps(data, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]
        config = {k: v for k, v in self.config.as_dict().items() if k != "checkpoint_every"}
        return json.loads(json.dumps({
            "method": self.name, "config": config, "task": self.task.name, "data": digest,
            "model": self.engine.lm.name, "budget": self.budget.limit if self.budget else None,
        }, default=str))

    def _checkpoint_to_resume(self, resume: bool | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        from rlprompt.agents.checkpoint import load_checkpoint, remove_checkpoint

        if resume not in (False, True, "auto"):
            raise ConfigError(f"resume must be False, True or 'auto', got {resume!r}")
        if resume is True and not self.supports_resume:
            raise ConfigError(f"{self.name or type(self).__name__} cannot resume from a checkpoint yet; "
                              "run it again without resume (--resume)")
        if self.out_dir is None:
            if resume is True:
                raise ConfigError("resume=True needs an out_dir holding a checkpoint (out_dir=...; --out)")
            return None
        if resume is False or not self.supports_resume:
            remove_checkpoint(self.out_dir)
            return None
        found = load_checkpoint(self.out_dir)
        if found is None:
            if resume is True:
                raise ConfigError(f"nothing to resume: no checkpoint in {str(self.out_dir / 'checkpoint')!r}; "
                                  "run without resume (--resume) to start afresh")
            return None
        saved, now = found[1].get("fingerprint", {}), self.fingerprint()
        diffs = [f"{key}: {saved.get(key)!r} there, {now[key]!r} here" for key in now if saved.get(key) != now[key]]
        if diffs:
            config = [f"{k}={saved.get('config', {}).get(k)!r} there, {v!r} here"
                      for k, v in now["config"].items() if saved.get("config", {}).get(k) != v]
            detail = "; ".join(config) if config and len(diffs) == 1 else "; ".join(diffs)
            raise ConfigError(f"the checkpoint in {str(self.out_dir / 'checkpoint')!r} belongs to another run "
                              f"({detail}); rerun with the same options, or use another output folder "
                              "(or drop --resume to start afresh there)")
        return found

    def _install_signal_handlers(self) -> dict[int, Any]:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        old: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, OSError):  # a platform without the signal
                old[sig] = signal.signal(sig, self._on_signal)
        return old

    @staticmethod
    def _restore_signal_handlers(old: dict[int, Any]) -> None:
        import signal

        for sig, handler in old.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        import signal

        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        if self._stop_requested or self.out_dir is None or not self.supports_resume:
            self._stop_requested = self._stop_requested or name
            raise LearningInterrupted(f"stopped by {name}")
        self._stop_requested = name
        print(f"\nrlprompt: {name}: stopping at the next checkpoint (press Ctrl-C again to stop now)",
              file=sys.stderr, flush=True)

    def _finish(self) -> None:
        assert self.budget is not None
        self.budget.close()
        self.wall_seconds = time.perf_counter() - self._t0
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._curve_log is not None:
            self._curve_log.close()
            self._curve_log = None
        if self.out_dir is not None:
            self.write_outputs()

    def stop(self, status: str, message: str) -> None:
        """End learning early with a reason (the loop should return after calling it)."""
        self.status, self.message = status, message

    def tick(self, train_score: float | None = None) -> None:
        """Move the progress bar to the budget spent; show the best prompt and dev accuracy."""
        if self._bar is None or self.budget is None:
            return
        self._bar.n = min(self.budget.used, self.budget.limit)
        best = self.tracker.best
        post: dict[str, Any] = {}
        if train_score is not None and math.isfinite(train_score):
            post["train"] = f"{train_score:.3g}"
        if best is not None:
            post["dev"] = f"{best.dev_accuracy:.3f}"
            post["best"] = best.text[:40]
        self._bar.set_postfix(post, refresh=False)
        self._bar.refresh()

    def evaluate_dev(self, prompts: Any, *, train_scores: Sequence[float] | None = None) -> list[float]:
        """Score prompts on the dev split (charged to the budget) and offer them for selection.

        :param prompts: a list of discrete prompts (token ids) or soft prompts [P, T, H].
        :param train_scores: the agent's training signal per prompt (logged), or None.
        :returns: the dev accuracy of each prompt.
        """
        from rlprompt.rewards import accuracy, log_likelihood

        logprobs = self.score(prompts, self._dev_texts)
        acc = accuracy(logprobs, self._dev_labels).tolist()
        ll = log_likelihood(logprobs, self._dev_labels).tolist()
        used = self.budget.used if self.budget is not None else 0
        for i in range(len(acc)):
            prompt = self._freeze_prompt(prompts[i])
            self.tracker.offer(
                Candidate(prompt=prompt, text=self.describe(prompt), dev_accuracy=float(acc[i]),
                          dev_score=float(ll[i]), prompt_evals=used,
                          train_score=None if train_scores is None else float(train_scores[i])),
                dedupe=self.prompt_kind == "discrete",
            )
        spent = self.budget.spent() if self.budget is not None else self.engine.counters
        best = self.tracker.best
        train = math.nan if train_scores is None else float(max(train_scores))
        point = CurvePoint(
            prompt_evals=int(spent.prompt_evals), forward_tokens=int(spent.forward_tokens),
            backward_tokens=int(spent.backward_tokens), seconds=round(time.perf_counter() - self._t0, 3),
            dev_accuracy=float(max(acc)), best_dev_accuracy=best.dev_accuracy if best else math.nan,
            train_score=train,
        )
        self.tracker.log(point)
        if self._curve_log is not None:
            self._curve_log.write(point)
        self.tick(train)
        return [float(a) for a in acc]

    # -- results -----------------------------------------------------------------------

    def predict(self) -> Any:
        """The prompt selected on dev: token ids (discrete) or a tensor [T, H] (soft).

        :raises ConfigError: nothing was learned or loaded yet.
        """
        best = self.tracker.best
        if best is None:
            raise ConfigError(f"{type(self).__name__} has no prompt yet; call learn() or load() first")
        return best.prompt

    def evaluate(self, split: str = "test", prompt: Any = None, chunk_size: int = 256) -> PromptEvaluation:
        """Accuracy of a prompt (default: the selected one) on a split.

        :param split: ``"train"``, ``"dev"`` or ``"test"``.
        :param prompt: the prompt to evaluate, or None for :meth:`predict`'s.
        :param chunk_size: examples per engine call.
        """
        from rlprompt.rewards.evaluate import PromptEvaluation
        from rlprompt.rewards.metrics import class_accuracy

        prompt = self.predict() if prompt is None else prompt
        texts, labels = self.task.texts(split), self.task.label_tensor(split)
        start = time.perf_counter()
        parts = [self.score([prompt], texts[i : i + chunk_size]).cpu() for i in range(0, len(texts), chunk_size)]
        logprobs = torch.cat(parts, dim=1)
        acc = class_accuracy(logprobs, labels)
        seconds = time.perf_counter() - start
        return PromptEvaluation(
            prompt=self.describe(self._freeze_prompt(prompt)), split=split, n_examples=len(texts),
            accuracy=float(acc.overall[0]), per_class_accuracy=[float(a) for a in acc.per_class[0]],
            balanced_accuracy=float(acc.balanced[0]), reward=float(acc.overall[0]), reward_name="accuracy",
            seconds=seconds, examples_per_s=len(texts) / max(seconds, 1e-9),
        )

    def summary(self, test: bool = False) -> RunSummary:
        """The run's results and spend.

        :param test: also evaluate the selected prompt on the test split (not charged).
        """
        best = self.tracker.best
        spent = self.budget.spent() if self.budget is not None else None
        test_eval = self.evaluate("test") if (test and best is not None) else None
        return RunSummary(
            method=self.name, task=self.task.name, model=self.engine.lm.name, status=self.status,
            message=self.message, prompt_kind=self.prompt_kind, prompt=best.text if best else None,
            dev_accuracy=best.dev_accuracy if best else None,
            test_accuracy=test_eval.accuracy if test_eval else None,
            test_balanced_accuracy=test_eval.balanced_accuracy if test_eval else None,
            budget=self.budget.limit if self.budget else 0,
            prompt_evals=int(spent.prompt_evals) if spent else 0,
            forward_tokens=int(spent.forward_tokens) if spent else 0,
            backward_tokens=int(spent.backward_tokens) if spent else 0,
            wall_seconds=round(self.wall_seconds, 3), engine_seconds=round(spent.seconds, 3) if spent else 0.0,
            config=self.config.as_dict(),
            task_meta={"source": self.task.source, **{k: v for k, v in self.task.meta.items()
                                                      if isinstance(v, (str, int, float, bool))}},
            extra=dict(self.extra), curve=[dataclasses.asdict(p) for p in self.tracker.curve],
        )

    def write_outputs(self, test: bool = False) -> RunSummary:
        """Write the best prompt and ``summary.json`` to ``out_dir``.

        :param test: evaluate on test first (done after learning; not charged).
        """
        from rlprompt.io import write_json

        if self.out_dir is None:
            raise ConfigError("this agent has no out_dir; pass out_dir=... to write its outputs")
        if self.tracker.best is not None:
            self.save(self.out_dir / self.artefact_name)
        summary = self.summary(test=test)
        write_json(self.out_dir / "summary.json", summary.as_dict())
        return summary
