"""Checkpoints, resume and clean stops, mixed into :class:`~rlprompt.agents.core.base.BaseAgent`.

An agent's loop calls :meth:`Resumable.safe_point` where its state is whole; a checkpoint is
written there when one is due, and a Ctrl-C or SIGTERM stops learning there. ``learn(resume=)``
finds the checkpoint with :meth:`Resumable._checkpoint_to_resume`, which refuses one of
another run (its :meth:`Resumable.fingerprint` differs).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rlprompt.errors import ConfigError


class LearningInterrupted(KeyboardInterrupt):
    """Learning was stopped by Ctrl-C or SIGTERM (a ``KeyboardInterrupt``, so callers that
    catch Ctrl-C catch it too)."""


def checkpoint_exists(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a complete checkpoint to resume from."""
    from rlprompt.agents.core.checkpoint import checkpoint_folder

    return checkpoint_folder(out_dir) is not None



class Resumable:
    """The checkpoint half of an agent (needs the attributes :class:`BaseAgent` sets)."""

    out_dir: Path | None
    supports_resume: bool
    name: str

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
        from rlprompt.agents.core.checkpoint import global_rng_state, save_checkpoint

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
        from rlprompt.agents.core.checkpoint import flatten_state

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
        from rlprompt.agents.core.checkpoint import unflatten_state

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

        task: Any = self.task
        if getattr(task, "kind", "") == "generation":
            from rlprompt.rewards.base import reward_name

            named = [r if isinstance(r, str) else reward_name(r) for r in (task.reward, task.metric)]
            data = [task.template, *named, repr(task.settings)]
            for split in ("train", "dev", "test"):
                data.append([[ex.input, list(ex.references)] for ex in task.split(split)])
        else:
            data = [task.template, list(task.verbalizers)]
            for split in ("train", "dev", "test"):
                data.append([task.texts(split), task.label_tensor(split).tolist()])
        digest = hashlib.sha256(json.dumps(data, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]
        config = {k: v for k, v in self.config.as_dict().items() if k != "checkpoint_every"}
        return json.loads(json.dumps({
            "method": self.name, "config": config, "task": self.task.name, "data": digest,
            "model": self.engine.lm.name, "budget": self.budget.limit if self.budget else None,
        }, default=str))

    def _default_options(self) -> dict[str, Any]:
        """The config class's defaults, as the fingerprint writes options (JSON values)."""
        import json

        try:
            defaults = type(self.config)().as_dict()
        except (TypeError, ConfigError):  # a config with required fields: no defaults to fill in
            return {}
        return json.loads(json.dumps({k: v for k, v in defaults.items() if k != "checkpoint_every"}, default=str))

    def _checkpoint_to_resume(self, resume: bool | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        from rlprompt.agents.core.checkpoint import load_checkpoint, remove_checkpoint

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
        saved, now = dict(found[1].get("fingerprint", {})), self.fingerprint()
        if isinstance(saved.get("config"), dict):
            # an option added since the checkpoint was written, at its default, changes nothing it did
            saved["config"] = {**self._default_options(), **saved["config"]}
        # A larger budget extends the run (what a user wants after a rising curve); a smaller one is refused.
        diffs = [f"{key}: {saved.get(key)!r} there, {now[key]!r} here" for key in now
                 if saved.get(key) != now[key] and not (key == "budget" and _extends(saved.get(key), now[key]))]
        if diffs:
            config = [f"{k}={saved.get('config', {}).get(k)!r} there, {v!r} here"
                      for k, v in now["config"].items() if saved.get("config", {}).get(k) != v]
            detail = "; ".join(config) if config and len(diffs) == 1 else "; ".join(diffs)
            hint = (f"; resume with --budget {saved['budget']} or more (a larger budget extends the run)"
                    if [d for d in diffs if d.startswith("budget:")] else "")
            raise ConfigError(f"the checkpoint in {str(self.out_dir / 'checkpoint')!r} belongs to another run "
                              f"({detail}){hint}; rerun with the same options, or use another output folder "
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
        from rlprompt import stop

        stop.request()  # long engine calls honour it too, after a grace period
        print(f"\nrlprompt: {name}: stopping at the next checkpoint (press Ctrl-C again to stop now)",
              file=sys.stderr, flush=True)


def _extends(saved: Any, now: Any) -> bool:
    """``now`` is a larger budget than the checkpoint's ``saved`` one."""
    return isinstance(saved, (int, float)) and isinstance(now, (int, float)) and now > saved
