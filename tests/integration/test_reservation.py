"""One approved request, a bounded number of signatures (issue 8, item 2), on a 2-of-4 cluster.

With n >= 2t two disjoint signer groups exist; nodes remembering served requests only locally
let a compromised coordinator get one signature per group. Now every signer demands receipts
from a majority of its own roster for exactly (request, attempt, signers, session) before its
share leaves, and each node grants every attempt once: the harness, playing a compromised
coordinator with the coordinator's certificate, gets at most MAX_SIGN_ATTEMPTS signatures of a
request whatever it tries. The honest coordinator finishes a request interrupted after a partial
release (a signer killed at the release round, or the coordinator killed) with the next attempt,
without new approvals.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sqlite3
import time

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto_core.combiner import SignatureShare, combine
from crypto_core.group import Point
from governance.reservation import MAX_SIGN_ATTEMPTS, ReservationReceipt, sign_reservation
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.common.keystore import load_keystore
from mpcnet.common.stores.audit import export_jsonl
from mpcnet.wire.mpc.v1 import node_pb2

from .conftest import coordinator_handles, running_cluster
from .govtools import approved_bundle
from .outbox_util import outbox_drained
from .relay_util import reserve, reserve_request, run
from .test_cluster_api import verify_independently

N, T = 4, 2
Q = 3  # floor(4/2) + 1
Code = grpc.StatusCode
DIGEST = bytes(range(100, 132))


@pytest.fixture(scope="module")
def rc(tmp_path_factory):
    # the full protocol's reservation is under test: no pools (a one-round signature skips its fault points)
    with running_cluster(tmp_path_factory, "reserve-2of4", N, T, fault_files=True, presign=False) as c:
        yield c


@pytest.fixture(scope="module")
def admin(rc):
    with MpcClient.from_cluster(rc.lay.dir, identity="admin1", timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def team(rc):
    with SigningTeam.from_cluster(rc.lay.dir, timeout=60) as t:
        yield t


@pytest.fixture(scope="module")
def key(admin):
    return admin.create_key("reserve")


@pytest.fixture(scope="module")
def nodes(rc):
    """The harness holds the coordinator's certificate: a compromised coordinator."""
    with coordinator_handles(rc) as hs:
        yield hs


def node_audit(rc, i: int) -> list[dict]:
    outbox_drained(rc.lay.node_dir(i))  # entries committed with their state change are appended in the background
    buf = io.StringIO()
    export_jsonl(rc.lay.node_dir(i) / "audit.db", buf)
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def releases(rc, request_id: str) -> dict[int, list[int]]:
    """node -> the attempts it released a share for (from its audit log)."""
    out: dict[int, list[int]] = {}
    for i in range(1, N + 1):
        for e in node_audit(rc, i):
            if e["action"] == "sign-share" and e["outcome"] == "released" and e["request_id"] == request_id:
                out.setdefault(i, []).append(int(e["details"]["attempt"]))
    return out


def params(key, rid: str, b: bytes, signers) -> node_pb2.SignParams:
    return node_pb2.SignParams(
        key_id=key.key_id, signers=list(signers), digest=DIGEST, request_id=rid, approval_bundle=b,
    )


def signature_of(key, sid: bytes, signers, res):
    shares = {i: SignatureShare.from_bytes(r.envelopes[0].payload, sid, i) for i, r in res.items()}
    return combine(shares, DIGEST, signers=list(signers), public_key=Point.decode(key.public_key))


def refused(res, code, text: str, kind: str) -> None:
    assert res and all(isinstance(e, grpc.RpcError) for e in res.values()), res
    for e in res.values():
        assert e.code() == code and text in e.details(), (e.code(), e.details())
        assert ("mpc-governance", kind) in e.trailing_metadata()


