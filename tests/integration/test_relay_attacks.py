"""A malicious relay talking to real node processes with the coordinator's certificate.

Dropping, replaying (from an older round or another session), altering, misrouting,
duplicating and equivocating messages each abort the session with a message that names what
went wrong; wrong rounds, unknown sessions and bad parameters get precise status codes.
"""

from __future__ import annotations

import json
import os
import time

import grpc
import pytest

from crypto_core.group import Point
from governance.errors import GovernanceError
from mpc_node.envelope import Envelope, open_envelope, seal_broadcast, seal_direct
from mpcnet.common.keystore import load_keystore
from mpcnet.wire.mpc.v1 import common_pb2, node_pb2

from .conftest import coordinator_handles, make_cluster
from .govtools import approved_bundle
from .relay_util import route, run, start, step

N, T = 3, 2
MAX_SESSIONS_NODE3 = 8
Code = grpc.StatusCode


_LAY = None  # the module cluster's layout: sign_params() builds approval bundles from its identities


@pytest.fixture(scope="module")
def rc(tmp_path_factory):
    global _LAY
    # nodes only, no coordinator or admin to attest policies: attestations are test_attestation.py's
    c = make_cluster(tmp_path_factory, "relay-2of3", N, T, session_timeout_s=3.0, policy_max_age_s=0)
    _LAY = c.lay
    cfg = c.lay.node_config(3)
    doc = json.loads(cfg.read_text())
    doc["max_sessions"] = MAX_SESSIONS_NODE3
    cfg.write_text(json.dumps(doc))
    try:
        for i in range(1, N + 1):
            c.start(f"node-{i}")
        c.wait_healthy([f"node-{i}" for i in range(1, N + 1)])
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def nodes(rc):
    with coordinator_handles(rc) as hs:
        yield hs


@pytest.fixture(scope="module")
def opkeys(rc):
    """Every node's operational keys (the test plays a node that cheats)."""
    out = {}
    for i in range(1, N + 1):
        nd = rc.lay.node_dir(i)
        out[i] = load_keystore(nd / "keystore.json", (nd / "passphrase").read_bytes().rstrip(b"\n"))
    return out


def dkg(nodes) -> node_pb2.DkgResult:
    res = run(nodes, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"relay"))
    assert all(isinstance(r, node_pb2.StepResponse) and r.finished for r in res.values()), res
    return res[1].dkg_result


@pytest.fixture(scope="module")
def key(nodes) -> node_pb2.DkgResult:
    k = dkg(nodes)
    for h in nodes.values():
        h.stub.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), timeout=10)
    return k


def sign_params(key, signers=(1, 2), digest=b"\x07" * 32, path=()):
    """Parameters of a signing session for a fresh request approved by approver1 and approver2
    (the harness plays an honest coordinator as far as approvals go)."""
    assert _LAY is not None
    try:
        rid, bundle = approved_bundle(_LAY, key.key_id, digest, path)
    except GovernanceError:  # a malformed parameter the node refuses before looking at approvals
        rid, bundle = "malformed", b""
    return node_pb2.SignParams(
        key_id=key.key_id, signers=list(signers), digest=digest, derivation_path=list(path), request_id=rid, approval_bundle=bundle
    )


def aborted(errs, node: int) -> str:
    e = errs[node]
    assert e.code() == Code.ABORTED, (e.code(), e.details())
    return e.details()


def test_honest_relay_signs(nodes, key) -> None:
    from crypto_core.combiner import SignatureShare, combine

    sid = os.urandom(32)
    res = run(nodes, sid, [1, 3], sign=sign_params(key, (1, 3)))
    shares = {i: SignatureShare.from_bytes(r.envelopes[0].payload, sid, i) for i, r in res.items()}
    sig = combine(shares, b"\x07" * 32, signers=[1, 3], public_key=Point.decode(key.public_key))
    assert sig.r > 0


