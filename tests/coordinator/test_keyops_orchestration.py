"""The coordinator's key operations (coordinator.keyops, coordinator.lifecycle_proposals) driving
five in-process nodes of a 3-of-5 cluster (no gRPC: node handles call the NodeService directly).

Admin-signed reshares through lifecycle proposals, the roster-implied reshare after a revocation,
a coordinator killed between the receipts and the commit (and after the decision), and a
failure before the decision, which leaves the key signing in its old epoch. Signatures are
verified with coincurve against the key's unchanged public key.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.db import CoordinatorDb, KeyRecord, now_ms
from coordinator.keyops import KIND, KeyOperations
from coordinator.lifecycle_proposals import LifecycleProposals
from governance.keyop import KeyOpKind, SignedKeyOperation, sign_key_operation
from governance.roster import RosterChange, SignedRosterChange, revoke_node, sign_roster_change
from mpc_node.service import NodeService
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2, node_pb2
from tests.network.keyops_util import Handle, close, dkg, operation, services, share, sign

N, T = 5, 3
Code = grpc.StatusCode


class Crash(Exception):
    """The coordinator 'dies' here (a test fault)."""


class Coordinator:
    """The coordinator's key-operation parts over one database (restartable)."""

    def __init__(self, path: Path, lay: Layout, svcs: dict[int, NodeService], handles: dict[int, Handle]) -> None:
        self.path, self.lay, self.svcs, self.handles = path, lay, svcs, handles
        self.key = Ed25519PrivateKey.generate()
        self.open()

    def open(self) -> None:
        self.db = CoordinatorDb(self.path / "coordinator.db")
        self.audit = AuditLog.open(self.path / "audit.db", component="coordinator", signing_key=self.key)
        admins = self.lay.governance()[0]
        self.ops = KeyOperations(admins, self.db, self.audit, self.handles,  # type: ignore[arg-type]
                                 lambda: self.svcs[1].roster_state.current(), self.flush, timeout_s=60)
        self.lifecycle = LifecycleProposals(admins, self.db, self.audit)
        self.lifecycle.flush_audit = self.flush
        self.lifecycle.register(KIND, self.ops.decode_proposal, self.ops.apply_proposal)

    def flush(self) -> None:
        for item in self.db.pending_audit():
            ev = item.audit
            self.audit.append_once(ev.actor, ev.action, event=item.event, request_id=ev.request_id, outcome=ev.outcome, details=ev.details)
            self.db.drop_audit([item.event])

    def restart(self) -> None:
        self.ops.stop()
        self.db.close()
        self.audit.close()
        self.open()

    def close(self) -> None:
        self.ops.stop()
        self.db.close()
        self.audit.close()

    def add_key(self, k: node_pb2.DkgResult) -> KeyRecord:
        rid = "req-" + os.urandom(4).hex()
        rec = KeyRecord(k.key_id, "keyops", k.public_key, k.chain_code, k.threshold, k.parties, "active", now_ms(), rid)
        self.db.add_key(rec)
        return rec

    def wait(self, op_id: str, timeout: float = 120.0) -> coordinator_pb2.KeyOperationStatus:
        deadline = time.monotonic() + timeout
        while True:
            st = self.ops.get(op_id)
            if st.state in ("done", "failed") or time.monotonic() > deadline:
                return st
            time.sleep(0.1)


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("keyops-coord"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


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


def _signed_op(coord: Coordinator, k: Any, **kw: Any) -> SignedKeyOperation:
    return operation(coord.lay, coord.lay.governance()[0].digest(), k, roster_version=coord.svcs[1].roster_state.version, **kw)


def _propose(coord: Coordinator, signed: SignedKeyOperation) -> str:
    """admin1 proposes (with its own signature only), admin2 approves: applied at the quorum."""
    op = signed.operation
    mine = SignedKeyOperation(op, tuple(s for s in signed.signatures if s.admin == "admin1"))
    rec = coord.lifecycle.propose(KIND, mine.to_bytes(), "admin1", "signed_operation")
    assert rec.state == "pending" and rec.kind == KIND
    sig = sign_key_operation(op, "admin2", load_identity(coord.lay.dir, "admin2").signing_key)
    rec = coord.lifecycle.approve(rec.proposal_id, "admin2", sig.signature, "admin2")
    assert rec.state == "applied" and rec.operations == (op.proposal_id,)
    return op.proposal_id


def test_admin_signed_reshare_3_of_5_to_3_of_4_drops_a_node(coord: Coordinator) -> None:
    k = dkg(coord.svcs, T)
    rec = coord.add_key(k)
    op_id = _propose(coord, _signed_op(coord, k, kind=KeyOpKind.RESHARE, old=(1, 2, 3, 4, 5), new=(1, 2, 4, 5), old_t=3, new_t=3))
    st = coord.wait(op_id)
    assert st.state == "done", st.error
    assert st.new_epoch == 1 and list(st.new_committee) == [1, 2, 4, 5] and st.authorized_by == "admin-quorum"
    epoch, committee, excluded = coord.ops.signing(coord.db.get_key(k.key_id) or rec)
    assert (epoch, committee) == (1, (1, 2, 4, 5)) and excluded == {3}
    # the old-epoch share is erased on every node; node 3 holds none at all
    for i, s in coord.svcs.items():
        sh = share(s, k.key_id)
        assert (sh is None) if i == 3 else (sh is not None and sh.epoch == 1 and sh.parties == 4)
    assert isinstance(sign(coord.lay, coord.svcs, k, [1, 4, 5], committee, 1), bytes)
    with pytest.raises(RpcError) as ei:  # a node asked to sign at the old epoch refuses
        sign(coord.lay, coord.svcs, k, [1, 2, 4], committee, 0)
    assert ei.value.code == Code.FAILED_PRECONDITION and ei.value.message.startswith("sign.epoch:")
    actions = [(e.action, e.outcome) for e in coord.audit.entries()]
    assert ("key-operation", "started") in actions and ("key-operation", "committing") in actions and ("key-operation", "done") in actions


def test_proposals_that_do_not_match_the_key_are_refused(coord: Coordinator) -> None:
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    full = (1, 2, 3, 4, 5)
    stale = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=full, new=full, old_t=3, new_t=3, old_epoch=2)
    with pytest.raises(RpcError) as ei:
        coord.lifecycle.propose(KIND, stale.to_bytes(), "admin1", "signed_operation")
    assert ei.value.code == Code.FAILED_PRECONDITION and ei.value.message.startswith("signed_operation.operation.old_epoch:")
    good = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=full, new=full, old_t=3, new_t=3, admins=("admin2",))
    with pytest.raises(RpcError) as ei:  # the proposer must sign its own proposal
        coord.lifecycle.propose(KIND, good.to_bytes(), "admin1", "signed_operation")
    assert ei.value.code == Code.PERMISSION_DENIED
    with pytest.raises(RpcError) as ei:  # only admins propose
        coord.lifecycle.propose(KIND, good.to_bytes(), "approver1", "signed_operation")
    assert ei.value.code == Code.PERMISSION_DENIED and ei.value.message.startswith("proposer:")
    forged = SignedKeyOperation(good.operation, (sign_key_operation(good.operation, "admin1", Ed25519PrivateKey.generate()),))
    with pytest.raises(RpcError) as ei:
        coord.lifecycle.propose(KIND, forged.to_bytes(), "admin1", "signed_operation")
    assert ei.value.code == Code.PERMISSION_DENIED and "signatures[0].signature" in ei.value.message
    assert [e.outcome for e in coord.audit.entries() if e.action == "lifecycle-propose"] == ["refused"] * 4
    # approvals: only by the signing admin itself, with a signature that verifies, once
    mine = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=full, new=full, old_t=3, new_t=3, admins=("admin1",))
    rec = coord.lifecycle.propose(KIND, mine.to_bytes(), "admin1", "signed_operation")
    with pytest.raises(RpcError) as ei:
        coord.lifecycle.approve(rec.proposal_id, "admin2", bytes(64), "admin1")
    assert ei.value.code == Code.PERMISSION_DENIED and ei.value.message.startswith("admin:")
    with pytest.raises(RpcError) as ei:
        coord.lifecycle.approve(rec.proposal_id, "admin2", bytes(64), "admin2")
    assert ei.value.code == Code.PERMISSION_DENIED and ei.value.message.startswith("signature.signature:")
    with pytest.raises(RpcError) as ei:
        coord.lifecycle.approve(rec.proposal_id, "admin1", mine.signatures[0].signature, "admin1")
    assert ei.value.code == Code.ALREADY_EXISTS
    with pytest.raises(RpcError) as ei:
        coord.lifecycle.approve("00" * 16, "admin2", bytes(64), "admin2")
    assert ei.value.code == Code.NOT_FOUND
    assert coord.lifecycle.get(rec.proposal_id).state == "pending" and coord.db.key_epoch(k.key_id, N) == (0, full)


