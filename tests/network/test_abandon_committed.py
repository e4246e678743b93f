"""Attack (issue 11, the one-session rule's release): a hostile coordinator asks a node to
abandon a session the node confirmed and committed, once a later commit has cleaned up its
outcome rows. The signed EpochAbandonment would falsely state "this node never confirmed the
session": handed to a lagging node that confirmed it too, it erases that node's share of the
committed epoch and lets it confirm a second session of that epoch.

Defence under test: a node remembers every session it committed (or left the key by), so
DiscardEpoch of it is refused FAILED_PRECONDITION, before and after later epochs."""

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
    return prepare(tmp_path_factory.mktemp("abandon"), 4, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


_receipts: dict[bytes, list[bytes]] = {}


def _epoch(svcs: dict[int, NodeService], op: bytes, dealers: list[int], commit_on: list[int]) -> bytes:
    o = SignedKeyOperation.from_bytes(op).operation
    sid = os.urandom(32)
    params = node_pb2.ReshareParams(operation=op, dealers=dealers, key_label=LABEL)
    res = run(svcs, sid, sorted(set(dealers) | set(o.new_committee)), reshare=params)
    receipts = [r.reshare_result.receipt for r in res.values() if r.reshare_result.receipt]
    _receipts[sid] = receipts
    for i in commit_on:
        svcs[i].CommitEpoch(node_pb2.CommitEpochRequest(key_id=o.key_id, session_id=sid, receipts=receipts), None)
    return sid


def _refused(svc: NodeService, key_id: bytes, sid: bytes) -> None:
    with pytest.raises(RpcError) as ei:
        svc.DiscardEpoch(node_pb2.DiscardEpochRequest(key_id=key_id, session_id=sid), None)
    assert ei.value.code == Code.FAILED_PRECONDITION and ei.value.message.startswith("session_id:")


def test_a_committed_session_is_never_abandoned_even_after_later_epochs(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = dkg(svcs, 2)
    root = svcs[1].gov.governance_root
    all4 = (1, 2, 3, 4)
    op1 = operation(lay, root, key, kind=KeyOpKind.REFRESH, old=all4, new=all4, old_t=2, new_t=2).to_bytes()
    sid1 = _epoch(svcs, op1, [1, 2, 3, 4], [1, 2, 3])  # node 4 confirmed it too but has not heard of the commit yet
    _refused(svcs[1], key.key_id, sid1)
    # epoch 2 without node 4 (it lags at epoch 0): nodes 1..3 commit it
    op2 = operation(lay, root, key, kind=KeyOpKind.RESHARE, old=all4, new=(1, 2, 3), old_t=2, new_t=2, old_epoch=1).to_bytes()
    sid2 = _epoch(svcs, op2, [1, 2, 3], [1, 2, 3])
    for i in (1, 2, 3):
        _refused(svcs[i], key.key_id, sid1)  # before the fix: a signed "never confirmed" abandonment
        _refused(svcs[i], key.key_id, sid2)
    # node 4 still holds its confirmation of sid1 (nothing released it)
    assert svcs[4].store.confirmed_session(key.key_id, 1) == sid1
    # epoch 3 drops node 3, which takes no part (it leaves the key at the commit): it keeps
    # refusing to abandon what it committed; so do the others
    op3 = operation(lay, root, key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 2), old_t=2, new_t=2, old_epoch=2).to_bytes()
    sid3 = _epoch(svcs, op3, [1, 2], [1, 2, 3])
    assert svcs[3].store.key_epoch(key.key_id).status == "left"  # type: ignore[union-attr]
    for sid in (sid1, sid2):
        _refused(svcs[3], key.key_id, sid)
        _refused(svcs[1], key.key_id, sid)
    # an older certificate pushed again is refused as before (the kept row changes no answer)
    with pytest.raises(RpcError) as ei:
        svcs[1].CommitEpoch(node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=sid1, receipts=_receipts[sid1]), None)
    assert ei.value.code == Code.FAILED_PRECONDITION
    assert svcs[1].store.key_epoch(key.key_id).epoch == 3  # type: ignore[union-attr]
    assert sid3