def test_dropped_message_is_named(nodes) -> None:
    def drop(rnd, inboxes):
        if rnd == 1:
            inboxes[1] = [e for e in inboxes[1] if e.sender != 2]

    errs = run(nodes, os.urandom(32), [1, 2, 3], tamper=drop, dkg=node_pb2.DkgParams(threshold=T, parties=N))
    msg = aborted(errs, 1)
    assert "node 2 (node-2): round 1: no message received" in msg
    assert ("mpc-culprit", "2") in errs[1].trailing_metadata()


def test_message_replayed_from_an_older_round_is_named(nodes) -> None:
    old: dict[int, common_pb2.Envelope] = {}

    def replay(rnd, inboxes):
        if rnd == 1:
            old[2] = [e for e in inboxes[1] if e.sender == 2][0]
        if rnd == 2:
            inboxes[1] = [e for e in inboxes[1] if not (e.sender == 2 and e.receiver == 0)] + [old[2]]

    errs = run(nodes, os.urandom(32), [1, 2, 3], tamper=replay, dkg=node_pb2.DkgParams(threshold=T, parties=N))
    msg = aborted(errs, 1)
    assert "round-2 broadcast message from node 2 (node-2): round: expected round 2, got 1" in msg


def test_message_replayed_from_another_session_is_named(nodes) -> None:
    first_sid = os.urandom(32)
    first = start(nodes, first_sid, [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N))
    stale = [e for e in first[2].envelopes if e.receiver == 0][0]
    for h in nodes.values():
        h.stub.AbortSession(node_pb2.AbortSessionRequest(session_id=first_sid, reason="test"), timeout=5)

    def replay(rnd, inboxes):
        if rnd == 1:
            inboxes[3] = [e for e in inboxes[3] if e.sender != 2] + [stale]

    errs = run(nodes, os.urandom(32), [1, 2, 3], tamper=replay, dkg=node_pb2.DkgParams(threshold=T, parties=N))
    assert "round-1 broadcast message from node 2 (node-2): session_id: message belongs to another session" in aborted(errs, 3)


def test_altered_message_is_named(nodes) -> None:
    def alter(rnd, inboxes):
        if rnd == 2:
            for e in inboxes[3]:
                if e.sender == 1 and e.receiver == 3:
                    e.payload = e.payload[:-1] + bytes([e.payload[-1] ^ 1])

    errs = run(nodes, os.urandom(32), [1, 2, 3], tamper=alter, dkg=node_pb2.DkgParams(threshold=T, parties=N))
    assert "round-2 direct message from node 1 (node-1): signature: does not verify" in aborted(errs, 3)


def test_misrouted_message_is_named(nodes) -> None:
    def misroute(rnd, inboxes):
        if rnd == 2:
            to3 = [e for e in inboxes[3] if e.sender == 2 and e.receiver == 3][0]
            inboxes[1] = [e for e in inboxes[1] if not (e.sender == 2 and e.receiver == 1)] + [to3]

    errs = run(nodes, os.urandom(32), [1, 2, 3], tamper=misroute, dkg=node_pb2.DkgParams(threshold=T, parties=N))
    assert "round-2 direct message from node 2 (node-2): addressed to party 3, not to this node (misrouted)" in aborted(errs, 1)


def test_duplicated_message_is_named(nodes) -> None:
    def dup(rnd, inboxes):
        if rnd == 1:
            inboxes[2] = inboxes[2] + [e for e in inboxes[2] if e.sender == 3]

    errs = run(nodes, os.urandom(32), [1, 2, 3], tamper=dup, dkg=node_pb2.DkgParams(threshold=T, parties=N))
    assert "round-1 broadcast message from node 3 (node-3): delivered twice (replay)" in aborted(errs, 2)


