"""Issue 14 (coordinator CPU): ``AuditLog.append_many_once`` links each entry of a batch to the
one it inserted before (no head read per entry) and probes the event index once per entry; the
chain, the index and the once-only rule are what they were: every entry verifies, seqs follow
each other across single appends and batches, and a stale index row (naming an entry that does
not carry its event) is replaced, never trusted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.audit import public_key_of
from mpcnet.common.stores.audit import AuditLog, OnceEntry, verify_audit

KEY = Ed25519PrivateKey.generate()


def test_batches_and_single_appends_make_one_verifying_chain(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog.open(path, component="coordinator", signing_key=KEY) as log:
        first = log.append_many_once([OnceEntry("coordinator", "sign-request", f"ev-{i}", "r1") for i in range(3)])
        assert [e.seq for e in first if e is not None] == [1, 2, 3]
        assert first[1] is not None and first[2] is not None and first[2].prev_hash == first[1].entry_hash
        single = log.append("coordinator", "policy-push")
        assert single.seq == 4 and single.prev_hash == first[2].entry_hash
        second = log.append_many_once([OnceEntry("coordinator", "sign-done", f"ev-{i}", "r2", "done", {"i": i}) for i in range(4)])
        assert [e.seq for e in second if e is not None] == [5, 6, 7, 8]
        assert second[0] is not None and second[0].prev_hash == single.entry_hash
    report = verify_audit(path, public_key_of(KEY))
    assert report.ok and report.entries == 8


def test_a_stale_index_row_is_replaced_by_the_entry_that_carries_the_event(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog.open(path, component="coordinator", signing_key=KEY) as log:
        log.append("coordinator", "policy-push")  # seq 1, no event
    conn = sqlite3.connect(path)
    with conn:  # an index row naming entries 1 and 2 for events they do not carry
        conn.execute("INSERT OR REPLACE INTO audit_events (request_id, event, seq) VALUES ('r1', 'ev-a', 1)")
        conn.execute("INSERT OR REPLACE INTO audit_events (request_id, event, seq) VALUES ('r1', 'ev-b', 2)")
    conn.close()
    with AuditLog.open(path, component="coordinator", signing_key=KEY) as log:
        batch = [OnceEntry("coordinator", "sign-request", "ev-b", "r1"), OnceEntry("coordinator", "sign-done", "ev-a", "r1")]
        out = log.append_many_once(batch)
        assert [e.seq for e in out if e is not None] == [2, 3]
        assert log.append_many_once(batch) == [None, None]
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT event, seq FROM audit_events WHERE request_id = 'r1'").fetchall()) == {"ev-b": 2, "ev-a": 3}
    conn.close()
    assert verify_audit(path, public_key_of(KEY)).ok
