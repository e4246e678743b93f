"""Issue 14 (lean path): the deciding approval's answer carries the end of a one-round signing.

A client that sets ``DecideSignRequestRequest.wait_done_ms`` and whose decision moves the request
to SIGNING gets, instead of SIGNING, the request's final state (DONE with its signature, FAILED,
EXPIRED) when the signing ends within that many milliseconds; so a signature from a presignature
pool costs the client the submit and one call per approver, and no ``WatchSignRequest`` stream
(its own call, TLS records and wake-ups on both sides). Past the bound, the coordinator stopping,
or the client leaving, the answer is the state then (still SIGNING: the client watches as before);
so is it when :data:`MAX_WAITING_DECISIONS` other answers are waiting already.

Nothing about the decision changes: it is verified, committed with its audit entry and the signing
started exactly as without the wait; the wait only reads. The wake-up is the request's own
:class:`~coordinator.watch.ChangeFeed` subscription (cleared before each read, so a change between
the read and the wait is never missed, as for a watcher).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from coordinator.watch import ChangeFeed

MAX_DECIDE_WAIT_MS = 5000
"""The largest ``wait_done_ms`` accepted (ms); larger values are INVALID_ARGUMENT naming the field."""

MAX_WAITING_DECISIONS = 24
"""Decisions whose answers wait at once (each holds one of the server's unary threads, 48 by
default, for up to :data:`MAX_DECIDE_WAIT_MS`); past it a decision is answered at once (SIGNING),
so waits never take the threads that serve other calls."""

_R = TypeVar("_R")
_slots = threading.BoundedSemaphore(MAX_WAITING_DECISIONS)


def wait_until_ended(
    feed: ChangeFeed, rid: str, read: Callable[[], _R], ended: Callable[[_R], bool], wait_ms: int,
    stop: threading.Event, ctx: Any = None, slots: threading.BoundedSemaphore | None = None,
) -> _R:
    """``read()`` once ``ended`` holds for it, or when ``wait_ms`` milliseconds (wall clock, from
    now) have passed, ``stop`` is set or the RPC ``ctx`` is no longer active, whichever comes
    first; woken by publishes of ``rid`` on ``feed``. ``read`` must not raise for a known request.
    With ``wait_ms`` <= 0, or when all ``slots`` (default: :data:`MAX_WAITING_DECISIONS` per
    process) are taken by other waits, it reads once."""
    slots = _slots if slots is None else slots
    if wait_ms <= 0 or not slots.acquire(blocking=False):
        return read()
    try:
        return _wait(feed, rid, read, ended, wait_ms, stop, ctx)
    finally:
        slots.release()


def _wait(
    feed: ChangeFeed, rid: str, read: Callable[[], _R], ended: Callable[[_R], bool], wait_ms: int,
    stop: threading.Event, ctx: Any,
) -> _R:
    end = time.monotonic() + wait_ms / 1000
    with feed.subscribe(rid) as sub:
        while True:
            sub.clear()
            out = read()
            left = end - time.monotonic()
            if ended(out) or left <= 0 or stop.is_set() or (ctx is not None and not ctx.is_active()):
                return out
            sub.wait(left)


__all__ = ["MAX_DECIDE_WAIT_MS", "MAX_WAITING_DECISIONS", "wait_until_ended"]
