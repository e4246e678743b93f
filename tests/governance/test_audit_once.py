"""``AuditLog.append_once``: an event delivered twice (an outbox flushed again after a crash) is
appended once; the event key is recorded in the details; logs created before the request-id
index get it on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.audit import check_entry_fields
from governance.errors import GovernanceError
from mpcnet.common.stores.audit import AuditLog, verify_audit

KEY = Ed25519PrivateKey.generate()


def test_an_event_is_appended_once(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path / "a.db", component="coordinator", signing_key=KEY) as log:
        first = log.append_once("coordinator", "sign-done", event="ev-1", request_id="r1", outcome="done", details={"n": 1})
        assert first is not None and first.details == {"event": "ev-1", "n": 1}
        log.append("coordinator", "sign-done", request_id="r2", details={"event": "ev-2"})
        assert log.append_once("coordinator", "sign-done", event="ev-1", request_id="r1", outcome="done") is None
        assert log.append_once("coordinator", "sign-failed", event="ev-2", request_id="r2") is None
        assert log.append_once("coordinator", "sign-done", event="ev-3", request_id="r1") is not None
        assert [e.details.get("event") for e in log.entries()] == ["ev-1", "ev-2", "ev-3"]
        with pytest.raises(GovernanceError) as e:
            log.append_once("coordinator", "x", event="ev-4", request_id="r1", details={"event": "ev-5"})
        assert e.value.field == "details['event']"
        with pytest.raises(GovernanceError) as e:
            log.append_once("coordinator", "x", event="Bad Event", request_id="r1")
        assert e.value.field == "event"
        public = log.public_key
    assert verify_audit(tmp_path / "a.db", public).ok


def test_an_old_log_gets_the_request_index_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with AuditLog.open(path, component="node-1", signing_key=KEY) as log:
        log.append("node-1", "node-start")
    conn = sqlite3.connect(str(path))
    conn.execute("DROP INDEX audit_by_request")
    conn.execute("PRAGMA user_version = 0")  # logs made before versioned migrations
    conn.close()
    with AuditLog.open(path, component="node-1", signing_key=KEY) as log:
        assert log.append_once("node-1", "x", event="e1", request_id="r") is not None
    conn = sqlite3.connect(str(path))
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit_by_request'").fetchone()
    conn.close()


def test_check_entry_fields_names_the_field() -> None:
    assert dict(check_entry_fields("a", "b", "r-1", "", {"z": 1, "a": "x"})) == {"a": "x", "z": 1}
    for args, field in (
        (("a b", "b", "", "", None), "actor"),
        (("a", "B", "", "", None), "action"),
        (("a", "b", "r 1", "", None), "request_id"),
        (("a", "b", "", "", {"seed": "1"}), "details['seed']"),
    ):
        with pytest.raises(GovernanceError) as e:
            check_entry_fields(*args)
        assert e.value.field == field
