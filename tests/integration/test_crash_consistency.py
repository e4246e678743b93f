"""Issue 8 on real processes: one process per data directory (a second node or coordinator
started with a live one's configuration is refused, names the holder's pid and writes
nothing); a request left PENDING_APPROVAL with a full quorum stored (as a coordinator killed
between the two writes of older versions left it) is signed after a restart, and the
approver's retry gets the request back; ``audit verify`` reports a DONE request whose
coordinator log lacks its ``sign-done`` entry even though every chain is intact."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from coordinator.config import load_coordinator_config
from governance.approval import Decision, sign_approval
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import child_env, command
from mpcnet.common.keystore import load_keystore, read_passphrase
from mpcnet.common.stores.audit import AuditLog

from .conftest import running_cluster


@pytest.fixture(scope="module")
def cc(tmp_path_factory):
    with running_cluster(tmp_path_factory, "crash-2of3", 3, 2) as c:
        yield c


@pytest.fixture(scope="module")
def cteam(cc):
    with SigningTeam.from_cluster(cc.lay.dir, timeout=120) as t:
        yield t


@pytest.fixture(scope="module")
def ckey(cc):
    with MpcClient.from_cluster(cc.lay.dir, identity="admin1", timeout=120) as admin:
        return admin.create_key("crash-key")


def entries(db: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT seq, action, request_id FROM audit ORDER BY seq").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["node-1", "coordinator"])
def test_a_second_process_on_a_live_data_dir_is_refused_and_writes_nothing(cc, name: str) -> None:
    directory = cc.lay.coordinator_dir if name == "coordinator" else cc.lay.node_dir(1)
    before = entries(directory / "audit.db")
    p = subprocess.run(command(cc.lay, name), env=child_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert f"data directory {directory.resolve()} is in use by pid {cc.procs[name].pid}" in lines[0], lines[0]
    assert entries(directory / "audit.db") == before
    assert (directory / "mpcnet.lock").read_text().strip() == str(cc.procs[name].pid)
    assert cc.procs[name].poll() is None  # the live one is untouched


def test_a_full_quorum_left_pending_is_signed_after_a_restart_and_the_retry_succeeds(cc, cteam, ckey) -> None:
    digest = hashlib.sha256(b"left pending").digest()
    r = cteam.requester.submit_sign_request(ckey.key_id, digest, request_id="left-pending-1", description="crash")
    cteam.approvers[0].approve(r.request_id)
    cc.kill("coordinator")  # SIGKILL
    # the state the old two-write code left: approver2's decision stored, the request still pending
    a = sign_approval(r.request, "approver2", load_identity(cc.lay.dir, "approver2").signing_key, Decision.APPROVE)
    conn = sqlite3.connect(str(cc.lay.coordinator_dir / "coordinator.db"), isolation_level=None)
    conn.execute(
        "INSERT INTO approvals (request_id, approver, decision, signature, decided_ms, seq) VALUES (?, 'approver2', 'approve', ?, ?, 1)",
        (r.request_id, a.signature, r.request.created_at_ms + 1),
    )
    assert conn.execute("SELECT state FROM sign_requests WHERE request_id = ?", (r.request_id,)).fetchone() == ("pending_approval",)
    conn.close()
    cc.start("coordinator")
    cc.wait_healthy(["coordinator"])
    done = cteam.requester.wait_sign_request(r.request_id, timeout=60)
    assert done.state == "done", done
    again = cteam.approvers[1].approve(r.request_id)  # approver2's client retries: no ALREADY_EXISTS
    assert again.request_id == r.request_id and again.state == "done"
    # the outbox reaches the log in the background (coordinator/audit_flush.py): wait for the flush
    deadline, last = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        last = [x[1] for x in entries(cc.lay.coordinator_dir / "audit.db") if x[2] == r.request_id][-2:]
        if last == ["sign-approved", "sign-done"]:
            break
        time.sleep(0.05)
    assert last == ["sign-approved", "sign-done"]


def test_audit_verify_reports_a_done_request_without_its_sign_done_entry(cc, cteam, ckey) -> None:
    sig = cteam.sign(ckey.key_id, hashlib.sha256(b"audited, then dropped").digest())
    cc.kill("coordinator", signal.SIGTERM)
    # a log that is intact (re-chained and re-signed with the coordinator's own key) but lacks
    # the request's sign-done entry: what committing DONE before its entry could leave
    cfg = load_coordinator_config(cc.lay.coordinator_config)
    identity = load_keystore(cfg.keystore, read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)).identity
    db = cc.lay.coordinator_dir / "audit.db"
    with AuditLog.open(db, component="coordinator", signing_key=identity) as old:
        kept = [e for e in old.entries() if not (e.action == "sign-done" and e.request_id == sig.request_id)]
    for f in db.parent.glob("audit.db*"):
        f.unlink()
    stamps = iter(e.timestamp_ms for e in kept)
    with AuditLog.open(db, component="coordinator", signing_key=identity, clock=lambda: next(stamps)) as new:
        for e in kept:
            new.append(e.actor, e.action, request_id=e.request_id, outcome=e.outcome, details=e.details)
    cc.start("coordinator")
    cc.wait_healthy(["coordinator"])
    heads = cc.lay.dir / "identities" / "auditor1" / "audit-heads.json"
    heads.unlink(missing_ok=True)  # this rewrite is not what is under test here
    p = subprocess.run(
        [*command(cc.lay, "coordinator")[:1], "-m", "mpcnet.client.cli", "--cluster", str(cc.lay.dir), "--as", "auditor1",
         "audit", "verify"],
        env=child_env(), capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 1, p.stdout + p.stderr
    line = [x for x in p.stdout.splitlines() if x.startswith("coordinator ")][0]
    assert "BROKEN" in line and f"request '{sig.request_id}' is DONE but the log has no sign-done entry" in line, line
    assert "audit trail NOT verified" in p.stdout


def test_a_keygen_interrupted_after_the_key_was_recorded_is_not_run_again(cc) -> None:
    """A coordinator killed after it recorded a new key but before it marked the keygen request
    succeeded: the retry with the same request_id returns that key, not a second DKG's key."""
    with MpcClient.from_cluster(cc.lay.dir, identity="admin1", timeout=120) as admin:
        k = admin.create_key("interrupted", request_id="kg-interrupted-1")
        cc.kill("coordinator")  # SIGKILL
        conn = sqlite3.connect(str(cc.lay.coordinator_dir / "coordinator.db"), isolation_level=None)
        conn.execute("UPDATE requests SET state = 'running', key_id = NULL WHERE request_id = 'kg-interrupted-1'")  # as the kill left it
        conn.close()
        cc.start("coordinator")
        cc.wait_healthy(["coordinator"])
        assert admin.get_request("kg-interrupted-1").state == "succeeded"
        again = admin.create_key("interrupted", request_id="kg-interrupted-1")
        assert again.key_id == k.key_id
        assert [x.key_id for x in admin.list_keys() if x.label == "interrupted"] == [k.key_id]


