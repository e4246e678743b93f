"""Admin proposals of the key lifecycle (``ProposeKeyOperation``, ``ProposeRosterChange``,
``ApproveLifecycleProposal``, ``Get``/``ListLifecycleProposals``), one table for every kind.

Like policy proposals (:mod:`coordinator.policies`): the proposer must be an admin and sign its
own proposal; every signature is verified as it arrives (against the coordinator's admin set);
at the admin quorum the proposal is applied by its kind's ``apply``; each step is audited
(``lifecycle-propose``, ``lifecycle-approve``, ``lifecycle-apply``). A kind is registered with
:meth:`LifecycleProposals.register` (``decode``, ``apply``): ``decode(data)`` checks a
proposal's encoding and that it applies to the current state (raising :class:`RpcError` naming
the field) and returns a :class:`Proposed`; ``apply(signed, actor)`` runs it and returns the
key operations it started. A failed apply leaves the proposal pending with its error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc

from coordinator.audit_order import append_after_queued
from coordinator.db import AuditEvent, CoordinatorDb, now_ms
from coordinator.keyop_store import LifecycleRecord
from governance._checks import ed25519_verify
from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.policy import AdminSet, AdminSignature
from governance.text import quote
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import coordinator_pb2

log = logging.getLogger("coordinator.lifecycle")
Code = grpc.StatusCode
STATES = {
    "pending": coordinator_pb2.PROPOSAL_STATE_PENDING,
    "applied": coordinator_pb2.PROPOSAL_STATE_APPLIED,
    "superseded": coordinator_pb2.PROPOSAL_STATE_SUPERSEDED,
}
PB_STATES = {v: k for k, v in STATES.items()}


@dataclass(frozen=True)
class Proposed:
    """A decoded proposal: ``message`` is what every admin signs (the canonical change or
    operation), ``rebuild(signatures)`` the canonical signed encoding with those signatures."""

    proposal_id: str
    message: bytes
    signatures: tuple[AdminSignature, ...]
    rebuild: Callable[[tuple[AdminSignature, ...]], bytes]
    details: dict[str, str | int | bool] = field(default_factory=dict)
    quorum: int = 0  # distinct admin signatures needed to apply (0: the admin set's quorum)


Decode = Callable[[bytes], Proposed]
Apply = Callable[[bytes, str], list[str]]


class LifecycleProposals:
    """The proposal table and its flow; kinds plug in with :meth:`register`."""

    def __init__(self, admins: AdminSet, db: CoordinatorDb, audit: AuditLog) -> None:
        self.admins = admins
        self.db = db
        self.audit = audit
        # appends the database's queued audit entries to the audit log (set by the service to
        # the audit flusher; every step's entry is committed with it in the outbox either way)
        self.flush_audit: Callable[[], None] = lambda: None
        self.flush_now: Callable[[], object] = lambda: None  # the same, synchronously (before a refusal's direct append)
        self._kinds: dict[str, tuple[Decode, Apply]] = {}
        self._lock = threading.RLock()

    def register(self, kind: str, decode: Decode, apply: Apply) -> None:
        self._kinds[kind] = (decode, apply)

    def _kind(self, kind: str) -> tuple[Decode, Apply]:
        got = self._kinds.get(kind)
        if got is None:
            raise RpcError(Code.UNIMPLEMENTED, f"kind: {quote(kind)} proposals are not handled by this coordinator yet")
        return got

    def _check_signature(self, message: bytes, s: AdminSignature, where: str) -> None:
        key = self.admins.admins.get(s.admin)
        if key is None:
            raise RpcError(Code.PERMISSION_DENIED, f"{where}.admin: {quote(s.admin)} is not an admin of this cluster")
        if not ed25519_verify(key, s.signature, message):
            raise RpcError(Code.PERMISSION_DENIED, f"{where}.signature: does not verify under the key of admin {quote(s.admin)}")

    # --- flow --------------------------------------------------------------------------------
    def propose(self, kind: str, data: bytes, caller: str, field_name: str) -> LifecycleRecord:
        """A new proposal (or more signatures for a pending one); audited, refusals too. Only a
        refusal before the proposal is stored is audited ``refused``: once stored (``pending``),
        a failing apply is audited ``lifecycle-apply failed`` and its RpcError propagates."""
        try:
            pid = self._propose(kind, data, caller, field_name)
        except RpcError as e:
            self._audit_alone(caller, "lifecycle-propose", "refused", {"kind": kind} | detail_text("reason", e.message))
            raise
        return self._maybe_apply(pid, caller)

    def _propose(self, kind: str, data: bytes, caller: str, field_name: str) -> str:
        """Check and store the proposal (its ``pending`` entry in the transaction); its id."""
        decode, _ = self._kind(kind)
        if caller not in self.admins.admins:
            raise RpcError(Code.PERMISSION_DENIED, f"proposer: certificate name {quote(caller)} is not an admin of this cluster")
        p = decode(data)
        if not p.signatures:
            raise RpcError(Code.PERMISSION_DENIED, f"{field_name}.signatures: at least the proposer's signature is required")
        for i, s in enumerate(p.signatures):
            self._check_signature(p.message, s, f"{field_name}.signatures[{i}]")
        if caller not in {s.admin for s in p.signatures}:
            raise RpcError(Code.PERMISSION_DENIED, f"{field_name}.signatures: the proposer {quote(caller)} must sign its own proposal")
        with self._lock:
            existing = self.db.get_lifecycle_proposal(p.proposal_id)
            if existing is not None and existing.state != "pending":
                raise RpcError(Code.ALREADY_EXISTS, f"proposal_id: proposal {p.proposal_id} is already {existing.state}")
            sigs = p.signatures
            if existing is not None:
                sigs = _merge(decode(existing.signed).signatures, sigs)
            t = now_ms()
            rec = LifecycleRecord(
                p.proposal_id, kind, p.rebuild(sigs), "pending", caller if existing is None else existing.proposer, (), "",
                t if existing is None else existing.created_ms, t,
            )
            event = AuditEvent(caller, "lifecycle-propose", "", "pending", {"kind": kind, "proposal": p.proposal_id} | p.details)
            self.db.put_lifecycle_proposal(rec, (event,))
        self._flush()
        return p.proposal_id

    def approve(self, pid: str, admin: str, signature: bytes, caller: str) -> LifecycleRecord:
        """An admin's approval of a pending proposal; audited, refusals too. Only a refusal before
        the approval is stored is audited ``refused`` (review 2: a stored approval whose apply then
        failed was audited ``signed`` and ``refused`` both); the apply's RpcError propagates."""
        try:
            again = self._approve(pid, admin, signature, caller)
        except RpcError as e:
            self._audit_alone(caller, "lifecycle-approve", "refused", {"proposal": pid} | detail_text("reason", e.message))
            raise
        return self._maybe_apply(pid, caller, also=again)

    def _approve(self, pid: str, admin: str, signature: bytes, caller: str) -> AuditEvent | None:
        """Check and store the approval (its ``signed`` entry in the transaction); a signer
        approving again a proposal cut short at its quorum stores nothing: its ``again`` entry
        (for the apply's transaction) is returned, else None."""
        if admin != caller:
            raise RpcError(Code.PERMISSION_DENIED, f"admin: certificate name {quote(caller)} differs from the signing admin {quote(admin)}")
        try:
            sig = AdminSignature(admin, signature)
        except GovernanceError as e:
            raise RpcError(Code.INVALID_ARGUMENT, f"{e.field}: {e.reason}") from None
        with self._lock:
            rec = self.get(pid)
            if rec.state != "pending":
                raise RpcError(Code.FAILED_PRECONDITION, f"proposal_id: proposal {pid} is {rec.state}, not pending")
            decode, _ = self._kind(rec.kind)
            p = decode(rec.signed)
            self._check_signature(p.message, sig, "signature")
            if admin in {s.admin for s in p.signatures}:
                if not rec.error and len({s.admin for s in p.signatures}) >= max(p.quorum, self.admins.quorum):
                    # at its quorum, still pending, no failure recorded: its apply was cut short by
                    # the coordinator's own store (a full disk answered UNAVAILABLE, "try again"): a
                    # signer approving again applies it (as retry_pending would at the next start)
                    # (audited with the apply's outcome, in its transaction)
                    again: AuditEvent | None = AuditEvent(
                        caller, "lifecycle-approve", "", "again", {"proposal": pid, "kind": rec.kind, "admin": admin},
                    )
                else:
                    raise RpcError(Code.ALREADY_EXISTS, f"admin: {quote(admin)} already signed proposal {pid}")
            else:
                again = None
                signed = p.rebuild(_merge(p.signatures, (sig,)))
                self.db.put_lifecycle_proposal(LifecycleRecord(
                    pid, rec.kind, signed, "pending", rec.proposer, (), rec.error, rec.created_ms, now_ms(),
                ), (AuditEvent(caller, "lifecycle-approve", "", "signed", {"proposal": pid, "kind": rec.kind, "admin": admin}),))
        if again is not None:
            log.info("lifecycle proposal %s (%s): approved again by %s at its quorum; applying it", pid, rec.kind, quote(admin))
        else:
            self._flush()
        return again

    def _maybe_apply(self, pid: str, actor: str, also: AuditEvent | None = None) -> LifecycleRecord:
        """Apply proposal ``pid`` if it is pending with its quorum: its kind's ``apply`` runs,
        then the proposal's new state (``applied``, or pending with the failure) is stored with
        its ``lifecycle-apply`` entry (and ``also``, a re-approval's entry) in ONE transaction.
        The apply's :class:`RpcError` propagates. Returns the proposal as stored."""
        with self._lock:
            rec = self.get(pid)
            if rec.state != "pending":
                if also is not None:  # this re-approval changed nothing
                    self._audit_alone(also.actor, also.action, "nothing", dict(also.details))
                # applied (or failed) by another caller since this one's checks (each held the lock
                # apart): two approvals completing the quorum at once, a signer approving again
                # twice at once, or retry_pending beside them must apply it once, not start its
                # operation again (a second start found it running and set the proposal back to
                # pending with that refusal as its error)
                return rec
            decode, apply = self._kind(rec.kind)
            p = decode(rec.signed)
            if len({s.admin for s in p.signatures}) < max(p.quorum, self.admins.quorum):
                if also is not None:
                    self._audit_alone(also.actor, also.action, "nothing", dict(also.details))
                return rec
            try:
                ops = apply(rec.signed, actor)
            except RpcError as e:
                failed = AuditEvent(actor, "lifecycle-apply", "", "failed", {"proposal": pid} | detail_text("reason", e.message))
                self.db.put_lifecycle_proposal(LifecycleRecord(
                    pid, rec.kind, rec.signed, "pending", rec.proposer, (), e.message[:500], rec.created_ms, now_ms(),
                ), (failed,) if also is None else (also, failed))
                self._flush()
                raise
            applied = LifecycleRecord(pid, rec.kind, rec.signed, "applied", rec.proposer, tuple(ops), "", rec.created_ms, now_ms())
            done = AuditEvent(
                actor, "lifecycle-apply", "", "applied", {"proposal": pid, "kind": rec.kind, "operations": ",".join(ops)[:500]},
            )
            self.db.put_lifecycle_proposal(applied, (done,) if also is None else (also, done))
        self._flush()
        log.info("lifecycle proposal %s (%s) applied", pid, rec.kind)
        return applied

    def retry_pending(self, kinds: tuple[str, ...], actor: str) -> list[str]:
        """Apply every pending proposal of ``kinds`` that already has its quorum and no recorded
        apply failure (a coordinator killed between applying it and marking it applied leaves it
        so; its kind's ``apply`` is idempotent). A failure is recorded on the proposal as usual.
        The ids applied."""
        done = []
        for rec in self.db.list_lifecycle_proposals("pending"):
            if rec.kind not in kinds or rec.kind not in self._kinds or rec.error:
                continue
            try:
                if self._maybe_apply(rec.proposal_id, actor).state == "applied":
                    done.append(rec.proposal_id)
            except RpcError as e:
                log.warning("lifecycle proposal %s (%s) could not be applied again: %s", rec.proposal_id, rec.kind, e.message)
        return done

    # --- audit -------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Append the queued entries now; a failure leaves them queued (the flusher retries)."""
        try:
            self.flush_audit()
        except Exception:
            log.exception("audit flush after a lifecycle proposal step failed")

    def _audit_alone(self, actor: str, action: str, outcome: str, details: Mapping[str, str | int | bool]) -> None:
        """An entry no state change goes with (a refusal): appended directly, AFTER the entries
        queued before it (flushed first, so the log keeps the causal order)."""
        append_after_queued(self.audit, self.flush_now, actor, action, outcome, details)

    # --- reading -----------------------------------------------------------------------------
    def get(self, pid: str) -> LifecycleRecord:
        rec = self.db.get_lifecycle_proposal(pid)
        if rec is None:
            raise RpcError(Code.NOT_FOUND, f"proposal_id: unknown proposal {quote(pid)}")
        return rec

    def listing(self, state: int) -> list[LifecycleRecord]:
        if state == coordinator_pb2.PROPOSAL_STATE_UNSPECIFIED:
            return self.db.list_lifecycle_proposals()
        name = {int(k): v for k, v in PB_STATES.items()}.get(state)
        if name is None:
            raise RpcError(Code.INVALID_ARGUMENT, "state: unknown state")
        return self.db.list_lifecycle_proposals(name)

    def message(self, rec: LifecycleRecord) -> coordinator_pb2.LifecycleProposal:
        quorum = self.admins.quorum
        if rec.state == "pending" and rec.kind in self._kinds:  # e.g. a break-glass export order needs more
            try:
                quorum = max(quorum, self._kinds[rec.kind][0](rec.signed).quorum)
            except RpcError:
                pass
        return coordinator_pb2.LifecycleProposal(
            proposal_id=rec.proposal_id, kind=rec.kind, state=STATES[rec.state], signed=rec.signed, proposer=rec.proposer,
            created_unix_ms=rec.created_ms, updated_unix_ms=rec.updated_ms, admin_quorum=quorum,
            operations=list(rec.operations), error=rec.error,
        )


def _merge(have: tuple[AdminSignature, ...], more: tuple[AdminSignature, ...]) -> tuple[AdminSignature, ...]:
    names = {s.admin for s in have}
    out = list(have)
    for s in more:
        if s.admin not in names:
            names.add(s.admin)
            out.append(s)
    return tuple(out)
