"""What every agent shares: the config base, the budgeted ``learn`` loop shell,
best-on-dev selection, progress, CSV curve, artefacts and the JSON run summary.

An agent is used in stable-baselines3's shape::

    agent = SoftPromptTuning(engine, task, SoftPromptConfig(placement="prefix"), out_dir="runs/x")
    agent.learn(budget=2000)           # prompt evaluations; see rlprompt.agents.core.budget
    prompt = agent.predict()           # the prompt selected on dev
    agent.save("runs/x/prompt.safetensors")
    summary = agent.summary(test=True) # dev and test accuracy, spend, curve

A subclass fills in :meth:`BaseAgent._learn` (the loop, which calls
:meth:`BaseAgent.evaluate_dev` to offer prompts for best-on-dev selection and
:meth:`BaseAgent.tick` to move the progress bar) and the prompt-kind methods, which
:class:`~rlprompt.agents.core.kinds.DiscreteAgent` and :class:`~rlprompt.agents.core.kinds.SoftAgent`
already provide.

Files in ``out_dir`` (written when learning ends, is interrupted, or stops on NaN):
``curve.csv`` (one row per dev evaluation), the best prompt (``prompt.json`` or
``prompt.safetensors``) and ``summary.json``; during learning, ``checkpoint/`` (see
:mod:`rlprompt.agents.core.checkpoint`), from which ``learn(budget, resume=True)`` continues.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch

from rlprompt.agents.core.budget import Budget
from rlprompt.agents.core.config import AgentConfig, check_positive, enum_choice
from rlprompt.agents.core.resume import LearningInterrupted, Resumable, checkpoint_exists
from rlprompt.agents.core.scoring import TaskScoring
from rlprompt.agents.core.summary import RunSummary
from rlprompt.agents.core.tracking import BestTracker, Candidate, CurveLogger, CurvePoint
from rlprompt.errors import ConfigError, DataError, first_line

if TYPE_CHECKING:
    from rlprompt.lm import ScoringEngine
    from rlprompt.rewards.evaluate import PromptEvaluation
    from rlprompt.tasks import Task

__all__ = ["AgentConfig", "BaseAgent", "Budget", "LearningInterrupted", "RunSummary", "check_positive",
           "checkpoint_exists", "enum_choice"]

A = TypeVar("A", bound="BaseAgent")


class BaseAgent(Resumable, TaskScoring, ABC):
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
    supports_generation: ClassVar[bool] = False
    """True for an agent whose loop scores prompts through :meth:`train_rewards` and so also
    runs on generation tasks (the LM writes text; a text reward scores it)."""
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
        self.generation = getattr(task, "kind", "classification") == "generation"
        if self.generation and not self.supports_generation:
            from rlprompt.agents.registry import generation_agents

            raise ConfigError(f"{self.name or type(self).__name__} does not run on generation tasks (the LM writes "
                              f"text there); use one of: {', '.join(generation_agents())}")
        if self.generation != hasattr(engine, "generate") or list(engine.verbalizers) != list(task.verbalizers):
            raise ConfigError(
                f"the engine does not fit task {task.name!r}: build a GenerationEngine for a generation task and a "
                f"ScoringEngine with the task's verbalizers {list(task.verbalizers)!r} for a classification task"
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
        self.objective: Any = None
        if self.generation:
            from rlprompt.rewards.evaluate_text import TextObjective

            self.objective = TextObjective(engine, task, seed=config.seed)  # type: ignore[arg-type]
        else:
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
        """The learning loop; spends at most ``self.budget`` (see :mod:`rlprompt.agents.core.budget`)."""

    # -- the shared loop shell -------------------------------------------------------

    def learn(self: A, budget: int | Budget, *, progress: bool | None = None,
              resume: bool | str = False) -> A:
        """Search for a prompt within ``budget`` prompt evaluations.

        With ``out_dir``, a checkpoint (``out_dir/checkpoint/``, see
        :mod:`rlprompt.agents.core.checkpoint`) is written every ``config.checkpoint_every``
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
            another method, config, task or model, or of a larger budget (a larger budget
            than the checkpoint's extends a stopped or finished run); ``out_dir`` in use by
            another process (its lock, ``out_dir/.rlprompt.lock``, is held while learning).
        """
        if self.out_dir is None:
            return self._learn_in(budget, progress, resume)
        from rlprompt.io import lock_folder

        with lock_folder(self.out_dir, f"{self.name} agent"):  # one writer (a resume included) per folder
            return self._learn_in(budget, progress, resume)

    def _learn_in(self: A, budget: int | Budget, progress: bool | None, resume: bool | str) -> A:
        from rlprompt.agents.core.checkpoint import restore_global_rng_state

        if not isinstance(budget, Budget):
            budget = Budget(self.engine, budget, train_examples=len(self.task.texts("train")))
        self.budget = budget
        found = self._checkpoint_to_resume(resume)
        progress = sys.stderr.isatty() if progress is None else progress
        self._t0 = time.perf_counter()
        self.status, self.message = "running", ""
        self.resuming = found is not None
        self._stop_requested = ""
        if found is not None:
            try:
                self.restore_state(*found)
                if self.status == "completed" and self.budget.limit > float(found[1]["budget"]["limit"]):
                    self.status = "running"  # a finished run given a larger budget continues
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
                self.message = f"spent {self.budget.used:.1f} of {self.budget.limit} prompt evaluations"
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
            self.message = f"{type(exc).__name__}: {first_line(exc)}"
            with contextlib.suppress(Exception):  # e.g. a full disk: the first error is the one to report
                self._finish()
            raise
        finally:
            from rlprompt import stop

            stop.clear()
            self._restore_signal_handlers(handlers)
            self.resuming = False
        self._finish()
        return self

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

        With ``selection="pooled"`` each is also scored on train, and ordered by both together.

        :param prompts: a list of discrete prompts (token ids) or soft prompts [P, T, H].
        :param train_scores: the agent's training signal per prompt (logged), or None.
        :returns: the dev accuracy of each prompt (on a generation task: the task's metric).
        """
        acc, ll = self._dev_scores(prompts)
        pooled = self._pooled_accuracy(prompts, acc)
        used = self.budget.used if self.budget is not None else 0
        for i in range(len(acc)):
            prompt = self._freeze_prompt(prompts[i])
            self.tracker.offer(
                Candidate(prompt=prompt, text=self.describe(prompt), dev_accuracy=float(acc[i]),
                          dev_score=float(ll[i]), prompt_evals=used, pooled_accuracy=pooled[i],
                          train_score=None if train_scores is None else float(train_scores[i])),
                dedupe=self.prompt_kind == "discrete",
            )
        spent = self.budget.spent() if self.budget is not None else self.engine.counters
        best = self.tracker.best
        train = math.nan if train_scores is None else float(max(train_scores))
        point = CurvePoint(
            prompt_evals=round(self.budget.used, 3) if self.budget is not None else 0.0,
            forward_tokens=int(spent.forward_tokens),
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

    def evaluate(self, split: str = "test", prompt: Any = None, chunk_size: int = 256,
                 max_examples: int | None = None) -> PromptEvaluation:
        """Accuracy of a prompt (default: the selected one) on a split (not charged to the budget).

        :param split: ``"train"``, ``"dev"`` or ``"test"``.
        :param prompt: the prompt to evaluate, or None for :meth:`predict`'s.
        :param chunk_size: examples per engine call.
        :param max_examples: evaluate on the first N examples only.
        """
        from rlprompt.rewards.evaluate import evaluate_split

        prompt = self.predict() if prompt is None else prompt
        if self.generation:
            return self.objective.evaluate([prompt], split, max_examples=max_examples)[0]
        name = self.describe(self._freeze_prompt(prompt))
        return evaluate_split(lambda chunk: self.score([prompt], chunk), [name], self.task, split=split,
                              chunk_size=chunk_size, max_examples=max_examples)[0]

    def summary(self, test: bool = False) -> RunSummary:
        """The run's results and spend.

        :param test: also evaluate the selected prompt on the test split (not charged).
        """
        best = self.tracker.best
        spent = self.budget.spent() if self.budget is not None else None
        test_eval = self.evaluate("test") if (test and best is not None) else None
        extra = dict(self.extra)
        if self.generation:
            extra["metric"] = self.objective.metric_name
            extra["reward"] = self.objective.reward.name
            extra["generation"] = self.engine.describe_settings()
            if test_eval is not None:
                extra["test_metrics"] = dict(test_eval.metrics)
                extra["test_outputs"] = test_eval.outputs[:20]
        return RunSummary(
            method=self.name, task=self.task.name, model=self.engine.lm.name, status=self.status,
            dtype=self.engine.lm.dtype_name,
            message=self.message, prompt_kind=self.prompt_kind, prompt=best.text if best else None,
            dev_accuracy=best.dev_accuracy if best else None,
            test_accuracy=test_eval.accuracy if test_eval else None,
            test_balanced_accuracy=test_eval.balanced_accuracy if test_eval else None,
            budget=self.budget.limit if self.budget else 0,
            prompt_evals=round(self.budget.used, 3) if self.budget is not None else 0.0,
            example_evals=int(spent.example_evals) if spent else 0,
            forward_tokens=int(spent.forward_tokens) if spent else 0,
            backward_tokens=int(spent.backward_tokens) if spent else 0,
            wall_seconds=round(self.wall_seconds, 3), engine_seconds=round(spent.seconds, 3) if spent else 0.0,
            config=self.config.as_dict(),
            task_meta={"source": self.task.source, **{k: v for k, v in self.task.meta.items()
                                                      if isinstance(v, (str, int, float, bool))}},
            extra=extra, curve=[dataclasses.asdict(p) for p in self.tracker.curve],
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
