"""A signing attempt is never granted to a signer set holding a peer the node bans for the key
(review: ReserveSigning granted it, only the release refused). The grant refuses with
FAILED_PRECONDITION naming ``signers`` (audited), and re-checks the bans inside the grant's
transaction as releases do (:class:`mpc_node.in_force.InForce` ``still``): a ban counted
between the checks and the transaction stops the grant too. In process (the test plays the coordinator)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2
from tests.integration.govtools import approved_bundle

from .presign_util import close, run_session, service

Code = grpc.StatusCode
N, T = 3, 2


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("reserve-bans"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        close(s)


@pytest.fixture(scope="module")
def key(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    res = run_session(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"res-ban"))
    k: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def _reserve_req(lay: Layout, key: node_pb2.DkgResult, signers: list[int]) -> node_pb2.ReserveSigningRequest:
    digest = os.urandom(32)
    rid, bundle = approved_bundle(lay, key.key_id, digest, [])
    return node_pb2.ReserveSigningRequest(
        key_id=key.key_id, request_id=rid, attempt=1, signers=signers, session_id=os.urandom(32), approval_bundle=bundle,
        digest=digest, derivation_path=[],
    )


def _refused_entries(svc: NodeService, rid: str) -> list[Any]:
    svc.outbox.flush()
    return [e for e in svc.audit.entries() if e.action == "sign-reserve" and e.request_id == rid and e.outcome == "refused"]


def test_a_banned_peer_gets_no_attempt(lay, svcs, key) -> None:
    n1 = svcs[1]
    n1.bans.record(key.key_id, 2, "test: a failed check")
    req = _reserve_req(lay, key, [2, 3])
    with pytest.raises(RpcError) as e:
        n1.ReserveSigning(req, None)
    assert e.value.code == Code.FAILED_PRECONDITION, e.value
    assert e.value.message.startswith("signers: node 2 (node-2) is banned by node-1"), e.value.message
    assert ("mpc-banned", "2") in e.value.metadata
    assert n1.store.reservation(req.request_id, 1) is None  # nothing granted
    assert len(_refused_entries(n1, req.request_id)) == 1  # audited like every refusal
    # a signer set without the banned peer is granted as before
    ok = _reserve_req(lay, key, [1, 3])
    assert n1.ReserveSigning(ok, None).created
    # the other nodes do not ban node 2: they grant
    assert svcs[3].ReserveSigning(req, None).created


def test_a_ban_counted_after_the_checks_stops_the_grant_in_its_transaction(lay, svcs, key, monkeypatch) -> None:
    n3 = svcs[3]
    real = n3.store.reserve_attempt

    def ban_first(*a: Any, **kw: Any) -> bool:  # another session bans node 1 after the grant's checks passed
        n3.bans.record(key.key_id, 1, "test: a failed check meanwhile")
        return real(*a, **kw)

    monkeypatch.setattr(n3.store, "reserve_attempt", ban_first)
    req = _reserve_req(lay, key, [1, 2])
    with pytest.raises(RpcError) as e:
        n3.ReserveSigning(req, None)
    assert e.value.code == Code.FAILED_PRECONDITION, e.value
    assert e.value.message.startswith("signers: node 1 (node-1) is banned by node-3"), e.value.message
    assert ("mpc-banned", "1") in e.value.metadata
    assert n3.store.reservation(req.request_id, 1) is None  # the transaction wrote nothing
    assert len(_refused_entries(n3, req.request_id)) == 1
    assert not [e for e in n3.audit.entries() if e.action == "sign-reserve" and e.request_id == req.request_id and e.outcome != "refused"]