def test_coordinator_killed_between_receipts_and_commit_finishes_after_restart(coord: Coordinator) -> None:
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    full = (1, 2, 3, 4, 5)
    signed = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=full, new=full, old_t=3, new_t=3)

    def die(point: str) -> None:
        if point == "receipts":
            raise Crash(point)

    coord.ops.fault = die
    with pytest.raises(Crash):
        coord.ops.start(signed, "admin-quorum", "admin1", wait=True)
    assert coord.ops.get(signed.operation.proposal_id).state == "running"
    assert all(share(s, k.key_id).epoch == 0 for s in coord.svcs.values())  # type: ignore[union-attr]
    coord.restart()
    coord.ops.resume(wait=True)
    st = coord.ops.get(signed.operation.proposal_id)
    assert st.state == "done", st.error
    assert all(share(s, k.key_id).epoch == 1 for s in coord.svcs.values())  # type: ignore[union-attr]
    # killed after the decision: the restarted coordinator keeps pushing the commit
    signed2 = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=full, new=full, old_t=3, new_t=3, old_epoch=1)
    coord.ops.fault = lambda point: (_ for _ in ()).throw(Crash(point)) if point == "decided" else None
    with pytest.raises(Crash):
        coord.ops.start(signed2, "admin-quorum", "admin1", wait=True)
    assert coord.ops.get(signed2.operation.proposal_id).state == "committing"
    assert coord.db.key_epoch(k.key_id, N)[0] == 2  # the decision is durable
    coord.restart()
    coord.ops.resume(wait=True)
    assert coord.ops.get(signed2.operation.proposal_id).state == "done"
    assert all(share(s, k.key_id).epoch == 2 for s in coord.svcs.values())  # type: ignore[union-attr]
    assert isinstance(sign(coord.lay, coord.svcs, k, [2, 3, 5], full, 2), bytes)


