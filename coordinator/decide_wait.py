"""Issue 14 (lean path): the deciding approval's answer carries the end of a one-round signing.

A client that sets ``DecideSignRequestRequest.wait_done_ms`` and whose decision moves the request
to SIGNING gets, instead of SIGNING, the request's final state (DONE with its signature, FAILED,
EXPIRED) when the signing ends within that many milliseconds; so a signature from a presignature
pool costs the client the submit and one call per approver, and no ``WatchSignRequest`` stream
(its own call, TLS records and wake-ups on both sides). Past the bound, the coordinator stopping,
or the client leaving, the answer is the state then (still SIGNING: the client watches as before);
so is it when the process's limit of waiting answers (:func:`configure`, from the configuration's
``max_waiting_decisions``; :data:`MAX_WAITING_DECISIONS` until then) is reached.

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

MAX_WAITING_DECISIONS = 64
"""The default limit of decisions whose answers wait at once (each holds a server thread for up to
:data:`MAX_DECIDE_WAIT_MS`; the server runs that many threads on top of its ``workers``:
:func:`coordinator.main.build_server`); past it a decision is answered at once (SIGNING)."""

_R = TypeVar("_R")
_slots = threading.BoundedSemaphore(MAX_WAITING_DECISIONS)


def configure(limit: int) -> None:
    """Let at most ``limit`` (>= 0; 0: none) decisions' answers wait at once in this process from
    now on (the server start, with its configured ``max_waiting_decisions``). A wait already under
    way releases the slot it took, so the new limit holds once those end."""
    global _slots
    if limit < 0:
        raise ValueError(f"limit: must be >= 0, got {limit}")
    _slots = threading.BoundedSemaphore(limit)


def wait_until_ended(
    feed: ChangeFeed, rid: str, read: Callable[[], _R], ended: Callable[[_R], bool], wait_ms: int,
    stop: threading.Event, ctx: Any = None, slots: threading.BoundedSemaphore | None = None,
) -> _R:
    """``read()`` once ``ended`` holds for it, or when ``wait_ms`` milliseconds (wall clock, from
    now) have passed, ``stop`` is set or the RPC ``ctx`` is no longer active, whichever comes
    first; woken by publishes of ``rid`` on ``feed``. ``read`` must not raise for a known request.
    With ``wait_ms`` <= 0, or when all ``slots`` (default: the process's, :func:`configure`) are
    taken by other waits, it reads once."""
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
        add_callback = getattr(ctx, "add_callback", None)
        if add_callback is not None:
            add_callback(sub.wake)  # the RPC ending (the client left) wakes the wait at once
        while True:
            sub.clear()
            out = read()
            left = end - time.monotonic()
            if ended(out) or left <= 0 or stop.is_set() or (ctx is not None and not ctx.is_active()):
                return out
            sub.wait(left)


__all__ = ["MAX_DECIDE_WAIT_MS", "MAX_WAITING_DECISIONS", "configure", "wait_until_ended"]
