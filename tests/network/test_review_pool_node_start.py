"""Review of the node side of presignature pools (issue 14, P2), as an attacker: node start.

Every fresh presignature is deleted at node start (design D5: a restored store or snapshot
cannot revive one). Finding: when that delete could not be written (a full or failing disk), the
node did not start at all (the StoreError escaped NodeService's constructor), although a node
with an unwritable store otherwise starts, reports the problem in Health and signs nothing. Now
it starts; the presignatures found at start are refused (presig-unknown), never listed nor
counted, and deleted as soon as a write succeeds."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .presign_util import Code, close, kind, presign, restart, run_session, service, sign_request

N, T = 3, 2


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("review-start"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        close(s)


@pytest.fixture(scope="module")
def key(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    res = run_session(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"review-start"))
    k: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def _refused(call: object, *args: object) -> RpcError:
    with pytest.raises(RpcError) as e:
        call(*args, None)  # type: ignore[operator]
    return e.value


def test_a_node_whose_store_is_unwritable_at_start_starts_and_never_revives_a_presignature(
    lay: Layout, svcs: dict[int, NodeService], key: node_pb2.DkgResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = presign(svcs, key, (1, 3), count=2)
    fault = tmp_path / "fault.json"
    fault.write_text(json.dumps({"action": "store-unwritable"}))
    monkeypatch.setenv("MPC_TEST_FAULT_FILE", str(fault))
    n3 = restart(lay, svcs, 3)  # the start-time delete fails: the node starts anyway
    assert n3.store.count_fresh(key.key_id) == 2  # still in the file ...
    health = n3.Health(node_pb2.NodeHealthRequest(), None)
    assert health.presignatures == 0  # ... but never counted,
    assert n3.ListPresignatures(node_pb2.ListPresignaturesRequest(), None).presignatures == []  # listed
    e = _refused(n3.SignPresigned, sign_request(lay, key, pool[0]))  # nor used
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "presig-unknown")
    fault.unlink()  # the disk is writable again: the next pool call deletes them
    e = _refused(n3.SignPresigned, sign_request(lay, key, pool[1]))
    assert (e.code, kind(e)) == (Code.FAILED_PRECONDITION, "presig-unknown")
    assert n3.store.count_fresh(key.key_id) == 0
    assert [x.details["reason"] for x in n3.audit.entries() if x.action == "presign-discard"][-1:] == ["node-start"]
    # and the pools work again
    (p,) = presign(svcs, key, (1, 3), count=1)
    req = sign_request(lay, key, p)
    assert not n3.SignPresigned(req, None).replayed
