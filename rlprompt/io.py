"""Safe file output: atomic writes, so an interrupted or failed write leaves no half file."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from rlprompt.errors import ConfigError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename.

    :raises ConfigError: the folder cannot be created or written (permissions, disk full).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {str(path)!r}: {write_failure(exc)}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {str(path)!r}: {write_failure(exc)}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_failure(exc: OSError) -> str:
    """Why a write failed, in words a user acts on (disk full, size limit, permissions)."""
    reason = exc.strerror or str(exc)
    hints = {
        errno.ENOSPC: "the disk is full; free some space or write elsewhere",
        errno.EDQUOT: "the disk quota is used up; free some space or write elsewhere",
        errno.EFBIG: "the file is larger than this file system or the file size limit (ulimit -f) allows",
        errno.EROFS: "the file system is read-only; choose another folder",
        errno.EACCES: "no write permission; choose another folder or fix its permissions",
    }
    hint = hints.get(exc.errno) if exc.errno is not None else None
    return f"{reason} ({hint})" if hint else reason


def _strict(obj: Any) -> Any:
    """NaN and infinities become null, so the file is strict JSON any reader accepts."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented strict JSON (NaN/inf written as null)."""
    text = json.dumps(_strict(obj), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


LOCK_NAME = ".rlprompt.lock"
_HELD: dict[str, int] = {}
"""Folders this process holds the lock of, with how many nested holders: a command that locks its
``--out`` and the agent that writes there lock it once."""


@contextmanager
def lock_folder(folder: str | Path, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on an output folder (``fcntl.flock`` on ``<folder>/.rlprompt.lock``,
    holding the owner's pid) while a command writes there; a second writer is refused. The lock
    file is removed on release (a waiter that opened the removed file notices and retries).

    Re-entrant within one process: a folder this process already holds is not locked again.

    :param what: the command, for the message (``"compare"``, ``"train"``).
    :raises ConfigError: another process holds the folder (its pid named), or it cannot be created.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create folder {str(folder)!r}: {write_failure(exc)}") from exc
    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield folder / LOCK_NAME
        finally:
            _HELD[key] -= 1
        return
    with _flock(folder, what):
        _HELD[key] = 1
        try:
            yield folder / LOCK_NAME
        finally:
            del _HELD[key]


@contextmanager
def _flock(folder: Path, what: str) -> Iterator[Path]:
    import fcntl

    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"output folder {str(folder)!r} is in use by another rlprompt process (pid {holder}); wait for it "
                f"to finish or give this {what} another --out"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file between our open and our lock: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with suppress(OSError):
            os.unlink(path)
        os.close(fd)
