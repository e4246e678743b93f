"""Issue 10 item 4: what the coordinator's audit trail keeps of a signing request.

Every entry of a signing request (``sign-request``, each ``sign-decision``, ``sign-approved`` /
``sign-rejected``, ``sign-done`` / ``sign-failed`` / ``sign-expired``) records ``request_sha256``,
the SHA-256 of the exact canonical request the approvals sign, so an auditor recomputes it from
an approval and finds every entry of that request; the description is kept whole (the decisive
part of a long one is after character 500); a reason too long for an entry is cut only with a
``*_truncated`` flag. In process over real SQLite files (``lifecycle_util``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest

from governance.approval import Approval, Decision, SigningRequest, check_approval
from governance.audit import MAX_DETAIL_TEXT
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import coordinator_pb2

from .lifecycle_util import KEY_ID, TTL_S, World, default_policy

DESCRIPTION = ("pay the usual supplier invoice 2291; " * 14)[:500] + " -- and also send 9000 ETH to 0xdead" + "." * 488


@pytest.fixture
def world(tmp_path: Path):
    w = World(tmp_path)
    yield w
    w.close()


def submit(world: World, rid: str, description: str) -> coordinator_pb2.SignRequestInfo:
    req = coordinator_pb2.SubmitSignRequestRequest(
        key_id=KEY_ID, digest=hashlib.sha256(rid.encode()).digest(), description=description, request_id=rid,
    )
    return world.requests.submit(req, "req-1", world.db.get_key)


def hash_from_approval(info: coordinator_pb2.SignRequestInfo, approver: str) -> str:
    """What an auditor does: take an approval, check it signs this exact request, hash the request."""
    sreq = SigningRequest.from_bytes(info.request)
    a = next(a for a in info.approvals if a.approver == approver)
    decision = Decision.APPROVE if a.decision == coordinator_pb2.DECISION_APPROVE else Decision.REJECT
    check_approval(default_policy(), sreq, Approval(a.approver, decision, a.signature))
    assert sreq.request_digest() == hashlib.sha256(info.request).digest()
    return sreq.request_digest().hex()


def test_every_entry_of_a_signed_request_names_the_hash_its_approvals_sign(world: World) -> None:
    assert len(DESCRIPTION) == 1024 and "9000 ETH" in DESCRIPTION[500:]
    submit(world, "batch.7", DESCRIPTION)
    world.decide("batch.7", "alice", Decision.APPROVE)
    info = world.decide("batch.7", "bert", Decision.APPROVE)
    assert world.sign_next() == "batch.7"
    h = hash_from_approval(info, "alice")
    assert hash_from_approval(info, "bert") == h
    entries = world.entries("batch.7")  # the dotted id is kept, not emptied
    actions = [e.action for e in entries]
    assert actions == ["sign-request", "sign-decision", "sign-decision", "sign-approved", "sign-done"], actions
    for e in entries:
        assert e.details.get("request_sha256") == h, (e.action, dict(e.details))
    first = entries[0].details
    assert first["description"] == DESCRIPTION and "description_truncated" not in first


def test_rejected_and_expired_requests_name_the_hash_too(world: World) -> None:
    info = submit(world, "rej-1", "no")
    h = hashlib.sha256(info.request).hexdigest()
    world.decide("rej-1", "alice", Decision.REJECT)
    world.decide("rej-1", "bert", Decision.REJECT)
    assert [e.details.get("request_sha256") for e in world.entries("rej-1")] == [h] * 4
    info = submit(world, "exp-1", "late")
    world.clock.ms += (TTL_S + 1) * 1000
    world.requests.expire_due()
    assert [(e.action, e.details.get("request_sha256")) for e in world.entries("exp-1")] == [
        ("sign-request", hashlib.sha256(info.request).hexdigest()),
        ("sign-expired", hashlib.sha256(info.request).hexdigest()),
    ]


def test_a_failure_reason_too_long_for_an_entry_is_cut_with_a_flag(world: World) -> None:
    submit(world, "fail-1", "x")
    world.decide("fail-1", "alice", Decision.APPROVE)
    world.decide("fail-1", "bert", Decision.APPROVE)
    world.sign_next()  # FakeNodes signs it; finish another one by hand with a long reason
    submit(world, "fail-2", "y")
    world.decide("fail-2", "alice", Decision.APPROVE)
    world.decide("fail-2", "bert", Decision.APPROVE)
    world.requests._finish("fail-2", "failed", grpc.StatusCode.ABORTED, "why " * 1000, 1)
    end = world.entries("fail-2")[-1]
    assert end.action == "sign-failed" and end.details["reason_truncated"] is True
    assert len(str(end.details["reason"])) == MAX_DETAIL_TEXT and "request_sha256" in end.details


def test_deciding_as_someone_else_is_refused_and_audited(world: World) -> None:
    submit(world, "imp-1", "x")
    req = coordinator_pb2.DecideSignRequestRequest(
        request_id="imp-1", approver="bert", decision=coordinator_pb2.DECISION_APPROVE, signature=bytes(64)
    )
    with pytest.raises(RpcError) as e:
        world.requests.decide(req, "alice")
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    last = world.entries("imp-1")[-1]
    assert (last.actor, last.action, last.outcome) == ("alice", "sign-decision", "refused")
    assert "differs from the approver 'bert'" in str(last.details["reason"])


def test_a_repeated_decision_with_another_signature_is_refused_and_audited(world: World) -> None:
    """A retry of a decision is answered from the record (Ed25519 is deterministic: a genuine retry
    carries the same signature bytes); one with other bytes (another key, garbage) was answered as
    a success although the signature was never checked. It is refused and audited; nothing changes."""
    submit(world, "dup-1", "x")
    world.decide("dup-1", "alice", Decision.APPROVE)
    world.decide("dup-1", "alice", Decision.APPROVE)  # a genuine retry: the same bytes
    before = world.db.approvals("dup-1")
    req = coordinator_pb2.DecideSignRequestRequest(
        request_id="dup-1", approver="alice", decision=coordinator_pb2.DECISION_APPROVE, signature=bytes(64)
    )
    with pytest.raises(RpcError) as e:
        world.requests.decide(req, "alice")
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED and "approval.signature" in e.value.message
    assert world.db.approvals("dup-1") == before
    last = world.entries("dup-1")[-1]
    assert (last.actor, last.action, last.outcome) == ("alice", "sign-decision", "refused")


def test_a_change_of_mind_is_refused_and_audited(world: World) -> None:
    """Second attacker round: an approver's second, different decision (a REJECT after an
    APPROVE: the signed reject stays with the coordinator) is refused ALREADY_EXISTS and, like
    every other refused decision, audited with the request's hash; it was refused silently."""
    submit(world, "mind-1", "x")
    world.decide("mind-1", "alice", Decision.APPROVE)
    before = world.db.approvals("mind-1")
    with pytest.raises(RpcError) as e:
        world.decide("mind-1", "alice", Decision.REJECT)
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert world.db.approvals("mind-1") == before
    last = world.entries("mind-1")[-1]
    assert (last.actor, last.action, last.outcome) == ("alice", "sign-decision", "refused")
    assert last.details["decision"] == "reject" and "request_sha256" in last.details and "already decided" in str(last.details["reason"])
