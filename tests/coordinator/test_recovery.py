"""Regression tests for issue 8 (crash consistency of the coordinator), in process over real
SQLite files (``lifecycle_util``): the approval that completes a quorum and the move to SIGNING
are one transaction; DONE and its ``sign-done`` entry go together; a restarted coordinator
settles requests whose stored approvals decide them; an approver's identical retry succeeds."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from coordinator.db import AuditEvent
from governance.approval import Decision
from governance.errors import GovernanceError
from mpcnet.client.audit import completeness_gaps
from mpcnet.common.rpc import RpcError

from .lifecycle_util import Crash, World


@pytest.fixture
def world(tmp_path: Path):
    w = World(tmp_path)
    yield w
    w.close()


def actions(w: World, rid: str) -> list[str]:
    return [e.action for e in w.entries(rid)]


def test_a_full_quorum_left_pending_by_an_older_version_is_settled_on_restart(world: World) -> None:
    world.submit("q1")
    world.decide("q1", "alice", Decision.APPROVE)
    # what the old two-write code left behind when killed between them: bert's approval stored
    # (with its entry), the request still PENDING_APPROVAL, no sign-approved entry
    rec = world.db.get_sign_request("q1")
    assert rec is not None
    from governance.approval import SigningRequest, sign_approval

    from .lifecycle_util import APPROVER_KEYS

    a = sign_approval(SigningRequest.from_bytes(rec.request), "bert", APPROVER_KEYS["bert"], Decision.APPROVE)
    with world.db._tx() as c:
        c.execute(
            "INSERT INTO approvals (request_id, approver, decision, signature, decided_ms, seq) VALUES (?, ?, ?, ?, ?, ?)",
            ("q1", "bert", "approve", a.signature, world.clock(), 1),
        )
    world.audit.append("bert", "sign-decision", request_id="q1", outcome="approve")
    assert world.db.get_sign_request("q1").state == "pending_approval"
    world.restart()
    assert world.db.get_sign_request("q1").state == "signing"
    assert actions(world, "q1").count("sign-approved") == 1
    # bert's client retries after the restart: the request back, not ALREADY_EXISTS
    info = world.decide("q1", "bert", Decision.APPROVE)
    assert info.request_id == "q1" and len(info.approvals) == 2
    assert world.sign_next() == "q1"
    assert world.db.get_sign_request("q1").state == "done"
    assert actions(world, "q1")[-1] == "sign-done"


@pytest.mark.parametrize("after", [False, True], ids=["before-commit", "after-commit"])
def test_a_crash_at_the_quorum_decision_leaves_pending_or_signing_never_in_between(world: World, after: bool) -> None:
    world.submit("q2")
    world.decide("q2", "alice", Decision.APPROVE)
    world.faults.arm(1, after)  # the decision's one transaction
    with pytest.raises(Crash):
        world.decide("q2", "bert", Decision.APPROVE)
    world.restart()
    rec = world.db.get_sign_request("q2")
    assert rec.state == ("signing" if after else "pending_approval")
    stored = [a.approver for a in world.db.approvals("q2")]
    assert stored == (["alice", "bert"] if after else ["alice"])
    assert actions(world, "q2").count("sign-approved") == (1 if after else 0)
    info = world.decide("q2", "bert", Decision.APPROVE)  # the approver's retry
    assert info.state == 2  # SIGNING
    assert actions(world, "q2") == ["sign-request", "sign-decision", "sign-decision", "sign-approved"]


@pytest.mark.parametrize("after", [False, True], ids=["audit-append-fails", "crash-before-outbox-delete"])
def test_a_crash_between_commit_and_audit_append_is_repaired_once(world: World, after: bool) -> None:
    world.submit("q3")
    world.decide("q3", "alice", Decision.APPROVE)
    world.faults.arm(2, after)  # write 1: the decision's transaction, write 2: appending its entries
    with pytest.raises(Crash):
        world.decide("q3", "bert", Decision.APPROVE)
    assert world.db.get_sign_request("q3").state == "signing"
    world.restart()
    assert not world.db.pending_audit()
    assert actions(world, "q3") == ["sign-request", "sign-decision", "sign-decision", "sign-approved"]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_done_never_lacks_its_sign_done_entry(world: World, k: int) -> None:
    world.submit("q4")
    world.decide("q4", "alice", Decision.APPROVE)
    world.decide("q4", "bert", Decision.APPROVE)
    world.faults.arm(k, True)  # after the DONE commit, after the entry's append, after the outbox delete
    with pytest.raises(Crash):
        world.sign_next()
    world.restart()
    assert world.db.get_sign_request("q4").state == "done"
    assert actions(world, "q4").count("sign-done") == 1
    assert completeness_gaps(world.audit.raw_rows(), {}, ["q4"]) == []


def test_a_different_second_decision_is_already_exists(world: World) -> None:
    world.submit("q5")
    world.decide("q5", "alice", Decision.APPROVE)
    assert world.decide("q5", "alice", Decision.APPROVE).request_id == "q5"  # identical: idempotent
    with pytest.raises(RpcError) as e:
        world.decide("q5", "alice", Decision.REJECT)
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS and "'alice' already decided 'approve'" in e.value.message
    assert actions(world, "q5") == ["sign-request", "sign-decision", "sign-decision"]  # the refused REJECT audited too
    assert [e.outcome for e in world.entries("q5")][-2:] == ["approve", "refused"]


def test_an_entry_that_could_not_be_appended_is_refused_before_the_change_commits() -> None:
    with pytest.raises(GovernanceError) as e:
        AuditEvent("coordinator", "sign-done", "q6", "done", {"private_key": "x"})
    assert "private_key" in e.value.field
    with pytest.raises(GovernanceError):
        AuditEvent("coordinator", "sign-done", "q6", "done", {"event": "mine"})
    with pytest.raises(GovernanceError):
        AuditEvent("coordinator", "Sign Done", "q6", "done", {})


def test_completeness_names_the_missing_entries_and_unrecorded_shares(world: World) -> None:
    world.submit("q7")
    world.decide("q7", "alice", Decision.APPROVE)
    world.decide("q7", "bert", Decision.APPROVE)
    world.sign_next()
    rows = world.audit.raw_rows()
    assert completeness_gaps(rows, {}, ["q7"]) == []
    no_done = [r for r in rows if r[3] != "sign-done"]
    gaps = completeness_gaps(no_done, {}, ["q7"])
    assert [(g.component, g.request_id) for g in gaps] == [("coordinator", "q7")]
    assert "request 'q7' is DONE but the log has no sign-done entry" in gaps[0].reason
    no_approved = [r for r in rows if r[3] != "sign-approved"]
    (gap,) = completeness_gaps(no_approved, {}, [])  # found through its sign-done entry
    assert gap.seq == next(r[0] for r in rows if r[3] == "sign-done") and "no sign-approved entry" in gap.reason
    share = (7, 0, "req-1", "sign-share", "ghost-1", "released", "{}", b"", b"", b"")
    refused = (8, 0, "req-1", "sign-share", "ghost-2", "refused", "{}", b"", b"", b"")
    known = (9, 0, "req-1", "sign-share", "q7", "released", "{}", b"", b"", b"")
    (gap,) = completeness_gaps(rows, {"node-2": [share, refused, known]}, ["q7"])
    assert (gap.component, gap.seq, gap.request_id) == ("node-2", 7, "ghost-1")
    assert "never recorded (no sign-request entry)" in gap.reason


def test_a_signature_made_while_the_database_cannot_be_written_is_recorded_when_it_can(world: World, monkeypatch) -> None:
    """The coordinator's disk is full when a signature arrives: the request stays SIGNING (as on
    disk) and DONE is written once the disk has room again; the signature is not lost (the
    request is not FAILED INTERNAL, nor left SIGNING with no thread to end it)."""
    import sqlite3

    world.submit("full1")
    world.decide("full1", "alice", Decision.APPROVE)
    world.decide("full1", "bert", Decision.APPROVE)
    failures = {"left": 3}
    tx = world.db._tx

    def failing_tx():
        if failures["left"]:
            failures["left"] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return tx()

    waits: list[float] = []
    monkeypatch.setattr(world.db, "_tx", failing_tx)
    monkeypatch.setattr(world.requests._stop, "wait", lambda s: waits.append(s) or False)
    assert world.sign_next() == "full1"
    rec = world.db.get_sign_request("full1")
    assert rec.state == "done", (rec.state, rec.error_message)
    assert len(waits) == 3 and world.nodes.calls["full1"] == 1
    assert actions(world, "full1")[-1] == "sign-done"
