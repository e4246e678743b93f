"""The coordinator's copy of the governance policies, policy proposals, and pushing them to nodes.

The coordinator holds the same admin set as the nodes (from its config) and applies a proposal
only once it carries valid signatures of an admin quorum; then it pushes the signed change to
every node, each of which verifies it again against its *own* admin set before installing it.
A node that is down, or that restarted with an older store, is brought up to date by
:meth:`PolicyBook.sync_node` (from the background loop, or when a node refuses a signing session
because its policy is stale): it sends the node every change it lacks, oldest first.

It also keeps the newest admin-signed policy attestation (:mod:`governance.attestation`) that
an admin submitted, attaches it to every signing session and pushes it to every node with the
policy sync; nodes sign only while they hold a fresh one naming their heads, so withholding a
change or an attestation stops signing rather than letting it proceed under a replaced policy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import grpc

from coordinator.audit_order import append_after_queued
from coordinator.db import AuditEvent, CoordinatorDb, ProposalRecord, now_ms
from coordinator.relay import NodeHandle
from governance.attestation import SignedPolicyAttestation
from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.policy import (
    DEFAULT_SCOPE,
    AdminSet,
    AdminSignature,
    KeyPolicy,
    SignedPolicyChange,
    check_admin_signature,
    verify_policy_change,
)
from governance.text import quote
from mpcnet.common.govwire import scope_name
from mpcnet.common.rpc import RpcError, status_of
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import node_pb2

log = logging.getLogger("coordinator.policies")
Code = grpc.StatusCode
SYNC_TIMEOUT_S = 5.0
ATTESTATION_FUTURE_TOLERANCE_MS = 300_000


def proposal_id(signed: SignedPolicyChange) -> str:
    return signed.change.digest()[:16].hex()


class PolicyBook:
    def __init__(
        self,
        admins: AdminSet,
        initial: SignedPolicyChange,
        db: CoordinatorDb,
        audit: AuditLog,
        nodes: Mapping[int, NodeHandle],
        on_applied: Callable[[SignedPolicyChange], None] | None = None,
    ) -> None:
        self.admins = admins
        self.db = db
        self.audit = audit
        self.nodes = nodes  # the live registry (coordinator.nodes.NodeRegistry): follows the roster
        self.on_applied = on_applied
        # appends the database's queued audit entries to the audit log (set by the service to
        # the audit flusher; a change's entry is committed with it in the outbox either way)
        self.flush_audit: Callable[[], None] = lambda: None
        self.flush_now: Callable[[], object] = lambda: None  # the same, synchronously (before a refusal's direct append)
        self._lock = threading.RLock()
        self._history: dict[bytes, list[SignedPolicyChange]] = {}
        self._synced: dict[int, bool] = {i: False for i in nodes}
        self._sync_locks = {i: threading.Lock() for i in nodes}
        self._attestation: SignedPolicyAttestation | None = None
        stored = db.attestation()
        if stored is not None:
            try:
                self._attestation = SignedPolicyAttestation.from_bytes(stored)
                self._attestation.verify(admins)
            except GovernanceError as e:
                log.warning("stored policy attestation ignored: %s", e)
                self._attestation = None
        for scope, changes in db.policy_changes().items():
            current: KeyPolicy | None = None
            history = []
            for i, data in enumerate(changes):
                try:
                    signed = SignedPolicyChange.from_bytes(data)
                    if signed.change.scope != scope:
                        raise GovernanceError("change.scope", "differs from the scope it is stored under")
                    current = signed.verify(admins, current)
                except GovernanceError as e:
                    raise RuntimeError(
                        f"stored policy history of scope {scope_name(scope)} does not verify at change {i + 1}: {e}"
                    ) from None
                history.append(signed)
            self._history[scope] = history
        if DEFAULT_SCOPE not in self._history:
            try:
                initial.verify(admins, None)
            except GovernanceError as e:
                raise RuntimeError(f"governance.initial_policy: {e}") from None
            event = AuditEvent("coordinator", "policy-apply", "", "applied", _details(initial) | {"how": "initial"})
            db.add_policy_change(DEFAULT_SCOPE, initial.change.new_policy.version, initial.to_bytes(), audit=event)
            self._history[DEFAULT_SCOPE] = [initial]  # its entry is flushed with the outbox at the start

    # --- reading -----------------------------------------------------------------------------
    @property
    def governance_root(self) -> bytes:
        return self.admins.digest()

    def current(self, scope: bytes) -> SignedPolicyChange | None:
        with self._lock:
            h = self._history.get(scope)
            return h[-1] if h else None

    def version(self, scope: bytes, version: int) -> KeyPolicy | None:
        """Version ``version`` of ``scope``'s policy, if it ever existed."""
        with self._lock:
            h = self._history.get(scope, [])
            return h[version - 1].change.new_policy if 0 < version <= len(h) else None

    def policy_for(self, key_id: bytes) -> SignedPolicyChange:
        """The change in force for ``key_id``: the key's own policy, else the default."""
        with self._lock:
            own = self._history.get(key_id)
            return own[-1] if own else self._history[DEFAULT_SCOPE][-1]

    def synced(self, i: int) -> bool:
        return self._synced.get(i, False)

    def heads(self) -> list[SignedPolicyChange]:
        """The change in force for every scope, sorted by scope."""
        with self._lock:
            return [self._history[s][-1] for s in sorted(self._history) if self._history[s]]

    def history(self, scope: bytes) -> list[SignedPolicyChange]:
        with self._lock:
            return list(self._history.get(scope, ()))

    # --- attestations ------------------------------------------------------------------------
    def attestation(self) -> bytes:
        """The newest attestation held (canonical bytes; empty if none): sent with every session."""
        with self._lock:
            return b"" if self._attestation is None else self._attestation.to_bytes()

    def _accepted_attestation(self, data: bytes, caller: str) -> SignedPolicyAttestation:
        """The caller's own valid attestation in ``data``, else RpcError naming the field."""
        try:
            signed = SignedPolicyAttestation.from_bytes(data)
        except GovernanceError as e:
            raise RpcError(Code.INVALID_ARGUMENT, f"attestation.{e.field}: {e.reason}") from None
        try:
            att = signed.verify(self.admins)
        except GovernanceError as e:
            raise RpcError(Code.PERMISSION_DENIED, f"attestation.{e.field}: {e.reason}") from None
        if att.admin != caller:
            raise RpcError(
                Code.PERMISSION_DENIED,
                f"attestation.attestation.admin: certificate name {quote(caller)} differs from the attesting admin {quote(att.admin)}",
            )
        if att.issued_at_ms - self.db.expiry_ms(now_ms()) > ATTESTATION_FUTURE_TOLERANCE_MS:  # a step back refuses no fresh one
            raise RpcError(Code.INVALID_ARGUMENT, "attestation.attestation.issued_at_ms: in the future")
        return signed

    def submit_attestation(self, data: bytes, caller: str) -> tuple[bool, int]:
        """An admin's attestation: verify (it must be the caller's own), keep if newest, push to
        every node. Returns (stored, issued_at_ms of the one now held)."""
        try:
            signed = self._accepted_attestation(data, caller)
        except RpcError as e:  # every refusal is audited, like the nodes do
            self._audit_alone(caller, "policy-attest", "refused", detail_text("reason", e.message))
            raise
        att = signed.attestation
        with self._lock:
            mine = {s.change.scope: s.change.new_policy for s in self.heads()}
            differs = [
                scope_name(h.scope) for h in att.heads
                if (p := mine.get(h.scope)) is None or p.version != h.version or p.digest() != h.digest
            ] + [scope_name(s) for s in mine if att.head(s) is None]
            details = {"issued_at_ms": att.issued_at_ms, "heads": len(att.heads)} | detail_text("differs", ",".join(differs))
            stored = self._attestation is None or self._attestation.issued_at_ms < att.issued_at_ms
            if stored:  # stored with its entry, one transaction
                event = AuditEvent(caller, "policy-attest", "", "stored", details)
                stored = self.db.put_attestation(signed.to_bytes(), att.issued_at_ms, audit=event)
            if stored:
                self._attestation = signed
                for i in self._synced:
                    self._synced[i] = False
            held = self._attestation
            assert held is not None
        if stored:
            self._flush()
        else:  # nothing changed
            self._audit_alone(caller, "policy-attest", "older", details)
        if differs:
            log.warning("attestation by %s names other heads than ours for %s", att.admin, ", ".join(differs)[:500])
        if stored:
            self.sync_all()
        return stored, held.issued_at_ms

    # --- proposals ---------------------------------------------------------------------------
    def propose(self, data: bytes, caller: str, key_exists: Callable[[bytes], bool]) -> ProposalRecord:
        try:
            signed = SignedPolicyChange.from_bytes(data)
        except GovernanceError as e:
            raise RpcError(Code.INVALID_ARGUMENT, f"signed_change.{e.field}: {e.reason}") from None
        change = signed.change
        if caller not in self.admins.admins:
            raise RpcError(Code.PERMISSION_DENIED, f"proposer: certificate name {quote(caller)} is not an admin of this cluster")
        if change.scope != DEFAULT_SCOPE and not key_exists(change.scope):
            raise RpcError(Code.NOT_FOUND, f"signed_change.change.scope: unknown key {change.scope.hex()}")
        self._check_signatures(signed, "signed_change.signatures")
        if caller not in {s.admin for s in signed.signatures}:
            raise RpcError(
                Code.PERMISSION_DENIED, f"signed_change.signatures: the proposer {quote(caller)} must sign its own proposal"
            )
        pid = proposal_id(signed)
        with self._lock:
            self._check_applicable(signed)
            existing = self.db.get_proposal(pid)
            if existing is not None and existing.state != "pending":
                raise RpcError(Code.ALREADY_EXISTS, f"proposal_id: proposal {pid} is already {existing.state}")
            if existing is not None:
                signed = _merge(SignedPolicyChange.from_bytes(existing.signed_change), signed.signatures)
            t = now_ms()
            rec = ProposalRecord(pid, change.scope, signed.to_bytes(), "pending", caller if existing is None else existing.proposer,
                                 t if existing is None else existing.created_ms, t)
            self.db.put_proposal(rec, [AuditEvent(caller, "policy-propose", "", "pending", _details(signed) | {"proposal": pid})])
        self._flush()
        return self._maybe_apply(pid, caller)

    def approve(self, pid: str, admin: str, signature: bytes, caller: str) -> ProposalRecord:
        if admin != caller:
            msg = f"admin: certificate name {quote(caller)} differs from the signing admin {quote(admin)}"
            self._audit_alone(caller, "policy-approve", "refused", {"proposal": pid} | detail_text("reason", msg))
            raise RpcError(Code.PERMISSION_DENIED, msg)
        try:
            sig = AdminSignature(admin, signature)
        except GovernanceError as e:
            raise RpcError(Code.INVALID_ARGUMENT, f"{e.field}: {e.reason}") from None
        with self._lock:
            rec = self.db.get_proposal(pid)
            if rec is None:
                raise RpcError(Code.NOT_FOUND, f"proposal_id: unknown proposal {quote(pid)}")
            if rec.state != "pending":
                raise RpcError(Code.FAILED_PRECONDITION, f"proposal_id: proposal {pid} is {rec.state}, not pending")
            signed = SignedPolicyChange.from_bytes(rec.signed_change)
            try:
                check_admin_signature(self.admins, signed.change, sig)
            except GovernanceError as e:
                self._audit_alone(caller, "policy-approve", "refused", {"proposal": pid} | detail_text("reason", str(e)))
                raise RpcError(Code.PERMISSION_DENIED, f"{e.field}: {e.reason}") from None
            if admin in {s.admin for s in signed.signatures}:
                if len({s.admin for s in signed.signatures}) < self.admins.quorum:
                    raise RpcError(Code.ALREADY_EXISTS, f"admin: {quote(admin)} already signed proposal {pid}")
                # at its quorum and still pending: its apply was cut short (the coordinator's store
                # failed, or it was killed between the approval and the apply): a signer approving
                # again applies it, audited with the apply (as retry_pending does at the next start)
                again = AuditEvent(caller, "policy-approve", "", "again", {"proposal": pid, **_details(signed)})
            else:
                again = None
                signed = _merge(signed, (sig,))
                event = AuditEvent(caller, "policy-approve", "", "signed", {"proposal": pid, **_details(signed)})
                self.db.put_proposal(
                    ProposalRecord(pid, rec.scope, signed.to_bytes(), "pending", rec.proposer, rec.created_ms, now_ms()), [event],
                )
        if again is not None:
            log.info("policy proposal %s: approved again by %s at its quorum; applying it", pid, quote(admin))
        else:
            self._flush()
        return self._maybe_apply(pid, caller, also=again)

    def _check_signatures(self, signed: SignedPolicyChange, field: str) -> None:
        if not signed.signatures:
            raise RpcError(Code.PERMISSION_DENIED, f"{field}: at least the proposer's signature is required")
        for i, s in enumerate(signed.signatures):
            try:
                check_admin_signature(self.admins, signed.change, s)
            except GovernanceError as e:
                where = "signed_change.change" if e.field == "governance_root" else f"{field}[{i}]"
                raise RpcError(Code.PERMISSION_DENIED, f"{where}.{e.field}: {e.reason}") from None

    def _check_applicable(self, signed: SignedPolicyChange) -> None:
        change = signed.change
        cur = self.current(change.scope)
        current = None if cur is None else cur.change.new_policy
        want_prev = None if current is None else current.digest()
        want_version = 1 if current is None else current.version + 1
        if change.previous_digest != want_prev or change.new_policy.version != want_version:
            have = "no policy" if current is None else f"version {current.version}"
            raise RpcError(
                Code.FAILED_PRECONDITION,
                f"signed_change.change: does not follow the current policy of scope {scope_name(change.scope)} "
                f"({have}; a change must name its digest and bump the version by one)",
            )

    def _maybe_apply(self, pid: str, actor: str, *, also: AuditEvent | None = None, push: bool = True) -> ProposalRecord:
        """Apply proposal ``pid`` if it is pending with an admin quorum: the change, the
        proposal's ``applied`` state, the superseding of the scope's other pending proposals
        and the ``policy-apply`` entry (and ``also``, a re-approval's entry) are ONE database
        transaction; then the entries are flushed, ``on_applied`` runs and (with ``push``) the
        nodes are synced. A change that no longer follows the policy in force marks the
        proposal superseded (audited, same transaction) and raises FAILED_PRECONDITION.
        Returns the proposal as stored."""
        with self._lock:
            rec = self.db.get_proposal(pid)
            assert rec is not None
            signed = SignedPolicyChange.from_bytes(rec.signed_change)
            if rec.state != "pending" or len({s.admin for s in signed.signatures}) < self.admins.quorum:
                if also is not None:  # nothing changed by this re-approval (applied by another caller meanwhile)
                    self._audit_alone(also.actor, also.action, "nothing", dict(also.details))
                return rec
            cur = self.current(rec.scope)
            try:
                verify_policy_change(self.admins, None if cur is None else cur.change.new_policy, signed.change, signed.signatures)
            except GovernanceError as e:
                superseded = e.field in ("previous_digest", "new_policy.version")
                state = "superseded" if superseded else "pending"
                event = AuditEvent(actor, "policy-apply", "", "superseded" if superseded else "refused",
                                   {"proposal": pid} | detail_text("reason", f"{e.field}: {e.reason}"))
                self.db.put_proposal(ProposalRecord(pid, rec.scope, rec.signed_change, state, rec.proposer, rec.created_ms, now_ms()),
                                     [event] if also is None else [also, event])
                self._flush()
                raise RpcError(Code.FAILED_PRECONDITION, f"signed_change.{e.field}: {e.reason}") from None
            applied = ProposalRecord(pid, rec.scope, rec.signed_change, "applied", rec.proposer, rec.created_ms, now_ms())
            event = AuditEvent(actor, "policy-apply", "", "applied", _details(signed) | {"proposal": pid})
            self.db.apply_policy_proposal(
                applied, signed.change.new_policy.version, signed.to_bytes(), [event] if also is None else [also, event],
            )
            self._history.setdefault(rec.scope, []).append(signed)
            for i in self._synced:
                self._synced[i] = False
        self._flush()
        log.info(
            "policy of scope %s is now version %d (proposal %s)", scope_name(rec.scope), signed.change.new_policy.version, pid
        )
        if self.on_applied is not None:
            self.on_applied(signed)
        if push:
            self.sync_all()
        return applied

    def retry_pending(self, actor: str) -> list[str]:
        """At the start: apply every pending proposal that already carries an admin quorum (a
        coordinator killed, or whose store failed, between the quorum's approval and the apply
        leaves it so). The nodes are synced by the background pass. The ids applied."""
        done = []
        for rec in self.db.list_proposals("pending"):
            try:
                if self._maybe_apply(rec.proposal_id, actor, push=False).state == "applied":
                    done.append(rec.proposal_id)
                    log.info("policy proposal %s, left pending at its quorum, is applied", rec.proposal_id)
            except RpcError as e:
                log.warning("policy proposal %s could not be applied: %s", rec.proposal_id, e.message)
        return done

    # --- audit -------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Append the queued entries now; a failure leaves them queued (the flusher retries)."""
        try:
            self.flush_audit()
        except Exception:
            log.exception("audit flush after a policy change failed")

    def _audit_alone(self, actor: str, action: str, outcome: str, details: Mapping[str, str | int | bool]) -> None:
        """An entry no state change goes with (a refusal): appended directly, AFTER the entries
        queued before it (flushed first, so the log keeps the causal order)."""
        append_after_queued(self.audit, self.flush_now, actor, action, outcome, details)

    # --- pushing to nodes --------------------------------------------------------------------
    def mark_unsynced(self, i: int) -> None:
        self._synced[i] = False

    def sync_all(self, only_unsynced: bool = False) -> None:
        targets = [i for i in self.nodes if not (only_unsynced and self._synced.get(i, False))]
        if not targets:
            return
        with ThreadPoolExecutor(max_workers=len(targets)) as ex:
            list(ex.map(self.sync_node, targets))

    def sync_node(self, i: int) -> bool:
        """Bring node ``i`` up to date; True if it confirmed every policy we hold."""
        h = self.nodes[i]
        with self._lock:  # a node added by a roster change has no lock yet
            sync_lock = self._sync_locks.setdefault(i, threading.Lock())
        with sync_lock:
            try:
                resp = h.stub.GetPolicies(node_pb2.GetPoliciesRequest(), timeout=SYNC_TIMEOUT_S)
                if bytes(resp.governance_root) != self.governance_root:
                    log.error("%s has another governance root (admin set) than the coordinator: not syncing it", h.label)
                    self._synced[i] = False
                    return False
                have = {bytes(p.scope): p.version for p in resp.policies}
                with self._lock:
                    history = {s: list(h_) for s, h_ in self._history.items()}
                ahead = [s for s, v in have.items() if s in history and v > len(history[s])]
                if ahead:  # installed behind our back (with an admin quorum, or it would not be there)
                    log.error(
                        "%s holds newer policies than the coordinator for %s; its requests will be refused there",
                        h.label, ", ".join(scope_name(s) for s in ahead),
                    )
                    self._synced[i] = False
                    return False
                pushed = 0
                for scope, changes in history.items():
                    for signed in changes[have.get(scope, 0):]:
                        h.stub.InstallPolicy(node_pb2.InstallPolicyRequest(signed_change=signed.to_bytes()), timeout=SYNC_TIMEOUT_S)
                        pushed += 1
                attestation = self.attestation()
                if attestation and bytes(resp.policy_attestation) != attestation:
                    h.stub.InstallPolicyAttestation(
                        node_pb2.InstallPolicyAttestationRequest(attestation=attestation), timeout=SYNC_TIMEOUT_S
                    )
            except grpc.RpcError as e:
                code, details = status_of(e)
                self._synced[i] = False
                log.warning("%s: cannot sync policies (%s: %s); will retry", h.label, code.name, details)
                if code not in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED):
                    self.audit.append(
                        "coordinator", "policy-push", outcome="refused",
                        details={"node": h.name} | detail_text("reason", f"{code.name}: {details}"),
                    )
                return False
            with self._lock:
                unchanged = all(len(self._history.get(s, ())) == len(c) for s, c in history.items()) and len(history) == len(self._history)
                unchanged = unchanged and self.attestation() == attestation
            self._synced[i] = unchanged
            if pushed:
                self.audit.append("coordinator", "policy-push", outcome="synced", details={"node": h.name, "changes": pushed})
                log.info("%s: pushed %d policy change(s)", h.label, pushed)
            return unchanged


def _merge(signed: SignedPolicyChange, more: tuple[AdminSignature, ...] | list[AdminSignature]) -> SignedPolicyChange:
    have = {s.admin for s in signed.signatures}
    extra = []
    for s in more:
        if s.admin not in have:
            have.add(s.admin)
            extra.append(s)
    return SignedPolicyChange(signed.change, (*signed.signatures, *extra))


def _details(signed: SignedPolicyChange) -> dict[str, str | int | bool]:
    p = signed.change.new_policy
    return {
        "scope": scope_name(signed.change.scope),
        "version": p.version,
        "policy_digest": p.digest().hex(),
        "admins": ",".join(sorted({s.admin for s in signed.signatures})),
        "approval_quorum": p.approval_quorum,
        "approvers": ",".join(p.approvers),
        "requesters": ",".join(sorted(p.requesters)),
        "ttl_seconds": p.ttl_seconds,
        "rate_limit": f"{p.rate_limit.max_signatures}/{p.rate_limit.window_seconds}s",
    }
