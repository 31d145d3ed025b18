"""Checkpoints of a learning run: ``out_dir/checkpoint/``, written atomically, no pickle.

A checkpoint is a folder of two files:

- ``state.safetensors``: every tensor (learnable prompts and networks, optimiser
  moments, replay buffers, ``torch.get_rng_state()`` and generator states as uint8
  tensors);
- ``state.json``: everything else (budget counters, best prompts and curve, loop
  position, numpy and Python RNG states, the run's fingerprint).

It is written into a temporary folder beside it (each file fsynced), then renamed into
place; the previous checkpoint is renamed aside first and removed after, so at every
moment one complete checkpoint exists (:func:`checkpoint_folder` finds it).
Loading never unpickles: tensors come from safetensors, the rest from JSON.

Helpers here turn nested state (an optimiser's ``state_dict``, SB3's parameters) into
flat tensors plus a JSON tree (:func:`flatten_state` / :func:`unflatten_state`), and
capture the global RNGs (:func:`global_rng_state` / :func:`restore_global_rng_state`).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlprompt.errors import ConfigError, DataError

FORMAT = "rlprompt-checkpoint"
VERSION = 1
FOLDER = "checkpoint"
_TENSOR_KEY = "__tensor__"


# -- nested state <-> flat tensors + JSON -------------------------------------------------------


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-ready copy of ``obj`` whose tensors are moved into ``tensors``.

    Each tensor is stored under ``prefix/<path>`` (a CPU, contiguous copy) and replaced by
    ``{"__tensor__": name}``; dicts, lists, tuples, numbers, strings and None are kept
    (tuples become lists, non-string dict keys are kept as ``[[key, value], ...]``).

    :param obj: a nested structure (e.g. ``optimizer.state_dict()``).
    :param prefix: name prefix of its tensors.
    :param tensors: where the tensors go.
    :raises TypeError: an object that is neither of those (it would need pickle).
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {_TENSOR_KEY: prefix}
    if isinstance(obj, np.ndarray):
        return flatten_state(torch.from_numpy(np.ascontiguousarray(obj)), prefix, tensors)
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: flatten_state(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[_plain(k), flatten_state(v, f"{prefix}/{i}", tensors)]
                              for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return [flatten_state(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    return _plain(obj)


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {"__float__": repr(value)}
    raise TypeError(f"cannot checkpoint a {type(value).__name__} without pickle")


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor], device: str | torch.device | None = None) -> Any:
    """The inverse of :func:`flatten_state` (lists stay lists: ``state_dict`` loaders accept them).

    :param tree: the JSON tree.
    :param tensors: the tensors it names.
    :param device: move tensors there (None: CPU).
    """
    if isinstance(tree, dict):
        if _TENSOR_KEY in tree:
            t = tensors[tree[_TENSOR_KEY]]
            return t.to(device) if device is not None else t
        if "__float__" in tree:
            return float(tree["__float__"])
        if "__items__" in tree:
            return {k: unflatten_state(v, tensors, device) for k, v in tree["__items__"]}
        return {k: unflatten_state(v, tensors, device) for k, v in tree.items()}
    if isinstance(tree, list):
        return [unflatten_state(v, tensors, device) for v in tree]
    return tree


def optimizer_state(optimizer: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """An optimiser's ``state_dict`` as a JSON tree (tensors moved into ``tensors``)."""
    return flatten_state(optimizer.state_dict(), prefix, tensors)


def load_optimizer_state(optimizer: torch.optim.Optimizer, tree: Any, tensors: dict[str, torch.Tensor]) -> None:
    """Load a state saved by :func:`optimizer_state` (integer state keys restored)."""
    state = unflatten_state(tree, tensors)
    state["state"] = {int(k): v for k, v in state.get("state", {}).items()}
    optimizer.load_state_dict(state)


# -- random number generators --------------------------------------------------------------------


def generator_state(gen: torch.Generator) -> torch.Tensor:
    """A torch generator's state (a uint8 tensor, for safetensors)."""
    return gen.get_state().clone()


