"""The coordinator picks a key operation's dealers among the old-committee members that hold a
share of the old epoch (``GetPendingEpoch``): a wiped or replaced member only receives; too few
holders, or a refresh missing a member's share, fail the operation with an error naming who holds
what (issue 12's disaster recovery with a reshare follow-up). Five in-process nodes of a 3-of-5
cluster driven by coordinator.keyops (no gRPC)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.keyops import OperationFailed
from governance.keyop import KeyOpKind
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.wire.mpc.v1 import node_pb2
from tests.coordinator.test_keyops_orchestration import Coordinator, _signed_op
from tests.network.keyops_util import Handle, close, dkg, services, share, sign

N, T = 5, 3


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("keyops-dealers"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


@pytest.fixture
def coord(tmp_path: Path, lay: Layout, svcs: dict[int, NodeService]) -> Iterator[Coordinator]:
    c = Coordinator(tmp_path, lay, svcs, {i: Handle(s) for i, s in svcs.items()})
    yield c
    c.close()


def _wipe(coord: Coordinator, i: int) -> None:
    """Node ``i`` loses its disk (it keeps its roster keys) and starts again with an empty store."""
    svc = coord.svcs[i]
    svc.store.close()
    svc.audit.close()
    store = Path(svc.cfg.store)
    for f in store.parent.glob(store.name + "*"):
        f.unlink()
    coord.svcs[i] = services(coord.lay, only=i)[i]
    coord.handles[i] = Handle(coord.svcs[i])


def _key(coord: Coordinator, wiped: tuple[int, ...]) -> node_pb2.DkgResult:
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    for i in wiped:
        _wipe(coord, i)
    return k


def test_a_wiped_member_is_not_a_dealer_and_receives_its_new_share(coord: Coordinator) -> None:
    k = _key(coord, (4,))
    signed = _signed_op(coord, k, kind=KeyOpKind.RESHARE, old=(1, 2, 3, 4, 5), new=(1, 2, 3, 4), old_t=3, new_t=3)
    op_id = coord.ops.start(signed, "admin-quorum", "admin1", wait=True)
    st = coord.ops.get(op_id)
    assert st.state == "done", st.error
    rec = coord.db.get_key_operation(op_id)
    assert rec is not None and rec.dealers == (1, 2, 3, 5)
    sh = share(coord.svcs[4], k.key_id)
    assert sh is not None and sh.epoch == 1 and sh.public_key.encode() == k.public_key
    assert share(coord.svcs[5], k.key_id) is None  # it dealt and left
    assert isinstance(sign(coord.lay, coord.svcs, k, [2, 3, 4], (1, 2, 3, 4), 1), bytes)


def test_fewer_holders_than_the_threshold_fail_naming_who_holds_what(coord: Coordinator) -> None:
    k = _key(coord, (3, 4, 5))
    signed = _signed_op(coord, k, kind=KeyOpKind.RESHARE, old=(1, 2, 3, 4, 5), new=(1, 2, 3, 4), old_t=3, new_t=3)
    coord.handles[2].down = True
    try:
        assert coord.ops.run(coord.ops.start(signed, "admin-quorum", "admin1", wait=True)) == "failed"
    finally:
        coord.handles[2].down = False
    st = coord.ops.get(signed.operation.proposal_id)
    assert st.error == "needs 3 dealers holding a share of epoch 0; holding epoch 0: [1]; no share: [3, 4, 5]; unavailable: [2]", st.error
    rec = coord.db.get_key_operation(st.operation_id)
    assert rec is not None and not rec.session_id  # no node heard of a session
    assert coord.db.key_epoch(k.key_id, N) == (0, (1, 2, 3, 4, 5))
    assert share(coord.svcs[1], k.key_id) is not None and share(coord.svcs[3], k.key_id) is None
    assert ("key-operation", "failed") in [(e.action, e.outcome) for e in coord.audit.entries()]


def test_a_refresh_needs_every_members_share(coord: Coordinator) -> None:
    k = _key(coord, (4,))
    signed = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=(1, 2, 3, 4, 5), new=(1, 2, 3, 4, 5), old_t=3, new_t=3)
    assert coord.ops.run(coord.ops.start(signed, "admin-quorum", "admin1", wait=True)) == "failed"
    st = coord.ops.get(signed.operation.proposal_id)
    assert st.error == ("a refresh needs a share of every committee member of epoch 0; holding epoch 0: [1, 2, 3, 5]; "
                        "no share: [4]"), st.error
    # the same key reshared away from its empty member instead: node 4 receives
    again = _signed_op(coord, k, kind=KeyOpKind.RESHARE, old=(1, 2, 3, 4, 5), new=(1, 2, 3, 4, 5), old_t=3, new_t=4)
    assert coord.ops.run(coord.ops.start(again, "admin-quorum", "admin1", wait=True)) == "done"
    rec = coord.db.get_key_operation(again.operation.proposal_id)
    assert rec is not None and rec.dealers == (1, 2, 3, 5)
    assert isinstance(sign(coord.lay, coord.svcs, k, [1, 2, 4, 5], (1, 2, 3, 4, 5), 1), bytes)


def test_a_member_holding_another_epoch_is_no_dealer(coord: Coordinator) -> None:
    """A member that answers it holds the key at another epoch than the operation's old one (it
    missed a commit, or lies) is not made a dealer."""
    k = _key(coord, ())
    real = coord.handles[5].stub

    class Stale:
        def __getattr__(self, name: str) -> Any:
            method = getattr(real, name)
            if name != "GetPendingEpoch":
                return method

            def stale(req: node_pb2.GetPendingEpochRequest, **kw: Any) -> node_pb2.PendingEpochInfo:
                info: node_pb2.PendingEpochInfo = method(req, **kw)
                info.active_epoch = 7
                return info

            return stale

    coord.handles[5].stub = Stale()  # type: ignore[assignment]
    signed = _signed_op(coord, k, kind=KeyOpKind.RESHARE, old=(1, 2, 3, 4, 5), new=(1, 2, 3, 4), old_t=3, new_t=3)
    try:
        assert coord.ops._dealers(signed.operation, [1, 2, 3, 4, 5]) == (1, 2, 3, 4)
        refresh = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=(1, 2, 3, 4, 5), new=(1, 2, 3, 4, 5), old_t=3, new_t=3)
        with pytest.raises(OperationFailed) as e:
            coord.ops._dealers(refresh.operation, [1, 2, 3, 4, 5])
        assert str(e.value).endswith("holding epoch 0: [1, 2, 3, 4]; no share: []; at epoch 7: [5]")
    finally:
        coord.handles[5].stub = real
