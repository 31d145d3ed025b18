"""An SB3 replay buffer in checkpoints: its filled part as named tensors (safetensors, never pickle)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["buffer_state", "restore_buffer"]


def buffer_state(buffer: Any, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The filled part of an SB3 replay buffer (its arrays go into ``tensors``)."""
    n = buffer.buffer_size if buffer.full else buffer.pos
    arrays: list[str] = []
    for name, value in vars(buffer).items():
        items = value.items() if isinstance(value, dict) else [("", value)]
        for sub, arr in items:
            if isinstance(arr, np.ndarray) and arr.ndim >= 1 and arr.shape[0] == buffer.buffer_size:
                key = f"{name}/{sub}" if sub else name
                tensors[f"sb3/buffer/{key}"] = torch.from_numpy(np.ascontiguousarray(arr[:n]))
                arrays.append(key)
    return {"pos": int(buffer.pos), "full": bool(buffer.full), "size": int(n), "arrays": arrays}


def restore_buffer(buffer: Any, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Puts the arrays saved by :func:`buffer_state` back into an SB3 replay buffer."""
    n = int(state["size"])
    for key in state["arrays"]:
        name, _, sub = key.partition("/")
        target = getattr(buffer, name)
        target = target[sub] if sub else target
        target[:n] = tensors[f"sb3/buffer/{key}"].numpy()
    buffer.pos, buffer.full = int(state["pos"]), bool(state["full"])