def test_disjoint_groups_get_at_most_max_attempts_signatures(rc, nodes, key) -> None:
    rid, b = approved_bundle(rc.lay, key.key_id, DIGEST)
    sigs = []
    # R is signed by {1, 2} in attempt 1 (reserved on every node)
    sid1 = os.urandom(32)
    p12, p34 = params(key, rid, b, (1, 2)), params(key, rid, b, (3, 4))
    sigs.append(signature_of(key, sid1, (1, 2), run(nodes, sid1, [1, 2], sign=p12)))
    # replaying R's approvals to {3, 4} as attempt 1: no node grants it, so no share
    for i in range(1, N + 1):
        with pytest.raises(grpc.RpcError) as e:
            nodes[i].stub.ReserveSigning(reserve_request(os.urandom(32), p34, 1), timeout=10)
        assert e.value.code() == Code.FAILED_PRECONDITION and "attempt: attempt 1 of request" in e.value.details()
        assert ("mpc-governance", "attempt-taken") in e.value.trailing_metadata()
    refused(run(nodes, os.urandom(32), [3, 4], receipts=[], sign=p34),
            Code.PERMISSION_DENIED, "reservation_receipts: 0 valid receipt(s) from distinct nodes, 3 required", "unreserved")
    # nor with attempt 1's genuine receipts: they are for another session and signer set
    r1 = reserve(nodes, sid1, p12, 1)  # granted again, the same grant
    refused(run(nodes, os.urandom(32), [3, 4], receipts=r1, sign=p34),
            Code.PERMISSION_DENIED, "reservation_receipts[0].reservation.signers: differs", "unreserved")
    refused(run(nodes, os.urandom(32), [1, 2], receipts=r1, sign=p12),
            Code.PERMISSION_DENIED, "reservation_receipts[0].reservation.session_id: differs", "unreserved")
    # {3, 4} reserving attempt 2 only among themselves: two receipts are not a majority, and
    # then nobody can have attempt 2 any more (the nodes split their grants)
    sid = os.urandom(32)
    refused(run(nodes, sid, [3, 4], attempt=2, receipts=reserve(nodes, sid, p34, 2, among=[3, 4]), sign=p34),
            Code.PERMISSION_DENIED, "reservation_receipts: 2 valid receipt(s) from distinct nodes, 3 required", "unreserved")
    with pytest.raises(grpc.RpcError) as e:
        run(nodes, os.urandom(32), [1, 2], attempt=2, sign=p12)
    assert e.value.code() == Code.FAILED_PRECONDITION and "attempt: attempt 2 of request" in e.value.details()
    # attempt 3 is the last one anybody can have
    sid = os.urandom(32)
    sigs.append(signature_of(key, sid, (3, 4), run(nodes, sid, [3, 4], attempt=3, sign=p34)))
    for attempt in (MAX_SIGN_ATTEMPTS + 1, 2**31):  # a fourth is refused by every node
        for i in range(1, N + 1):
            with pytest.raises(grpc.RpcError) as e:
                nodes[i].stub.ReserveSigning(reserve_request(os.urandom(32), params(key, rid, b, (1, 3)), attempt), timeout=10)
            assert e.value.code() == Code.FAILED_PRECONDITION, e.value.details()
            assert f"may take at most {MAX_SIGN_ATTEMPTS} signing attempts" in e.value.details()
            assert ("mpc-governance", "attempts-exhausted") in e.value.trailing_metadata()
    refused(run(nodes, os.urandom(32), [1, 3], attempt=4, receipts=r1, sign=params(key, rid, b, (1, 3))),
            Code.FAILED_PRECONDITION, "attempt: 4 exceeds the 3 signing attempts", "attempts-exhausted")
    # at most MAX_SIGN_ATTEMPTS valid signatures of R exist (here two: attempt 2 was spoiled)
    assert len(sigs) == 2 <= MAX_SIGN_ATTEMPTS and sigs[0] != sigs[1]
    assert releases(rc, rid) == {1: [1], 2: [1], 3: [3], 4: [3]}