def test_a_failure_before_the_decision_keeps_the_old_epoch(coord: Coordinator) -> None:
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    full = (1, 2, 3, 4, 5)
    signed = _signed_op(coord, k, kind=KeyOpKind.RESHARE, old=full, new=full, old_t=3, new_t=4)
    coord.handles[5].down = True  # a new-committee node is unreachable
    try:
        assert coord.ops.run(coord.ops.start(signed, "admin-quorum", "admin1", wait=True)) == "failed"
    finally:
        coord.handles[5].down = False
    st = coord.ops.get(signed.operation.proposal_id)
    assert st.state == "failed" and st.error
    assert coord.db.key_epoch(k.key_id, N) == (0, full)
    assert isinstance(sign(coord.lay, coord.svcs, k, [1, 2, 3], full, 0), bytes)
    # the same operation runs again while its old epoch is current
    coord.ops.start(signed, "admin-quorum", "admin1", wait=True)
    assert coord.ops.get(signed.operation.proposal_id).state == "done"
    assert isinstance(sign(coord.lay, coord.svcs, k, [1, 2, 4, 5], full, 1), bytes)
    st_all = coord.ops.not_done()
    assert all(s.key_id != k.key_id for s in st_all)


@pytest.fixture
def coord_own(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Coordinator]:
    """A cluster of its own (the test revokes a node)."""
    lay = prepare(tmp_path_factory.mktemp("keyops-revoke"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    svcs = services(lay)
    c = Coordinator(tmp_path, lay, svcs, {i: Handle(s) for i, s in svcs.items()})
    yield c
    c.close()
    close(svcs)


def test_roster_implied_reshare_after_a_revocation(coord_own: Coordinator) -> None:
    coord = coord_own
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    admins = coord.lay.governance()[0]
    cur = coord.svcs[1].roster_state.current()
    assert cur is not None
    change = RosterChange(revoke_node(cur, 4), cur.digest(), admins.digest())
    signed = SignedRosterChange(change, tuple(
        sign_roster_change(change, a, load_identity(coord.lay.dir, a).signing_key) for a in ("admin1", "admin2")
    ))
    for s in coord.svcs.values():
        s.roster_state.install(signed.to_bytes(), actor="admin1")
    roster = coord.svcs[1].roster_state.current()
    assert roster is not None
    op_id = coord.ops.start_roster_implied(k.key_id, roster, wait=True)
    assert op_id is not None
    st = coord.ops.get(op_id)
    assert st.state == "done", st.error
    assert st.authorized_by == "roster" and list(st.new_committee) == [1, 2, 3, 5] and not SignedKeyOperation.from_bytes(
        st.signed_operation).signatures
    assert coord.ops.start_roster_implied(k.key_id, roster) is None  # nothing left to do
    assert isinstance(sign(coord.lay, coord.svcs, k, [2, 3, 5], (1, 2, 3, 5), 1), bytes)
    # the revoked node is never contacted: it still holds its (now useless) epoch-0 share
    keys = {x.key_id: x for x in coord.svcs[4].ListKeys(node_pb2.NodeListKeysRequest(), None).keys}
    assert keys[k.key_id].status == common_pb2.KEY_STATUS_ACTIVE and keys[k.key_id].epoch == 0


def test_a_kill_after_the_operation_started_before_the_proposal_is_marked_applied(
    coord: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 2 (p16): the operation's start commits before the proposal is marked applied; a
    coordinator killed between the two left the proposal pending at its quorum for ever: nothing
    applied it at the start, and a signer approving again started it again (ALREADY_EXISTS: the
    operation is running/done), leaving it pending with that refusal as its error. Applying a
    proposal whose operation is recorded now only records it applied (the operation runs once)."""
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    signed = _signed_op(coord, k, kind=KeyOpKind.RESHARE, old=(1, 2, 3, 4, 5), new=(1, 2, 4, 5), old_t=3, new_t=3)
    op = signed.operation
    mine = SignedKeyOperation(op, tuple(s for s in signed.signatures if s.admin == "admin1"))
    rec = coord.lifecycle.propose(KIND, mine.to_bytes(), "admin1", "signed_operation")
    real = coord.db.put_lifecycle_proposal

    def killed(r: Any, audits: Any = ()) -> None:
        if r.state == "applied":
            raise Crash("killed before the proposal is marked applied")
        real(r, audits)

    monkeypatch.setattr(coord.db, "put_lifecycle_proposal", killed)
    sig = sign_key_operation(op, "admin2", load_identity(coord.lay.dir, "admin2").signing_key)
    with pytest.raises(Crash):
        coord.lifecycle.approve(rec.proposal_id, "admin2", sig.signature, "admin2")
    assert coord.wait(op.proposal_id).state == "done"
    coord.restart()  # the kill: a new process over the same files
    assert coord.lifecycle.get(rec.proposal_id).state == "pending"
    assert coord.lifecycle.retry_pending((KIND,), "coordinator") == [rec.proposal_id]
    after = coord.lifecycle.get(rec.proposal_id)
    assert after.state == "applied" and after.operations == (op.proposal_id,) and not after.error
    coord.flush()
    started = [e.outcome for e in coord.audit.entries() if e.action == "key-operation" and e.details.get("operation") == op.proposal_id]
    assert started.count("started") == 1 and "restarted" not in started, started
    assert coord.ops.get(op.proposal_id).state == "done"