def test_equivocating_broadcast_is_detected_by_echoes(nodes, opkeys) -> None:
    sid = os.urandom(32)

    def equivocate(rnd, inboxes):
        if rnd == 1:  # node 2 (its key is ours in this test) signs two versions of its broadcast
            orig = [e for e in inboxes[3] if e.sender == 2][0]
            forged = orig.payload[:-1] + bytes([orig.payload[-1] ^ 1])
            env = seal_broadcast(forged, identity=opkeys[2].identity, session_id=sid, round=1, sender=2)
            inboxes[3] = [e for e in inboxes[3] if e.sender != 2] + [common_pb2.Envelope(
                session_id=env.session_id, round=env.round, sender=env.sender, receiver=0, payload=env.payload, signature=env.signature)]

    errs = run(nodes, sid, [1, 2, 3], tamper=equivocate, dkg=node_pb2.DkgParams(threshold=T, parties=N))
    assert errs and all(e.code() == Code.ABORTED for e in errs.values())
    assert all("inconsistent views of party 2's round-1 broadcast" in e.details() for e in errs.values())
    assert "node 2 (node-2): round 2: inconsistent" in errs[3].details()  # the node that got the forged copy names node 2


def test_wrong_round_is_failed_precondition_and_harmless(nodes) -> None:
    sid = os.urandom(32)
    resps = start(nodes, sid, [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N))
    inboxes = route(resps, [1, 2, 3])
    with pytest.raises(grpc.RpcError) as e:
        nodes[1].stub.Step(node_pb2.StepRequest(session_id=sid, round=3, envelopes=inboxes[1]), timeout=10)
    assert e.value.code() == Code.FAILED_PRECONDITION
    assert "expects round-1 messages, got round 3" in e.value.details()
    out = step(nodes, sid, 1, inboxes)
    assert all(isinstance(r, node_pb2.StepResponse) and r.round == 2 for r in out.values())
    again = nodes[1].stub.Step(node_pb2.StepRequest(session_id=sid, round=1, envelopes=inboxes[1]), timeout=10)
    assert again == out[1]  # a relay's retry of the same delivery gets the same answer
    other = [e for e in inboxes[1] if e.sender == 2]
    with pytest.raises(grpc.RpcError) as e:
        nodes[1].stub.Step(node_pb2.StepRequest(session_id=sid, round=1, envelopes=other), timeout=10)
    assert e.value.code() == Code.ABORTED and "delivered again with different content" in e.value.details()


def test_session_errors(nodes, key) -> None:
    with pytest.raises(grpc.RpcError) as e:
        nodes[1].stub.Step(node_pb2.StepRequest(session_id=os.urandom(32), round=1), timeout=10)
    assert e.value.code() == Code.NOT_FOUND and "has no session" in e.value.details()
    sid = os.urandom(32)
    start(nodes, sid, [1], dkg=node_pb2.DkgParams(threshold=T, parties=N))
    with pytest.raises(grpc.RpcError) as e:
        start(nodes, sid, [1], dkg=node_pb2.DkgParams(threshold=T, parties=N))
    assert e.value.code() == Code.ALREADY_EXISTS
    cases = [
        (
            dict(dkg=node_pb2.DkgParams(threshold=3, parties=N)),
            Code.INVALID_ARGUMENT,
            "dkg.threshold: this node accepts only threshold 2, got 3",
        ),
        (dict(dkg=node_pb2.DkgParams(threshold=T, parties=4)), Code.INVALID_ARGUMENT, "dkg.parties: must be 3"),
        (dict(dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"\xff")), Code.INVALID_ARGUMENT, "dkg.key_label: must be UTF-8"),
        (dict(sign=sign_params(key, digest=b"\x01" * 31)), Code.INVALID_ARGUMENT, "sign.digest: must be 32 bytes, got 31"),
        (dict(sign=sign_params(key, signers=(2, 3))), Code.INVALID_ARGUMENT, "sign.signers: does not include this node (1)"),
        (dict(sign=sign_params(key, signers=(1, 2, 3))), Code.INVALID_ARGUMENT, "sign.signers: key needs exactly 2 signers, got 3"),
        (
            dict(sign=sign_params(key, signers=(1, 9))), Code.INVALID_ARGUMENT,
            "sign.signers: party 9 is not an active node of this node's roster",
        ),
        (dict(sign=sign_params(key, path=[2**31])), Code.INVALID_ARGUMENT, "sign.derivation_path"),
        (
            dict(sign=node_pb2.SignParams(key_id=b"\x01" * 32, signers=[1, 2], digest=b"\x00" * 32, request_id="unknown-key")),
            Code.NOT_FOUND,
            "holds no key 0101",
        ),
        (dict(sign=node_pb2.SignParams(key_id=key.key_id, signers=[1, 2], digest=b"\x00" * 32, request_id="no-bundle")),
         Code.PERMISSION_DENIED, "sign.approval_bundle: missing"),
        (dict(), Code.INVALID_ARGUMENT, "params: missing"),
    ]
    for params, code, text in cases:
        with pytest.raises(grpc.RpcError) as e:
            start(nodes, os.urandom(32), [1], **params)
        assert e.value.code() == code and text in e.value.details(), (params, e.value.details())
    with pytest.raises(grpc.RpcError) as e:
        nodes[1].stub.StartSession(node_pb2.StartSessionRequest(session_id=b"short", dkg=node_pb2.DkgParams()), timeout=10)
    assert e.value.details() == "session_id: must be 32 bytes, got 5"


