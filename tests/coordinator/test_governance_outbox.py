"""Issue 14 red-team finding, in-process parts: a proposal whose apply the coordinator's own store
cut short (a full disk: the apply transaction rolled back) stays pending at its quorum, changes
nothing, and is applied by a signer approving again, that re-approval audited (``again``) in the
apply's transaction; every step's entry reaches the log once and the chain verifies. The crash
parts run on real processes (test_policy_apply_crash.py)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from grpc import StatusCode as Code

from coordinator.audit_flush import AuditFlusher
from coordinator.db import CoordinatorDb, ProposalRecord
from coordinator.lifecycle_proposals import LifecycleProposals, Proposed
from coordinator.policies import PolicyBook, proposal_id
from governance.policy import DEFAULT_SCOPE, AdminSignature, PolicyChange, SignedPolicyChange, sign_policy_change
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog, verify_audit
from tests.governance.gov_util import ADMIN_KEYS, admin_set

from .lifecycle_util import initial_change

IDENTITY = Ed25519PrivateKey.generate()
DISK_FULL = sqlite3.OperationalError("database or disk is full")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[CoordinatorDb, AuditLog, AuditFlusher]]:
    db = CoordinatorDb(tmp_path / "coordinator.db")
    audit = AuditLog.open(tmp_path / "audit.db", component="coordinator", signing_key=IDENTITY)
    flusher = AuditFlusher(db, audit, linger_s=0)
    try:
        yield db, audit, flusher
    finally:
        flusher.flush()
        audit.close()
        db.close()
        public = IDENTITY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        report = verify_audit(tmp_path / "audit.db", public)
        assert report.ok, report.reason


def _steps(audit: AuditLog, pid: str) -> Counter[tuple[str, str]]:
    return Counter((e.action, e.outcome) for e in audit.entries() if e.details.get("proposal") == pid)


def test_a_policy_proposal_cut_short_by_a_full_disk_is_applied_by_a_re_approval_audited(
    world: tuple[CoordinatorDb, AuditLog, AuditFlusher], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, audit, flusher = world
    book = PolicyBook(admin_set(), initial_change(), db, audit, {})
    book.flush_audit = flusher.soon
    flusher.flush()  # the initial policy's entry, queued with it
    assert [(e.action, e.outcome) for e in audit.entries()] == [("policy-apply", "applied")]
    first = initial_change().change.new_policy
    change = PolicyChange(DEFAULT_SCOPE, dataclasses.replace(first, version=2, ttl_seconds=600), first.digest(), admin_set().digest())
    ada = sign_policy_change(change, "ada", ADMIN_KEYS["ada"])
    bob = sign_policy_change(change, "bob", ADMIN_KEYS["bob"])
    pid = book.propose(SignedPolicyChange(change, (ada,)).to_bytes(), "ada", lambda _: False).proposal_id
    real = db.apply_policy_proposal
    calls = []

    def full(*args: Any, **kwargs: Any) -> list[str]:
        calls.append(1)
        if len(calls) == 1:
            raise DISK_FULL
        return real(*args, **kwargs)

    monkeypatch.setattr(db, "apply_policy_proposal", full)
    with pytest.raises(sqlite3.OperationalError):  # the RPC layer answers UNAVAILABLE (coordinator.service)
        book.approve(pid, "bob", bob.signature, "bob")
    stuck = db.get_proposal(pid)
    assert stuck is not None and stuck.state == "pending"
    assert book.current(DEFAULT_SCOPE) is not None and book.current(DEFAULT_SCOPE).change.new_policy.version == 1  # type: ignore[union-attr]
    assert db.policy_changes()[DEFAULT_SCOPE] == [initial_change().to_bytes()]  # nothing of it committed
    assert _steps(audit, pid) == {("policy-propose", "pending"): 1, ("policy-approve", "signed"): 1}
    assert book.approve(pid, "bob", bob.signature, "bob").state == "applied"  # bob again: applies it
    assert book.current(DEFAULT_SCOPE).change.new_policy.version == 2  # type: ignore[union-attr]
    flusher.flush()
    assert _steps(audit, pid) == {
        ("policy-propose", "pending"): 1, ("policy-approve", "signed"): 1, ("policy-approve", "again"): 1,
        ("policy-apply", "applied"): 1,
    }
    assert not db.pending_audit()
    with pytest.raises(RpcError) as e:  # once applied, approving again is refused (and audited)
        book.approve(pid, "bob", bob.signature, "bob")
    assert "not pending" in e.value.message


def test_a_policy_proposal_left_at_its_quorum_is_applied_at_the_start(world: tuple[CoordinatorDb, AuditLog, AuditFlusher]) -> None:
    """The approval reaching the quorum committed, the coordinator died before the apply:
    :meth:`PolicyBook.retry_pending` (run by the service before it serves) applies it."""
    db, audit, flusher = world
    PolicyBook(admin_set(), initial_change(), db, audit, {})  # the first start: the initial policy
    first = initial_change().change.new_policy
    change = PolicyChange(DEFAULT_SCOPE, dataclasses.replace(first, version=2, ttl_seconds=700), first.digest(), admin_set().digest())
    sigs = tuple(sign_policy_change(change, n, ADMIN_KEYS[n]) for n in ("ada", "bob"))
    signed = SignedPolicyChange(change, sigs)
    pid = proposal_id(signed)
    db.put_proposal(ProposalRecord(pid, DEFAULT_SCOPE, signed.to_bytes(), "pending", "ada", 1, 1))
    restarted = PolicyBook(admin_set(), initial_change(), db, audit, {})
    restarted.flush_audit = flusher.soon
    assert restarted.retry_pending("coordinator") == [pid]
    assert restarted.current(DEFAULT_SCOPE).change.new_policy.version == 2  # type: ignore[union-attr]
    assert db.list_proposals("pending") == []
    assert _steps(audit, pid) == {("policy-apply", "applied"): 1}


# --- lifecycle proposals -----------------------------------------------------------------------
MESSAGE = b"lifecycle test operation"


def _decode(data: bytes) -> Proposed:
    sigs = tuple(AdminSignature(n, bytes.fromhex(s)) for n, s in json.loads(data))
    return Proposed("p-test", MESSAGE, sigs, lambda ss: json.dumps([[s.admin, s.signature.hex()] for s in ss]).encode())


def _signed(*names: str) -> bytes:
    return json.dumps([[n, ADMIN_KEYS[n].sign(MESSAGE).hex()] for n in names]).encode()


def test_a_lifecycle_proposal_cut_short_by_a_full_disk_is_applied_by_a_re_approval_audited(
    world: tuple[CoordinatorDb, AuditLog, AuditFlusher],
) -> None:
    db, audit, flusher = world
    lc = LifecycleProposals(admin_set(), db, audit)
    lc.flush_audit = flusher.soon
    applied: list[str] = []

    def apply(data: bytes, actor: str) -> list[str]:
        if not applied:
            applied.append("cut")
            raise DISK_FULL  # not an RpcError: no failure recorded, the proposal stays pending at its quorum
        applied.append(actor)
        return ["op-1"]

    lc.register("test", _decode, apply)
    assert lc.propose("test", _signed("ada"), "ada", "signed").state == "pending"
    with pytest.raises(sqlite3.OperationalError):
        lc.approve("p-test", "bob", ADMIN_KEYS["bob"].sign(MESSAGE), "bob")
    assert lc.get("p-test").state == "pending" and not lc.get("p-test").error
    assert lc.approve("p-test", "bob", ADMIN_KEYS["bob"].sign(MESSAGE), "bob").state == "applied"
    flusher.flush()
    assert _steps(audit, "p-test") == {
        ("lifecycle-propose", "pending"): 1, ("lifecycle-approve", "signed"): 1, ("lifecycle-approve", "again"): 1,
        ("lifecycle-apply", "applied"): 1,
    }
    assert applied == ["cut", "bob"]


def test_a_lifecycle_step_stored_before_its_apply_fails_is_not_audited_as_refused(
    world: tuple[CoordinatorDb, AuditLog, AuditFlusher],
) -> None:
    """Review 2 (p16): an approval (or a proposal) that was stored, audited ``signed``/``pending``,
    and whose apply then failed (an RpcError of its kind, audited ``lifecycle-apply failed``) got
    a third entry saying the approval itself was ``refused``: the log contradicted itself about
    whether the admin's signature counts. Only a refusal that changed nothing is audited so."""
    db, audit, flusher = world
    lc = LifecycleProposals(admin_set(), db, audit)
    lc.flush_audit = flusher.soon

    def apply(data: bytes, actor: str) -> list[str]:
        raise RpcError(Code.FAILED_PRECONDITION, "key_id: not now")

    lc.register("test", _decode, apply)
    assert lc.propose("test", _signed("ada"), "ada", "signed").state == "pending"
    with pytest.raises(RpcError) as e:
        lc.approve("p-test", "bob", ADMIN_KEYS["bob"].sign(MESSAGE), "bob")
    assert e.value.code == Code.FAILED_PRECONDITION
    rec = lc.get("p-test")
    assert rec.state == "pending" and rec.error and {s.admin for s in _decode(rec.signed).signatures} == {"ada", "bob"}
    flusher.flush()
    assert _steps(audit, "p-test") == {
        ("lifecycle-propose", "pending"): 1, ("lifecycle-approve", "signed"): 1, ("lifecycle-apply", "failed"): 1,
    }
    # a proposal arriving with its quorum: stored, its apply fails, the propose is not "refused"
    with pytest.raises(RpcError):
        lc.propose("test", _signed("ada", "bob"), "ada", "signed")
    flusher.flush()
    refused = [e for e in audit.entries() if e.outcome == "refused"]
    assert refused == [], [(e.action, e.details) for e in refused]
    # a refusal that changes nothing is still audited as one
    with pytest.raises(RpcError):
        lc.approve("p-test", "bob", ADMIN_KEYS["bob"].sign(MESSAGE), "bob")  # already signed, a failure recorded
    assert [e.action for e in audit.entries() if e.outcome == "refused"] == ["lifecycle-approve"]
