"""Review of issue 14 (attacker): the attempt bound through a MIX of pool and full-protocol
attempts by a compromised coordinator, in process (the test plays the coordinator).

A pool attempt k grants (request, k) -> (signers, session = presig_id). A full-protocol
session whose session id is that same presig_id, on the same signers and attempt, carries
receipts for exactly that grant: it must not release a second signature for attempt k."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2
from tests.integration.relay_util import SIGN_RELEASE_ROUND, reserve_request, route

from .presign_util import close, combine_verified, presign, run_session, service, share_of, sign_request

N, T = 3, 2


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("review-pools"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        close(s)


@pytest.fixture(scope="module")
def key(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    res = run_session(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"rev-d"))
    k: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def _full_session(
    svcs: dict[int, NodeService], sid: bytes, sign: node_pb2.SignParams, attempt: int
) -> dict[int, node_pb2.StepResponse | RpcError]:
    """A full signing session ``sid`` on ``sign.signers``; before the release round every node is
    asked for a receipt of (request, attempt, signers, sid) (refusals skipped)."""
    among = list(sign.signers)
    try:
        resps: dict[int, object] = {i: svcs[i].StartSession(node_pb2.StartSessionRequest(session_id=sid, sign=sign), None) for i in among}
    except RpcError as e:
        return {0: e}
    while not all(r.finished for r in resps.values()):  # type: ignore[attr-defined]
        rnd = next(iter(resps.values())).round  # type: ignore[attr-defined]
        extra: dict[str, object] = {}
        if rnd == SIGN_RELEASE_ROUND:
            receipts = []
            for i in sorted(svcs):
                try:
                    receipts.append(svcs[i].ReserveSigning(reserve_request(sid, sign, attempt), None).receipt)
                except RpcError:
                    pass
            extra = {"attempt": attempt, "reservation_receipts": receipts}
        out: dict[int, object] = {}
        for k, inbox in route(resps, among).items():  # type: ignore[arg-type]
            try:
                out[k] = svcs[k].Step(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox, **extra), None)  # type: ignore[arg-type]
            except RpcError as e:
                out[k] = e
        if any(isinstance(v, RpcError) for v in out.values()):
            return out  # type: ignore[return-value]
        resps = out
    return resps  # type: ignore[return-value]


def test_a_full_session_reusing_the_presig_id_as_its_session_gives_no_second_signature(lay, svcs, key) -> None:
    (p,) = presign(svcs, key, (1, 2), count=1)
    digest = os.urandom(32)
    req = sign_request(lay, key, p, digest=digest)
    combine_verified(key, req, {i: share_of(svcs[i], svcs[i].SignPresigned(req, None), p.presig_id) for i in (1, 2)})
    # the compromised coordinator now runs the full protocol for the same request, attempt 1,
    # signers {1, 2}, with the presig_id as its session id: the grant it was given covers exactly that
    sign = node_pb2.SignParams(
        key_id=key.key_id, signers=[1, 2], derivation_path=list(req.derivation_path), digest=digest, request_id=req.request_id,
        approval_bundle=req.approval_bundle, epoch=0,
    )
    out = _full_session(svcs, p.presig_id, sign, attempt=1)
    released = [
        r for r in out.values() if isinstance(r, node_pb2.StepResponse) and r.finished and any(e.receiver == 0 for e in r.envelopes)
    ]
    assert not released, "a second signature share set for attempt 1 was released"
    refusals = [r for r in out.values() if isinstance(r, RpcError)]
    assert refusals, out
    assert all("attempt 1 was already served" in r.message for r in refusals), [r.message for r in refusals]