def test_nodes_killed_right_after_signing_keep_every_audit_entry_once(cc, cteam, ckey) -> None:
    """Issue 14 (R3): a node's sign-start, sign-reserve and sign-share entries are committed with
    their state change (the audit outbox) and appended in the background; nodes SIGKILLed just
    after the signature was combined lose none of them and, once restarted (the start flushes
    the outbox), hold each exactly once. Pools on: the request may sign from a pool (one round,
    only sign-share) or with the full protocol; either way nothing is lost or doubled."""
    r = cteam.request(ckey.key_id, hashlib.sha256(b"killed right after signing").digest())
    assert r.state == "done" and r.signature is not None, r
    names = [f"node-{i}" for i in (1, 2, 3)]
    for name in names:
        cc.kill(name)  # SIGKILL, wherever the background flusher was
    for name in names:
        cc.start(name)
    cc.wait_healthy(names)
    for i in (1, 2, 3):
        acts = Counter(x[1] for x in entries(cc.lay.node_dir(i) / "audit.db") if x[2] == r.request_id)
        if i in r.signature.signers:
            # a pool signs in one round: its sign-share entry carries the self-granted reservation
            want = {"sign-share": 1} if r.presigned else {"sign-start": 1, "sign-reserve": 1, "sign-share": 1}
            assert acts == Counter(want), (i, r.presigned, acts)
        else:
            assert acts["sign-share"] == 0 and acts["sign-reserve"] <= 1, (i, acts)
        conn = sqlite3.connect(f"file:{cc.lay.node_dir(i) / 'node.db'}?mode=ro", uri=True)
        try:
            # the start flushed the request's entries (pools on: presign entries come and go meanwhile)
            assert conn.execute("SELECT COUNT(*) FROM audit_outbox WHERE request_id = ?", (r.request_id,)).fetchone() == (0,)
        finally:
            conn.close()
