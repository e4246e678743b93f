"""Each store opens a database made by commit 4b7440a (before issue 8 and before versioned
migrations) and upgrades it in place: old rows intact, new tables there, the version recorded,
the same layout as a store made today. The fixtures are SQL dumps of stores that version's own
code made (see ``legacy/make_4b7440a.py``)."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.db import CoordinatorDb
from mpc_node.storage import NodeStore, Reservation, StoreError
from mpcnet.common.stores.audit import AuditLog, verify_audit

LEGACY = Path(__file__).resolve().parent / "legacy"
KEY = bytes([7]) * 32
PASS = b"legacy passphrase"
AUDIT_KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
T0 = 1_700_000_000_000
CURRENT = 12  # migration steps of the coordinator database today (6: recovery, bundles, ceremonies, drills; 7: pools; 8: FROST;
# 9: partial indexes over the live presigs and frost_nonces; 10: the store probe's row; 11: steady times; 12: steady change stamps)
NODE_CURRENT = 13  # node store (7: recovery; 8: audit outbox; 9: pools; 10: FROST keys.scheme, nonces; 11: ed25519 restores;
# 12: steady; 13: key_epoch_steady)
AUDIT_CURRENT = 3  # of the audit log (3: the audit_events index)


def _id(n: int) -> bytes:
    return bytes([n]) * 32


def _load(tmp_path: Path, name: str) -> Path:
    """A file holding the 4b7440a store ``name`` (created as that code did: plain sqlite3, 0644 for
    the coordinator, whose database was not made private then)."""
    path = tmp_path / f"{name}.db"
    conn = sqlite3.connect(path)
    try:
        conn.executescript((LEGACY / f"4b7440a_{name}.sql").read_text())
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    finally:
        conn.close()
    path.chmod(0o644)
    return path


def _layout(path: Path) -> tuple[int, set[tuple[str, str, str]]]:
    """``(user_version, {(type, name, columns or SQL)})`` of the file, read-only."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        objects: set[tuple[str, str, str]] = set()
        for kind, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
            if kind == "table":
                cols = ",".join(f"{r[1]} {r[2]} {r[3]} {r[4]}" for r in conn.execute(f"PRAGMA table_info({name})"))
                objects.add((kind, name, cols))
            else:
                objects.add((kind, name, " ".join(str(sql).replace("IF NOT EXISTS ", "").split())))
        return version, objects
    finally:
        conn.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_4b7440a_node_store_opens_and_upgrades(tmp_path: Path) -> None:
    path = _load(tmp_path, "node")
    with pytest.raises(StoreError, match="^passphrase"):
        NodeStore.open(path, b"wrong", 1, scrypt_n=2**10)
    assert _layout(path)[0] == 0  # a refused open changes nothing
    with NodeStore.open(path, PASS, 1, scrypt_n=2**10) as s:
        assert s.get_key_share(KEY) == b"legacy key share record"
        assert [(k.label, k.status) for k in s.list_keys()] == [("treasury", "active")]
        assert s.get_presignature(_id(1)) == (b"fresh presignature", False)
        assert s.get_presignature(_id(2)) == (b"tombstone", True)
        assert s.banned(KEY) == frozenset({3}) and s.request_served("req-1")
        assert s.served_times(KEY, 0) == [T0]
        assert s.policy_changes() == {b"default": [b"change-1"]}
        # what came after 4b7440a works on the upgraded file
        r = Reservation("req-2", 1, KEY, _id(8), (1, 2), _id(50), T0)
        assert s.reserve_attempt(r) and s.reservation("req-2", 1) == r
        s.probe_write(T0)
        legacy = s.key_epoch(KEY)  # a key from before epochs: epoch 0, committee 1..parties
        assert legacy is not None and legacy.epoch == 0 and legacy.committee == tuple(range(1, s.list_keys()[0].parties + 1))
    with NodeStore.open(tmp_path / "fresh.db", PASS, 1, scrypt_n=2**10):
        pass
    assert _layout(path) == _layout(tmp_path / "fresh.db") and _layout(path)[0] == NODE_CURRENT
    assert _mode(path) == 0o600


def test_a_4b7440a_audit_log_opens_and_upgrades(tmp_path: Path) -> None:
    path = _load(tmp_path, "audit")
    public = AUDIT_KEY.public_key().public_bytes_raw()
    assert verify_audit(path, public).ok
    assert _layout(path)[0] == 0  # verifying is read-only
    with AuditLog.open(path, component="node-1", signing_key=AUDIT_KEY) as log:
        assert [e.action for e in log.entries()] == ["node-start", "sign"]
        assert log.append_once("node-1", "x", event="e1", request_id="req-1") is not None
        assert log.append_once("node-1", "x", event="e1", request_id="req-1") is None
    report = verify_audit(path, public)
    assert report.ok and report.entries == 3
    with AuditLog.open(tmp_path / "fresh.db", component="node-1", signing_key=AUDIT_KEY):
        pass
    assert _layout(path) == _layout(tmp_path / "fresh.db") and _layout(path)[0] == AUDIT_CURRENT
    assert ("index", "audit_by_request", "CREATE INDEX audit_by_request ON audit (request_id)") in _layout(path)[1]


def test_a_4b7440a_coordinator_database_opens_upgrades_and_becomes_private(tmp_path: Path) -> None:
    path = _load(tmp_path, "coordinator")
    assert _mode(path) == 0o644  # how that version left it
    db = CoordinatorDb(path)
    try:
        assert _mode(path) == 0o600
        key = db.get_key(KEY)
        assert key is not None and (key.label, key.status, key.request_id) == ("treasury", "active", "keygen-1")
        req = db.get_request("keygen-1")
        assert req is not None and (req.state, req.signers) == ("succeeded", (1, 2, 3))
        sr = db.get_sign_request("req-1")
        assert sr is not None and (sr.state, sr.requester, sr.expires_ms) == ("pending_approval", "alice", T0 + 600_000)
        assert [(a.approver, a.decision) for a in db.approvals("req-1")] == [("bob", "approve")]
        assert db.policy_changes() == {b"default": [b"change-1"]}
        prop = db.get_proposal("prop-1")
        assert prop is not None and prop.proposer == "carol"
        # the tables added after 4b7440a
        assert db.pending_audit() == [] and db.next_sign_attempt("req-1") == 1
        assert db.put_attestation(b"attestation", T0) and db.attestation() == b"attestation"
        db.probe_write(T0)  # 10: the store probe's row
    finally:
        db.close()
    CoordinatorDb(tmp_path / "fresh.db").close()
    assert _layout(path) == _layout(tmp_path / "fresh.db") and _layout(path)[0] == CURRENT
