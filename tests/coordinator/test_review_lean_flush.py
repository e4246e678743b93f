"""Review of the lean request path (issue 14): the background audit flusher under a stuck audit
log. Stopping the coordinator must not hang behind a flush that cannot finish: the rows stay
queued (flushed at the next start), nothing is lost or doubled."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from coordinator.audit_flush import AuditFlusher
from coordinator.db import OutboxEntry
from tests.coordinator.test_audit_flush import _open, _queue


class StuckOutbox:
    """The database, whose reads block while ``stuck`` is clear (a log or disk that hangs)."""

    def __init__(self, db: object) -> None:
        self.db = db
        self.stuck = threading.Event()
        self.entered = threading.Event()
        self.release = threading.Event()

    def pending_audit(self, limit: int = 1000) -> list[OutboxEntry]:
        if self.stuck.is_set():
            self.entered.set()
            self.release.wait(10)
        return self.db.pending_audit(limit)  # type: ignore[attr-defined,no-any-return]

    def drop_audit(self, events: list[str]) -> None:
        self.db.drop_audit(events)  # type: ignore[attr-defined]


def test_stop_does_not_hang_behind_a_stuck_flush(tmp_path: Path) -> None:
    db, audit = _open(tmp_path)
    outbox = StuckOutbox(db)
    f = AuditFlusher(outbox, audit, idle_s=0.05)
    try:
        _queue(db, 3)
        outbox.stuck.set()
        f.start()
        f.soon()
        assert outbox.entered.wait(5)  # the thread is inside a flush that does not return
        done = threading.Event()

        def stop() -> None:
            f.stop(timeout_s=0.2)
            done.set()

        stopper = threading.Thread(target=stop, daemon=True)
        t0 = time.monotonic()
        stopper.start()
        assert done.wait(3), "stop() hung behind the stuck flush"
        assert time.monotonic() - t0 < 3
    finally:
        outbox.release.set()
        time.sleep(0.2)
    # the stuck flush finishes later; every entry is in the log once
    f.flush()
    rows = [e.request_id for e in audit.entries()]
    assert sorted(rows) == ["r0", "r1", "r2"]
    assert db.pending_audit() == []
    audit.close()
    db.close()


def test_a_refusal_is_logged_after_the_decision_it_refers_to(tmp_path: Path) -> None:
    """alice approves, then tries to reject: the refusal ("already decided 'approve'") is written to
    the log directly, the approval through the background outbox flush. The log must still show
    the approval first (causal order), even while the flusher is slow."""
    import pytest

    from governance.approval import Decision
    from mpcnet.common.rpc import RpcError
    from tests.coordinator.signreq_util import Harness

    h = Harness(tmp_path)
    gate, entered = threading.Event(), threading.Event()
    try:
        h.sr.flusher.start()
        sreq = h.submit("r-order")
        h.sr.flush_audit()

        def slow(point: str) -> None:
            if point == "audit-queued":
                entered.set()
                gate.wait(10)

        h.sr.flusher.fault = slow
        h.decide(sreq, "alice")
        assert entered.wait(5)  # the flusher holds alice's approval, not yet appended
        threading.Timer(0.3, gate.set).start()
        with pytest.raises(RpcError):
            h.decide(sreq, "alice", Decision.REJECT)
        gate.set()
        h.sr.flush_audit()
        outcomes = [e.outcome for e in h.audit.entries() if e.request_id == "r-order" and e.action == "sign-decision"]
        assert outcomes == ["approve", "refused"]
    finally:
        gate.set()
        h.close()


def test_two_flushers_on_separate_connections_append_each_entry_once(tmp_path: Path) -> None:
    """Two processes' flushers (an old coordinator still flushing while a new one recovers: two
    connections to each file) racing over the same outbox: every entry once, in queue order."""
    from coordinator.db import CoordinatorDb
    from mpcnet.common.stores.audit import AuditLog, verify_audit
    from tests.coordinator.test_audit_flush import KEY

    db1, audit1 = _open(tmp_path)
    db2 = CoordinatorDb(tmp_path / "coordinator.db")
    audit2 = AuditLog.open(tmp_path / "audit.db", component="coordinator", signing_key=KEY)
    try:
        _queue(db1, 40)
        flushers = [AuditFlusher(db1, audit1, batch=3), AuditFlusher(db2, audit2, batch=5)]
        threads = [threading.Thread(target=f.flush) for f in flushers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        rows = [e.request_id for e in audit1.entries()]
        assert rows == [f"r{i}" for i in range(40)]
        assert db1.pending_audit() == []
        assert verify_audit(tmp_path / "audit.db", KEY.public_key().public_bytes_raw()).ok
    finally:
        audit2.close()
        db2.close()
        audit1.close()
        db1.close()
