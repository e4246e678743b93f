"""Pool signing and the attempt bound on five nodes (issue 14, design D1), in process.

2-of-5: a signer set of 2 is below the reservation quorum (3 of 5), so SignPresigned needs 3
valid receipts for exactly (request, attempt, signers, session = presig_id): fewer, or receipts
for another session, are ``unreserved``. 3-of-5: every signer set is a quorum and self-grants.
Either way a compromised coordinator that drives every signer set at every attempt number gets
at most MAX_SIGN_ATTEMPTS signatures for one approved request."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from governance.reservation import MAX_SIGN_ATTEMPTS, reservation_quorum
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .presign_util import Code, close, combine_verified, kind, presign, run_session, service, share_of, sign_request

N = 5


def _cluster(tmp: pytest.TempPathFactory, t: int) -> Iterator[tuple[object, dict[int, NodeService], node_pb2.DkgResult]]:
    lay = prepare(tmp.mktemp(f"pools-{t}of5"), N, t, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    svcs = {i: service(lay, i) for i in range(1, N + 1)}
    try:
        res = run_session(svcs, os.urandom(32), list(range(1, N + 1)), dkg=node_pb2.DkgParams(threshold=t, parties=N, key_label=b"q"))
        key = res[1].dkg_result
        for s in svcs.values():
            s.CommitKey(node_pb2.CommitKeyRequest(key_id=key.key_id, public_key=key.public_key), None)
        yield lay, svcs, key
    finally:
        for s in svcs.values():
            close(s)


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, dict[int, NodeService], node_pb2.DkgResult]]:
    yield from _cluster(tmp_path_factory, 2)


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, dict[int, NodeService], node_pb2.DkgResult]]:
    yield from _cluster(tmp_path_factory, 3)


def _reserve(req: node_pb2.SignPresignedRequest, session: bytes | None = None) -> node_pb2.ReserveSigningRequest:
    return node_pb2.ReserveSigningRequest(
        key_id=req.key_id, request_id=req.request_id, attempt=req.attempt, signers=req.signers,
        session_id=req.presig_id if session is None else session, approval_bundle=req.approval_bundle, digest=req.digest,
        derivation_path=req.derivation_path,
    )


def test_below_the_reservation_quorum_a_signer_needs_quorum_receipts(two) -> None:
    lay, svcs, key = two
    assert reservation_quorum(N) == 3
    (p,) = presign(svcs, key, (1, 2), count=1)
    req = sign_request(lay, key, p)
    with pytest.raises(RpcError) as e:
        svcs[1].SignPresigned(req, None)
    assert (e.value.code, kind(e.value)) == (Code.PERMISSION_DENIED, "unreserved")
    wrong = [svcs[i].ReserveSigning(_reserve(req, os.urandom(32)), None).receipt for i in (3, 4, 5)]  # another session
    req.reservation_receipts[:] = wrong
    with pytest.raises(RpcError) as e:
        svcs[1].SignPresigned(req, None)
    assert kind(e.value) == "unreserved"
    req.attempt = 2
    req.reservation_receipts[:] = [svcs[i].ReserveSigning(_reserve(req), None).receipt for i in (1, 2)]
    with pytest.raises(RpcError) as e:
        svcs[2].SignPresigned(req, None)
    assert kind(e.value) == "unreserved"  # 2 receipts, 3 needed
    req.reservation_receipts.append(svcs[5].ReserveSigning(_reserve(req), None).receipt)
    combine_verified(key, req, {i: share_of(svcs[i], svcs[i].SignPresigned(req, None), p.presig_id) for i in (1, 2)})
    assert svcs[1].store.served_attempts(req.request_id) == [2]


def _drive_every_set(lay, svcs, key, t: int, receipts: bool) -> int:
    sets = list(itertools.combinations(range(1, N + 1), t))
    pools = {s: presign(svcs, key, s, count=MAX_SIGN_ATTEMPTS) for s in sets}
    digest = os.urandom(32)
    first = sign_request(lay, key, pools[sets[0]][0], digest=digest)
    sigs = []
    for attempt in range(1, MAX_SIGN_ATTEMPTS + 1):
        for s in sets:
            p = pools[s][attempt - 1]
            req = sign_request(lay, key, p, digest=digest, request_id=first.request_id, attempt=attempt)
            req.approval_bundle = first.approval_bundle
            if receipts:  # the coordinator asks every node for a receipt of this set
                for i in svcs:
                    try:
                        req.reservation_receipts.append(svcs[i].ReserveSigning(_reserve(req), None).receipt)
                    except RpcError as e:
                        assert kind(e) == "attempt-taken", e.message
            shares = {}
            for i in s:
                try:
                    shares[i] = share_of(svcs[i], svcs[i].SignPresigned(req, None), p.presig_id)
                except RpcError as e:
                    assert kind(e) in ("attempt-taken", "unreserved"), e.message
            if len(shares) == t:
                sigs.append(combine_verified(key, req, shares))
    assert len({s.r for s in sigs}) == len(sigs)
    return len(sigs)


def test_two_of_five_every_set_and_attempt_gives_at_most_max_signatures(two) -> None:
    lay, svcs, key = two
    assert 1 <= _drive_every_set(lay, svcs, key, 2, receipts=True) <= MAX_SIGN_ATTEMPTS


def test_three_of_five_self_granted_gives_at_most_max_signatures(three) -> None:
    lay, svcs, key = three
    assert 1 <= _drive_every_set(lay, svcs, key, 3, receipts=False) <= MAX_SIGN_ATTEMPTS
