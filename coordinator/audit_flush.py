"""The coordinator's audit outbox flusher: queued entries move to the hash-chained log in batches,
in the background, off the request's critical path.

Every state change commits its audit entry in the SAME transaction, as a row of the
``audit_outbox`` table of the coordinator's database (:meth:`coordinator.db.CoordinatorDb._enqueue`).
The audit log is another SQLite file, so the entry reaches it later: :class:`AuditFlusher` takes
up to ``batch`` queued rows (oldest first), appends them with ONE
:meth:`~mpcnet.common.stores.audit.AuditLog.append_many_once` transaction and drops them with ONE
:meth:`~coordinator.db.CoordinatorDb.drop_audit` transaction.

Crash safety (a SIGKILL at any point):

* before the state change commits: neither the change nor its entry exists;
* after it, before the append: the row is in the outbox; the flush at the next start
  (:meth:`coordinator.requests.SignRequests.recover`) appends it;
* after the append, before the drop: the row is appended again at the next flush, but its
  event key (``details["event"]``, unique per request in the log's ``audit_events`` index) is
  already there, so it is skipped: never lost, never doubled.

The background thread waits :data:`LINGER_S` after a wake-up before it flushes, so the state changes
of that window share one append and one drop (fewer fsyncs, and fewer of them between a
request's own commits). The log therefore lags the coordinator's database by at most one flush
(normally :data:`LINGER_S` plus milliseconds; longer while the audit log cannot be written, e.g. a
full disk, when the rows stay queued). The entry's ``timestamp_ms`` is the append time;
``details["queued_ms"]`` is when its state change committed. Readers through ``GetAuditLog`` flush
first; a verifier of the file alone sees a valid chain that may miss the newest queued entries until
the coordinator flushes them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from coordinator.db import OutboxEntry
from coordinator.store_health import StoreHealth
from governance.audit import MAX_DETAILS
from governance.errors import GovernanceError
from mpcnet.common.stores.audit import AuditLog, OnceEntry
from mpcnet.common.urgent import GATE

log = logging.getLogger("coordinator.audit")

BATCH = 256  # outbox rows per append transaction
IDLE_S = 1.0  # the flusher looks at the outbox at least this often (a backstop: commits wake it)
LINGER_S = 0.05  # after a wake-up it waits this long, so state changes close together share one batch
RETRY_S = 1.0  # after a failed flush (audit log or database unwritable), wait this long


class Outbox(Protocol):
    """The queue side (:class:`coordinator.db.CoordinatorDb`)."""

    def pending_audit(self, limit: int = 1000) -> list[OutboxEntry]: ...

    def drop_audit(self, events: list[str]) -> None: ...


def once_entry(item: OutboxEntry) -> OnceEntry:
    """The log entry of one outbox row: its event key, and ``queued_ms`` (when the state change
    committed) unless the details carry one already."""
    ev = item.audit
    details = dict(ev.details)
    if item.queued_ms is not None and len(details) < MAX_DETAILS - 1:  # room for it and the event key
        details.setdefault("queued_ms", item.queued_ms)
    return OnceEntry(ev.actor, ev.action, item.event, ev.request_id, ev.outcome, details)


class AuditFlusher:
    """Moves ``outbox`` rows to ``audit`` in batches; :meth:`flush` drains it now (callers that
    need the log complete), :meth:`soon` wakes the background thread (the request path), which
    :meth:`start` starts and :meth:`stop` stops after a last flush. Thread-safe: one flush at a
    time."""

    def __init__(
        self, outbox: Outbox, audit: AuditLog, *, batch: int = BATCH, idle_s: float = IDLE_S, linger_s: float = LINGER_S
    ) -> None:
        if not 1 <= batch <= 1000:
            raise ValueError("batch: must be 1..1000")
        self.outbox = outbox
        self.audit = audit
        self.batch = batch
        self.idle_s = idle_s
        self.linger_s = linger_s  # s; 0: flush at once
        self._lock = threading.Lock()
        self._due = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fault: Callable[[str], None] | None = None  # test mode: coordinator.faults ("audit-queued", "audit-appended")
        self.health: StoreHealth | None = None  # the coordinator's store health: the audit log's writes feed it
        self.flushed = 0  # entries appended (or found appended) by this process; tests, diagnostics
        self.batches = 0  # append transactions

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flush(self) -> bool:
        """Move every queued row to the log now (in batches of :attr:`batch`); True if the outbox
        was emptied. If the log refuses (disk full, ...) the rows stay queued and False is
        returned (logged); a database error propagates."""
        with self._lock:
            while batch := self.outbox.pending_audit(self.batch):
                if not self._append(batch):
                    return False
            return True

    def _append(self, batch: list[OutboxEntry]) -> bool:
        self._point("audit-queued")
        try:
            self.audit.append_many_once([once_entry(item) for item in batch])
        except GovernanceError as e:
            if self.health is not None:
                self.health.saw(e)  # field "database": the audit log cannot be written
            if e.field == "database" or len(batch) == 1:
                log.error("audit: %d queued entr%s stay queued: %s", len(batch), "y" if len(batch) == 1 else "ies", e)
                return False
            return self._one_by_one(batch)  # one entry the log refuses: append those before it
        self._point("audit-appended")
        if self.health is not None:
            self.health.wrote("audit log")
        self.outbox.drop_audit([item.event for item in batch])
        self.flushed += len(batch)
        self.batches += 1
        return True

    def _one_by_one(self, batch: list[OutboxEntry]) -> bool:
        for item in batch:
            if not self._append([item]):
                return False
        return True

    def _point(self, point: str) -> None:
        if self.fault is not None:
            self.fault(point)

    def soon(self) -> None:
        """A state change queued an entry: flush it in the background (inline when the thread is
        not running: tests and tools that drive the coordinator's classes directly)."""
        if self.running:
            self._due.set()
        else:
            self.flush()

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit-flush", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread, if it was started, and flush what is queued (best effort: a failure
        is logged, the rows stay queued for the next start). Without a thread (inline mode)
        nothing is done. Never waits longer than about ``timeout_s``: if the thread is still
        inside a flush then (a stuck audit log or disk), the final flush is skipped (it would
        wait for that one) and the rows stay queued for the next start."""
        self._stop.set()
        self._due.set()
        if self._thread is None:
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning(
                "audit: the flusher did not stop within %.1f s (a stuck flush); the queued entries are flushed at the next start",
                timeout_s,
            )
            return
        self._thread = None
        try:
            self.flush()
        except Exception as e:  # the database may be closing: the rows are flushed at the next start
            log.warning("audit: final flush failed (%s); the queued entries are flushed at the next start", type(e).__name__)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._due.wait(self.idle_s) and self.linger_s > 0:
                self._stop.wait(self.linger_s)  # issue 14: one append + one drop for the changes of this window
            self._due.clear()
            if self._stop.is_set():
                return
            GATE.wait_idle()  # issue 14: not while a signature is on its way (bounded; mpcnet/common/urgent.py)
            try:
                ok = self.flush()
            except Exception:
                log.exception("audit: flush failed")
                ok = False
            if not ok:
                self._stop.wait(RETRY_S)
