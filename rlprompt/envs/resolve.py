"""What an environment is built from: its options checked, its task and its engine resolved.

Shared by :class:`~rlprompt.envs.DiscretePromptEnv` and :class:`~rlprompt.envs.SoftPromptEnv`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rlprompt.errors import ConfigError

if TYPE_CHECKING:
    from rlprompt.lm import FrozenLM, ScoringEngine
    from rlprompt.tasks import Task

OBS_MODES: tuple[str, ...] = ("tokens", "hidden")


def check_env_options(render_mode: str | None, render_modes: list[str], obs: str) -> None:
    """The options both environments share: a known render mode and observation mode.

    :raises ConfigError: naming the bad value and the choices.
    """
    if render_mode is not None and render_mode not in render_modes:
        raise ConfigError(f"render_mode {render_mode!r} is not supported; use None or 'ansi'")
    if obs not in OBS_MODES:
        raise ConfigError(f"obs {obs!r} is not known; use 'tokens' or 'hidden'")


def resolve_task(task: Task | str | None, task_kwargs: Mapping[str, Any] | None = None) -> Task:
    """A :class:`~rlprompt.tasks.Task` from a task, a task name (``load_task``) or ``None`` (demo).

    :param task: a Task, a name for :func:`~rlprompt.tasks.load_task`, or ``None`` for ``"demo"``.
    :param task_kwargs: keyword arguments for ``load_task`` (e.g. ``data_dir``, ``seed``).
    :raises ConfigError: a wrong type, or ``task_kwargs`` given with a ready Task.
    """
    from rlprompt.tasks import Task, load_task
    from rlprompt.tasks.generation import GenerationTask

    if isinstance(task, (Task, GenerationTask)):
        if task_kwargs:
            raise ConfigError(f"task_kwargs {dict(task_kwargs)} only apply to a task name, not a ready Task")
        return task
    if task is None or isinstance(task, str):
        return load_task(task or "demo", **dict(task_kwargs or {}))
    raise ConfigError(f"task must be a Task, a task name or None (demo), got {type(task).__name__}")


def resolve_engine(
    engine: ScoringEngine | None, model: str | FrozenLM, task: Task, device: str = "auto"
) -> ScoringEngine:
    """The engine to score with: the given one (checked against the task) or a new one.

    :param engine: an existing engine to share (its input caches and counters), or ``None``.
    :param model: a :class:`~rlprompt.lm.FrozenLM` or a name for :func:`~rlprompt.lm.load_lm`
        (loaded once per process and shared); ignored when ``engine`` is given.
    :param task: the task whose verbalizers and template the engine must use.
    :param device: device for ``load_lm`` when ``model`` is a name.
    :raises ConfigError: the engine's verbalizers or template differ from the task's.
    """
    from rlprompt.lm import FrozenLM, ScoringEngine, load_lm
    from rlprompt.lm.generation import GenerationEngine

    generation = getattr(task, "kind", "") == "generation"
    if engine is not None and generation:
        if not isinstance(engine, GenerationEngine):
            raise ConfigError(f"task {task.name!r} is a generation task: give a GenerationEngine, not a "
                              f"{type(engine).__name__}")
        return engine
    if engine is not None:
        if not isinstance(engine, ScoringEngine):
            raise ConfigError(f"engine must be a ScoringEngine, got {type(engine).__name__}")
        if list(engine.verbalizers) != list(task.verbalizers):
            raise ConfigError(
                f"engine verbalizers {engine.verbalizers} differ from task {task.name!r}'s "
                f"{task.verbalizers}; build the engine with the task's verbalizers"
            )
        if engine.template.text != task.template:
            raise ConfigError(
                f"engine template {engine.template.text!r} differs from task {task.name!r}'s "
                f"{task.template!r}; build the engine with the task's template"
            )
        return engine
    if isinstance(model, str):
        model = load_lm(model, device=device)
    if not isinstance(model, FrozenLM):
        raise ConfigError(f"model must be a model name or a FrozenLM, got {type(model).__name__}")
    if generation:
        return GenerationEngine(model, task.template, settings=task.settings)  # type: ignore[attr-defined]
    return ScoringEngine(model, task.verbalizers, task.template)
