"""A stop requested by Ctrl-C or SIGTERM, honoured inside long engine calls too.

An agent's first Ctrl-C asks learning to stop at its next safe point (after a checkpoint);
a step that scores many examples can take minutes before it gets there. The engine therefore
calls :func:`check` at its chunk boundaries (batches of examples, prompt chunks, decoding
steps): once a stop has waited :data:`GRACE_SECONDS` without reaching a safe point, the call
raises ``KeyboardInterrupt`` there, and the agent keeps its best prompt so far and its last
checkpoint. Nothing is checked while no stop is requested (one global read).
"""

from __future__ import annotations

import time

GRACE_SECONDS = 3.0
"""How long a requested stop waits for a safe point before long engine calls are cut short."""

_requested_at: float | None = None


def request() -> None:
    """Ask for a stop (an agent's signal handler calls this)."""
    global _requested_at
    if _requested_at is None:
        _requested_at = time.monotonic()


def clear() -> None:
    """Forget a requested stop (when learning ends)."""
    global _requested_at
    _requested_at = None


def requested() -> bool:
    """True while a stop is requested."""
    return _requested_at is not None


def check() -> None:
    """Raise ``KeyboardInterrupt`` when a requested stop has waited past :data:`GRACE_SECONDS`."""
    if _requested_at is not None and time.monotonic() - _requested_at > GRACE_SECONDS:
        raise KeyboardInterrupt("stopped inside a long engine call (Ctrl-C or SIGTERM)")
