"""Change notification for watchers of signing requests, one request at a time.

A ``WatchSignRequest`` stream subscribes to its own request; a change of that request wakes
only its subscribers (not every watcher of every request), and :meth:`ChangeFeed.publish_all`
wakes everyone (a restart's recovery, the coordinator stopping). A subscriber clears its flag
*before* it reads the request and waits only if nothing was published since, so no change
between the read and the wait is missed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Subscription:
    """One watcher's wake-up flag (set by a publish, or by :meth:`wake`)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def clear(self) -> None:
        """Call before reading the request's state."""
        self._event.clear()

    def wait(self, timeout: float) -> bool:
        """Block until woken or ``timeout`` seconds pass; True if woken."""
        return self._event.wait(max(0.0, timeout))

    def wake(self) -> None:
        self._event.set()


class ChangeFeed:
    """Request id -> its current subscribers. Thread-safe; holds nothing for requests nobody watches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = {}

    def publish(self, request_id: str) -> None:
        """``request_id`` changed: wake its watchers."""
        with self._lock:
            subs = tuple(self._subs.get(request_id, ()))
        for s in subs:
            s.wake()

    def publish_all(self) -> None:
        with self._lock:
            subs = [s for group in self._subs.values() for s in group]
        for s in subs:
            s.wake()

    def watching(self, request_id: str) -> int:
        """How many subscribers ``request_id`` has (tests, diagnostics)."""
        with self._lock:
            return len(self._subs.get(request_id, ()))

    @contextmanager
    def subscribe(self, request_id: str) -> Iterator[Subscription]:
        sub = Subscription()
        with self._lock:
            self._subs.setdefault(request_id, set()).add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                group = self._subs.get(request_id)
                if group is not None:
                    group.discard(sub)
                    if not group:
                        del self._subs[request_id]
