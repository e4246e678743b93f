"""Review of the node side of presignature pools (issue 14, P2), as an attacker: bans the store
could not take.

A ban deletes the key's fresh presignatures with the banned peer in the same store transaction
(``NodeStore.add_ban``). Finding: when the store refused that write (a full or failing disk)
and the ban went to the ban journal instead, those presignatures stayed listed by
ListPresignatures and counted in Health until the sweeper moved the ban into the store (the
coordinator's pool took them as ready; SignPresigned refused them, mpc-banned). Now a
presignature with a banned (recorded, journaled or pending) signer is never listed nor counted,
and the sweeper's retry deletes it with the ban."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .presign_util import Code, close, kind, presign, run_session, service, sign_request

N, T = 3, 2


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("review-bans"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        close(s)


def test_a_journaled_ban_hides_the_pools_with_that_peer_until_it_deletes_them(lay: Layout, svcs: dict[int, NodeService]) -> None:
    res = run_session(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"review-bans"))
    key: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=key.key_id, public_key=key.public_key), None)
    (p12,) = presign(svcs, key, (1, 2), count=1)
    (p13,) = presign(svcs, key, (1, 3), count=1)
    n1 = svcs[1]
    n1.store.write_fault = lambda: "disk full (test)"
    try:
        assert n1.bans.record(key.key_id, 2, "test: selective failure") == "journaled"
    finally:
        n1.store.write_fault = None
    assert n1.store.count_fresh(key.key_id) == 2  # the store did not take the ban: the row is still there
    listed = [p.presig_id for p in n1.ListPresignatures(node_pb2.ListPresignaturesRequest(key_id=key.key_id), None).presignatures]
    assert listed == [p13.presig_id]
    assert n1.Health(node_pb2.NodeHealthRequest(), None).presignatures == 1
    with pytest.raises(RpcError) as e:
        n1.SignPresigned(sign_request(lay, key, p12), None)
    assert (e.value.code, kind(e.value)) == (Code.PERMISSION_DENIED, "mpc-banned")
    assert n1.retry_bans() == 1  # the sweeper: the ban reaches the store, and deletes the pool with it
    assert [p.presig_id for p in n1.store.fresh_presignatures(key.key_id)] == [p13.presig_id]