def test_pending_key_cannot_sign_until_committed(nodes) -> None:
    k = dkg(nodes)
    with pytest.raises(grpc.RpcError) as e:
        start(nodes, os.urandom(32), [1], sign=sign_params(k))
    assert e.value.code() == Code.FAILED_PRECONDITION and "is pending" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        nodes[1].stub.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=b"\x02" + b"\x00" * 32), timeout=10)
    assert e.value.code() == Code.FAILED_PRECONDITION
    for h in nodes.values():
        h.stub.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), timeout=10)
    res = run(nodes, os.urandom(32), [1, 2], sign=sign_params(k))
    assert all(r.finished for r in res.values())
    with pytest.raises(grpc.RpcError) as e:
        nodes[1].stub.DiscardKey(node_pb2.DiscardKeyRequest(key_id=k.key_id), timeout=10)
    assert e.value.code() == Code.FAILED_PRECONDITION and "is active" in e.value.details()


def test_abandoned_sessions_expire(nodes) -> None:
    sid = os.urandom(32)
    start(nodes, sid, [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N))
    assert nodes[1].stub.Health(node_pb2.NodeHealthRequest(), timeout=5).active_sessions >= 1
    t0 = time.monotonic()
    while nodes[1].stub.Health(node_pb2.NodeHealthRequest(), timeout=5).active_sessions and time.monotonic() - t0 < 15:
        time.sleep(0.2)  # timeout 3 s, swept every second
    assert nodes[1].stub.Health(node_pb2.NodeHealthRequest(), timeout=5).active_sessions == 0
    assert time.monotonic() - t0 > 2.0  # not before its timeout
    with pytest.raises(grpc.RpcError) as e:
        nodes[1].stub.Step(node_pb2.StepRequest(session_id=sid, round=1), timeout=5)
    assert e.value.code() == Code.NOT_FOUND


