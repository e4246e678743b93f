"""Attack (issue 11): a hostile coordinator runs the *same* epoch of a key twice and commits one
session on some nodes, the other on the rest, so no node keeps its old share and no threshold
of nodes holds shares of one polynomial: the key is lost.

Defence under test: a node confirms (signs an epoch receipt for) at most one session per
(key, epoch); a second session that would make it a receiver of the same epoch is refused
naming the session it already confirmed, and the store refuses a second confirmed outcome too.
So at most one commit certificate exists per epoch of a key whose committees intersect (every
roster-implied or refresh operation), and the first one stays committable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest

from governance.keyop import KeyOpKind, SignedKeyOperation
from mpc_node.epoch_store import EpochStateError, PendingEpoch
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .keyops_util import close, dkg, operation, run, services, share, sign

Code = grpc.StatusCode
LABEL = b"keyops"


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("split"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


def _start(svcs: dict[int, NodeService], op: bytes, dealers: list[int]) -> tuple[bytes, dict[int, object]]:
    o = SignedKeyOperation.from_bytes(op).operation
    sid = os.urandom(32)
    params = node_pb2.ReshareParams(operation=op, dealers=dealers, key_label=LABEL)
    return sid, run(svcs, sid, sorted(set(dealers) | set(o.new_committee)), reshare=params)


def _commit(svc: NodeService, key_id: bytes, sid: bytes, res: dict[int, object]) -> node_pb2.CommitEpochResponse:
    receipts = [r.reshare_result.receipt for r in res.values()]  # type: ignore[attr-defined]
    return svc.CommitEpoch(node_pb2.CommitEpochRequest(key_id=key_id, session_id=sid, receipts=receipts), None)


def test_the_same_epoch_cannot_be_confirmed_twice_so_a_split_commit_cannot_lose_the_key(
    lay: Layout, svcs: dict[int, NodeService]
) -> None:
    key = dkg(svcs, 2)
    root = svcs[1].gov.governance_root
    op = operation(lay, root, key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=3).to_bytes()
    sid_a, res_a = _start(svcs, op, [1, 2, 3])
    assert all(r.finished for r in res_a.values())  # type: ignore[attr-defined]
    # the coordinator withholds the decision and runs the same admin-signed operation again
    with pytest.raises(RpcError) as ei:
        _start(svcs, op, [1, 2, 3])
    assert ei.value.code == Code.FAILED_PRECONDITION
    assert ei.value.message.startswith("reshare.operation.old_epoch:") and sid_a.hex()[:12] in ei.value.message
    refused = [e for e in svcs[1].audit.entries() if e.action == "key-reshare" and e.outcome == "refused"]
    assert refused and sid_a.hex()[:12] in str(refused[-1].details)
    # another operation (even admin-signed) for the same epoch is refused alike
    op2 = operation(lay, root, key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2).to_bytes()
    with pytest.raises(RpcError) as ei:
        _start(svcs, op2, [1, 2, 3])
    assert ei.value.code == Code.FAILED_PRECONDITION
    # the first certificate stays committable on every node, and the key signs 3-of-3 in epoch 1
    for svc in svcs.values():
        assert _commit(svc, key.key_id, sid_a, res_a).epoch == 1
    assert isinstance(sign(lay, svcs, key, [1, 2, 3], (1, 2, 3), 1), bytes)
    # the operation replayed after its epoch is refused naming old_epoch
    with pytest.raises(RpcError) as ei:
        _start(svcs, op, [1, 2, 3])
    assert ei.value.code == Code.FAILED_PRECONDITION and ei.value.message.startswith("reshare.operation.old_epoch: is 0")
    # after the commit the next epoch is open again
    op3 = operation(lay, root, key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=3, new_t=3, old_epoch=1).to_bytes()
    _, res_c = _start(svcs, op3, [1, 2, 3])
    assert all(r.finished for r in res_c.values())  # type: ignore[attr-defined]


def test_the_store_keeps_one_confirmed_outcome_per_key_epoch(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = dkg(svcs, 2)
    st = svcs[1].store
    ks = share(svcs[1], key.key_id)
    assert ks is not None
    first = PendingEpoch(key.key_id, os.urandom(32), 1, 2, (1, 2, 3), os.urandom(32), b"r" * 100, False, True, False)
    st.put_pending_epoch(first, ks.to_bytes())
    second = PendingEpoch(key.key_id, os.urandom(32), 1, 2, (1, 2, 3), os.urandom(32), b"r" * 100, False, True, False)
    with pytest.raises(EpochStateError, match=first.session_id.hex()[:12]):
        st.put_pending_epoch(second, ks.to_bytes())
    assert st.pending_epoch(key.key_id, second.session_id) is None
    # a retiring dealer's marker carries no receipt: it confirms nothing
    retiring = PendingEpoch(key.key_id, os.urandom(32), 1, 2, (1, 2), os.urandom(32), b"", True, True, False)
    st.put_pending_epoch(retiring, None)


def test_a_member_that_abandoned_a_session_releases_the_others_and_never_confirms_it(
    lay: Layout, svcs: dict[int, NodeService]
) -> None:
    """Liveness of the one-session rule: a session that node 3 never confirmed (it lost it, as a
    crash before storing does) can never commit; node 3's signed abandonment of it (DiscardEpoch)
    lets nodes 1 and 2, which confirmed it, take part in a new session of the same epoch. Without
    it, or with a forged or foreign one, they refuse; node 3 never confirms the abandoned one."""
    from governance.keyop import EpochAbandonment, sign_epoch_abandonment

    key = dkg(svcs, 2)
    root = svcs[1].gov.governance_root
    op = operation(lay, root, key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2).to_bytes()
    sid_a, _ = _start(svcs, op, [1, 2, 3])
    # node 3 "crashed" before storing: drop what it stored (test only) so it never confirmed sid_a
    with svcs[3].store._write() as c:
        c.execute("DELETE FROM pending_epochs WHERE key_id = ? AND session_id = ?", (key.key_id, sid_a))
    # nodes 1 and 2 confirmed sid_a: without an abandonment they refuse another session of epoch 1
    op2 = operation(lay, root, key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2).to_bytes()
    with pytest.raises(RpcError) as ei:
        _start(svcs, op2, [1, 2, 3])
    assert ei.value.code == Code.FAILED_PRECONDITION and sid_a.hex()[:12] in ei.value.message
    # nodes 1 and 2 cannot abandon what they confirmed
    for i in (1, 2):
        with pytest.raises(RpcError) as ei:
            svcs[i].DiscardEpoch(node_pb2.DiscardEpochRequest(key_id=key.key_id, session_id=sid_a), None)
        assert ei.value.code == Code.FAILED_PRECONDITION
    # a forged abandonment (node 3's name, node 1's key) and one for another session prove nothing
    forged = sign_epoch_abandonment(EpochAbandonment(root, key.key_id, sid_a, 3), svcs[1].keys.identity).to_bytes()
    other = sign_epoch_abandonment(EpochAbandonment(root, key.key_id, os.urandom(32), 3), svcs[3].keys.identity).to_bytes()
    with pytest.raises(RpcError):
        _start_with(svcs, op2, [1, 2, 3], [forged, other, b"junk"])
    # node 3 abandons it: durable, signed; it never confirms sid_a afterwards
    ans = svcs[3].DiscardEpoch(node_pb2.DiscardEpochRequest(key_id=key.key_id, session_id=sid_a), None)
    proof = EpochAbandonment.from_bytes(ans.abandonment)
    assert (proof.holder, proof.session_id) == (3, sid_a) and proof.verify(svcs[3].keys.identity_public)
    with pytest.raises(EpochStateError):
        svcs[3].store.put_pending_epoch(
            PendingEpoch(key.key_id, sid_a, 1, 2, (1, 2, 3), bytes(32), b"r" * 64, False, True, False), b"share"
        )
    # with node 3's abandonment, the new session runs and commits; the old one can never commit
    sid_b, res_b = _start_with(svcs, op2, [1, 2, 3], [ans.abandonment])
    for svc in svcs.values():
        assert _commit(svc, key.key_id, sid_b, res_b).epoch == 1
    assert isinstance(sign(lay, svcs, key, [1, 3], (1, 2, 3), 1), bytes)
    released = [e for e in svcs[1].audit.entries() if e.action == "key-epoch" and e.outcome == "confirmation-released"]
    assert released and released[-1].details["abandoned_by"] == 3


def _start_with(
    svcs: dict[int, NodeService], op: bytes, dealers: list[int], abandoned: list[bytes]
) -> tuple[bytes, dict[int, object]]:
    o = SignedKeyOperation.from_bytes(op).operation
    sid = os.urandom(32)
    params = node_pb2.ReshareParams(operation=op, dealers=dealers, key_label=LABEL, abandoned=abandoned)
    return sid, run(svcs, sid, sorted(set(dealers) | set(o.new_committee)), reshare=params)
