"""Review of the lean request path (issue 14): the ``audit_events`` index is outside the hash
chain, so it must never be trusted alone to decide that an entry "is already in the log". A row
written into the index by someone who can write the file but not sign (an edited copy, a
tampered disk) must not make the log silently drop a real entry, which ``verify_audit`` could
then never notice (the chain of what WAS appended is intact)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpcnet.common.stores.audit import AuditLog, OnceEntry, verify_audit

KEY = Ed25519PrivateKey.generate()


def _forge_index_row(path: Path, request_id: str, event: str, seq: int) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("INSERT INTO audit_events (request_id, event, seq) VALUES (?, ?, ?)", (request_id, event, seq))
    finally:
        conn.close()


def test_a_forged_index_row_does_not_suppress_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditLog.open(path, component="coordinator", signing_key=KEY) as log:
        log.append("coordinator", "boot")
        public = log.public_key
    _forge_index_row(path, "r1", "ev-queued", 1)  # points at an entry of another request, without that event
    _forge_index_row(path, "r1", "ev-batched", 99)  # points nowhere
    with AuditLog.open(path, component="coordinator", signing_key=KEY) as log:
        assert log.append_once("coordinator", "sign-request", event="ev-queued", request_id="r1") is not None
        out = log.append_many_once([OnceEntry("coordinator", "sign-done", "ev-batched", "r1", "done")])
        assert out[0] is not None
        # and each still lands once
        assert log.append_once("coordinator", "sign-request", event="ev-queued", request_id="r1") is None
        assert log.append_many_once([OnceEntry("coordinator", "sign-done", "ev-batched", "r1", "done")]) == [None]
        events = [e.details.get("event") for e in log.entries() if e.request_id == "r1"]
    assert events == ["ev-queued", "ev-batched"]
    assert verify_audit(path, public).ok
