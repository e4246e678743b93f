"""Review of the node side of presignature pools (issue 14, P2), as an attacker: roster changes.

Finding: a fresh presignature whose signer set includes a node the roster then revoked stayed
stored, listed (ListPresignatures, Health, the pool-depth gauge) and counted against the key's
cap for good, although it can never sign again (revocation is final and indices are never
reused; SignPresigned refuses it). Now a roster change deletes them, audited; the others stay."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from governance.roster import revoke_node
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2
from tests.integration.rostertools import history, signed_next

from .presign_util import Code, close, combine_verified, kind, presign, run_session, service, share_of, sign_request

N, T = 3, 2


@pytest.fixture
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("review-roster"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        close(s)


def test_a_revocation_deletes_the_fresh_presignatures_with_the_revoked_signer(lay: Layout, svcs: dict[int, NodeService]) -> None:
    res = run_session(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"review-roster"))
    key: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=key.key_id, public_key=key.public_key), None)
    with_2 = presign(svcs, key, (1, 2), count=2)
    (p13,) = presign(svcs, key, (1, 3), count=1)
    used = sign_request(lay, key, with_2[0])
    svcs[1].SignPresigned(used, None)  # a used one's tombstone stays (and replays)
    r1 = history(lay)[0].change.new_roster
    change = node_pb2.InstallRosterChangeRequest(signed_change=signed_next(lay, r1, revoke_node(r1, 2)).to_bytes())
    for i in (1, 3):
        assert svcs[i].InstallRosterChange(change, None).installed
    n1 = svcs[1]
    assert [p.presig_id for p in n1.store.fresh_presignatures(key.key_id)] == [p13.presig_id]
    assert n1.Health(node_pb2.NodeHealthRequest(), None).presignatures == 1
    assert [x.details["reason"] for x in n1.audit.entries() if x.action == "presign-discard"][-1:] == ["revoked"]
    with pytest.raises(RpcError) as e:
        n1.SignPresigned(sign_request(lay, key, with_2[1]), None)
    assert (e.value.code, kind(e.value)) == (Code.FAILED_PRECONDITION, "presig-mismatch")
    assert n1.SignPresigned(used, None).replayed
    req = sign_request(lay, key, p13)  # the pool without the revoked node still signs
    combine_verified(key, req, {i: share_of(svcs[i], svcs[i].SignPresigned(req, None), p13.presig_id) for i in (1, 3)})
