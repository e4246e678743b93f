"""Regression (issue 11 crash tests): a coordinator killed between recording an admin-approved
key operation and marking its lifecycle proposal applied (two transactions) left the proposal
pending at its quorum while the operation existed. At the restart the coordinator marks it
applied (audited ``lifecycle-apply`` applied, ``recovered``) before resuming the operation.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.keyops import KeyOperations
from governance.keyop import KeyOpKind
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from tests.network.keyops_util import Handle, close, dkg, services

from .test_keyops_orchestration import Coordinator, Crash, _propose, _signed_op

N, T = 3, 2


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("keyops-proposal"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


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


def _recorded(ops: KeyOperations, op_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rec = ops.db.get_key_operation(op_id)
        if rec is not None and rec.session_id:
            return
        time.sleep(0.05)
    pytest.fail("the operation never recorded its session")


def test_a_proposal_left_pending_by_a_kill_is_marked_applied_at_the_restart(coord: Coordinator) -> None:
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    full = (1, 2, 3)
    signed = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=full, new=full, old_t=2, new_t=2)

    def die(point: str) -> None:
        if point == "recorded":
            raise Crash(point)

    coord.ops.fault = die
    op_id = _propose(coord, signed)
    _recorded(coord.ops, op_id)
    # the state a kill between the operation's record and the proposal's left
    rec = coord.db.get_lifecycle_proposal(op_id)
    assert rec is not None
    coord.db.put_lifecycle_proposal(dataclasses.replace(rec, state="pending", operations=()))
    coord.restart()
    coord.ops.resume(wait=True)
    after = coord.lifecycle.get(op_id)
    assert after.state == "applied" and after.operations == (op_id,)
    assert [e.details.get("recovered") for e in coord.audit.entries() if e.action == "lifecycle-apply"][-1] is True
    st = coord.ops.get(op_id)
    assert st.state == "failed" and "interrupted by a coordinator restart" in st.error  # nothing reached the nodes
    coord.ops.resume(wait=True)  # idempotent: one recovered entry
    assert sum(1 for e in coord.audit.entries() if e.action == "lifecycle-apply" and e.details.get("recovered")) == 1
    # the same change proposed again (a new operation of the same old epoch) runs
    again = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=full, new=full, old_t=2, new_t=2)
    assert coord.ops.run(_propose(coord, again)) == "done"


def test_a_roster_implied_operation_has_no_proposal_to_settle(coord: Coordinator) -> None:
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    signed = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2)
    coord.ops.fault = lambda point: (_ for _ in ()).throw(Crash(point)) if point == "recorded" else None
    with pytest.raises(Crash):
        coord.ops.start(signed, "roster", "coordinator", wait=True)
    coord.restart()
    coord.ops.resume(wait=True)
    assert coord.db.get_lifecycle_proposal(signed.operation.proposal_id) is None
    assert coord.ops.get(signed.operation.proposal_id).state == "failed"