def numpy_generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """A numpy Generator's ``bit_generator.state`` (JSON-ready)."""
    return _jsonable(rng.bit_generator.state)


def set_numpy_generator_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def global_rng_state(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Capture torch's (CPU and CUDA), numpy's global and Python's ``random`` states.

    Torch states go into ``tensors`` (``rng/torch``, ``rng/cuda/<i>``); the rest is returned as JSON.
    """
    tensors["rng/torch"] = torch.get_rng_state()
    cuda = 0
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = state
            cuda += 1
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    return {
        "cuda_devices": cuda,
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def restore_global_rng_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Restore the states captured by :func:`global_rng_state`."""
    torch.set_rng_state(tensors["rng/torch"])
    n = int(meta.get("cuda_devices", 0))
    if n and torch.cuda.is_available() and torch.cuda.device_count() >= n:
        torch.cuda.set_rng_state_all([tensors[f"rng/cuda/{i}"] for i in range(n)])
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# -- the folder --------------------------------------------------------------------------------


def checkpoint_folder(out_dir: str | Path) -> Path | None:
    """The complete checkpoint in ``out_dir`` (``checkpoint/``, or the previous one kept
    aside while a new one was being renamed into place), or None."""
    out_dir = Path(out_dir)
    for folder in (out_dir / FOLDER, out_dir / f".{FOLDER}.old"):
        if (folder / "state.json").is_file() and (folder / "state.safetensors").is_file():
            return folder
    return None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(out_dir: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``out_dir/checkpoint/`` atomically (temp folder, fsync, rename).

    :param out_dir: the run's output folder.
    :param tensors: named tensors (saved with safetensors; shared storage is copied apart).
    :param meta: JSON-ready state (NaN and infinities are written as strings and read back).
    :returns: the checkpoint folder.
    :raises ConfigError: the folder cannot be written (permissions, disk full).
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    final, old = out_dir / FOLDER, out_dir / f".{FOLDER}.old"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER}.", suffix=".tmp", dir=out_dir))
    except OSError as exc:
        raise ConfigError(f"cannot write a checkpoint in {str(out_dir)!r}: {exc.strerror or exc}") from exc
    try:
        plain = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
        save_file(plain, str(tmp / "state.safetensors"), metadata={"format": FORMAT})
        text = json.dumps({"format": FORMAT, "version": VERSION, **_encode_floats(meta)}, indent=1,
                          allow_nan=False, ensure_ascii=False)
        (tmp / "state.json").write_text(text + "\n", encoding="utf-8")
        for name in ("state.safetensors", "state.json"):
            with (tmp / name).open("rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"cannot write a checkpoint in {str(out_dir)!r}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_checkpoint(out_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The checkpoint in ``out_dir`` as (tensors on CPU, meta), or None when there is none.

    :raises DataError: a checkpoint that cannot be read.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = checkpoint_folder(out_dir)
    if folder is None:
        return None
    try:
        meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "state.safetensors"), device="cpu")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as exc:
        raise DataError(f"cannot read the checkpoint {str(folder)!r}: {exc}; delete it to start afresh") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{str(folder)!r} is not an rlprompt checkpoint; delete it to start afresh")
    if meta.get("version") != VERSION:
        raise DataError(f"checkpoint {str(folder)!r} has version {meta.get('version')!r}; this rlprompt reads "
                        f"version {VERSION}; delete it to start afresh")
    return tensors, _decode_floats(meta)


def _encode_floats(obj: Any) -> Any:
    """JSON has no NaN/inf: write them as ``{"__float__": "nan"}``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if isinstance(obj, dict):
        return {k: _encode_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode_floats(v) for v in obj]
    return obj


def _decode_floats(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__float__"}:
            return float(obj["__float__"])
        return {k: _decode_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode_floats(v) for v in obj]
    return obj


def remove_checkpoint(out_dir: str | Path) -> None:
    """Delete ``out_dir``'s checkpoint (a fresh run must not be resumed from an older one)."""
    out_dir = Path(out_dir)
    for folder in (out_dir / FOLDER, out_dir / f".{FOLDER}.old"):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
