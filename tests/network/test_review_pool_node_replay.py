"""Review of the node side of presignature pools (issue 14, P2), as an attacker: the replay path.

A compromised coordinator calls ``SignPresigned`` directly. A consumed presignature answers the
same ``(request, attempt, presig_id)`` with the stored share (design D2, contract "One-round
signing" step 2: "no other check changes this: the share already left durably"); it never
yields anything else: not under another signer list, path, digest or key, not for another
attempt, and not after the request expired, the policy changed or a co-signer was banned or
revoked (each answers the same bytes, consumes nothing and records nothing)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from crypto_core.errors import ProtocolError
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .presign_util import Code, close, combine_verified, kind, presign, run_session, service, share_of, sign_request

N, T = 3, 2


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("review-replay"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


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
    return _dkg(svcs, b"review-replay")


def _refused(call: object, *args: object) -> RpcError:
    with pytest.raises(RpcError) as e:
        call(*args, None)  # type: ignore[operator]
    return e.value


def _state(svc: NodeService, req: node_pb2.SignPresignedRequest) -> tuple[object, ...]:
    """What a replay must not change: served attempts, the grant, fresh count, sign-share entries."""
    entries = [(e.action, e.outcome) for e in svc.audit.entries() if e.request_id == req.request_id and e.outcome != "refused"]
    return svc.store.served_attempts(req.request_id), svc.store.reservation(req.request_id, req.attempt), svc.store.count_fresh(), entries


def _copy(req: node_pb2.SignPresignedRequest, **changes: object) -> node_pb2.SignPresignedRequest:
    out = node_pb2.SignPresignedRequest()
    out.CopyFrom(req)
    for name, value in changes.items():
        field = getattr(out, name)
        if isinstance(value, (list, tuple)):
            field[:] = list(value)  # type: ignore[index]
        else:
            setattr(out, name, value)
    return out


def test_a_replay_after_a_co_signer_was_revoked_still_answers_the_stored_share(lay, svcs, key, monkeypatch) -> None:
    """Finding: the roster check on ``signers`` ran before the replay check, so once a co-signer
    was revoked (after the consume committed) the coordinator's retry got presig-mismatch instead
    of the share that had already left durably; the attempt was burnt (contract step 2)."""
    p, q = presign(svcs, key, (1, 2), count=2)
    req = sign_request(lay, key, p)
    first = svcs[1].SignPresigned(req, None)
    before = _state(svcs[1], req)
    peers = svcs[1].peers()
    monkeypatch.setattr(svcs[1], "peers", lambda: {i: v for i, v in peers.items() if i != 2})  # node 2 revoked
    again = svcs[1].SignPresigned(req, None)
    assert again.replayed and again.share == first.share
    assert _state(svcs[1], req) == before
    # a fresh presignature with the revoked signer still never signs
    e = _refused(svcs[1].SignPresigned, sign_request(lay, key, q))
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "presig-mismatch") and e.message.startswith("signers: ")
    assert q.presig_id in {x.presig_id for x in svcs[1].store.fresh_presignatures(key.key_id)}


def test_an_empty_signer_list_is_invalid_argument(lay, svcs, key) -> None:
    (p,) = presign(svcs, key, (1, 2), count=1)
    e = _refused(svcs[1].SignPresigned, sign_request(lay, key, p, signers=()))
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("signers: ")
    assert svcs[1].store.count_fresh(key.key_id) >= 1


def test_a_replay_under_other_fields_answers_the_same_bytes_and_nothing_else(lay, svcs, key) -> None:
    """Held: a replay under another signer list, path, digest, key id or approval answers the
    stored bytes (the share of the original request: combining it for anything else fails),
    consumes nothing and records nothing; another attempt or request is presig-used."""
    (p,) = presign(svcs, key, (1, 3), count=1)
    req = sign_request(lay, key, p)
    resps = {i: svcs[i].SignPresigned(req, None) for i in (1, 3)}
    before = _state(svcs[1], req)
    variants = [
        _copy(req, signers=[2, 3]), _copy(req, derivation_path=[9]), _copy(req, digest=os.urandom(32)), _copy(req, key_id=os.urandom(32)),
        _copy(req, approval_bundle=b""), _copy(req, epoch=7),
    ]
    for v in variants:
        r = svcs[1].SignPresigned(v, None)
        assert r.replayed and r.share == resps[1].share
    assert _state(svcs[1], req) == before
    shares = {i: share_of(svcs[i], r, p.presig_id) for i, r in resps.items()}
    assert all(s.digest == req.digest for s in shares.values())
    combine_verified(key, req, shares)
    other = _copy(req, digest=os.urandom(32))
    with pytest.raises(ProtocolError):
        combine_verified(key, other, shares)  # a replayed share signs nothing but the approved digest
    for v in (_copy(req, attempt=2), _copy(req, request_id=sign_request(lay, key, p).request_id)):
        e = _refused(svcs[1].SignPresigned, v)
        assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "presig-used")
    assert _state(svcs[1], req) == before


def test_a_replay_after_expiry_or_a_ban_answers_the_same_share(lay, svcs, monkeypatch) -> None:
    """Held (and why it is safe): after the consume committed, the share is what the coordinator
    already received (or would have); the replay answers it byte for byte even once the request
    expired or a co-signer was banned, and nothing new is signed, consumed or granted."""
    key = _dkg(svcs, b"review-replay-ban")
    (p,) = presign(svcs, key, (1, 2), count=1)
    req = sign_request(lay, key, p)
    first = svcs[1].SignPresigned(req, None)
    before = _state(svcs[1], req)
    gov = svcs[1].gov
    now = gov.clock()
    monkeypatch.setattr(gov, "clock", lambda: now + 400 * 86400 * 1000)  # the approvals long expired
    assert svcs[1].SignPresigned(req, None).share == first.share
    fresh_req = sign_request(lay, key, presign(svcs, key, (1, 2), count=1)[0])
    assert kind(_refused(svcs[1].SignPresigned, fresh_req)) == "expired"  # a new consumption is checked
    monkeypatch.undo()
    svcs[1].bans.record(key.key_id, 2, "test: banned after the release")
    r = svcs[1].SignPresigned(req, None)
    assert r.replayed and r.share == first.share
    assert _state(svcs[1], req)[:2] == before[:2]
