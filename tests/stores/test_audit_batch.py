"""``AuditLog.append_many_once`` (one transaction per batch, each event key once per request) and
the ``audit_events`` index (issue 14 R2): an old log is backfilled on open, so an event appended
before the upgrade is still recognised."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.errors import GovernanceError
from mpcnet.common.stores.audit import MAX_BATCH, AuditLog, OnceEntry, verify_audit

KEY = Ed25519PrivateKey.generate()


def test_a_batch_is_one_transaction_and_each_event_lands_once(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog.open(path, component="coordinator", signing_key=KEY) as log:
        assert log.append_once("coordinator", "sign-request", event="ev-1", request_id="r1") is not None
        batch = [
            OnceEntry("coordinator", "sign-request", "ev-1", "r1"),  # already in the log
            OnceEntry("coordinator", "sign-approved", "ev-2", "r1", "signing", {"n": 2}),
            OnceEntry("coordinator", "sign-done", "ev-3", "r1", "done"),
            OnceEntry("coordinator", "sign-done", "ev-3", "r1", "done"),  # twice in one batch
            OnceEntry("coordinator", "sign-request", "ev-1", "r2"),  # the same key for another request
        ]
        out = log.append_many_once(batch)
        assert [None if e is None else e.seq for e in out] == [None, 2, 3, None, 4]
        assert len({e.timestamp_ms for e in out if e is not None}) == 1  # one transaction, one clock reading
        again = log.append_many_once(batch)  # a batch delivered again (a crash before the outbox drop)
        assert again == [None] * len(batch)
        entries = log.entries()
        assert [(e.request_id, e.details["event"]) for e in entries] == [("r1", "ev-1"), ("r1", "ev-2"), ("r1", "ev-3"), ("r2", "ev-1")]
        assert entries[1].details == {"event": "ev-2", "n": 2}
        assert log.append_many_once([]) == []
        public = log.public_key
    assert verify_audit(path, public).ok


def test_a_bad_entry_refuses_the_whole_batch_naming_it(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path / "a.db", component="coordinator", signing_key=KEY) as log:
        for entries, field in (
            ([OnceEntry("coordinator", "x", "ev-1"), OnceEntry("coordinator", "x", "Bad Event")], "entries[1].event"),
            ([OnceEntry("coordinator", "x", "ev-1", details={"event": "ev-9"})], "entries[0].details['event']"),
            ([OnceEntry("coordinator", "X", "ev-1")], "entries[0].action"),
            ([OnceEntry("coordinator", "x", "ev-1", "r 1")], "entries[0].request_id"),
            (["not an entry"], "entries[0]"),
            ([OnceEntry("coordinator", "x", f"ev-{i}") for i in range(MAX_BATCH + 1)], "entries"),
        ):
            with pytest.raises(GovernanceError) as e:
                log.append_many_once(entries)  # type: ignore[arg-type]
            assert e.value.field == field
        assert log.entries() == []  # nothing of a refused batch


def test_an_entry_appended_plainly_with_an_event_key_counts(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path / "a.db", component="node-1", signing_key=KEY) as log:
        log.append("node-1", "x", request_id="r", details={"event": "e1"})
        assert log.append_many_once([OnceEntry("node-1", "x", "e1", "r")]) == [None]


def test_an_old_log_is_backfilled_into_the_event_index(tmp_path: Path) -> None:
    """A log of version 2 (no ``audit_events``): its event keys are indexed on open, the first
    entry of a key wins, and unreadable details are skipped (verify_audit's business)."""
    path = tmp_path / "old.db"
    with AuditLog.open(path, component="coordinator", signing_key=KEY) as log:
        log.append_once("coordinator", "sign-request", event="ev-1", request_id="r1")
        log.append("coordinator", "node-start")
        log.append("coordinator", "sign-done", request_id="r1", details={"event": "ev-2"})
        log.append("coordinator", "sign-done", request_id="r1", details={"event": "ev-2"})  # a duplicate (old bug)
        log.append("coordinator", "x", request_id="r1", details={"event": 7})  # not a key
    conn = sqlite3.connect(str(path))
    conn.execute("DROP TABLE audit_events")
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    with AuditLog.open(path, component="coordinator", signing_key=KEY) as log:
        assert log.append_once("coordinator", "sign-request", event="ev-1", request_id="r1") is None
        assert log.append_many_once([OnceEntry("coordinator", "sign-done", "ev-2", "r1")]) == [None]
        assert log.append_once("coordinator", "y", event="ev-3", request_id="r1") is not None
        public = log.public_key
    conn = sqlite3.connect(str(path))
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
        assert conn.execute("SELECT request_id, event, seq FROM audit_events ORDER BY seq").fetchall() == [
            ("r1", "ev-1", 1), ("r1", "ev-2", 3), ("r1", "ev-3", 6),
        ]
    finally:
        conn.close()
    assert verify_audit(path, public).ok
