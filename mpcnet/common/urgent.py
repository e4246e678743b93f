"""Priority for the signing path over background audit flushes (issue 14, lean path).

A background audit flush (the coordinator's :class:`coordinator.audit_flush.AuditFlusher`, a node's
:class:`mpc_node.audit_outbox.AuditOutbox`) makes two fsync'd commits (the log's append, the
outbox's drop), takes the store's write lock for the drop and holds the GIL for its JSON and
hashing. Started while a signature is on its way (quorum -> fan-out -> the node's consume commit
-> DONE) it delays that signature by about one flush. :data:`GATE` lets the signing path say
"urgent work in progress" (:meth:`UrgentGate.section`) and a flusher wait, before it starts a
flush, until none is (:meth:`UrgentGate.wait_idle`), for at most a bound (so flushes are only
deferred, never starved: under continuous signing they run every bound).

Nothing about durability changes: the entries are already committed in the outbox, in the same
transaction as their state change; only their move to the log is deferred by at most the bound.
One gate per process (the flushers and the signing path of a process share the GIL, the disk and
the store's locks). Thread-safe.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

MAX_DEFER_S = 0.1  # the longest a flusher waits for the signing path (s)


class UrgentGate:
    """Counts urgent sections in progress; flushers wait for none (bounded)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active = 0

    @property
    def active(self) -> int:
        """Urgent sections in progress now."""
        with self._cond:
            return self._active

    @contextlib.contextmanager
    def section(self) -> Iterator[None]:
        """Mark urgent work (one signature's critical path) for the duration of the block."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if self._active == 0:
                    self._cond.notify_all()

    def wait_idle(self, max_s: float = MAX_DEFER_S) -> float:
        """Wait until no urgent section is in progress, or ``max_s`` seconds; the seconds waited."""
        t0 = time.monotonic()
        with self._cond:
            if self._active:
                self._cond.wait_for(lambda: self._active == 0, timeout=max_s)
        return time.monotonic() - t0


GATE = UrgentGate()
"""The process's gate (the signing path enters it, the audit flushers wait on it)."""

__all__ = ["GATE", "MAX_DEFER_S", "UrgentGate"]