def test_release_needs_a_majority_of_genuine_receipts_for_exactly_this_session(rc, nodes, key) -> None:
    outsider = Ed25519PrivateKey.generate()
    nd = rc.lay.node_dir(4)
    node4 = load_keystore(nd / "keystore.json", (nd / "passphrase").read_bytes().rstrip(b"\n")).identity

    def foreign(good: list[bytes], **change) -> bytes:
        res = dataclasses.replace(ReservationReceipt.from_bytes(good[3]).reservation, **change)
        return sign_reservation(res, 4, node4).to_bytes()  # node 4's genuine signature

    def forged(good: list[bytes], reserver: int) -> bytes:
        return sign_reservation(ReservationReceipt.from_bytes(good[3]).reservation, reserver, outsider).to_bytes()

    cases = [  # (name, attempt, receipts from this session's genuine ones, error text)
        ("no attempt", 0, lambda g: g, "attempt: missing"),
        ("two receipts", 1, lambda g: g[:2], "reservation_receipts: 2 valid receipt(s) from distinct nodes, 3 required"),
        ("one twice", 1, lambda g: g[:2] + g[:1], "reservation_receipts[2].reserver: a second receipt from node 1"),
        ("forged", 1, lambda g: g[:2] + [forged(g, 4)], "reservation_receipts[2].signature: does not verify under node 4's identity key"),
        ("not in the roster", 1, lambda g: g[:2] + [forged(g, 5)], "reservation_receipts[2].reserver: node 5 is not in this node's roster"),
        ("another cluster", 1, lambda g: g[:2] + [foreign(g, governance_root=os.urandom(32))],
         "reservation_receipts[2].reservation.governance_root: differs"),
        ("another session", 1, lambda g: g[:2] + [foreign(g, session_id=os.urandom(32))],
         "reservation_receipts[2].reservation.session_id: differs"),
        ("another signer set", 1, lambda g: g[:2] + [foreign(g, signers=(1, 3))], "reservation_receipts[2].reservation.signers: differs"),
        ("garbage", 1, lambda g: g[:2] + [b"\x00" * 50], "reservation_receipts[2].tag"),
        ("another attempt", 2, lambda g: g, "reservation_receipts[0].reservation.attempt: differs"),
    ]
    for name, attempt, pick, text in cases:
        rid, b = approved_bundle(rc.lay, key.key_id, DIGEST)
        p = params(key, rid, b, (2, 3))
        sid = os.urandom(32)
        good = reserve(nodes, sid, p, 1)
        errs = run(nodes, sid, [2, 3], attempt=attempt, receipts=pick(good), sign=p)
        assert all(isinstance(e, grpc.RpcError) for e in errs.values()), name
        for e in errs.values():
            assert e.code() == Code.PERMISSION_DENIED and text in e.details(), (name, e.code(), e.details())
            assert ("mpc-governance", "unreserved") in e.trailing_metadata(), name
        assert releases(rc, rid) == {}, name
        for i in (2, 3):  # the refusal is audited
            assert [e["outcome"] for e in node_audit(rc, i) if e["action"] == "sign-share" and e["request_id"] == rid] == ["refused"]
    # any three of the four genuine receipts of this very session release the shares
    rid, b = approved_bundle(rc.lay, key.key_id, DIGEST)
    p = params(key, rid, b, (2, 3))
    sid = os.urandom(32)
    res = run(nodes, sid, [2, 3], receipts=reserve(nodes, sid, p, 1)[1:], sign=p)
    verify_independently(key.public_key, signature_of(key, sid, (2, 3), res).der(), DIGEST)
    assert releases(rc, rid) == {2: [1], 3: [1]}


def test_a_request_id_stays_bound_to_the_request_it_was_first_reserved_for(rc, nodes, key) -> None:
    """A compromised coordinator that gets a second request approved under a request id already
    signed (another digest) must not get further attempts of that id for it: attempts, the
    served record and the rate limit are counted per request id, so the second request would
    share the first one's attempts and skip the rate limit. Every node refuses the grant."""
    rid, b = approved_bundle(rc.lay, key.key_id, DIGEST)
    other = bytes(range(1, 33))
    _, b2 = approved_bundle(rc.lay, key.key_id, other, request_id=rid)
    sid = os.urandom(32)
    signature_of(key, sid, (1, 2), run(nodes, sid, [1, 2], sign=params(key, rid, b, (1, 2))))
    p2 = node_pb2.SignParams(key_id=key.key_id, signers=[3, 4], digest=other, request_id=rid, approval_bundle=b2)
    for i in range(1, N + 1):
        with pytest.raises(grpc.RpcError) as e:
            nodes[i].stub.ReserveSigning(reserve_request(os.urandom(32), p2, 2), timeout=10)
        assert e.value.code() == Code.FAILED_PRECONDITION, (i, e.value.code(), e.value.details())
        assert f"request_id: request {rid!r} is reserved for another request" in e.value.details(), e.value.details()
        assert ("mpc-governance", "attempt-taken") in e.value.trailing_metadata()
    assert releases(rc, rid) == {1: [1], 2: [1]}


def set_fault(rc, i: int, **doc) -> None:
    (rc.lay.dir / "faults" / f"node-{i}.json").write_text(json.dumps(doc))


def clear_faults(rc) -> None:
    for i in range(1, N + 1):
        (rc.lay.dir / "faults" / f"node-{i}.json").unlink(missing_ok=True)


def test_signer_killed_after_a_partial_release_is_finished_by_the_next_attempt(rc, admin, team, key) -> None:
    victim = 4
    set_fault(rc, victim, action="crash", protocol="sign", round=4)  # dies just before it releases
    try:
        for j in range(8):  # node selection rotates: node 4 takes part within a few requests
            sig = team.sign(key.key_id, DIGEST, description=f"crash at release {j}")
            verify_independently(key.public_key, sig.der, DIGEST)
            if not (rc.lay.dir / "faults" / f"node-{victim}.json").exists():
                break
        else:
            raise AssertionError("node 4 was never chosen")
    finally:
        clear_faults(rc)
    assert rc.procs[f"node-{victim}"].wait(timeout=10) == 137
    info = admin.get_sign_request(sig.request_id)
    assert info.state == "done" and info.attempts == 2 and victim not in sig.signers
    got = releases(rc, sig.request_id)
    # attempt 1: the other signer released before node 4 died; attempt 2 finished it
    assert sorted(a for atts in got.values() for a in atts) == [1, 2, 2], got
    assert victim not in got
    rc.start(f"node-{victim}", rc.node_env[victim])
    rc.wait_healthy([f"node-{victim}"])