def test_cheating_signer_is_banned_durably(rc, nodes, opkeys) -> None:
    """Node 2 sends node 1 a wrong Gamma (a failed consistency check): node 1 bans node 2 for
    the key, remembers it across a restart, and refuses every later session that includes it."""
    k = dkg(nodes)
    for h in nodes.values():
        h.stub.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), timeout=10)
    sid = os.urandom(32)

    def cheat(rnd, inboxes):
        if rnd != 3:
            return
        pe = [e for e in inboxes[1] if e.sender == 2 and e.receiver == 1][0]
        env = Envelope(pe.session_id, pe.round, pe.sender, pe.receiver, pe.payload, pe.ephemeral_key, pe.signature)
        plain = open_envelope(env, sender_identity_public=opkeys[2].identity_public, my_encryption=opkeys[1].encryption,
                              expected_session_id=sid, expected_round=3, expected_sender=2, me=1)
        off = 40 + 32  # header, sigid, then gamma_r
        bad = plain[:off] + Point.base_mul(12345).encode() + plain[off + 33:]
        new = seal_direct(bad, identity=opkeys[2].identity, recipient_encryption_public=opkeys[1].encryption_public,
                          session_id=sid, round=3, sender=2, receiver=1)
        pe.payload, pe.ephemeral_key, pe.signature = new.payload, new.ephemeral_key, new.signature

    errs = run(nodes, sid, [1, 2], tamper=cheat, sign=sign_params(k))
    msg = aborted(errs, 1)
    assert "node 2 (node-2): round 3: consistency check on R failed" in msg
    assert ("mpc-ban", "1") in errs[1].trailing_metadata()
    rc.kill("node-1")
    rc.start("node-1")
    rc.wait_healthy(["node-1"])
    with pytest.raises(grpc.RpcError) as e:
        start(nodes, os.urandom(32), [1], sign=sign_params(k))
    assert e.value.code() == Code.PERMISSION_DENIED
    assert "node 2 (node-2) is banned by node-1" in e.value.details()
    res = run(nodes, os.urandom(32), [1, 3], sign=sign_params(k, (1, 3)))  # without node 2 it still signs
    assert all(r.finished for r in res.values())


def test_reordered_envelopes_within_a_round_change_nothing(nodes, key) -> None:
    def shuffle(rnd, inboxes):
        for k in inboxes:
            inboxes[k] = list(reversed(inboxes[k]))

    res = run(nodes, os.urandom(32), [2, 3], tamper=shuffle, sign=sign_params(key, (2, 3)))
    assert all(isinstance(r, node_pb2.StepResponse) and r.finished for r in res.values())


def test_messages_of_a_later_round_are_refused(nodes) -> None:
    sid = os.urandom(32)
    resps = start(nodes, sid, [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N))
    out = step(nodes, sid, 1, route(resps, [1, 2, 3]))
    later = route(out, [1, 2, 3])  # round-2 messages delivered as if they were round 1
    with pytest.raises(grpc.RpcError) as e:
        nodes[1].stub.Step(node_pb2.StepRequest(session_id=sid, round=1, envelopes=later[1]), timeout=10)
    assert e.value.code() == Code.ABORTED and "delivered again with different content" in e.value.details()


def test_too_many_sessions_is_resource_exhausted(nodes) -> None:
    h = nodes[3]
    deadline = time.monotonic() + 10
    while h.stub.Health(node_pb2.NodeHealthRequest(), timeout=5).active_sessions and time.monotonic() < deadline:
        time.sleep(0.2)  # sessions other tests left behind expire
    sids = [os.urandom(32) for _ in range(MAX_SESSIONS_NODE3 + 1)]
    try:
        for sid in sids[:-1]:
            start(nodes, sid, [3], dkg=node_pb2.DkgParams(threshold=T, parties=N))
        with pytest.raises(grpc.RpcError) as e:
            start(nodes, sids[-1], [3], dkg=node_pb2.DkgParams(threshold=T, parties=N))
        assert e.value.code() == Code.RESOURCE_EXHAUSTED
        assert e.value.details() == f"sessions: node-3 already runs {MAX_SESSIONS_NODE3} sessions (the limit)"
    finally:
        for sid in sids:
            h.stub.AbortSession(node_pb2.AbortSessionRequest(session_id=sid, reason="test"), timeout=5)
    start(nodes, os.urandom(32), [3], dkg=node_pb2.DkgParams(threshold=T, parties=N))