def test_discard_racing_the_last_round_never_confirms_and_answers_a_clear_error(
    lay: Layout, svcs: dict[int, NodeService]
) -> None:
    """A hostile coordinator races DiscardEpoch against a node's last round: the node recorded
    the abandonment (store first) while its Step was computing the outcome. The store refuses
    the outcome (no receipt ever leaves for an abandoned session) and the Step answers a clear
    ABORTED naming the abandonment, and the session is over. Before, the store's
    EpochStateError reached the step's crash handler: "internal error (EpochStateError)", logged
    as an unexpected error (safe, but saying nothing of what happened)."""
    from tests.integration.relay_util import route

    key = dkg(svcs, 2)
    root = svcs[1].gov.governance_root
    op = operation(lay, root, key, kind=KeyOpKind.REFRESH, old=(1, 2, 3, 4), new=(1, 2, 3, 4), old_t=2, new_t=2).to_bytes()
    sid = os.urandom(32)
    params = node_pb2.ReshareParams(operation=op, dealers=[1, 2, 3, 4], key_label=LABEL)
    req = node_pb2.StartSessionRequest(session_id=sid, reshare=params)
    resps: dict[int, object] = {i: svcs[i].StartSession(req, None) for i in (1, 2, 3, 4)}
    raced = None
    while not all(r.finished for r in resps.values()):  # type: ignore[attr-defined]
        rnd = max(r.round for r in resps.values() if not r.finished)  # type: ignore[attr-defined]
        out: dict[int, object] = {}
        for k, inbox in route(resps, [1, 2, 3, 4]).items():  # type: ignore[arg-type]
            if k == 3 and rnd == 4:
                svcs[3].store.discard_epoch(key.key_id, sid)  # DiscardEpoch's write, landing mid-step
                with pytest.raises(RpcError) as ei:
                    svcs[3].Step(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox), None)
                raced = ei.value
                continue
            out[k] = svcs[k].Step(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox), None)
        if raced is not None:
            break
        resps = out
    assert raced is not None and raced.code == Code.ABORTED and "abandoned" in raced.message
    assert svcs[3].store.pending_epoch(key.key_id, sid) is None
    with pytest.raises(RpcError) as ei:  # the session is over here: a retry gets the same answer
        svcs[3].Step(node_pb2.StepRequest(session_id=sid, round=4, envelopes=[]), None)
    assert ei.value.code == Code.ABORTED


def test_revoking_the_node_that_lost_a_session_does_not_freeze_the_key(lay: Layout, svcs: dict[int, NodeService]) -> None:
    """Operator: a refresh fails because node 4 lost its outcome (it crashed before storing);
    nodes 1..3 confirmed it. The admins revoke node 4 (the obvious reaction to a broken node), so
    it can neither abandon the session (never dialled, its signature refused) nor confirm it.
    Before, nodes 1..3 refused every later session of the epoch ("already confirmed ... one
    epoch, one session"): the key kept the revoked node's share for good. Now a session with a
    revoked member is known dead and released (audited), and the reshare without node 4 runs."""
    from governance.roster import revoke_node
    from tests.integration.rostertools import history, signed_next

    key = dkg(svcs, 2)
    root = svcs[1].gov.governance_root
    all4 = (1, 2, 3, 4)
    op1 = operation(lay, root, key, kind=KeyOpKind.REFRESH, old=all4, new=all4, old_t=2, new_t=2).to_bytes()
    sid1 = _epoch(svcs, op1, [1, 2, 3, 4], [])
    with svcs[4].store._write() as c:  # node 4 "crashed" before storing (test only)
        c.execute("DELETE FROM pending_epochs WHERE key_id = ? AND session_id = ?", (key.key_id, sid1))
    op2 = operation(lay, root, key, kind=KeyOpKind.RESHARE, old=all4, new=(1, 2, 3), old_t=2, new_t=2).to_bytes()
    with pytest.raises(RpcError) as ei:  # node 4 still active: its abandonment is what releases them
        _epoch(svcs, op2, [1, 2, 3], [])
    assert ei.value.code == Code.FAILED_PRECONDITION and sid1.hex()[:12] in ei.value.message
    r1 = history(lay)[0].change.new_roster
    req = node_pb2.InstallRosterChangeRequest(signed_change=signed_next(lay, r1, revoke_node(r1, 4)).to_bytes())
    for i in (1, 2, 3):
        assert svcs[i].InstallRosterChange(req, None).installed
    op3 = operation(lay, root, key, kind=KeyOpKind.RESHARE, old=all4, new=(1, 2, 3), old_t=2, new_t=2, roster_version=2).to_bytes()
    _epoch(svcs, op3, [1, 2, 3], [1, 2, 3])
    for i in (1, 2, 3):
        assert svcs[i].store.key_epoch(key.key_id).epoch == 1  # type: ignore[union-attr]
        released = [e for e in svcs[i].audit.entries() if e.action == "key-epoch" and e.outcome == "confirmation-released"]
        assert released and released[-1].details["revoked_member"] == 4
