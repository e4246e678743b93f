"""Key refresh and reshare on the node (issue 11, design section 3), driven in process (no gRPC).

Three :class:`NodeService` instances of a 2-of-3 cluster with a signed roster (version 1, every
node active); the test plays the coordinator: it starts the sessions, relays the envelopes,
collects the epoch receipts and pushes ``CommitEpoch``. Every test makes its own key (DKG), so
the tests are independent. Signatures are checked with coincurve against the unchanged public key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from governance.keyop import EpochReceipt, KeyOpKind, SignedKeyOperation
from mpc_node.service import NodeService
from mpc_node.storage import NodeStore
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import common_pb2, node_pb2

from .keyops_util import close, dkg, operation, run, services, share, sign

N, T = 3, 2
LABEL = b"keyops"  # the label keyops_util.dkg gives every key
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("keyops"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


def _dkg(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    return dkg(svcs, T)


def _operation(lay: Layout, svc: NodeService, key: node_pb2.DkgResult, **kw: Any) -> bytes:
    return operation(lay, svc.gov.governance_root, key, **kw).to_bytes()


def _reshare(svcs: dict[int, NodeService], op: bytes, dealers: list[int]) -> tuple[bytes, dict[int, Any]]:
    o = SignedKeyOperation.from_bytes(op).operation
    among = sorted(set(dealers) | set(o.new_committee))
    sid = os.urandom(32)
    return sid, _run(svcs, sid, among, reshare=node_pb2.ReshareParams(operation=op, dealers=dealers, key_label=LABEL))


def _commit(svcs: dict[int, NodeService], key_id: bytes, sid: bytes, res: dict[int, Any], to: list[int]) -> dict[int, Any]:
    receipts = [r.reshare_result.receipt for r in res.values() if r.reshare_result.receipt]
    req = node_pb2.CommitEpochRequest(key_id=key_id, session_id=sid, receipts=receipts)
    return {i: svcs[i].CommitEpoch(req, None) for i in to}


_run, _sign, _share = run, sign, share


def _audit(svc: NodeService, action: str) -> list[Any]:
    return [e for e in svc.audit.entries() if e.action == action]


# --- refresh ---------------------------------------------------------------------------------


def test_refresh_then_sign_in_the_new_epoch_only(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = _dkg(svcs)
    before = {i: _share(s, key.key_id) for i, s in svcs.items()}
    op = _operation(lay, svcs[1], key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2)
    sid, res = _reshare(svcs, op, [1, 2, 3])
    assert all(r.finished and r.reshare_result.epoch == 1 and not r.reshare_result.retired for r in res.values())
    receipts = [EpochReceipt.from_bytes(r.reshare_result.receipt) for r in res.values()]
    assert {r.holder for r in receipts} == {1, 2, 3} and len({r.state_digest for r in receipts}) == 1
    # before the commit: the old share stays active and signs in epoch 0; the new one is pending
    assert isinstance(_sign(lay, svcs, key, [1, 2], (1, 2, 3), 0), bytes)
    info = svcs[2].GetPendingEpoch(node_pb2.GetPendingEpochRequest(key_id=key.key_id, session_id=sid), None)
    assert info.pending and not info.committed and info.active_epoch == 0 and info.receipt == res[2].reshare_result.receipt
    out = _commit(svcs, key.key_id, sid, res, [1, 2, 3])
    assert all(o.epoch == 1 and o.holds_share and o.changed for o in out.values())
    for i, s in svcs.items():
        new = _share(s, key.key_id)
        assert new is not None and before[i] is not None
        assert new.epoch == 1 and new.secret_share != before[i].secret_share and new.public_key == before[i].public_key
        assert _audit(s, "key-epoch")[-1].outcome == "committed"
        keys = {k.key_id: k for k in s.ListKeys(node_pb2.NodeListKeysRequest(), None).keys}
        assert keys[key.key_id].epoch == 1 and list(keys[key.key_id].committee) == [1, 2, 3]
    assert isinstance(_sign(lay, svcs, key, [2, 3], (1, 2, 3), 1), bytes)
    # a node asked to sign at the old epoch refuses, naming sign.epoch
    with pytest.raises(RpcError) as ei:
        _sign(lay, svcs, key, [1, 3], (1, 2, 3), 0)
    assert ei.value.code == Code.FAILED_PRECONDITION and ei.value.message.startswith("sign.epoch:")
    # idempotent
    again = _commit(svcs, key.key_id, sid, res, [1])
    assert again[1].epoch == 1 and not again[1].changed
    info = svcs[2].GetPendingEpoch(node_pb2.GetPendingEpochRequest(key_id=key.key_id, session_id=sid), None)
    assert info.committed and not info.pending and info.active_epoch == 1 and info.holds_key


# --- reshare ---------------------------------------------------------------------------------


def test_threshold_change_2_of_3_to_3_of_3(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = _dkg(svcs)
    op = _operation(lay, svcs[1], key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=3)
    sid, res = _reshare(svcs, op, [1, 3])  # two dealers are enough for the old threshold
    assert all(r.finished for r in res.values()), res
    _commit(svcs, key.key_id, sid, res, [1, 2, 3])
    assert all(_share(s, key.key_id).threshold == 3 for s in svcs.values())  # type: ignore[union-attr]
    assert isinstance(_sign(lay, svcs, key, [1, 2, 3], (1, 2, 3), 1), bytes)


def test_drop_a_node_committee_maps_roster_to_share_indices(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = _dkg(svcs)
    op = _operation(lay, svcs[1], key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 3), old_t=2, new_t=2)
    sid, res = _reshare(svcs, op, [1, 2, 3])
    assert res[2].reshare_result.retired and not res[2].reshare_result.receipt
    assert not res[1].reshare_result.retired and not res[3].reshare_result.retired
    out = _commit(svcs, key.key_id, sid, res, [1, 2, 3])
    assert out[2].holds_share is False and out[1].holds_share and out[3].holds_share
    # node 2's share is erased (the key row stays, reported as discarded); node 3 is share index 2
    assert _share(svcs[2], key.key_id) is None
    k2 = {k.key_id: k for k in svcs[2].ListKeys(node_pb2.NodeListKeysRequest(), None).keys}[key.key_id]
    assert k2.status == common_pb2.KEY_STATUS_DISCARDED and list(k2.committee) == [1, 3]
    assert _share(svcs[3], key.key_id).index == 2  # type: ignore[union-attr]
    info = svcs[2].GetPendingEpoch(node_pb2.GetPendingEpochRequest(key_id=key.key_id, session_id=sid), None)
    assert info.retired and info.committed and not info.holds_key
    assert isinstance(_sign(lay, svcs, key, [1, 3], (1, 3), 1), bytes)
    with pytest.raises(RpcError) as ei:
        _sign(lay, svcs, key, [1, 2], (1, 3), 1)
    assert ei.value.message.startswith("sign.signers:") and "committee" in ei.value.message


def test_a_dropped_node_that_did_not_deal_erases_its_share_at_the_commit(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = _dkg(svcs)
    op = _operation(lay, svcs[1], key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 3), old_t=2, new_t=2)
    sid, res = _reshare(svcs, op, [1, 3])  # node 2 (down at the time) takes no part
    assert sorted(res) == [1, 3]
    out = _commit(svcs, key.key_id, sid, res, [1, 2, 3])
    assert out[2].changed and not out[2].holds_share and out[2].epoch == 1
    assert _share(svcs[2], key.key_id) is None
    assert _audit(svcs[2], "key-epoch")[-1].outcome == "left"
    assert not _commit(svcs, key.key_id, sid, res, [2])[2].changed  # idempotent
    # a certificate that names this node in the new committee is no reason to leave
    partial = node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=os.urandom(32), receipts=[res[1].reshare_result.receipt])
    with pytest.raises(RpcError):
        svcs[2].CommitEpoch(partial, None)


# --- failures before the commit ----------------------------------------------------------------


def test_failure_before_the_decision_keeps_the_old_epoch(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = _dkg(svcs)
    op = _operation(lay, svcs[1], key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2)
    sid, res = _reshare(svcs, op, [1, 2, 3])
    # the coordinator never gets to the decision: the nodes keep signing in epoch 0
    for s in svcs.values():
        with pytest.raises(RpcError) as ei:  # the receipt left: the next commit erases the pending share
            s.DiscardEpoch(node_pb2.DiscardEpochRequest(key_id=key.key_id, session_id=sid), None)
        assert ei.value.code == Code.FAILED_PRECONDITION
        assert _share(s, key.key_id).epoch == 0  # type: ignore[union-attr]
    assert isinstance(_sign(lay, svcs, key, [1, 3], (1, 2, 3), 0), bytes)
    # an unknown session has nothing to discard
    assert not svcs[1].DiscardEpoch(node_pb2.DiscardEpochRequest(key_id=key.key_id, session_id=os.urandom(32)), None).discarded
    # an incomplete certificate is refused and changes nothing
    partial = node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=sid, receipts=[res[1].reshare_result.receipt])
    with pytest.raises(RpcError) as ei:
        svcs[1].CommitEpoch(partial, None)
    assert ei.value.code == Code.INVALID_ARGUMENT and ei.value.message.startswith("receipts:")
    # a second operation for the same epoch is refused: every node confirmed epoch 1 in the first
    # session, and two certificates for one epoch could split the key (tests/network/test_epoch_split_attack.py)
    op2 = _operation(lay, svcs[1], key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2)
    e = _refused(svcs[1], op2, [1, 2, 3])
    assert e.code == Code.FAILED_PRECONDITION and sid.hex()[:12] in e.message
    # the first session's certificate commits; the next epoch's operation commits too, and the
    # first one's share is erased with it (its committed row stays, shareless: the node's memory
    # that it confirmed that session, tests/network/test_abandon_committed.py)
    _commit(svcs, key.key_id, sid, res, [1, 2, 3])
    op2 = _operation(lay, svcs[1], key, kind=KeyOpKind.REFRESH, old=(1, 2, 3), new=(1, 2, 3), old_t=2, new_t=2, old_epoch=1)
    sid2, res2 = _reshare(svcs, op2, [1, 2, 3])
    _commit(svcs, key.key_id, sid2, res2, [1, 2, 3])
    for s in svcs.values():
        kept = s.store.pending_epoch(key.key_id, sid)
        assert kept is not None and kept.committed and s.store.pending_share(key.key_id, sid) is None
        with pytest.raises(RpcError) as ei:  # the first session's certificate is for an epoch no longer current
            s.CommitEpoch(node_pb2.CommitEpochRequest(key_id=key.key_id, session_id=sid, receipts=[
                r.reshare_result.receipt for r in res.values()]), None)
        assert ei.value.code == Code.FAILED_PRECONDITION


# --- a coordinator tampering with the parameters ------------------------------------------------


def _params(op: bytes, dealers: list[int], label: bytes = b"keyops") -> node_pb2.ReshareParams:
    return node_pb2.ReshareParams(operation=op, dealers=dealers, key_label=label)


def _refused(svc: NodeService, op: bytes, dealers: list[int], label: bytes = b"keyops") -> RpcError:
    req = node_pb2.StartSessionRequest(session_id=os.urandom(32), reshare=_params(op, dealers, label))
    with pytest.raises(RpcError) as ei:
        svc.StartSession(req, None)
    return ei.value


def test_tampered_parameters_are_refused_naming_the_field(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = _dkg(svcs)
    svc = svcs[1]
    good = _operation(lay, svc, key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 3), old_t=2, new_t=2)
    before = len(_audit(svc, "key-reshare"))
    # a forged operation without admin signatures (and not implied by the roster)
    forged = _operation(lay, svc, key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 3), old_t=2, new_t=2, admins=())
    e = _refused(svc, forged, [1, 2, 3])
    assert e.code == Code.PERMISSION_DENIED and e.message.startswith("reshare.operation.signatures:")
    # one admin only (the quorum is two)
    e = _refused(svc, _operation(lay, svc, key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 3), old_t=2, new_t=2,
                                 admins=("admin1",)), [1, 2, 3])
    assert e.code == Code.PERMISSION_DENIED and e.message.startswith("reshare.operation.signatures")
    # the wrong old epoch
    stale = _operation(lay, svc, key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 3), old_t=2, new_t=2, old_epoch=4)
    e = _refused(svc, stale, [1, 2, 3])
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("reshare.operation.old_epoch:")
    # wrong dealers: too few, not increasing, outside the old committee
    for dealers in ([1], [2, 1], [1, 4]):
        e = _refused(svc, good, dealers)
        assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("reshare.dealers:"), e.message
    # a node that takes no part
    e = _refused(svcs[2], good, [1, 3])
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("reshare.dealers:")
    # garbage
    e = _refused(svc, b"\x01garbage", [1, 2])
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("reshare.operation")
    # another label than the key's (it is hashed into the session's configuration)
    e = _refused(svc, good, [1, 2, 3], label=b"other")
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("reshare.key_label:")
    refused = [x for x in _audit(svc, "key-reshare")[before:] if x.outcome == "refused"]
    assert len(refused) == 8
    # a second live session of the same key is refused
    sid = os.urandom(32)
    svc.StartSession(node_pb2.StartSessionRequest(session_id=sid, reshare=_params(good, [1, 2, 3])), None)
    e = _refused(svc, good, [1, 2, 3])
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("reshare.operation.key_id:")
    svc.AbortSession(node_pb2.AbortSessionRequest(session_id=sid, reason="test"), None)


def test_legacy_key_rows_are_epoch_0_committee_1_to_n(tmp_path: Any) -> None:
    with NodeStore.open(tmp_path / "s.db", b"pw", 1, scrypt_n=2**10) as st:
        st.put_key_share(b"k" * 32, b"share", label="x", public_key=b"\x02" + b"p" * 32, threshold=2, parties=3)
        e = st.key_epoch(b"k" * 32)
        assert e is not None and e.epoch == 0 and e.committee == (1, 2, 3) and e.status == "pending"
        st.put_key_share(b"j" * 32, b"share", label="y", public_key=b"\x02" + b"q" * 32, threshold=2, parties=3, committee=(1, 2, 4))
        assert st.key_epoch(b"j" * 32).committee == (1, 2, 4)  # type: ignore[union-attr]


def test_a_node_that_left_joins_again_with_a_fresh_share(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = _dkg(svcs)
    drop = _operation(lay, svcs[1], key, kind=KeyOpKind.RESHARE, old=(1, 2, 3), new=(1, 3), old_t=2, new_t=2)
    sid, res = _reshare(svcs, drop, [1, 2, 3])
    _commit(svcs, key.key_id, sid, res, [1, 2, 3])
    assert _share(svcs[2], key.key_id) is None
    # back to (1, 2, 3): node 2 receives a share from dealers 1 and 3 (it deals nothing)
    back = _operation(lay, svcs[1], key, kind=KeyOpKind.RESHARE, old=(1, 3), new=(1, 2, 3), old_t=2, new_t=2, old_epoch=1)
    e = _refused(svcs[2], back, [1, 2, 3])  # a node that left cannot deal
    assert e.message.startswith("reshare.dealers:")
    sid, res = _reshare(svcs, back, [1, 3])
    assert all(r.finished for r in res.values()), res
    out = _commit(svcs, key.key_id, sid, res, [1, 2, 3])
    assert out[2].holds_share and out[2].epoch == 2
    sh = _share(svcs[2], key.key_id)
    assert sh is not None and sh.epoch == 2 and sh.index == 2 and sh.key_label == LABEL
    assert isinstance(_sign(lay, svcs, key, [1, 2], (1, 2, 3), 2), bytes)


def test_epoch_rpcs_refuse_bad_input_naming_the_field(svcs: dict[int, NodeService]) -> None:
    svc = svcs[1]
    cases = [
        (svc.CommitEpoch, node_pb2.CommitEpochRequest(key_id=b"k", session_id=os.urandom(32), receipts=[b"x"]), "key_id:"),
        (svc.CommitEpoch, node_pb2.CommitEpochRequest(key_id=os.urandom(32), session_id=b"s", receipts=[b"x"]), "session_id:"),
        (svc.CommitEpoch, node_pb2.CommitEpochRequest(key_id=os.urandom(32), session_id=os.urandom(32), receipts=[b"\x00junk"]),
         "receipts[0]"),
        (svc.CommitEpoch, node_pb2.CommitEpochRequest(key_id=os.urandom(32), session_id=os.urandom(32)), "receipts:"),
        (svc.DiscardEpoch, node_pb2.DiscardEpochRequest(key_id=os.urandom(31), session_id=os.urandom(32)), "key_id:"),
        (svc.GetPendingEpoch, node_pb2.GetPendingEpochRequest(key_id=os.urandom(32), session_id=os.urandom(33)), "session_id:"),
    ]
    for method, req, field in cases:
        with pytest.raises(RpcError) as ei:
            method(req, None)
        assert ei.value.code == Code.INVALID_ARGUMENT and ei.value.message.startswith(field), ei.value.message
    info = svc.GetPendingEpoch(node_pb2.GetPendingEpochRequest(key_id=os.urandom(32), session_id=os.urandom(32)), None)
    assert not (info.pending or info.committed or info.holds_key or info.receipt)
    e = _refused(svc, b"", [1, 2])
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("reshare.operation:")
    e = _refused(svc, b"x", [1, 2], label=b"\xff")
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("reshare.key_label:")
