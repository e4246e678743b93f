"""The coordinator's audit outbox flusher (issue 14 R1): queued entries reach the log in batches
(one append transaction and one drop per batch), in order, each once, also across a SIGKILL at
any point between the state change's commit and the outbox drop; the background thread flushes
what a commit queues, and stopping flushes the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from coordinator.audit_flush import AuditFlusher, once_entry
from coordinator.db import AuditEvent, CoordinatorDb, OutboxEntry
from governance.audit import AuditEntry
from governance.errors import GovernanceError
from mpcnet.common.stores.audit import AuditLog, OnceEntry, verify_audit

KEY = Ed25519PrivateKey.generate()
ROOT = Path(__file__).resolve().parents[2]


def _open(tmp: Path) -> tuple[CoordinatorDb, AuditLog]:
    return CoordinatorDb(tmp / "coordinator.db"), AuditLog.open(tmp / "audit.db", component="coordinator", signing_key=KEY)


def _queue(db: CoordinatorDb, n: int, prefix: str = "r") -> None:
    for i in range(n):
        db.queue_audit(AuditEvent("coordinator", "sign-done", f"{prefix}{i}", "done", {"i": i}))


class CountingOutbox:
    """The database, counting drops (one per batch)."""

    def __init__(self, db: CoordinatorDb) -> None:
        self.db = db
        self.drops: list[int] = []

    def pending_audit(self, limit: int = 1000) -> list[OutboxEntry]:
        return self.db.pending_audit(limit)

    def drop_audit(self, events: list[str]) -> None:
        self.drops.append(len(events))
        self.db.drop_audit(events)


def test_the_outbox_is_flushed_in_batches_in_order_with_its_commit_time(tmp_path: Path) -> None:
    db, audit = _open(tmp_path)
    try:
        _queue(db, 7)
        queued = db.pending_audit()
        outbox = CountingOutbox(db)
        f = AuditFlusher(outbox, audit, batch=3)
        assert f.flush()
        assert outbox.drops == [3, 3, 1] and f.batches == 3 and f.flushed == 7
        entries = audit.entries()
        assert [e.request_id for e in entries] == [f"r{i}" for i in range(7)]
        assert [e.details["event"] for e in entries] == [q.event for q in queued]
        assert all(e.details["queued_ms"] == q.queued_ms for e, q in zip(entries, queued, strict=True))
        assert db.pending_audit() == [] and f.flush()
    finally:
        audit.close()
        db.close()


def test_a_batch_appended_but_not_dropped_is_not_appended_again(tmp_path: Path) -> None:
    db, audit = _open(tmp_path)
    try:
        _queue(db, 4)
        audit.append_many_once([once_entry(x) for x in db.pending_audit()[:3]])  # a flush killed before its drop
        assert AuditFlusher(db, audit).flush()
        assert [e.request_id for e in audit.entries()] == ["r0", "r1", "r2", "r3"]
        assert db.pending_audit() == []
    finally:
        audit.close()
        db.close()


class PickyLog:
    """A log that refuses the entries of one request (a field it will not take), or everything
    (``database``: a full disk)."""

    def __init__(self, audit: AuditLog, refuse: str) -> None:
        self.audit, self.refuse = audit, refuse

    def append_many_once(self, entries: list[OnceEntry]) -> list[AuditEntry | None]:
        if self.refuse == "*":
            raise GovernanceError("database", "database or disk is full")
        if any(e.request_id == self.refuse for e in entries):
            raise GovernanceError("entries[0].details", "refused")
        return self.audit.append_many_once(entries)


def test_a_refused_entry_keeps_the_rest_queued_and_the_ones_before_it_flushed(tmp_path: Path) -> None:
    db, audit = _open(tmp_path)
    try:
        _queue(db, 3)
        assert not AuditFlusher(db, PickyLog(audit, "*")).flush()  # type: ignore[arg-type]
        assert audit.entries() == [] and len(db.pending_audit()) == 3
        assert not AuditFlusher(db, PickyLog(audit, "r1")).flush()  # type: ignore[arg-type]
        assert [e.request_id for e in audit.entries()] == ["r0"]
        assert [x.audit.request_id for x in db.pending_audit()] == ["r1", "r2"]
        assert AuditFlusher(db, audit).flush()  # the log takes them again
        assert [e.request_id for e in audit.entries()] == ["r0", "r1", "r2"]
    finally:
        audit.close()
        db.close()


def test_the_background_thread_flushes_what_a_commit_queues_and_stop_flushes_the_rest(tmp_path: Path) -> None:
    db, audit = _open(tmp_path)
    try:
        f = AuditFlusher(db, audit, idle_s=30.0)
        f.soon()  # not running: inline (nothing queued)
        f.start()
        assert f.running
        _queue(db, 2)
        f.soon()
        deadline = time.monotonic() + 10
        while len(audit.entries()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e.request_id for e in audit.entries()] == ["r0", "r1"]
        _queue(db, 1, "s")  # queued, the thread not woken: stop flushes it
        f.stop()
        assert not f.running and [e.request_id for e in audit.entries()][-1] == "s0" and db.pending_audit() == []
    finally:
        audit.close()
        db.close()


CHILD = r"""
import os, signal, sys
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from coordinator.audit_flush import AuditFlusher
from coordinator.db import AuditEvent, CoordinatorDb, SignRequestRecord
from mpcnet.common.stores.audit import AuditLog

tmp, key, where = Path(sys.argv[1]), Ed25519PrivateKey.from_private_bytes(bytes.fromhex(sys.argv[2])), sys.argv[3]
db = CoordinatorDb(tmp / "coordinator.db")
audit = AuditLog.open(tmp / "audit.db", component="coordinator", signing_key=key)
rec = SignRequestRecord(
    request_id="req-kill", key_id=b"k" * 32, digest=b"d" * 32, requester="alice", request=b"r", scope=b"default",
    state="pending_approval", created_ms=1, expires_ms=2**40, signature=None, signers=(), error_code=0, error_message="",
    attempts=0, updated_ms=1,
)
db.add_sign_request(rec, rate_limit=None, audit=AuditEvent("coordinator", "sign-request", "req-kill", "pending", {}))
db.transition("req-kill", ("pending_approval",), "signing", audit=AuditEvent("coordinator", "sign-approved", "req-kill", "signing", {}))
kill = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if where == "committed":  # the state change committed with its outbox entry, no flush yet
    kill()
flusher = AuditFlusher(db, audit)
if where == "appended":  # appended to the log, the outbox not dropped yet
    db.drop_audit = kill
flusher.flush()
kill()
"""


def _run_killed(tmp: Path, where: str) -> None:
    raw = KEY.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", CHILD, str(tmp), raw, where], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr


def test_a_sigkill_at_any_point_loses_and_doubles_no_entry(tmp_path: Path) -> None:
    for where in ("committed", "appended", "dropped"):
        tmp = tmp_path / where
        tmp.mkdir()
        _run_killed(tmp, where)
        db, audit = _open(tmp)  # the restart: SignRequests.recover flushes before serving
        try:
            assert db.get_sign_request("req-kill").state == "signing"  # type: ignore[union-attr]
            assert len(db.pending_audit()) == (0 if where == "dropped" else 2)
            assert AuditFlusher(db, audit).flush()
            assert [(e.action, e.request_id) for e in audit.entries()] == [
                ("sign-request", "req-kill"), ("sign-approved", "req-kill"),
            ], where
            assert db.pending_audit() == []
            public = audit.public_key
        finally:
            audit.close()
            db.close()
        assert verify_audit(tmp / "audit.db", public).ok
