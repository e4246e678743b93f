"""A keygen the coordinator was killed in after recording the key is marked succeeded at the next
start with a ``key-create`` entry (``recovered``). Review: the entry was appended after the
state change's own transaction, so a kill between the two lost it for good (the request no longer
RUNNING, nothing recovers it again). Now both are one transaction (the audit outbox).

A real ``mpc-coordinator`` process (test mode) is killed at ``audit-queued`` by the start's
recovery: the state change committed with its queued entry, not yet in the log. Started again it
appends the entry, once; the chain verifies."""

from __future__ import annotations

import json
import os
from pathlib import Path

from coordinator.config import load_coordinator_config
from coordinator.db import CoordinatorDb, KeyRecord, now_ms
from coordinator.faults import ENV as COORDINATOR_FAULT_ENV
from coordinator.service import CoordinatorService
from mpcnet.cluster.launcher import LocalCluster, prepare
from mpcnet.common.keystore import load_keystore, read_passphrase
from mpcnet.common.stores.audit import verify_audit


def test_a_kill_after_the_keygen_recovery_commits_loses_no_key_create_entry(tmp_path: Path) -> None:
    lay = prepare(tmp_path / "c", 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    cfg = load_coordinator_config(lay.coordinator_config)
    identity = load_keystore(cfg.keystore, read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)).identity
    CoordinatorService(cfg, identity).stop()  # a first start: its own entries (the initial policy...) in the log
    rid, key_id = "keygen-recovered-1", os.urandom(32)
    db = CoordinatorDb(cfg.db)  # a keygen killed after its key was recorded: the request still RUNNING
    try:
        db.create_request(rid, "keygen", label="wallet")
        db.add_key(KeyRecord(key_id, "wallet", b"\x02" + bytes(32), bytes(32), 2, 3, "active", now_ms(), rid))
    finally:
        db.close()
    fault = tmp_path / "coordinator-fault.json"
    fault.write_text(json.dumps({"action": "crash", "point": "audit-queued"}))
    c = LocalCluster(lay)
    try:
        assert c.start("coordinator", {COORDINATOR_FAULT_ENV: str(fault)}).wait(timeout=120) == 137
    finally:
        c.stop()
    assert not fault.exists()  # fired
    db = CoordinatorDb(cfg.db)
    try:  # the recovery committed with its entry queued, not yet in the log
        rec = db.get_request(rid)
        assert rec is not None and rec.state == "succeeded" and rec.key_id == key_id
        queued = [e.audit for e in db.pending_audit() if e.audit.action == "key-create"]
        assert [(a.request_id, a.outcome, a.details["recovered"]) for a in queued] == [(rid, "active", True)]
    finally:
        db.close()
    svc = CoordinatorService(cfg, identity)  # started again (in process): the outbox flushed
    try:
        entries = [e for e in svc.audit.entries() if e.action == "key-create"]
        assert svc.db.pending_audit() == []
    finally:
        svc.stop()
    assert [(e.request_id, e.outcome, e.details["key_id"], e.details["recovered"]) for e in entries] == [
        (rid, "active", key_id.hex(), True)
    ]
    report = verify_audit(cfg.audit_db, identity.public_key().public_bytes_raw())
    assert report.ok, report
