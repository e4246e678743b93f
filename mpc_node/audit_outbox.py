"""The node's audit outbox: audit entries committed with the state change they record.

A node's audit log is its own SQLite file, so appending an entry after the store's transaction
costs a second fsync on the signing path (``sign-start``, ``sign-reserve``, ``sign-share``).
Instead the entry is inserted into the store's ``audit_outbox`` table **in the same
transaction** as the state change (the reservation, the tombstone with the served record, or
the session start itself): both are durable together, or neither is. The
:class:`AuditFlusher` then appends the queued entries to the hash-chained log in batches, oldest
first, in one transaction per batch (:meth:`mpcnet.common.stores.audit.AuditLog.append_many_once`).
The appended rows are deleted from the outbox by the *next* outbox write (the next state
change's own transaction: no commit of its own) or, when the node is idle, by the flusher's
once-a-second pass. Each entry carries a random ``event`` token (kept as ``details["event"]``)
and the append skips an event already in the log, so a SIGKILL after the append and before the
delete appends nothing twice when the outbox is flushed again; a SIGKILL before the state
change's commit leaves neither. At start the outbox is flushed (and emptied) before the node
serves.

The log's ``before_use`` hook runs :meth:`AuditFlusher.flush` before every read and direct
append, so a reader (``GetAuditLog``, the metrics) sees every entry whose state change committed,
and an entry appended directly (a refusal) follows the queued entries before it.

Table (migration 8 of :mod:`mpc_node.storage`)::

    audit_outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT UNIQUE, actor, action,
                 request_id, outcome, details TEXT (canonical JSON), created_ms INTEGER)
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from governance.audit import EVENT_KEY, DetailValue, check_details, check_entry_fields
from governance.errors import GovernanceError
from governance.text import escape
from mpcnet.common.stores.audit import AuditLog, QueuedEntry
from mpcnet.common.urgent import GATE

log = logging.getLogger("mpc_node.audit_outbox")

OUTBOX_TABLE = (
    "CREATE TABLE IF NOT EXISTS audit_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL UNIQUE,"
    " actor TEXT NOT NULL, action TEXT NOT NULL, request_id TEXT NOT NULL, outcome TEXT NOT NULL,"
    " details TEXT NOT NULL, created_ms INTEGER NOT NULL)"
)
COMMITTED_KEY = "committed_ms"  # details key: when the entry (and its state change) committed to the store, Unix ms
BATCH = 256  # entries per append transaction
LINGER_S = 0.05  # the flusher waits this long after a wake-up, so commits close together share a batch


@dataclass(frozen=True)
class OutboxRow(QueuedEntry):
    """A queued entry with its place in the outbox (``seq``, increasing, never reused)."""

    seq: int = 0


@dataclass(frozen=True)
class OutboxEntry:
    """An audit entry to queue with a state change; checked like
    :meth:`mpcnet.common.stores.audit.AuditLog.append` on construction (GovernanceError naming
    the field), so a queued entry can always be appended: ``details`` must not use the keys
    ``event`` and ``committed_ms`` (the outbox's) and, with them added, must still pass
    :func:`governance.audit.check_details` (at most ``MAX_DETAILS - 2`` items)."""

    actor: str
    action: str
    request_id: str
    outcome: str
    details: Mapping[str, DetailValue]

    def __post_init__(self) -> None:
        checked = check_entry_fields(self.actor, self.action, self.request_id, self.outcome, self.details)
        for key in (EVENT_KEY, COMMITTED_KEY):
            if key in checked:
                raise GovernanceError(f"details[{key!r}]", "is reserved for the outbox")
        check_details({**checked, EVENT_KEY: new_event(), COMMITTED_KEY: 0})  # as appended (else it would block the outbox for good)
        object.__setattr__(self, "details", dict(checked))


def new_event() -> str:
    """A fresh once-only event token (``n`` + 24 hex digits, 96 random bits)."""
    return "n" + os.urandom(12).hex()


def queue(c: sqlite3.Connection, entry: OutboxEntry, now_ms: int, appended_seq: int = 0) -> str:
    """Inside the caller's write transaction: queue ``entry`` and delete the rows up to
    ``appended_seq`` (already in the log); returns the new entry's event token."""
    if not isinstance(entry, OutboxEntry):
        raise TypeError("entry: must be an OutboxEntry")
    if appended_seq > 0:
        c.execute("DELETE FROM audit_outbox WHERE seq <= ?", (appended_seq,))
    event = new_event()
    c.execute(
        "INSERT INTO audit_outbox (event, actor, action, request_id, outcome, details, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (event, entry.actor, entry.action, entry.request_id, entry.outcome,
         json.dumps(dict(entry.details), sort_keys=True, separators=(",", ":")), now_ms),
    )
    return event


