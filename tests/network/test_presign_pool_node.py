"""Presignature pools on the node (issue 14, mpc_node/presign.py), driven in process.

Three :class:`NodeService` instances of a 2-of-3 cluster share DKG keys; the test plays the
coordinator (and a compromised one): presign sessions, SignPresigned, replays, crashes,
refusals. Every signature is combined under the coordinator's own derived key and verified
under OpenSSL (``cryptography``, ECDSA over the prehashed digest)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .presign_util import Code, close, combine_verified, kind, presign, run_session, service, share_of, sign_request

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
