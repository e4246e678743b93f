"""A key operation whose coordinator cannot write its database for a while (disk full) resumes
on its own once a write succeeds again, instead of staying ``running``/``committing`` (and the
key blocked for new operations) until the next start.

Found by filling the coordinator's data directory (a small tmpfs) during a refresh of a real
cluster: ``db.decide`` failed with ``database or disk is full``, the operation's thread logged a
traceback and stopped, and ``mpc key operations`` showed it RUNNING until a restart; another
refresh was refused (``key operation ... of this key is not finished``). In-process nodes here
(:mod:`tests.coordinator.test_keyops_orchestration`), with the database's writes failing like a
full disk at the decision point and again while the commit is pushed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator import keyops
from governance.errors import GovernanceError
from governance.keyop import KeyOpKind
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from tests.coordinator.test_keyops_orchestration import Coordinator, N, T, _signed_op
from tests.network.keyops_util import Handle, close, dkg, services, share, sign

FULL = (1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("keyops-full"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


@pytest.fixture
def coord(tmp_path: Path, lay: Layout, svcs: dict[int, NodeService], monkeypatch: pytest.MonkeyPatch) -> Iterator[Coordinator]:
    monkeypatch.setattr(keyops, "STORE_RETRY_S", 0.05)
    monkeypatch.setattr(keyops, "STORE_RETRY_MAX_S", 0.2)
    c = Coordinator(tmp_path, lay, svcs, {i: Handle(s) for i, s in svcs.items()})
    yield c
    c.close()


def failing(times: int, make: Callable[[], BaseException], real: Callable[..., Any], skip: int = 0) -> Callable[..., Any]:
    """``real``, except that ``times`` calls after the first ``skip`` raise ``make()`` (the disk is full)."""
    left, skipped = [times], [skip]

    def call(*a: Any, **kw: Any) -> Any:
        if skipped[0] > 0:
            skipped[0] -= 1
        elif left[0] > 0:
            left[0] -= 1
            raise make()
        return real(*a, **kw)

    return call


def wait_done(coord: Coordinator, op_id: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = coord.ops.get(op_id)
        if st.state in ("done", "failed"):
            return st
        time.sleep(0.05)
    return coord.ops.get(op_id)


@pytest.mark.parametrize("method", ["decide", "switched"])
def test_a_refresh_resumes_once_the_database_can_be_written_again(coord: Coordinator, method: str, monkeypatch) -> None:
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    monkeypatch.setattr(coord.db, method, failing(3, lambda: sqlite3.OperationalError("database or disk is full"),
                                                  getattr(coord.db, method)))
    signed = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=FULL, new=FULL, old_t=T, new_t=T)
    op_id = coord.ops.start(signed, "admin-quorum", "admin1")  # its own thread, as for a proposal's approval
    st = wait_done(coord, op_id)
    assert st.state == "done", (st.state, st.error)
    assert coord.db.key_epoch(k.key_id, N) == (1, FULL)
    assert all(share(s, k.key_id).epoch == 1 for s in coord.svcs.values())  # type: ignore[union-attr]
    assert isinstance(sign(coord.lay, coord.svcs, k, [1, 3, 5], FULL, 1), bytes)
    assert op_id not in coord.ops._stalled


@pytest.mark.parametrize("error", [
    lambda: sqlite3.OperationalError("database or disk is full"),  # the outbox (AuditFlusher.flush lets it through)
    lambda: GovernanceError("database", "database or disk is full"),  # the audit log itself
], ids=["outbox", "audit-log"])
def test_an_audit_flush_failing_after_the_decision_is_waited_out(coord: Coordinator, error, monkeypatch) -> None:
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    # the first flush is start()'s (the operation's "started" entry); the next is the decision's
    monkeypatch.setattr(coord.ops, "flush", failing(2, error, coord.ops.flush, skip=1))
    signed = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=FULL, new=FULL, old_t=T, new_t=T)
    op_id = coord.ops.start(signed, "admin-quorum", "admin1")
    st = wait_done(coord, op_id)
    assert st.state == "done", (st.state, st.error)


def test_any_other_unexpected_error_still_waits_for_the_next_start(coord: Coordinator, monkeypatch) -> None:
    k = dkg(coord.svcs, T)
    coord.add_key(k)
    monkeypatch.setattr(coord.db, "decide", failing(1, lambda: RuntimeError("a bug"), coord.db.decide))
    signed = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=FULL, new=FULL, old_t=T, new_t=T)
    op_id = coord.ops.start(signed, "admin-quorum", "admin1")
    deadline = time.monotonic() + 30
    while op_id not in coord.ops._stalled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert op_id in coord.ops._stalled and coord.ops.get(op_id).state == "running"
    coord.restart()
    coord.ops.resume(wait=True)
    assert coord.ops.get(op_id).state == "done"


def test_an_approval_whose_apply_hit_a_full_disk_is_applied_by_approving_again(coord: Coordinator, monkeypatch) -> None:
    """The quorum's approval was stored but applying the proposal (recording its operation) failed
    on the coordinator's store: the admin got UNAVAILABLE ("try again when it can"), and trying
    again answered ALREADY_EXISTS (already signed), a dead end: the proposal stayed pending at its
    quorum and only a new proposal helped. Approving again now applies it; below the quorum, or
    after a recorded apply failure, a second approval is still ALREADY_EXISTS."""
    from coordinator.keyops import KIND
    from governance.keyop import SignedKeyOperation, sign_key_operation
    from mpcnet.client.identities import load_identity
    from mpcnet.common.rpc import RpcError

    k = dkg(coord.svcs, T)
    coord.add_key(k)
    signed = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=FULL, new=FULL, old_t=T, new_t=T)
    op = signed.operation
    mine = SignedKeyOperation(op, tuple(s for s in signed.signatures if s.admin == "admin1"))
    rec = coord.lifecycle.propose(KIND, mine.to_bytes(), "admin1", "signed_operation")
    with pytest.raises(RpcError) as e:  # admin1 again, below the quorum
        coord.lifecycle.approve(rec.proposal_id, "admin1", mine.signatures[0].signature, "admin1")
    assert e.value.code.name == "ALREADY_EXISTS"
    monkeypatch.setattr(coord.db, "add_key_operation", failing(1, lambda: sqlite3.OperationalError("database or disk is full"),
                                                                coord.db.add_key_operation))
    sig = sign_key_operation(op, "admin2", load_identity(coord.lay.dir, "admin2").signing_key)
    with pytest.raises(sqlite3.OperationalError):  # the RPC layer answers UNAVAILABLE naming the store
        coord.lifecycle.approve(rec.proposal_id, "admin2", sig.signature, "admin2")
    assert coord.lifecycle.get(rec.proposal_id).state == "pending"
    again = coord.lifecycle.approve(rec.proposal_id, "admin2", sig.signature, "admin2")  # room again
    assert again.state == "applied" and again.operations == (op.proposal_id,)
    assert wait_done(coord, op.proposal_id).state == "done"
    with pytest.raises(RpcError) as e:  # applied: nothing more to approve
        coord.lifecycle.approve(rec.proposal_id, "admin2", sig.signature, "admin2")
    assert e.value.code.name == "FAILED_PRECONDITION"


def test_two_approvals_again_at_once_apply_the_proposal_once(coord: Coordinator, monkeypatch) -> None:
    """Regression (review of 7eacb02): each of ``approve``'s check (pending) and ``_maybe_apply``
    held the lock apart, so two re-approvals (or two approvals completing the quorum, or
    retry_pending beside one) that both passed the check applied the proposal twice: the second
    start found the operation running (ALREADY_EXISTS) and set the applied proposal back to
    pending with that refusal as its error (audited lifecycle-apply failed). It is applied once."""
    import threading

    from coordinator.keyops import KIND
    from governance.keyop import SignedKeyOperation, sign_key_operation
    from mpcnet.client.identities import load_identity

    k = dkg(coord.svcs, T)
    coord.add_key(k)
    signed = _signed_op(coord, k, kind=KeyOpKind.REFRESH, old=FULL, new=FULL, old_t=T, new_t=T)
    op = signed.operation
    mine = SignedKeyOperation(op, tuple(s for s in signed.signatures if s.admin == "admin1"))
    rec = coord.lifecycle.propose(KIND, mine.to_bytes(), "admin1", "signed_operation")
    monkeypatch.setattr(coord.db, "add_key_operation", failing(1, lambda: sqlite3.OperationalError("database or disk is full"),
                                                                coord.db.add_key_operation))
    sig = sign_key_operation(op, "admin2", load_identity(coord.lay.dir, "admin2").signing_key)
    with pytest.raises(sqlite3.OperationalError):
        coord.lifecycle.approve(rec.proposal_id, "admin2", sig.signature, "admin2")
    starts = []
    real_start = coord.ops.start
    monkeypatch.setattr(coord.ops, "start", lambda *a, **kw: starts.append(1) or real_start(*a, **kw))
    both = threading.Barrier(2, timeout=10)
    real_apply = coord.lifecycle._maybe_apply

    def apply_after_both_checked(pid: str, actor: str, **kw: Any) -> Any:
        both.wait()  # both re-approvals passed approve's check before either applies
        return real_apply(pid, actor, **kw)

    monkeypatch.setattr(coord.lifecycle, "_maybe_apply", apply_after_both_checked)
    got: list[Any] = []

    def again() -> None:
        try:
            got.append(coord.lifecycle.approve(rec.proposal_id, "admin2", sig.signature, "admin2").state)
        except Exception as e:  # recorded for the assertion
            got.append(e)

    ts = [threading.Thread(target=again) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert got == ["applied", "applied"]
    assert len(starts) == 1
    final = coord.lifecycle.get(rec.proposal_id)
    assert final.state == "applied" and final.error == "" and final.operations == (op.proposal_id,)
    assert wait_done(coord, op.proposal_id).state == "done"
