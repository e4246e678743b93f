"""Presignature pools on the node (issue 14, mpc_node/presign.py), driven in process.

Three :class:`NodeService` instances of a 2-of-3 cluster share DKG keys; the test plays the
coordinator (and a compromised one): presign sessions, SignPresigned, replays, crashes,
refusals. Every signature is combined under the coordinator's own derived key and verified
under OpenSSL (``cryptography``, ECDSA over the prehashed digest)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import pytest

from mpc_node.metrics import node_metrics
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.metrics import MetricsSettings
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .presign_util import Code, close, combine_verified, kind, presign, restart, run_session, service, share_of, sign_request

N, T = 3, 2


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("pools"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        close(s)


def _dkg(svcs: dict[int, NodeService], label: bytes) -> node_pb2.DkgResult:
    res = run_session(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=label))
    k: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


@pytest.fixture(scope="module")
def key(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    return _dkg(svcs, b"pools")


def _refused(call: object, *args: object) -> RpcError:
    with pytest.raises(RpcError) as e:
        call(*args, None)  # type: ignore[operator]
    return e.value


def test_a_presign_session_then_sign_presigned_signs_and_replays(lay, svcs, key) -> None:
    before = {i: svcs[i].store.count_fresh(key.key_id) for i in (1, 2)}
    pool = presign(svcs, key, (1, 2), path=(0, 7), count=3)
    assert {p.epoch for p in pool} == {0} and all(list(p.signers) == [1, 2] and list(p.derivation_path) == [0, 7] for p in pool)
    assert len({p.presig_id for p in pool}) == 3 and len({p.big_r for p in pool}) == 3
    assert {i: svcs[i].store.count_fresh(key.key_id) - before[i] for i in (1, 2)} == {1: 3, 2: 3}
    assert svcs[3].store.count_fresh(key.key_id) == 0
    health = svcs[1].Health(node_pb2.NodeHealthRequest(), None)
    assert health.presignatures >= 3 and health.presign_sessions == 0
    metrics = node_metrics(type("S", (), {  # the node's pool-depth gauge, read at scrape time
        "cfg": dataclasses.replace(svcs[1].cfg, metrics=MetricsSettings("127.0.0.1:0")), "store_problem": "", "pools": svcs[1].pools,
        "audit": svcs[1].audit, "clock": svcs[1].clock, "_lock": svcs[1]._lock, "_sessions": {},
    })())
    assert f"mpcnet_presignatures_available {float(health.presignatures)}" in metrics.render().decode()
    listed = svcs[1].ListPresignatures(node_pb2.ListPresignaturesRequest(key_id=key.key_id), None)
    assert {p.presig_id for p in pool} <= {p.presig_id for p in listed.presignatures} and listed.cap_per_key == 64
    p = pool[0]
    req = sign_request(lay, key, p)
    resps = {i: svcs[i].SignPresigned(req, None) for i in (1, 2)}
    assert all(not r.replayed and r.signer == i for i, r in resps.items())
    shares = {i: share_of(svcs[i], r, p.presig_id) for i, r in resps.items()}
    assert all(s.rerandomized for s in shares.values())
    sig = combine_verified(key, req, shares)
    assert sig.r != int.from_bytes(p.big_r[1:], "big")  # re-randomised: r = x(R*), not x(R)
    # the same (request, attempt, presig_id) again: the stored share, byte for byte, no second consumption
    again = {i: svcs[i].SignPresigned(req, None) for i in (1, 2)}
    assert all(again[i].replayed and again[i].share == resps[i].share for i in (1, 2))
    for i in (1, 2):
        assert svcs[i].store.count_fresh(key.key_id) - before[i] == 2
        assert svcs[i].store.served_attempts(req.request_id) == [1]
        released = [e for e in svcs[i].audit.entries() if e.request_id == req.request_id and e.action == "sign-share"]
        assert [e.outcome for e in released] == ["released"] and released[0].details["presigned"] is True
        assert svcs[i].store.reservation(req.request_id, 1).session_id == p.presig_id


def test_a_used_presignature_refuses_another_request_or_attempt(lay, svcs, key) -> None:
    (p,) = presign(svcs, key, (1, 2), count=1)
    req = sign_request(lay, key, p)
    svcs[1].SignPresigned(req, None)
    other = sign_request(lay, key, p)  # another approved request
    e = _refused(svcs[1].SignPresigned, other)
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "presig-used") and e.message.startswith("presig_id: ")
    later = node_pb2.SignPresignedRequest()
    later.CopyFrom(req)
    later.attempt = 2
    e = _refused(svcs[1].SignPresigned, later)
    assert kind(e) == "presig-used"
    refused = [x for x in svcs[1].audit.entries() if x.request_id == other.request_id and x.action == "sign-share"]
    assert [x.outcome for x in refused] == ["refused"]


def test_path_signers_and_epoch_must_be_the_presignatures(lay, svcs, key) -> None:
    (p0,) = presign(svcs, key, (1, 2), path=(0,), count=1)
    e = _refused(svcs[1].SignPresigned, sign_request(lay, key, p0, path=(1,)))
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "presig-mismatch") and e.message.startswith("derivation_path: ")
    e = _refused(svcs[1].SignPresigned, sign_request(lay, key, p0, signers=(1, 3)))
    assert kind(e) == "presig-mismatch" and e.message.startswith("signers: ")
    e = _refused(svcs[1].SignPresigned, sign_request(lay, key, p0, epoch=1))
    assert kind(e) == "presig-mismatch" and e.message.startswith("epoch: ")
    # nothing was consumed: the right request still signs
    req = sign_request(lay, key, p0)
    combine_verified(key, req, {i: share_of(svcs[i], svcs[i].SignPresigned(req, None), p0.presig_id) for i in (1, 2)})


@pytest.fixture(scope="module")
def key2(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    return _dkg(svcs, b"pools-2")


def test_a_ban_deletes_the_pools_with_that_peer_and_refuses_it(lay, svcs, key2) -> None:
    (p12,) = presign(svcs, key2, (1, 2), count=1)
    (p13,) = presign(svcs, key2, (1, 3), count=1)
    assert svcs[1].bans.record(key2.key_id, 2, "test: selective failure") is not None
    fresh = {p.presig_id for p in svcs[1].store.fresh_presignatures(key2.key_id)}
    assert p12.presig_id not in fresh and p13.presig_id in fresh  # only the pool with the banned peer
    e = _refused(svcs[1].SignPresigned, sign_request(lay, key2, p12))
    assert (e.code, kind(e)) == (Code.PERMISSION_DENIED, "mpc-banned") and ("mpc-banned", "2") in e.metadata
    e = _refused(svcs[1].StartSession, node_pb2.StartSessionRequest(
        session_id=os.urandom(32), presign=node_pb2.PresignParams(key_id=key2.key_id, signers=[1, 2], count=1)))
    assert e.code == Code.PERMISSION_DENIED and e.message.startswith("presign.signers: ")
    req = sign_request(lay, key2, p13)  # the other pool still signs
    combine_verified(key2, req, {i: share_of(svcs[i], svcs[i].SignPresigned(req, None), p13.presig_id) for i in (1, 3)})


def test_attempt_taken_between_reserve_signing_and_sign_presigned(lay, svcs, key) -> None:
    a, b = presign(svcs, key, (1, 2), count=2)
    # ReserveSigning granted (request, 1) to a full-protocol session first
    req = sign_request(lay, key, a)
    reserve = node_pb2.ReserveSigningRequest(
        key_id=key.key_id, request_id=req.request_id, attempt=1, signers=[1, 2], session_id=os.urandom(32),
        approval_bundle=req.approval_bundle, digest=req.digest, derivation_path=req.derivation_path,
    )
    svcs[1].ReserveSigning(reserve, None)
    e = _refused(svcs[1].SignPresigned, req)
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "attempt-taken")
    assert a.presig_id in {p.presig_id for p in svcs[1].store.fresh_presignatures(key.key_id)}  # not consumed
    req.attempt = 2  # the next attempt is free
    combine_verified(key, req, {i: share_of(svcs[i], svcs[i].SignPresigned(req, None), a.presig_id) for i in (1, 2)})
    # and the other way round: a self-granted attempt refuses ReserveSigning for another session
    req_b = sign_request(lay, key, b)
    svcs[1].SignPresigned(req_b, None)
    reserve = node_pb2.ReserveSigningRequest(
        key_id=key.key_id, request_id=req_b.request_id, attempt=1, signers=[1, 2], session_id=os.urandom(32),
        approval_bundle=req_b.approval_bundle, digest=req_b.digest, derivation_path=req_b.derivation_path,
    )
    e = _refused(svcs[1].ReserveSigning, reserve)
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "attempt-taken")
    reserve.session_id = b.presig_id  # exactly the self-grant: granted again, not a new one
    assert svcs[1].ReserveSigning(reserve, None).created is False


def test_without_receipts_a_set_below_the_reservation_quorum_is_unreserved(lay, svcs, key, monkeypatch) -> None:
    import mpc_node.presign as presign_mod

    (p,) = presign(svcs, key, (1, 2), count=1)
    monkeypatch.setattr(presign_mod, "reservation_quorum", lambda n: 3)  # as a 2-of-5 key would (t < q)
    req = sign_request(lay, key, p)
    e = _refused(svcs[1].SignPresigned, req)
    assert (e.code, kind(e)) == (Code.PERMISSION_DENIED, "unreserved")
    assert svcs[1].store.served_attempts(req.request_id) == []
    short = [svcs[i].ReserveSigning(_reserve_for(req), None).receipt for i in (1, 2)]
    req.reservation_receipts[:] = short
    assert kind(_refused(svcs[1].SignPresigned, req)) == "unreserved"  # 2 receipts, 3 needed
    req.reservation_receipts.append(svcs[3].ReserveSigning(_reserve_for(req), None).receipt)
    combine_verified(key, req, {i: share_of(svcs[i], svcs[i].SignPresigned(req, None), p.presig_id) for i in (1, 2)})


def _reserve_for(req: node_pb2.SignPresignedRequest) -> node_pb2.ReserveSigningRequest:
    return node_pb2.ReserveSigningRequest(
        key_id=req.key_id, request_id=req.request_id, attempt=req.attempt, signers=req.signers, session_id=req.presig_id,
        approval_bundle=req.approval_bundle, digest=req.digest, derivation_path=req.derivation_path,
    )


def test_the_cap_and_the_batch_size(svcs, key, monkeypatch) -> None:
    n1 = svcs[1]
    held = n1.store.count_fresh(key.key_id)
    monkeypatch.setattr(n1, "cfg", dataclasses.replace(n1.cfg, max_presignatures_per_key=held + 2))

    def start(count: int) -> node_pb2.StartSessionRequest:
        return node_pb2.StartSessionRequest(
            session_id=os.urandom(32), presign=node_pb2.PresignParams(key_id=key.key_id, signers=[1, 2], count=count))

    e = _refused(n1.StartSession, start(3))
    assert e.code == Code.RESOURCE_EXHAUSTED and e.message.startswith("presign.count: ")
    e = _refused(n1.StartSession, start(17))
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("presign.count: ")
    e = _refused(n1.StartSession, start(0))
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("presign.count: ")
    n1.StartSession(start(2), None)  # a live session counts towards the cap
    e = _refused(n1.StartSession, start(1))
    assert e.code == Code.RESOURCE_EXHAUSTED
    assert n1.Health(node_pb2.NodeHealthRequest(), None).presign_sessions == 1
    e = _refused(n1.StartSession, node_pb2.StartSessionRequest(
        session_id=os.urandom(32), presign=node_pb2.PresignParams(key_id=key.key_id, signers=[1, 2], count=1, epoch=5)))
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "epoch") and e.message.startswith("presign.epoch: ")
    monkeypatch.setattr(n1, "cfg", dataclasses.replace(n1.cfg, max_presignatures_per_key=0))
    e = _refused(n1.StartSession, start(1))
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("presign: ")
    refused = [x for x in n1.audit.entries() if x.action == "presign" and x.outcome == "refused"]
    assert len(refused) >= 5


def test_list_and_discard(lay, svcs, key) -> None:
    a, b, c = presign(svcs, key, (2, 3), count=3)
    n2 = svcs[2]
    e = _refused(n2.DiscardPresignatures, node_pb2.DiscardPresignaturesRequest(key_id=key.key_id, reason="Bad Reason"))
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("reason: ")
    e = _refused(n2.DiscardPresignatures, node_pb2.DiscardPresignaturesRequest(key_id=key.key_id, presig_ids=[b"x"], reason="r"))
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("presig_ids[0]: ")
    r = n2.DiscardPresignatures(node_pb2.DiscardPresignaturesRequest(key_id=key.key_id, presig_ids=[a.presig_id], reason="mismatch"), None)
    assert r.discarded == 1
    assert kind(_refused(n2.SignPresigned, sign_request(lay, key, a))) == "presig-unknown"
    req = sign_request(lay, key, b)
    n2.SignPresigned(req, None)
    r = n2.DiscardPresignatures(node_pb2.DiscardPresignaturesRequest(key_id=key.key_id, presig_ids=[b.presig_id], reason="test"), None)
    assert r.discarded == 0  # a used one is never deleted
    assert n2.SignPresigned(req, None).replayed
    listed = {p.presig_id for p in n2.ListPresignatures(node_pb2.ListPresignaturesRequest(), None).presignatures}
    assert c.presig_id in listed and a.presig_id not in listed and b.presig_id not in listed
    n2.DiscardPresignatures(node_pb2.DiscardPresignaturesRequest(key_id=key.key_id, reason="epoch-change"), None)
    assert n2.store.count_fresh(key.key_id) == 0
    assert [x.details["reason"] for x in n2.audit.entries() if x.action == "presign-discard"][-3:] == ["mismatch", "test", "epoch-change"]
    e = _refused(n2.ListPresignatures, node_pb2.ListPresignaturesRequest(key_id=b"short"))
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("key_id: ")


class _Crash(Exception):
    """The process dies here (in process: the call never answers)."""


class _CrashAfterConsume:
    """A FaultInjector stand-in: the SignPresigned consume transaction commits, then the node dies."""

    path = None

    def at(self, point: str) -> None:
        if point == "presign-consumed":
            raise _Crash(point)

    def check(self, protocol: str, round: int) -> None:
        return None


def test_a_crash_after_the_consume_commit_replays_and_never_reuses_r(lay, svcs, key, monkeypatch) -> None:
    a, b = presign(svcs, key, (1, 3), count=2)
    req = sign_request(lay, key, a)
    monkeypatch.setattr(svcs[1], "faults", _CrashAfterConsume())
    with pytest.raises(_Crash):
        svcs[1].SignPresigned(req, None)
    n1 = restart(lay, svcs, 1)  # the store reopened: fresh ones deleted, the tombstone and its share kept
    info, _ = n1.store.pool_presignature(a.presig_id)
    assert info.used and (info.request_id, info.attempt) == (req.request_id, 1)
    assert n1.store.pool_presignature(b.presig_id) is None and n1.store.count_fresh() == 0
    assert [e.details["reason"] for e in n1.audit.entries() if e.action == "presign-discard"][-1] == "node-start"
    first = n1.SignPresigned(req, None)
    assert first.replayed and n1.SignPresigned(req, None).share == first.share
    third = share_of(svcs[3], svcs[3].SignPresigned(req, None), a.presig_id)
    sig = combine_verified(key, req, {1: share_of(n1, first, a.presig_id), 3: third})
    # the presignature never signs anything else: another request, and after the restart b is gone
    assert kind(_refused(n1.SignPresigned, sign_request(lay, key, a))) == "presig-used"
    assert kind(_refused(n1.SignPresigned, sign_request(lay, key, b))) == "presig-unknown"
    released = [e for e in n1.audit.entries() if e.request_id == req.request_id and e.action == "sign-share" and e.outcome == "released"]
    assert len(released) == 1  # the entry was committed with the consumption, before the crash
    (c,) = presign(svcs, key, (1, 3), count=1)
    req_c = sign_request(lay, key, c)
    sig_c = combine_verified(key, req_c, {i: share_of(svcs[i], svcs[i].SignPresigned(req_c, None), c.presig_id) for i in (1, 3)})
    assert sig_c.r != sig.r


@pytest.fixture
def key3(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    return _dkg(svcs, b"pools-epoch")


def _bump_epoch(svc: NodeService, key_id: bytes, by: int) -> None:
    """The key's active epoch moves on this node's store (what a CommitEpoch that landed in
    between would leave), without anything else of the commit."""
    with svc.store._write() as c:
        assert c.execute("UPDATE key_epochs SET epoch = epoch + ? WHERE key_id = ?", (by, key_id)).rowcount == 1


def _to_round3(svcs: dict[int, NodeService], key: node_pb2.DkgResult, signers: list[int]) -> tuple[bytes, dict[int, list]]:
    from tests.integration.relay_util import route

    sid = os.urandom(32)
    req = node_pb2.StartSessionRequest(session_id=sid, presign=node_pb2.PresignParams(key_id=key.key_id, signers=signers, count=2))
    resps = {i: svcs[i].StartSession(req, None) for i in signers}
    for rnd in (1, 2):
        resps = {k: svcs[k].Step(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox), None)
                 for k, inbox in route(resps, signers).items()}
    return sid, route(resps, signers)


def test_an_epoch_change_during_a_presign_session_stores_nothing(lay, svcs, key3) -> None:
    n1 = svcs[1]
    # the commit aborts the live presign session (it is a signing session)
    sid, inboxes = _to_round3(svcs, key3, [1, 2])
    assert n1.Health(node_pb2.NodeHealthRequest(), None).presign_sessions >= 1
    assert n1._abort_key_sessions(key3.key_id, "key epoch 1 committed") >= 1
    e = _refused(n1.Step, node_pb2.StepRequest(session_id=sid, round=3, envelopes=inboxes[1]))
    assert e.code == Code.ABORTED
    assert n1.store.count_fresh(key3.key_id) == 0
    # the commit lands between the last step's checks and its store transaction: refused, nothing stored
    sid, inboxes = _to_round3(svcs, key3, [1, 2])
    _bump_epoch(n1, key3.key_id, 1)
    try:
        e = _refused(n1.Step, node_pb2.StepRequest(session_id=sid, round=3, envelopes=inboxes[1]))
        assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "epoch")
        assert n1.store.count_fresh(key3.key_id) == 0
    finally:
        _bump_epoch(n1, key3.key_id, -1)


def test_a_presignature_of_an_epoch_no_longer_active_does_not_sign(lay, svcs, key3) -> None:
    n1 = svcs[1]
    (p,) = presign(svcs, key3, (1, 2), count=1)
    req = sign_request(lay, key3, p)
    _bump_epoch(n1, key3.key_id, 1)
    try:
        e = _refused(n1.SignPresigned, req)
        assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "epoch")
        assert n1.store.served_attempts(req.request_id) == [] and n1.store.reservation(req.request_id, 1) is None
    finally:
        _bump_epoch(n1, key3.key_id, -1)
    assert n1.store.count_fresh(key3.key_id) == 1  # nothing consumed (a real commit also deletes it: epoch_store.py)


def test_a_restart_deletes_every_fresh_presignature(lay, svcs, key) -> None:
    (p,) = presign(svcs, key, (2, 3), count=1)
    n2 = restart(lay, svcs, 2)
    assert n2.Health(node_pb2.NodeHealthRequest(), None).presignatures == 0
    e = _refused(n2.SignPresigned, sign_request(lay, key, p))
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "presig-unknown") and e.message.startswith("presig_id: ")


def _refresh(lay: Layout, svcs: dict[int, NodeService], key: node_pb2.DkgResult, epoch: int) -> None:
    """A real refresh of ``key`` from ``epoch`` on every node, committed everywhere."""
    from governance.keyop import KeyOpKind

    from .keyops_util import operation, run as run_reshare

    op = operation(lay, svcs[1].gov.governance_root, key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2,
                   old_epoch=epoch).to_bytes()
    sid = os.urandom(32)
    res = run_reshare(svcs, sid, [1, 2, 3], reshare=node_pb2.ReshareParams(operation=op, dealers=[1, 2, 3], key_label=b"pools"))
    assert all(isinstance(r, node_pb2.StepResponse) and r.reshare_result.epoch == epoch + 1 for r in res.values()), res
    commit = node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=sid, receipts=[r.reshare_result.receipt for r in res.values()])
    for s in svcs.values():
        s.CommitEpoch(commit, None)


def test_a_refresh_commit_deletes_the_pools_of_the_old_epoch(lay, svcs) -> None:
    key = _dkg(svcs, b"pools")  # run_session's dkg label must match the operation's
    old = presign(svcs, key, (1, 2), count=2)
    _refresh(lay, svcs, key, 0)
    assert all(svcs[i].store.count_fresh(key.key_id) == 0 for i in (1, 2, 3))
    e = _refused(svcs[1].SignPresigned, sign_request(lay, key, old[0]))
    assert kind(e) == "presig-unknown"
    e = _refused(svcs[1].StartSession, node_pb2.StartSessionRequest(
        session_id=os.urandom(32), presign=node_pb2.PresignParams(key_id=key.key_id, signers=[1, 2], count=1, epoch=0)))
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "epoch")
    (p,) = presign(svcs, key, (1, 3), count=1, epoch=1)
    req = sign_request(lay, key, p)
    assert req.epoch == 1
    combine_verified(key, req, {i: share_of(svcs[i], svcs[i].SignPresigned(req, None), p.presig_id) for i in (1, 3)})
