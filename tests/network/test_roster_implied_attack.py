"""Attack (issue 11): an unsigned, "roster-implied" reshare that no roster change implies.

The admins reshare a key to a committee that leaves out an active node (here (1, 3) of the
active (1, 2, 3)). A hostile coordinator then sends the unsigned reshare "to every active node"
at the same roster version, which :func:`governance.keyop.roster_implied` accepts on its face
(new committee = active nodes, same threshold, old committee differs): node 2 would get a share
of a key the admins took away from it, with no admin signature and no roster change.

Defence under test: a node remembers the roster version whose operation set the key's committee
and accepts an unsigned reshare only when every node it adds joined the roster *after* that
version (removals are revocations by construction: the new committee is the active nodes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest

from governance.keyop import KeyOpKind, SignedKeyOperation
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .keyops_util import close, dkg, operation, run, services

Code = grpc.StatusCode
LABEL = b"keyops"


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("implied"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


def _session(svcs: dict[int, NodeService], op: bytes, dealers: list[int]) -> tuple[bytes, dict[int, object]]:
    o = SignedKeyOperation.from_bytes(op).operation
    sid = os.urandom(32)
    params = node_pb2.ReshareParams(operation=op, dealers=dealers, key_label=LABEL)
    return sid, run(svcs, sid, sorted(set(dealers) | set(o.new_committee)), reshare=params)


def test_an_unsigned_reshare_cannot_undo_the_admins_committee(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = dkg(svcs, 2)
    root = svcs[1].gov.governance_root
    drop = operation(lay, root, key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 3), old_t=2, new_t=2).to_bytes()
    sid, res = _session(svcs, drop, [1, 2, 3])
    receipts = [r.reshare_result.receipt for r in res.values() if r.reshare_result.receipt]  # type: ignore[attr-defined]
    for s in svcs.values():
        s.CommitEpoch(node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=sid, receipts=receipts), None)
    # the coordinator's forged "roster-implied" reshare back to every active node (no signature)
    forged = operation(lay, root, key, kind=KeyOpKind.RESHARE, old=(1, 3), new=(1, 2, 3), old_t=2, new_t=2, old_epoch=1,
                       admins=()).to_bytes()
    for i in (1, 3):
        before = len([e for e in svcs[i].audit.entries() if e.action == "key-reshare" and e.outcome == "refused"])
        with pytest.raises(RpcError) as ei:
            svcs[i].StartSession(node_pb2.StartSessionRequest(
                session_id=os.urandom(32), reshare=node_pb2.ReshareParams(operation=forged, dealers=[1, 3], key_label=LABEL)), None)
        assert ei.value.code == Code.PERMISSION_DENIED, ei.value.message
        assert ei.value.message.startswith("reshare.operation.signatures:") and "node 2" in ei.value.message
        after = [e for e in svcs[i].audit.entries() if e.action == "key-reshare" and e.outcome == "refused"]
        assert len(after) == before + 1
    # the same reshare signed by the admin quorum is accepted
    signed = operation(lay, root, key, kind=KeyOpKind.RESHARE, old=(1, 3), new=(1, 2, 3), old_t=2, new_t=2, old_epoch=1).to_bytes()
    _, res2 = _session(svcs, signed, [1, 3])
    assert all(r.finished for r in res2.values())  # type: ignore[attr-defined]


def test_nodes_a_later_roster_change_added_may_join_unsigned() -> None:
    from governance.keyop import KeyOperation
    from mpc_node.keyops import _check_implied

    pk = b"\x02" + bytes(32)
    op = KeyOperation(bytes(32), bytes(16), KeyOpKind.RESHARE, bytes(32), pk, bytes(32), 1, 2, (1, 3), 2, (1, 3, 4), 2)
    _check_implied(op, 1, {1: 1, 2: 1, 3: 1, 4: 2})  # node 4 joined at version 2, after the committee was set at 1
    with pytest.raises(RpcError) as ei:
        _check_implied(op, 2, {1: 1, 2: 1, 3: 1, 4: 2})  # set at version 2: node 4 was already there
    assert ei.value.code == Code.PERMISSION_DENIED and "node 4" in ei.value.message
    drop = KeyOperation(bytes(32), bytes(16), KeyOpKind.RESHARE, bytes(32), pk, bytes(32), 1, 2, (1, 2, 3), 2, (1, 3), 2)
    _check_implied(drop, 2, {1: 1, 2: 1, 3: 1})  # removing (a revoked node) adds nobody
