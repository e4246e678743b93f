"""Presignature pools end to end (issue 14): a real 2-of-3 cluster with ``presign.enabled``
signs from the pool in one round; a coordinator SIGKILLed after an assignment (before any send,
or after a partial send) finishes the request after its restart within MAX_SIGN_ATTEMPTS with no
presig_id used twice; a refresh discards the pool of the old epoch."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from coordinator.faults import ENV as FAULT_ENV
from governance.keyop import KeyOpKind
from governance.reservation import MAX_SIGN_ATTEMPTS
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.wire.mpc.v1 import coordinator_pb2

from .conftest import make_cluster
from .test_cluster_api import verify_independently
from .test_faults import clear_fault, fault_pending, revive, set_fault
from .test_governance import released
from .test_key_operations import _run_operation

PRESIGN = {"enabled": True, "paths": [[]], "target": 4, "refill_at": 2, "cap": 8, "batch": 2, "max_parallel": 1}


@pytest.fixture(scope="module")
def pc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "presign-2of3", 3, 2, fault_files=True)
    doc = json.loads(c.lay.coordinator_config.read_text())
    doc["presign"] = PRESIGN
    c.lay.coordinator_config.write_text(json.dumps(doc))
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def admins(pc: LocalCluster) -> Iterator[tuple[MpcClient, MpcClient]]:
    with MpcClient.from_cluster(pc.lay.dir, identity="admin1", timeout=120) as a1, \
            MpcClient.from_cluster(pc.lay.dir, identity="admin2", timeout=120) as a2:
        yield a1, a2


@pytest.fixture(scope="module")
def team(pc: LocalCluster) -> Iterator[SigningTeam]:
    with SigningTeam.from_cluster(pc.lay.dir, timeout=120) as t:
        yield t


@pytest.fixture(scope="module")
def key(admins: tuple[MpcClient, MpcClient]):  # type: ignore[no-untyped-def]
    return admins[0].create_key("pool-key")


def _ready(a: MpcClient, key_id: bytes, at_least: int = 1, timeout: float = 60.0) -> coordinator_pb2.ClusterStatusResponse:
    deadline = time.monotonic() + timeout
    while True:
        st = a._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30)
        if sum(p.ready for p in st.pools if p.key_id == key_id) >= at_least:
            return st
        assert time.monotonic() < deadline, f"no ready pool: {st.pools}"
        time.sleep(0.1)


def _all_healthy(a: MpcClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(n.healthy for n in a._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30).nodes):
        assert time.monotonic() < deadline, "a node stays unhealthy"
        time.sleep(0.1)


def _info(team: SigningTeam, rid: str) -> coordinator_pb2.SignRequestInfo:
    return team.requester._stub.GetSignRequest(coordinator_pb2.GetSignRequestRequest(request_id=rid), timeout=30)


def _presigs(pc: LocalCluster) -> list[tuple[bytes, str, str, int]]:
    conn = sqlite3.connect(f"file:{pc.lay.coordinator_dir / 'coordinator.db'}?mode=ro", uri=True)
    try:
        return [(bytes(r[0]), r[1], r[2], r[3]) for r in conn.execute("SELECT presig_id, state, request_id, attempt FROM presigs")]
    finally:
        conn.close()


def _no_reuse(pc: LocalCluster) -> None:
    """Each presig_id went to at most one (request, attempt) (the primary key and triggers), a
    request signed with at most one, and no attempt number beyond the bound."""
    rows = _presigs(pc)
    used = [r[2] for r in rows if r[1] == "used"]
    assert len(used) == len(set(used))
    assert len({r[0] for r in rows}) == len(rows)
    assert all(r[3] <= MAX_SIGN_ATTEMPTS for r in rows)


def test_a_request_signs_from_the_pool_in_one_round(pc: LocalCluster, admins, team: SigningTeam, key) -> None:  # type: ignore[no-untyped-def]
    a1, _ = admins
    st = _ready(a1, key.key_id, 2)
    assert st.presign_enabled
    pool = next(p for p in st.pools if p.key_id == key.key_id)
    assert (pool.target, pool.refill_at, pool.cap, pool.epoch, list(pool.derivation_path)) == (4, 2, 8, 0, [])
    assert a1._stub.GetKey(coordinator_pb2.GetKeyRequest(key_id=key.key_id), timeout=30).presignatures_ready >= 2
    rs = set()
    for k in range(3):
        digest = hashlib.sha256(b"pool %d" % k).digest()
        r = team.request(key.key_id, digest, request_id=f"pool-{k}")
        assert r.state == "done", r
        info = _info(team, r.request_id)
        assert info.presigned and info.attempts == 1
        sig = r.signature
        assert sig is not None
        verify_independently(key.public_key, sig.der, digest)
        rs.add(sig.r)
        _ready(a1, key.key_id, 1)
    assert len(rs) == 3
    used = [r for r in _presigs(pc) if r[1] == "used"]
    assert {r[2] for r in used} >= {"pool-0", "pool-1", "pool-2"}
    _no_reuse(pc)


def test_a_request_that_expires_on_its_way_to_the_signers_is_refused_by_them(
    pc: LocalCluster, admins, team: SigningTeam, key  # type: ignore[no-untyped-def]
) -> None:
    """The pool-path counterpart of test_governance's expiry while signing (that one delays a
    round of the full protocol, pools off): every node is slow before it checks the approvals
    of a SignPresigned (the ``presign-checking`` fault point), the request expires meanwhile,
    the nodes refuse it and release nothing, the request ends EXPIRED (never signed by the
    full protocol afterwards) and its presignature is never used."""
    _ready(admins[0], key.key_id, 1)
    fault = {"action": "delay", "point": "presign-checking", "seconds": 7.5}  # 2 s TTL + 5 s clock tolerance + a margin
    for i in (1, 2, 3):
        (pc.lay.dir / "faults" / f"node-{i}.json").write_text(json.dumps(fault))
    try:
        r = team.request(key.key_id, b"\x78" * 32, description="slow pool signers", ttl_seconds=2)
    finally:
        for i in (1, 2, 3):
            (pc.lay.dir / "faults" / f"node-{i}.json").unlink(missing_ok=True)
    assert r.state == "expired" and r.signature is None, r
    assert "expires_at_ms: request has expired" in r.error_message
    assert not _info(team, r.request_id).presigned
    assert all(not released(pc, i, r.request_id) for i in (1, 2, 3))
    assert all(state != "used" for _, state, rid, _ in _presigs(pc) if rid == r.request_id)
    _no_reuse(pc)


@pytest.mark.parametrize("point", ["presig-assigned", "presig-partial"])
def test_a_coordinator_killed_mid_assignment_finishes_after_restart(
    pc: LocalCluster, admins, team: SigningTeam, key, point: str  # type: ignore[no-untyped-def]
) -> None:
    a1, _ = admins
    _ready(a1, key.key_id, 1)
    fault = pc.lay.dir / f"fault-{point}.json"
    fault.write_text(json.dumps({"action": "crash", "point": point}))
    pc.kill("coordinator")
    pc.procs["coordinator"].wait(30)
    pc.start("coordinator", {FAULT_ENV: str(fault)})
    pc.wait_healthy(["coordinator"])
    _ready(a1, key.key_id, 1)
    digest = hashlib.sha256(point.encode()).digest()
    rid = f"killed-{point}"
    r = team.requester.submit_sign_request(key.key_id, digest, request_id=rid)
    for ap in team.approvers:
        try:
            r = ap.approve(rid)
        except Exception:
            break  # the quorum decision's signing thread killed the coordinator
        if r.state != "pending_approval":
            break
    deadline = time.monotonic() + 30
    while pc.procs["coordinator"].poll() is None:
        assert time.monotonic() < deadline, "the fault point was not reached"
        time.sleep(0.05)
    assert not fault.exists()  # fired once
    assigned = [x for x in _presigs(pc) if x[2] == rid]
    assert [(x[1], x[3]) for x in assigned] == [("assigned", 1)]
    pc.start("coordinator")
    pc.wait_healthy(["coordinator"])
    done = team.requester.wait_sign_request(rid, timeout=60)
    assert done.state == "done", done
    assert done.signature is not None
    verify_independently(key.public_key, done.signature.der, digest)
    info = _info(team, rid)
    assert info.presigned and info.attempts == 1  # the same assignment, the same attempt
    after = [x for x in _presigs(pc) if x[2] == rid]
    assert [(x[0], x[1], x[3]) for x in after] == [(assigned[0][0], "used", 1)]
    _no_reuse(pc)


def test_a_restarted_node_lost_its_pool_the_request_falls_back_and_the_pool_refills(
    pc: LocalCluster, admins, team: SigningTeam, key  # type: ignore[no-untyped-def]
) -> None:
    """A node deletes its fresh presignatures at start: a request that takes one of them gets
    presig-unknown, the presignature is discarded, the full protocol signs at the next attempt
    (or the reconcile saw the restart first and the pool was refilled): either way DONE, no
    presig_id twice, and the pools are ready again."""
    a1, _ = admins
    _ready(a1, key.key_id, 3)
    before = {x[0] for x in _presigs(pc) if x[1] == "ready"}
    for i in (1, 2, 3):  # every node restarts: no pool survives anywhere
        pc.kill(f"node-{i}")
    for i in (1, 2, 3):
        pc.procs[f"node-{i}"].wait(30)
        pc.start(f"node-{i}", pc.node_env[i])  # keeps its fault file
    pc.wait_healthy(["node-1", "node-2", "node-3"])
    digest = hashlib.sha256(b"after node restarts").digest()
    r = team.request(key.key_id, digest, request_id="after-node-restarts")
    assert r.state == "done", r
    assert r.signature is not None
    verify_independently(key.public_key, r.signature.der, digest)
    info = _info(team, "after-node-restarts")
    assert info.attempts <= MAX_SIGN_ATTEMPTS
    if not info.presigned:  # it took a lost one: discarded, then the full protocol
        reasons = [x for x in _presigs(pc) if x[2] == "after-node-restarts"]
        assert all(x[1] == "discarded" for x in reasons)
    deadline = time.monotonic() + 60  # the coordinator reconciles the restarted nodes and refills
    while True:
        st = a1._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30)
        mine = [p for p in st.pools if p.key_id == key.key_id]
        still = before & {x[0] for x in _presigs(pc) if x[1] == "ready"}
        if not still and sum(p.discarded_total for p in mine) >= 3 and sum(p.ready for p in mine) >= 1:
            break
        assert time.monotonic() < deadline, mine
        time.sleep(0.1)
    r = team.request(key.key_id, digest[::-1], request_id="refilled-after-restarts")
    assert r.state == "done" and _info(team, r.request_id).presigned
    _no_reuse(pc)


def test_a_node_killed_in_a_refill_leaves_signing_alone_and_the_pool_refills(
    pc: LocalCluster, admins, team: SigningTeam, key  # type: ignore[no-untyped-def]
) -> None:
    """The pool-path counterpart of test_faults.py's kills during signing (pools off there):
    a node killed in round 2 of a background presign session (fault protocol ``presign``; a
    ``sign`` fault never fires in a refill) costs no request anything: every request is DONE
    within MAX_SIGN_ATTEMPTS, no presig_id twice, and after the node's restart the pools are
    ready again and sign in one round."""
    a1, _ = admins
    _all_healthy(a1)
    st = _ready(a1, key.key_id, 1)
    # the key's live pools (an emptied pool of a signer set the refiller no longer keeps may still be
    # listed: with it, three 2-of-3 sets have no common node); two live 2-of-3 sets always share one
    live = [set(p.signers) for p in st.pools if p.key_id == key.key_id and (p.ready or p.filling)]
    sets = live or [set(p.signers) for p in st.pools if p.key_id == key.key_id]
    counts = Counter(j for s in sets for j in s)
    victim = min(counts, key=lambda j: (-counts[j], j))  # in every live pool of the key: its next refill runs on it
    set_fault(pc, victim, action="crash", protocol="presign", round=2)
    for k in range(12):  # each request takes a presignature; at refill_at the refiller starts a session ...
        digest = hashlib.sha256(b"refill crash %d" % k).digest()
        r = team.request(key.key_id, digest, request_id=f"refill-crash-{k}")
        assert r.state == "done" and r.signature is not None, r
        verify_independently(key.public_key, r.signature.der, digest)
        assert _info(team, r.request_id).attempts <= MAX_SIGN_ATTEMPTS
        deadline = time.monotonic() + 5  # ... once no request is signing (signing always goes first)
        while fault_pending(pc, victim) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not fault_pending(pc, victim):
            break
    else:
        clear_fault(pc, victim)
        raise AssertionError(f"no refill ran on node {victim}")
    assert pc.procs[f"node-{victim}"].wait(timeout=60) == 137  # killed in the presign round, as told
    digest = hashlib.sha256(b"while a node is down").digest()
    r = team.request(key.key_id, digest, request_id="refill-crash-down")
    assert r.state == "done" and r.signature is not None and victim not in r.signature.signers, r
    revive(pc, victim)
    deadline = time.monotonic() + 60  # reconciled (the restart deleted its fresh ones) and refilled
    while not any(victim in p.signers and p.ready for p in
                  a1._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30).pools if p.key_id == key.key_id):
        assert time.monotonic() < deadline, "no pool with the restarted node"
        time.sleep(0.1)
    r = team.request(key.key_id, digest[::-1], request_id="refill-crash-revived")
    assert r.state == "done" and _info(team, r.request_id).attempts <= MAX_SIGN_ATTEMPTS, r
    _no_reuse(pc)


def test_a_refresh_discards_the_pool_and_it_refills_at_the_new_epoch(
    pc: LocalCluster, admins, team: SigningTeam, key  # type: ignore[no-untyped-def]
) -> None:
    a1, _ = admins
    _ready(a1, key.key_id, 1)
    _all_healthy(a1)
    st = _run_operation(pc, admins, key, KeyOpKind.REFRESH, (1, 2, 3), 2)
    assert st.state == "done", st.error
    deadline = time.monotonic() + 30  # housekeeping discards the old epoch's pools, the refiller makes new ones
    while True:
        status = a1._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30)
        ready = {p.epoch: p.ready for p in status.pools if p.key_id == key.key_id and p.ready}
        if set(ready) == {1}:
            break
        assert time.monotonic() < deadline, status.pools
        time.sleep(0.1)
    conn = sqlite3.connect(f"file:{pc.lay.coordinator_dir / 'coordinator.db'}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT COUNT(*) FROM presigs WHERE key_id = ? AND epoch = 0 AND state = 'ready'",
                            (key.key_id,)).fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM presigs WHERE key_id = ? AND epoch = 0 AND reason = 'epoch'",
                            (key.key_id,)).fetchone()[0] >= 1
    finally:
        conn.close()
    digest = os.urandom(32)
    r = team.request(key.key_id, digest, request_id="after-refresh")
    assert r.state == "done" and r.signature is not None
    verify_independently(key.public_key, r.signature.der, digest)
    assert _info(team, "after-refresh").presigned
    _no_reuse(pc)