def test_request_interrupted_by_a_coordinator_kill_after_the_release_is_finished(rc, admin, team, key) -> None:
    for i in range(1, N + 1):  # whichever nodes are chosen, they release 3 s after the reservation
        set_fault(rc, i, action="delay", protocol="sign", round=4, seconds=3.0)
    rid = "killed-" + os.urandom(4).hex()
    try:
        team.requester.submit_sign_request(key.key_id, DIGEST, request_id=rid, description="kill the coordinator")
        team.approvers[0].approve(rid)
        assert team.approvers[1].approve(rid).state == "signing"
        deadline = time.monotonic() + 20
        while not any(e["action"] == "sign-reserve" and e["request_id"] == rid for i in range(1, N + 1) for e in node_audit(rc, i)):
            assert time.monotonic() < deadline, "attempt 1 was never reserved"
            time.sleep(0.05)
        time.sleep(0.5)  # every node has reserved; the signers are in their release step
        rc.kill("coordinator")
    finally:
        clear_faults(rc)
    deadline = time.monotonic() + 15  # the signers of attempt 1 release their shares to a dead coordinator
    while sorted(a for atts in releases(rc, rid).values() for a in atts) != [1, 1]:
        assert time.monotonic() < deadline, releases(rc, rid)
        time.sleep(0.1)
    rc.start("coordinator")
    rc.wait_healthy(["coordinator"])
    done = team.requester.wait_sign_request(rid, timeout=60)
    assert done.state == "done", done
    verify_independently(key.public_key, done.signature.der, DIGEST)
    assert sorted(a for atts in releases(rc, rid).values() for a in atts) == [1, 1, 2, 2]


def wait_coordinator_sees(rc, healthy: dict[int, bool], timeout: float = 20.0) -> None:
    with MpcClient.from_cluster(rc.lay.dir, identity="auditor1", timeout=10) as cl:
        deadline = time.monotonic() + timeout
        while {n.index: n.healthy for n in cl.cluster_status().nodes if n.index in healthy} != healthy:
            assert time.monotonic() < deadline, "the coordinator does not see the nodes' state"
            time.sleep(0.1)


def test_without_a_reachable_majority_the_request_fails_without_spending_attempts(rc, team, key) -> None:
    """t = 2 nodes could sign, but no attempt can be reserved by 3 of 4: UNAVAILABLE, naming the
    nodes and saying what to do; no attempt was reserved anywhere."""
    for i in (3, 4):
        rc.kill(f"node-{i}")
    try:
        wait_coordinator_sees(rc, {3: False, 4: False})
        r = team.request(key.key_id, DIGEST, description="majority down")
        assert r.state == "failed", r
        assert r.error_code == Code.UNAVAILABLE.name, r
        msg = r.error_message
        assert "needs 3 of 4 nodes but only 2 are available (2 sign, a majority of 3 reserves each attempt)" in msg, msg
        assert "node 3 (node-3)" in msg and "node 4 (node-4)" in msg
        assert "0 of 3 signing attempts used; start the unavailable nodes, then submit a new request for approval" in msg
        assert not any(e["action"] == "sign-reserve" and e["request_id"] == r.request_id for i in (1, 2) for e in node_audit(rc, i))
    finally:
        for i in (3, 4):
            rc.start(f"node-{i}", rc.node_env[i])
        rc.wait_healthy(["node-3", "node-4"])
        wait_coordinator_sees(rc, {3: True, 4: True})


def test_a_request_whose_attempts_are_used_up_fails_saying_what_to_do(rc, team, key) -> None:
    """As after restarts that used up the attempts: the coordinator's durable counter is at 3."""
    r = team.requester.submit_sign_request(key.key_id, DIGEST, description="used up")
    db = sqlite3.connect(rc.lay.coordinator_dir / "coordinator.db", timeout=30)
    try:
        db.execute("INSERT INTO sign_attempts (request_id, reserved, updated_ms) VALUES (?, 3, 0)", (r.request_id,))
        db.commit()
    finally:
        db.close()
    team.approvers[0].approve(r.request_id)
    team.approvers[1].approve(r.request_id)
    done = team.requester.wait_sign_request(r.request_id, timeout=60)
    assert done.state == "failed" and done.error_code == Code.FAILED_PRECONDITION.name, done
    assert done.error_message == (
        f"sign: request {r.request_id} used all 3 signing attempts; submit a new request for approval"
    )
    assert not any(e["action"] == "sign-reserve" and e["request_id"] == r.request_id for i in range(1, N + 1) for e in node_audit(rc, i))


def test_no_node_crashed_unexpectedly(rc) -> None:
    for name, p in rc.procs.items():
        assert p.poll() is None, f"{name} is not running"