def pending(c: sqlite3.Connection, limit: int, after_seq: int = 0) -> list[OutboxRow]:
    """The oldest ``limit`` queued entries after ``after_seq``, in queue order; each one's details
    carry ``committed_ms`` (when it was queued: the log stamps it when it is appended, which
    after a crash is the next start)."""
    rows = c.execute(
        "SELECT seq, event, actor, action, request_id, outcome, details, created_ms FROM audit_outbox WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    ).fetchall()
    out = []
    for seq, event, actor, action, rid, outcome, details, created_ms in rows:
        fields = {**json.loads(details), COMMITTED_KEY: int(created_ms)}
        out.append(OutboxRow(str(event), str(actor), str(action), str(rid), str(outcome), fields, int(seq)))
    return out


def drop(c: sqlite3.Connection, upto_seq: int) -> int:
    """Inside a write transaction: delete the rows up to ``upto_seq`` (appended to the log);
    returns how many."""
    return int(c.execute("DELETE FROM audit_outbox WHERE seq <= ?", (upto_seq,)).rowcount)


class OutboxStore(Protocol):
    """What the flusher needs from the node store (:class:`mpc_node.storage.NodeStore`)."""

    audit_appended_seq: int  # the rows up to here are in the log: the next outbox write deletes them

    def pending_audit(self, limit: int = BATCH, after_seq: int = 0) -> list[OutboxRow]: ...
    def drop_audit(self, upto_seq: int) -> int: ...


PROBLEM_CHARS = 200  # the most of a failure's text kept in :attr:`AuditFlusher.problem` and the log


def problem_text(e: BaseException) -> str:
    """What a failed flush tells the operator: the reason of a log, store or file-system error
    (``database: database or disk is full``), escaped onto one line and cut to
    :data:`PROBLEM_CHARS`; only the type name of anything else (its text is not ours to show)."""
    if isinstance(e, (GovernanceError, sqlite3.Error, OSError)):
        text = escape(e)
        return text if len(text) <= PROBLEM_CHARS else text[: PROBLEM_CHARS - 3] + "..."
    return type(e).__name__


class AuditFlusher:
    """Moves queued entries from the store's outbox to the audit log, in batches.

    :meth:`flush` runs synchronously (at start, before every use of the log through its
    ``before_use`` hook, and from the background thread started by :meth:`start` whenever
    :meth:`notify` is called). Thread-safe; one flush at a time. A failure (the store or the log
    cannot be written) leaves the entries queued for the next flush; it is logged, never raised
    from the hook or the thread.
    """

    def __init__(self, store: OutboxStore, audit: AuditLog, *, batch: int = BATCH, linger_s: float = LINGER_S) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError("batch: must be an int >= 1")
        self.store = store
        self.audit = audit
        self.batch = batch
        self.linger_s = linger_s
        self.batches = 0  # append transactions made (tests, metrics)
        # why the last flush failed ("" after a success): a node refuses new signing sessions
        # while it is set (else it would release shares that never reach the log)
        self.problem = ""
        self.on_batch: Callable[[int], None] | None = None  # test hook: after the append, before the drop
        self._lock = threading.Lock()
        self._local = threading.local()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"AuditFlusher(batch={self.batch}, batches={self.batches})"

    def attach(self) -> None:
        """Flush before every read and write of the log (its ``before_use`` hook)."""
        self.audit.before_use = self._before_use

    def _before_use(self) -> None:
        if getattr(self._local, "busy", False):
            return  # the flush's own append
        try:
            self.flush(drop=False)
        except Exception as e:  # the caller's own read or append reports a broken log itself
            log.warning("audit outbox not flushed: %s", problem_text(e))

    def flush(self, *, drop: bool = True) -> int:
        """Append every queued entry (oldest first, ``batch`` per transaction); returns how many
        were appended (a repeat of an event already in the log is skipped). With ``drop``, then
        delete the appended rows from the outbox (a commit; without it the next outbox write
        deletes them). Raises what the store or the log raises (and sets :attr:`problem` to
        its reason, :func:`problem_text`, until a flush succeeds)."""
        total = 0
        with self._lock:
            self._local.busy = True
            try:
                total = self._flush(drop)
            except Exception as e:
                self.problem = problem_text(e)
                raise
            else:
                self.problem = ""
            finally:
                self._local.busy = False
        return total

    def _flush(self, drop: bool) -> int:
        """Under :attr:`_lock`: :meth:`flush`'s work."""
        total = 0
        while items := self.store.pending_audit(self.batch, self.store.audit_appended_seq):
            total += self.audit.append_queued(items)
            self.batches += 1
            if self.on_batch is not None:
                self.on_batch(len(items))
            self.store.audit_appended_seq = max(it.seq for it in items)
            if len(items) < self.batch:
                break
        if drop and self.store.audit_appended_seq:
            self.store.drop_audit(self.store.audit_appended_seq)
        return total

    def notify(self) -> None:
        """An entry was queued: wake the background flusher."""
        self._wake.set()

    def start(self) -> threading.Thread:
        """Start the background flusher (a daemon thread); :meth:`stop` ends it after a last flush."""
        t = threading.Thread(target=self._run, name="audit-outbox", daemon=True)
        self._thread = t
        t.start()
        return t

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            woken = self._wake.wait(1.0)  # else a backstop pass: a failed flush, appended rows of an idle node
            if self._stop.is_set():
                break
            self._wake.clear()
            if woken and self.linger_s:
                self._stop.wait(self.linger_s)
            GATE.wait_idle()  # issue 14: not while a share is on its way (bounded; mpcnet/common/urgent.py)
            try:
                self.flush(drop=not woken)
                if failing:
                    log.info("audit outbox flushed again: the queued entries are in the log")
                failing = False
            except Exception as e:  # the thread must survive; the entries stay queued
                if self._store_closed():  # the node is stopping (its store closed first): not a failure
                    log.info("audit outbox: the store is closed; the flusher stops (queued entries are flushed at the next start)")
                    return
                if not failing:  # once per streak of failures (the backstop pass retries every second)
                    log.error("audit outbox flush failed (entries stay queued): %s", problem_text(e))
                failing = True
        if self._store_closed():
            return
        try:
            self.flush()
        except Exception as e:
            log.error("audit outbox: last flush failed (entries stay queued for the next start): %s", problem_text(e))

    def _store_closed(self) -> bool:
        """Whether the store was closed under the flusher (a stopping node): its entries stay
        queued in the database file and the next start flushes them."""
        return bool(getattr(self.store, "closed", False))
