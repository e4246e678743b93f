"""A node whose store fails in the middle of pool work (issue 14): the pool-path counterpart of
tests/integration/test_clock_and_store.py::test_store_failure_in_the_middle_of_a_session_is_unavailable_not_an_abort
(that one runs the full protocol with pools off).

A store that cannot be written when a presign session finishes (round 3), or when SignPresigned
consumes a presignature, is this node's problem: UNAVAILABLE naming the store (never ABORTED nor
INTERNAL), nothing stored, nothing released, nothing consumed; once the disk works again the
same presignature signs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2
from tests.integration.relay_util import route

from .presign_util import Code, close, presign, run_session, service, sign_request

N, T = 3, 2
DISK = "disk I/O error (test: injected store fault)"


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("pool-store-fault"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        close(s)


@pytest.fixture(scope="module")
def key(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    res = run_session(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"pool-store"))
    k: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def test_a_store_failure_at_the_end_of_a_presign_session_is_unavailable_and_stores_nothing(
    svcs: dict[int, NodeService], key: node_pb2.DkgResult,
) -> None:
    before = svcs[3].store.count_fresh(key.key_id)
    sid = os.urandom(32)
    params = node_pb2.PresignParams(key_id=key.key_id, signers=[1, 3], epoch=0, count=2)
    resps = {i: svcs[i].StartSession(node_pb2.StartSessionRequest(session_id=sid, presign=params), None) for i in (1, 3)}
    failed: RpcError | None = None
    while not all(r.finished for r in resps.values()):
        rnd = next(iter(resps.values())).round
        out = {}
        for k, inbox in route(resps, [1, 3]).items():
            if k == 3 and rnd == 3:  # the finishing step: the node must store the batch now
                svcs[3].store.write_fault = lambda: DISK
            try:
                out[k] = svcs[k].Step(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox), None)
            except RpcError as e:
                assert k == 3 and rnd == 3, (k, rnd, e.code, e.message)
                failed = e
            finally:
                svcs[3].store.write_fault = None
        if failed is not None:
            break
        resps = out
    assert failed is not None, "node 3 finished although its store could not be written"
    assert failed.code == Code.UNAVAILABLE and "store" in failed.message, (failed.code, failed.message)
    assert svcs[3].store.count_fresh(key.key_id) == before  # nothing stored
    assert svcs[3].Health(node_pb2.NodeHealthRequest(), None).presign_sessions == 0


def test_a_store_failure_at_the_consume_commit_is_unavailable_and_releases_nothing(
    lay: Layout, svcs: dict[int, NodeService], key: node_pb2.DkgResult,
) -> None:
    (p,) = presign(svcs, key, (1, 3), count=1)
    req = sign_request(lay, key, p)
    svcs[3].store.write_fault = lambda: DISK
    try:
        with pytest.raises(RpcError) as e:
            svcs[3].SignPresigned(req, None)
    finally:
        svcs[3].store.write_fault = None
    assert e.value.code == Code.UNAVAILABLE and "store" in e.value.message, (e.value.code, e.value.message)
    assert svcs[3].store.served_attempts(req.request_id) == []
    assert not [x for x in svcs[3].audit.entries() if x.request_id == req.request_id and x.action == "sign-share"]
    # the disk works again: the same (request, attempt, presignature) signs, once
    resp = svcs[3].SignPresigned(req, None)
    assert not resp.replayed and resp.signer == 3
