"""Training logs every agent writes the same way: SB3's logger into ``out_dir/logs``
(``progress.csv``, and TensorBoard events when ``tensorboard`` is installed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlprompt.agents.core.base import BaseAgent


def logs_folder(agent: BaseAgent) -> str:
    """``out_dir/logs`` for SB3's logger; a resumed run first keeps the earlier run's
    ``progress.csv`` as ``progress.1.csv`` (``.2``, ...), since SB3's CSV writer starts a new file."""
    assert agent.out_dir is not None
    folder = agent.out_dir / "logs"
    old = folder / "progress.csv"
    if agent.resuming and old.is_file():
        n = 1
        while (folder / f"progress.{n}.csv").exists():
            n += 1
        old.replace(folder / f"progress.{n}.csv")
    return str(folder)


def progress_logger(agent: BaseAgent) -> Any:
    """SB3's logger writing ``out_dir/logs/progress.csv`` (and TensorBoard events when installed);
    None for an agent without ``out_dir``."""
    from stable_baselines3.common.logger import configure

    if agent.out_dir is None:
        return None
    return configure(logs_folder(agent), ["csv"] + (["tensorboard"] if tensorboard_available() else []))


def tensorboard_available() -> bool:
    """True when the ``tensorboard`` package is importable (SB3 then also writes event files)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None
