"""Signing requests on the coordinator: submission, approvals, the state machine, watching.

    PENDING_APPROVAL --(m valid approvals)--> SIGNING --> DONE
           |     \\--(quorum unreachable)--> REJECTED        \\--> FAILED (reason) / EXPIRED
           \\--(expires_at passed)--> EXPIRED
           \\--(the key's policy changed meanwhile)--> FAILED

A requester submits a digest with a description; the coordinator builds the canonical
:class:`governance.approval.SigningRequest` (request id, key, digest, path, requester,
description, creation and expiry times, policy version and digest) that approvers sign with
their own keys. The coordinator checks each decision as it arrives (the approver signs as
itself, over this exact request, under the policy in force) and tallies them; at the quorum it
hands the whole bundle to the nodes, which check it all again. Expiry is applied lazily on
every read and by a background sweep; the rate limit is enforced at submission (nodes enforce
it again when they sign). Every transition is compare-and-set in SQLite and audited.

**Crash consistency.** Every state change is ONE SQLite transaction together with what causes
it and its audit entry: submit (the request and ``sign-request``), a decision (the approval,
``sign-decision``, and the move to SIGNING / REJECTED with ``sign-approved`` / ``sign-rejected``
when it completes the tally), expiry, DONE / FAILED / EXPIRED with ``sign-done`` / ... The
audit log is another SQLite file, so the entry goes into an outbox table of the coordinator's
database and a background thread (:mod:`coordinator.audit_flush`) moves queued entries to the
log in batches, off the request's path (appended once per event key, so a crash between the
append and the outbox delete is harmless; the log lags the database by about one flush).
:meth:`SignRequests.recover` (before serving) flushes the outbox and re-evaluates every
PENDING_APPROVAL request against its stored approvals. An approver repeating a decision it
already made gets the request back; a different second decision is ALREADY_EXISTS.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from coordinator.anomaly_hook import AnomalyMonitor
from coordinator.audit_flush import AuditFlusher
from coordinator.db import (
    EXPIRED_MESSAGE,
    TERMINAL,
    ApprovalRecord,
    AuditEvent,
    CoordinatorDb,
    KeyRecord,
    Move,
    RateLimitExceeded,
    Settle,
    SignRequestRecord,
    StateConflict,
    now_ms,
)
from coordinator.decide_wait import wait_until_ended
from coordinator.info_cache import InfoCache
from coordinator.metrics import QuorumClock
from coordinator.policies import PolicyBook
from coordinator.request_codec import decoded_request
from coordinator.schemes import Submission, check_submission
from coordinator.sign_workers import SignWorkers
from coordinator.store_failure import one_line, store_failure
from coordinator.vetted import VettedApprovals, vetted_key
from coordinator.watch import ChangeFeed
from crypto_core.bip32 import check_path
from crypto_core.errors import UsageError
from governance.approval import (
    Approval,
    ApprovalBundle,
    Decision,
    SigningRequest,
    check_approval,
    tally,
    tally_verified,
)
from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.policy import DEFAULT_SCOPE, KeyPolicy, SignedPolicyChange
from governance.text import REQUEST_ID_RULE, is_request_id, quote
from mpcnet.common import sign_trace
from mpcnet.common.govwire import scope_name
from mpcnet.common.metrics import Metrics, NullMetrics
from mpcnet.common.rpc import RpcError, check_len, invalid, roles_text
from mpcnet.common.stores.audit import AuditLog
from mpcnet.common.urgent import GATE
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2

log = logging.getLogger("coordinator.requests")
Code = grpc.StatusCode

STATE_PB = {
    "pending_approval": coordinator_pb2.SIGN_REQUEST_STATE_PENDING_APPROVAL,
    "signing": coordinator_pb2.SIGN_REQUEST_STATE_SIGNING,
    "done": coordinator_pb2.SIGN_REQUEST_STATE_DONE,
    "rejected": coordinator_pb2.SIGN_REQUEST_STATE_REJECTED,
    "expired": coordinator_pb2.SIGN_REQUEST_STATE_EXPIRED,
    "failed": coordinator_pb2.SIGN_REQUEST_STATE_FAILED,
}
PB_STATE = {v: k for k, v in STATE_PB.items()}
DECISION_PB = {Decision.APPROVE: coordinator_pb2.DECISION_APPROVE, Decision.REJECT: coordinator_pb2.DECISION_REJECT}
PB_DECISION = {v: k for k, v in DECISION_PB.items()}
MAX_LIST = 1000
STORE_RETRY_S = 1.0  # a signing stopped by a store failure (disk full) resumes after this many seconds (doubling)
STORE_RETRY_MAX_S = 30.0  # ... up to this many seconds between tries
WATCH_POLL_S = 5.0  # a watch re-reads its request at least this often (a backstop: changes wake it)

# sign(request_id, key, digest, path, bundle bytes) -> (signature, signers, attempts); raises
# RpcError (with .attempts and .governance attributes when known)
Signer = Callable[[str, KeyRecord, bytes, tuple[int, ...], bytes], tuple[common_pb2.Signature, tuple[int, ...], int]]
# what a watcher sends: the record it was built from, the info, the info serialised (deterministic)
Watched = tuple[SignRequestRecord, coordinator_pb2.SignRequestInfo, bytes]
# a request just moved to SIGNING: its record and its final decisions (what _run_signing would read)
Known = tuple[SignRequestRecord, list[ApprovalRecord]]


def state_name(state: str) -> str:
    return state.upper()


class SignRequests:
    metrics: Metrics = NullMetrics("coordinator")  # set by the service (coordinator.metrics)

    def __init__(
        self, db: CoordinatorDb, audit: AuditLog, policies: PolicyBook, signer: Signer, read_all_roles: tuple[str, ...]
    ) -> None:
        self.db = db
        self.audit = audit
        self.policies = policies
        self.signer = signer
        self.read_all_roles = read_all_roles
        self._lock = threading.Lock()
        self.feed = ChangeFeed()  # wakes the watchers of one request when it changes
        self._signing: set[str] = set()
        self._known: dict[str, Known] = {}  # handed from the quorum decision to its signing thread
        self.workers = SignWorkers()  # issue 14: pre-started signing threads (coordinator/sign_workers.py)
        self._stop = threading.Event()
        self.flusher = AuditFlusher(db, audit)  # the outbox -> log, batched (coordinator/audit_flush.py)
        self.infos: InfoCache[Watched] = InfoCache()  # the last info per request, for watchers (coordinator/info_cache.py)
        self.vetted = VettedApprovals()  # approvals verified by this process (coordinator/vetted.py)
        self.quorum = QuorumClock()
        self.anomaly = AnomalyMonitor.off()  # the service wires in its monitor (coordinator/anomaly_hook.py)
        # issue 14: (presig_id, mark it used in the DONE transaction) when rid was signed from a pool presignature
        self.presig_done: Callable[[str], tuple[bytes, Callable[[sqlite3.Connection], object]] | None] = lambda rid: None
        # issue 14 (R10): (request id, key id, path) -> the pool assignment to commit with a move to SIGNING, or None
        self.presig_assign: Callable[[str, bytes, tuple[int, ...]], Callable[[sqlite3.Connection], object] | None] = (
            lambda rid, key_id, path: None
        )
        self.node_name: Callable[[int], str] = lambda i: f"node-{i}"  # signer index -> roster name (the service's)

    # --- plumbing ----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self.feed.publish_all()
        self.flusher.stop()  # after a last flush; what stays queued is flushed at the next start

    def _notify(self, rid: str | None = None) -> None:
        """Request ``rid`` changed (None: any may have): forget its cached info, wake its watchers."""
        self.infos.invalidate(rid)
        if rid is None:
            self.feed.publish_all()
        else:
            self.feed.publish(rid)

    def flush_audit(self) -> None:
        """Append every queued audit entry to the log now (oldest first, in batches; an entry
        whose event key is already in the log is not appended again) and drop it from the
        outbox. If the log refuses (e.g. disk full) the rest stay queued for the next flush.
        The request path does not wait for this: it calls :meth:`_audit_soon`."""
        self.flusher.flush()

    def _audit_now(self, *args: Any, **kwargs: Any) -> None:
        """Append an entry that no state change goes with (a refusal) directly, AFTER every
        entry queued before it, so the log keeps the causal order (a refusal never precedes the
        decision it refers to); arguments as :meth:`AuditLog.append`."""
        self.flusher.flush()
        self.audit.append(*args, **kwargs)

    def _audit_soon(self) -> None:
        """A state change queued its entry: the background flusher appends it (inline if the
        flusher is not running)."""
        self.flusher.soon()

    def recover(self) -> None:
        """After a restart, before serving: flush the audit outbox, then move every
        PENDING_APPROVAL request its stored approvals already decide (quorum -> SIGNING,
        quorum out of reach -> REJECTED, made under a replaced policy -> FAILED). Signing
        itself is resumed by :meth:`resume`."""
        self.flush_audit()
        for rec in self.db.list_sign_requests(state="pending_approval", limit=10**6):
            sreq = SigningRequest.from_bytes(rec.request)
            signed = self.policies.policy_for(rec.key_id)
            if signed.change.new_policy.digest() != sreq.policy_digest:
                self._fail_stale(rec, signed)
                continue
            try:
                if self.db.settle(rec.request_id, self._settlement(signed.change.new_policy, sreq)):
                    log.info("request %s: its stored decisions settle it (recovered after a restart)", rec.request_id)
                    self._count_settled(rec.request_id)
            except StateConflict:
                pass
        self.flush_audit()
        self._notify()

    def _count_settled(self, rid: str) -> None:
        """A request this process moved out of PENDING_APPROVAL by its stored decisions (at
        :meth:`recover`): counted like a live decision (``approved`` / ``rejected``), once -- the
        move's transaction only commits from PENDING_APPROVAL. No quorum time: not seen here."""
        rec = self.db.get_sign_request(rid)
        if rec is not None and rec.state in ("signing", "rejected"):
            self.metrics.requests_total.labels(state="approved" if rec.state == "signing" else "rejected").inc()
            if rec.state == "rejected":
                self.anomaly.request_rejected(rec.requester, rec.key_id)

    def resume(self) -> None:
        """After a restart: carry on signing requests that were approved (approvals are still
        valid until the request expires; a node that already served one refuses it again)."""
        for r in self.db.list_sign_requests(state="signing", limit=10**6):
            log.info("request %s was signing when the coordinator stopped: resuming", r.request_id)
            self._start_signing(r.request_id)

    def expire_due(self) -> None:
        now = self.db.expiry_ms(now_ms())  # a wall clock stepped back keeps no request alive
        due = self.db.due_for_expiry(now)
        for rid in due:
            rec = self.db.get_sign_request(rid)
            if rec is None:
                continue
            try:
                self.db.transition(
                    rid, ("pending_approval",), "expired", error_message=EXPIRED_MESSAGE, audit=_expired_event(rec),
                )
            except StateConflict:
                continue
            self._expired(rid)
        if due:
            self._audit_soon()

    def _expired(self, rid: str) -> None:
        """What follows a request's move to EXPIRED (committed with its ``sign-expired`` entry):
        the metric, the log line, the watchers' wake-up."""
        self.metrics.requests_total.labels(state="expired").inc()
        log.info("request %s expired", rid, extra={"event": "sign-expired", "request_id": rid})
        self._notify(rid)

    # --- conversion --------------------------------------------------------------------------
    def info(self, rec: SignRequestRecord) -> coordinator_pb2.SignRequestInfo:
        """The RPC view of ``rec`` with its stored approvals (read now)."""
        req = decoded_request(rec.request)
        quorum, approvers = 0, 0
        made_under = self.policies.version(rec.scope, req.policy_version)
        if made_under is not None:
            quorum, approvers = made_under.approval_quorum, len(made_under.approvers)
        out = coordinator_pb2.SignRequestInfo(
            request_id=rec.request_id, state=STATE_PB[rec.state], request=rec.request, key_id=req.key_id,
            digest=req.digest, derivation_path=req.derivation_path, requester=req.requester,
            description=req.description, created_unix_ms=req.created_at_ms, expires_unix_ms=req.expires_at_ms,
            policy_version=req.policy_version, policy_digest=req.policy_digest,
            approvals=[
                coordinator_pb2.ApprovalInfo(
                    approver=a.approver, decision=DECISION_PB[Decision(a.decision)], signature=a.signature,
                    decided_unix_ms=a.decided_ms,
                )
                for a in self.db.approvals(rec.request_id)
            ],
            approval_quorum=quorum, approvers=approvers, signers=rec.signers, error_code=rec.error_code,
            error_message=rec.error_message, updated_unix_ms=rec.updated_ms, attempts=rec.attempts,
            presigned=rec.state == "done" and self.db.signed_presigned(rec.request_id),
            scheme=req.scheme, message=rec.message, taproot_merkle_root=req.taproot_root,
        )
        if rec.signature:
            out.signature.CopyFrom(common_pb2.Signature.FromString(rec.signature))
        return out

    # --- submission --------------------------------------------------------------------------
    def submit(
        self, req: coordinator_pb2.SubmitSignRequestRequest, caller: str, key_of: Callable[[bytes], KeyRecord | None]
    ) -> coordinator_pb2.SignRequestInfo:
        key_id = check_len(req.key_id, "key_id", 32)
        try:
            path = check_path(tuple(req.derivation_path))
        except UsageError as e:
            msg = str(e)
            raise RpcError(Code.INVALID_ARGUMENT, msg if msg.startswith("derivation_path") else f"derivation_path: {msg}") from None
        rid = req.request_id or "req-" + os.urandom(12).hex()
        if not is_request_id(rid):
            raise invalid("request_id", REQUEST_ID_RULE)
        k = key_of(key_id)
        if k is None:
            raise RpcError(Code.NOT_FOUND, f"key_id: unknown key {key_id.hex()}")
        if k.status != "active":
            raise RpcError(Code.FAILED_PRECONDITION, f"key_id: key {key_id.hex()} is {k.status}, not active")
        # issue 16: the scheme's rules (coordinator/schemes.py); digest = what approvers sign
        sub = check_submission(k.scheme, bytes(req.digest), bytes(req.message), bytes(req.taproot_merkle_root), path)
        digest = sub.digest
        existing = self.db.get_sign_request(rid)
        if existing is not None:
            old = SigningRequest.from_bytes(existing.request)
            same = (old.requester, old.key_id, old.digest, old.derivation_path, old.description, old.taproot_root) == (
                caller, key_id, digest, path, req.description, sub.taproot_root
            )
            if not same:
                raise RpcError(Code.ALREADY_EXISTS, f"request_id: {quote(rid)} was already used for a different request")
            return self.info(existing)
        signed = self.policies.policy_for(key_id)
        policy, scope = signed.change.new_policy, signed.change.scope
        if caller not in policy.requesters:
            msg = (
                f"requester: {quote(caller)} may not request signatures with key {key_id.hex()[:16]} "
                f"(policy {scope_name(scope)} v{policy.version} allows: {', '.join(sorted(policy.requesters)) or 'nobody'})"
            )
            self._audit_now(
                caller, "sign-request", request_id=rid, outcome="refused", details={"key_id": key_id.hex()} | detail_text("reason", msg)
            )
            self.anomaly.rpc_denied(caller)
            raise RpcError(Code.PERMISSION_DENIED, msg)
        ttl = req.ttl_seconds or policy.ttl_seconds
        if ttl > policy.ttl_seconds:
            raise invalid("ttl_seconds", f"at most {policy.ttl_seconds} (the policy's TTL), got {ttl}")
        now = now_ms()  # the wall clock: signed into the request (created_at, expires_at), checked by every node
        try:
            sreq = SigningRequest(
                rid, key_id, digest, path, caller, req.description, now, now + ttl * 1000, policy.version, policy.digest(),
                scheme=sub.scheme, taproot_root=sub.taproot_root,
            )
        except GovernanceError as e:
            raise invalid(e.field, e.reason) from None
        rec = SignRequestRecord(
            request_id=rid, key_id=key_id, digest=digest, requester=caller, request=sreq.encode(), scope=scope,
            state="pending_approval", created_ms=now, expires_ms=sreq.expires_at_ms, signature=None, signers=(),
            error_code=0, error_message="", attempts=0, updated_ms=now, message=sub.message,
        )
        limit = policy.rate_limit
        # the whole description (at most MAX_DESCRIPTION = MAX_DETAIL_TEXT characters: never cut)
        # and, in _req_details, the SHA-256 of the canonical request every approval signs
        submitted = AuditEvent(caller, "sign-request", rid, "pending", _req_details(rec) | detail_text(
            "description", sreq.description
        ) | {"policy_version": policy.version, "expires_at_ms": sreq.expires_at_ms} | _scheme_details(sub))
        try:
            self.db.add_sign_request(rec, rate_limit=(limit.max_signatures, limit.window_seconds * 1000), audit=submitted)
        except RateLimitExceeded as e:
            msg = (
                f"rate_limit: key {key_id.hex()[:16]} already has {e.count} signing request(s) in the last "
                f"{limit.window_seconds} s; its policy allows {limit.max_signatures}"
            )
            self._audit_now(
                caller, "sign-request", request_id=rid, outcome="refused", details={"key_id": key_id.hex()} | detail_text("reason", msg)
            )
            raise RpcError(Code.RESOURCE_EXHAUSTED, msg) from None
        except sqlite3.IntegrityError:
            raise RpcError(Code.ALREADY_EXISTS, f"request_id: {quote(rid)} was already used") from None
        self._audit_soon()
        self.metrics.requests_total.labels(state="created").inc()
        log.info(
            "request %s: %s asks to sign with key %s; waiting for %d approval(s)", rid, caller, key_id.hex()[:16], policy.approval_quorum,
            extra={"event": "sign-request", "request_id": rid},
        )
        self.anomaly.request_created(caller, key_id)
        self._notify(rid)
        return self.info(rec)

    # --- decisions ---------------------------------------------------------------------------
    def decide(
        self, req: coordinator_pb2.DecideSignRequestRequest, caller: str, *, ctx: Any = None,
    ) -> coordinator_pb2.SignRequestInfo:
        rid = _check_rid(req.request_id)
        sign_trace.begin(rid, "received")
        if req.approver != caller:
            msg = f"approver: certificate name {quote(caller)} differs from the approver {quote(req.approver)} (approve as yourself)"
            self._audit_now(caller, "sign-decision", request_id=rid, outcome="refused", details=detail_text("reason", msg))
            raise RpcError(Code.PERMISSION_DENIED, msg)
        if req.decision not in PB_DECISION:
            raise invalid("decision", "must be DECISION_APPROVE or DECISION_REJECT")
        decision = PB_DECISION[req.decision]
        self.expire_due()
        rec = self._get(rid)
        decided = self.db.approvals(rid)
        earlier = next((a for a in decided if a.approver == caller), None)
        if earlier is not None:  # a retry (e.g. after a coordinator restart) or a change of mind
            if earlier.decision != decision.value:
                msg = f"approver: {quote(caller)} already decided {earlier.decision!r} on request {rid}"
                self._audit_now(
                    caller, "sign-decision", request_id=rid, outcome="refused",
                    details={"decision": decision.value} | _request_hash(rec.request) | detail_text("reason", msg),
                )
                raise RpcError(Code.ALREADY_EXISTS, msg)
            if bytes(req.signature) != earlier.signature:  # Ed25519 is deterministic: a genuine retry repeats the bytes
                msg = (
                    f"approval.signature: differs from the signature of the {earlier.decision!r} recorded for {quote(caller)} "
                    f"on request {rid} (signed with another key?); nothing changed"
                )
                self._audit_now(
                    caller, "sign-decision", request_id=rid, outcome="refused",
                    details={"decision": decision.value} | _request_hash(rec.request) | detail_text("reason", msg),
                )
                raise RpcError(Code.PERMISSION_DENIED, msg)
            return self.info(rec)
        if rec.state != "pending_approval":
            raise RpcError(
                Code.FAILED_PRECONDITION, f"request_id: request {rid} is {state_name(rec.state)}, not PENDING_APPROVAL"
            )
        sreq = decoded_request(rec.request)
        signed = self.policies.policy_for(rec.key_id)
        policy = signed.change.new_policy
        if policy.digest() != sreq.policy_digest:
            self._fail_stale(rec, signed)
            raise RpcError(
                Code.FAILED_PRECONDITION, f"request_id: the key's policy changed while request {rid} was pending; submit it again"
            )
        try:
            approval = Approval(caller, decision, bytes(req.signature))
            check_approval(policy, sreq, approval)
        except GovernanceError as e:
            msg = f"approval.{e.field.removeprefix('approval.')}: {e.reason}"
            self._audit_now(
                caller, "sign-decision", request_id=rid, outcome="refused",
                details={"decision": decision.value} | _request_hash(rec.request) | detail_text("reason", msg),
            )
            raise RpcError(Code.PERMISSION_DENIED, msg) from None
        self.vetted.add([vetted_key(sreq.policy_digest, rec.request, approval)])  # == policy.digest(), checked above
        sign_trace.mark(rid, "verified")
        settled: list[list[ApprovalRecord]] = []  # the decisions the settlement saw, in its transaction
        assign = (
            self.presig_assign(rid, rec.key_id, sreq.derivation_path)
            if decision is Decision.APPROVE and _may_complete_quorum(decided, caller, policy) else None
        )
        try:
            outcome = self.db.record_decision(
                rid, ApprovalRecord(caller, decision.value, approval.signature, now_ms()),
                AuditEvent(caller, "sign-decision", rid, decision.value, {"key_id": rec.key_id.hex()} | _request_hash(rec.request)),
                self._settlement(policy, sreq, seen=settled, policy_digest=sreq.policy_digest), on_signing=assign,
                expired=_expired_event(rec),
            )
        except StateConflict as e:  # another decision (or the expiry sweep) moved it first
            raise RpcError(
                Code.FAILED_PRECONDITION, f"request_id: request {rid} is {state_name(e.actual or 'unknown')}, not PENDING_APPROVAL"
            ) from None
        if outcome == "expired":  # its lifetime passed after the sweep above: expired with the sweep's entry, nothing recorded
            self._expired(rid)
            msg = f"request_id: request {rid} is EXPIRED (not approved before it expired); the decision was not recorded"
            self._audit_now(
                caller, "sign-decision", request_id=rid, outcome="refused",
                details={"decision": decision.value} | _request_hash(rec.request) | detail_text("reason", msg),
            )
            raise RpcError(Code.FAILED_PRECONDITION, msg)
        if outcome == "conflict":
            msg = f"approver: {quote(caller)} already decided on request {rid} (differently)"
            self._audit_now(
                caller, "sign-decision", request_id=rid, outcome="refused",
                details={"decision": decision.value} | _request_hash(rec.request) | detail_text("reason", msg),
            )
            raise RpcError(Code.ALREADY_EXISTS, msg)
        sign_trace.mark(rid, "committed")
        rec = self._get(rid)
        signing = outcome == "recorded" and rec.state == "signing"
        if signing:
            # the decisions that moved it, if THIS decision moved it (committed with the move; none
            # can follow once SIGNING); else another decision did, after ours: read them.
            # Issue 14 (latency): the signing starts first -- this decision's audit entry is already
            # in the transaction that moved the request (record_decision); what follows (the flusher's
            # wake-up, metrics, the log line) changes nothing the signing reads, and the flusher then
            # waits for the signing's urgent section (mpcnet/common/urgent.py) instead of racing it.
            self.quorum.reached(rid)
            final = settled[-1] if settled else self.db.approvals(rid)
            self._start_signing(rid, (rec, final))
        self._audit_soon()
        if outcome == "recorded":
            self.metrics.approvals_total.labels(outcome=decision.value).inc()
            if rec.state in ("signing", "rejected"):
                self.metrics.requests_total.labels(state="approved" if rec.state == "signing" else "rejected").inc()
        if signing:
            approved_by = ", ".join(a.approver for a in final if a.decision == "approve")
            log.info("request %s: approved by %s; signing", rid, approved_by, extra={"event": "sign-approved", "request_id": rid})
            if req.wait_done_ms:  # issue 14: the answer carries the signing's end (coordinator/decide_wait.py)
                self._notify(rid)
                # each wake-up reads the state only; the answer (record, approvals, view) is built once
                wait_until_ended(
                    self.feed, rid, lambda: self.db.sign_request_state(rid), lambda s: s in TERMINAL, req.wait_done_ms,
                    self._stop, ctx,  # a client that left ends the wait (its thread serves others again)
                )
                sign_trace.end(rid, "woken")
                return self._watched(rid)[1]
        elif outcome == "recorded" and rec.state == "rejected":
            self.anomaly.request_rejected(rec.requester, rec.key_id)
        self._notify(rid)
        return self.info(rec)

    def _settlement(
        self, policy: KeyPolicy, sreq: SigningRequest, seen: list[list[ApprovalRecord]] | None = None,
        policy_digest: bytes | None = None,
    ) -> Settle:
        """What a request's stored decisions decide under ``policy`` (run inside the decision's
        transaction, and again by :meth:`recover`): a :class:`Move` to SIGNING or REJECTED with
        its audit entry, or None while the tally is open. ``seen`` ends up holding the decisions
        of a move to SIGNING made by this settlement (empty otherwise: the request may have been
        moved by another decision since, whose decisions this one did not see);
        ``policy_digest``: ``policy.digest()`` if the caller has it. Signatures this process
        verified already (:attr:`vetted`) are not verified again
        (:func:`~governance.approval.tally_verified`); any other stored decision (after a
        restart: all of them) goes through the full :func:`~governance.approval.tally`."""
        rid = sreq.request_id
        encoded = sreq.encode()
        policy_digest = policy.digest() if policy_digest is None else policy_digest

        def settle(stored: list[ApprovalRecord]) -> Move | None:
            if seen is not None:
                seen.clear()
            approvals = [Approval(a.approver, Decision(a.decision), a.signature) for a in stored]
            keys = [vetted_key(policy_digest, encoded, a) for a in approvals]
            try:
                if self.vetted.all_vetted(keys):
                    t = tally_verified(policy, sreq, approvals)
                else:
                    t = tally(policy, sreq, approvals)
                    self.vetted.add(keys)
            except GovernanceError as e:
                log.warning("request %s: its stored decisions do not tally (%s): left pending", rid, e)
                return None
            who = _request_hash(encoded)
            who.update(approved_by=",".join(sorted(t.approved)), rejected_by=",".join(sorted(t.rejected)))
            if t.state == "approved":
                if seen is not None:
                    seen.append(stored)  # the decisions that move it to SIGNING
                return Move("signing", AuditEvent("coordinator", "sign-approved", rid, "signing", who))
            if t.state == "rejected":
                msg = (
                    f"rejected by {', '.join(sorted(t.rejected))}: {policy.approval_quorum} approvals of "
                    f"{len(policy.approvers)} are no longer possible"
                )
                return Move(
                    "rejected",
                    AuditEvent(
                        "coordinator", "sign-rejected", rid, "rejected", {"rejected_by": who["rejected_by"]} | _request_hash(encoded)
                    ),
                    {"error_message": msg},
                )
            return None

        return settle

    def _fail_stale(self, rec: SignRequestRecord, now_in_force: SignedPolicyChange) -> None:
        p = now_in_force.change.new_policy
        try:
            self.db.transition(
                rec.request_id, ("pending_approval",), "failed", error_code=Code.FAILED_PRECONDITION.value[0],
                error_message=(
                    f"the key's policy changed while the request was pending (now {scope_name(now_in_force.change.scope)} "
                    f"v{p.version}); submit it again"
                ),
                audit=AuditEvent(
                    "coordinator", "sign-failed", rec.request_id, "failed", {"reason": "policy changed"} | _request_hash(rec.request)
                ),
            )
        except StateConflict:
            return
        self.metrics.requests_total.labels(state="failed").inc()
        self._audit_soon()
        self._notify(rec.request_id)

    def policy_applied(self, signed: SignedPolicyChange) -> None:
        """A policy change was applied: pending requests it governs were approved (or not) under
        the old policy, which no node will accept any more."""
        scope = signed.change.scope
        self.metrics.policy_changes_total.inc()
        for rec in self.db.list_sign_requests(state="pending_approval", limit=10**6):
            if (scope == DEFAULT_SCOPE and rec.scope == DEFAULT_SCOPE) or rec.key_id == scope:
                self._fail_stale(rec, signed)

    # --- signing -----------------------------------------------------------------------------
    def _start_signing(self, rid: str, known: Known | None = None) -> None:
        """Sign ``rid`` in the background; ``known``: its SIGNING record and final decisions,
        just committed (not read again)."""
        with self._lock:
            if rid in self._signing:
                return
            self._signing.add(rid)
            if known is not None:
                self._known[rid] = known
        sign_trace.mark(rid, "handoff")
        self._spawn(rid)

    def _spawn(self, rid: str) -> None:
        """Run :meth:`_signing_thread` for ``rid`` in the background (tests run it inline): on an
        idle signing worker, or a new thread when none is idle (coordinator/sign_workers.py)."""
        self.workers.submit(self._signing_thread, rid)

    def _signing_thread(self, rid: str) -> None:
        sign_trace.mark(rid, "thread")
        with self._lock:
            known = self._known.pop(rid, None)
        delay = STORE_RETRY_S
        try:
            while True:
                try:
                    with GATE.section():  # audit flushes wait for it (bounded: mpcnet/common/urgent.py)
                        self._run_signing(rid, known)
                    return
                except Exception as e:  # never leave a request SIGNING forever
                    what = store_failure(e)
                    if what is None:
                        log.exception("request %s: signing failed unexpectedly", rid)
                        self._finish(rid, "failed", Code.INTERNAL, f"internal error ({type(e).__name__}); see the coordinator log", 0)
                        return
                    # the host's condition, not the request's: the signature (or the nodes' consumed
                    # nonces and presignatures, which they replay) must not be lost; resume from what
                    # is durable, as a restart would (requests stay SIGNING on disk meanwhile)
                    log.error("request %s: the coordinator cannot use its %s (%s); resuming the signing in %.0f s",
                              rid, what, one_line(e), delay)
                if self._stop.wait(delay):
                    return  # still SIGNING on disk: the next start resumes it
                delay, known = min(delay * 2, STORE_RETRY_MAX_S), None
        finally:
            with self._lock:
                self._signing.discard(rid)
            self._notify(rid)

    def _run_signing(self, rid: str, known: Known | None = None) -> None:
        rec = self.db.get_sign_request(rid) if known is None else known[0]
        if rec is None or rec.state != "signing":
            return
        sreq = decoded_request(rec.request)  # the decision decoded the same bytes (request_codec.py)
        if self.db.request_clock_ms(rid, now_ms()) > sreq.expires_at_ms:  # steady too: a restart revives none
            self._finish(rid, "expired", Code.FAILED_PRECONDITION, "the request expired before it could be signed", 0)
            return
        k = self.db.get_key(rec.key_id)
        if k is None:
            self._finish(rid, "failed", Code.NOT_FOUND, f"key_id: unknown key {rec.key_id.hex()}", 0)
            return
        stored = self.db.approvals(rid) if known is None else known[1]
        approvals = tuple(Approval(a.approver, Decision(a.decision), a.signature) for a in stored)
        bundle = ApprovalBundle(sreq, approvals).to_bytes()
        started = self.anomaly.clock()  # the anomaly windows' steady clock (coordinator/anomaly_hook.py)
        try:
            sig, signers, attempts = self.signer(rid, k, sreq.digest, sreq.derivation_path, bundle)
        except RpcError as e:
            state = "expired" if getattr(e, "governance", "") == "expired" else "failed"
            self._finish(rid, state, e.code, e.message, getattr(e, "attempts", 0))
            return
        finished = _request_hash(rec.request)
        finished.update(
            key_id=rec.key_id.hex(), digest=rec.digest.hex(), signers=",".join(map(str, signers)), r=sig.r.hex(), s=sig.s.hex(),
            attempts=attempts,
        )
        if sig.schnorr:  # issue 16: a FROST signature (r and s are empty)
            finished["schnorr"] = sig.schnorr.hex()
        presig = self.presig_done(rid)  # issue 14 (coordinator/presigned.py)
        if presig is not None:
            finished["presig_id"] = presig[0].hex()
        done = AuditEvent("coordinator", "sign-done", rid, "done", finished)
        if not self._record_end(rid, lambda: self.db.transition(
            rid, ("signing",), "done", signature=sig.SerializeToString(), signers=signers, attempts=attempts, audit=done,
            also=None if presig is None else presig[1],
        )):
            return
        sign_trace.mark(rid, "done")
        self._count_done(rid, k.label, rec.created_ms)
        log.info("request %s: signed (%d attempt(s))", rid, attempts, extra={"event": "sign-done", "request_id": rid})
        self._audit_soon()
        self.anomaly.signed(rec.key_id, sreq.derivation_path, [self.node_name(i) for i in signers], started)
        self._notify(rid)
        sign_trace.mark(rid, "notified")

    def _count_done(self, rid: str, key_label: str, created_ms: int) -> None:
        """Metrics of a request that ended DONE: the transition, the signature, its latencies."""
        self.metrics.requests_total.labels(state="done").inc()
        self.metrics.signature(key_label)
        self.metrics.request_seconds.observe(max(0.0, (now_ms() - created_ms) / 1000.0))  # display only: wall
        since_quorum = self.quorum.ended(rid)
        if since_quorum is not None:
            self.metrics.quorum_to_done_seconds.observe(since_quorum)

    def _record_end(self, rid: str, write: Callable[[], object]) -> bool:
        """Commit the end of a signing request; True if it was committed here. While the database
        cannot be written (disk full, read-only, I/O error) retry every second: the request stays
        SIGNING (as it is on disk) instead of losing a signature that exists only in memory or
        leaving no thread to end it. False on a state conflict or when the coordinator stops."""
        while True:
            try:
                write()
                return True
            except StateConflict:
                return False
            except (sqlite3.Error, OSError) as e:
                if store_failure(e) is None:  # the program's own SQL error or a network error: no retry fixes it
                    raise
                log.error("request %s: cannot record its end yet (%s); retrying", rid, one_line(e))
                if self._stop.wait(1.0):
                    return False

    def _finish(self, rid: str, state: str, code: grpc.StatusCode, message: str, attempts: int) -> None:
        ended = AuditEvent("coordinator", f"sign-{state}", rid, state, {"code": code.name} | detail_text("reason", message) | (
            self._hash_of(rid)
        ))
        if not self._record_end(rid, lambda: self.db.transition(
            rid, ("signing",), state, error_code=code.value[0], error_message=message, attempts=attempts, audit=ended
        )):
            return
        self.metrics.requests_total.labels(state=state).inc()
        self.quorum.ended(rid)
        log.warning("request %s: %s: %s: %s", rid, state, code.name, message, extra={"event": f"sign-{state}", "request_id": rid})
        self._audit_soon()
        self._notify(rid)

    def _hash_of(self, rid: str) -> dict[str, str | int | bool]:
        """:func:`_request_hash` of a stored request ({} if it cannot be read now: the entry is
        still written, its request id ties it to the request)."""
        try:
            rec = self.db.get_sign_request(rid)
        except (sqlite3.Error, OSError):
            return {}
        return {} if rec is None else _request_hash(rec.request)

    # --- reading -----------------------------------------------------------------------------
    def _get(self, rid: str) -> SignRequestRecord:
        rec = self.db.get_sign_request(rid)
        if rec is None:
            raise RpcError(Code.NOT_FOUND, f"request_id: unknown signing request {quote(rid)}")
        return rec

    def visible(self, rid: str, caller: str, role: str) -> SignRequestRecord:
        rec = self._get(_check_rid(rid))
        if role not in self.read_all_roles and rec.requester != caller:
            raise RpcError(
                Code.PERMISSION_DENIED,
                f"request_id: request {rid} belongs to requester {quote(rec.requester)}; reading other requesters' "
                f"requests needs role {roles_text(self.read_all_roles)}",
            )
        return rec

    def get(self, rid: str, caller: str, role: str) -> coordinator_pb2.SignRequestInfo:
        self.expire_due()
        return self.info(self.visible(rid, caller, role))

    def list(self, req: coordinator_pb2.ListSignRequestsRequest, caller: str, role: str) -> coordinator_pb2.ListSignRequestsResponse:
        self.expire_due()
        state = None
        if req.state != coordinator_pb2.SIGN_REQUEST_STATE_UNSPECIFIED:
            if req.state not in PB_STATE:
                raise invalid("state", "unknown state")
            state = PB_STATE[req.state]
        key_id = check_len(req.key_id, "key_id", 32) if req.key_id else None
        limit = min(req.limit or 100, MAX_LIST)
        requester = None if role in self.read_all_roles else caller
        recs = self.db.list_sign_requests(state=state, key_id=key_id, requester=requester, limit=limit)
        return coordinator_pb2.ListSignRequestsResponse(requests=[self.info(r) for r in recs])

    def _watched(self, rid: str) -> Watched:
        """``rid``'s record, info and serialised info for its watchers: built once per change of
        the request and shared by all of them (:attr:`infos`, invalidated by :meth:`_notify`)."""
        hit = self.infos.get(rid)
        if hit is not None:
            return hit
        token = self.infos.token(rid)
        rec = self._get(rid)
        info = self.info(rec)
        out = (rec, info, info.SerializeToString(deterministic=True))
        self.infos.put(rid, token, out)
        return out

    def watch(
        self, rid: str, caller: str, role: str, ctx: Any, lifetime_s: float = 60.0
    ) -> Iterator[coordinator_pb2.SignRequestInfo]:
        """The request now and after each change (an identical state is never sent twice), until
        it ends, the client leaves, the coordinator stops, or ``lifetime_s`` seconds pass: then the
        stream ends (OK) with the current state already sent, and the client watches again. Wakes
        only on changes of this request (:class:`coordinator.watch.ChangeFeed`), at its expiry
        time, and every WATCH_POLL_S as a backstop."""
        self.visible(rid, caller, role)
        end = time.monotonic() + lifetime_s
        last = b""
        with self.feed.subscribe(rid) as sub:
            if ctx is not None:
                ctx.add_callback(sub.wake)  # the client left (or the RPC ended): stop waiting now
            while True:
                sub.clear()
                rec, info, data = self._watched(rid)
                if rec.state == "pending_approval" and self.db.request_clock_ms(rid, now_ms()) > rec.expires_ms:
                    self.expire_due()  # expiry is applied lazily on reads too
                    rec, info, data = self._watched(rid)
                if data != last:
                    last = data
                    yield info
                if rec.state in TERMINAL or self._stop.is_set() or (ctx is not None and not ctx.is_active()):
                    return
                left = end - time.monotonic()
                if left <= 0:
                    return
                wait = min(left, WATCH_POLL_S)
                if rec.state == "pending_approval":
                    wait = min(wait, max(0.0, (rec.expires_ms - self.db.request_clock_ms(rid, now_ms())) / 1000) + 0.05)
                sub.wait(wait)


def _expired_event(rec: SignRequestRecord) -> AuditEvent:
    """The audit entry of ``rec``'s move to EXPIRED (the sweep's, or a decision's transaction's)."""
    return AuditEvent("coordinator", "sign-expired", rec.request_id, "expired", _req_details(rec))


def _check_rid(rid: str) -> str:
    if not is_request_id(rid):
        raise invalid("request_id", REQUEST_ID_RULE)
    return rid


def _may_complete_quorum(decided: Sequence[ApprovalRecord], caller: str, policy: KeyPolicy) -> bool:
    """Whether ``caller``'s approval can bring the approvals to ``policy.approval_quorum``, given
    the decisions ``decided`` read before its transaction (issue 14: the presignature assignment
    of R10 is prepared -- a key read and the signer sets -- only for such an approval). A tally is
    approved only with at least that many distinct approvers (:func:`governance.approval.tally`);
    this counts every stored approval, so it never says False for an approval the tally would
    find completing the quorum on these decisions. Should another decision be recorded between
    the read and the transaction and this approval complete the quorum after all, the request
    goes to SIGNING without an assignment and the signing thread assigns the presignature
    (:meth:`coordinator.presigned.PresignedSigning.sign`), as it does when none was ready."""
    approvers = {a.approver for a in decided if a.decision == "approve"}
    approvers.add(caller)
    return len(approvers) >= policy.approval_quorum


def _request_hash(encoded: bytes) -> dict[str, str | int | bool]:
    """``request_sha256``: the hex SHA-256 of a request's canonical encoding
    (:meth:`governance.approval.SigningRequest.encode`, what every approval signs; equal to
    :meth:`~governance.approval.SigningRequest.request_digest`), for every audit entry of the
    request, so an auditor ties each entry to its approvals."""
    return {"request_sha256": hashlib.sha256(encoded).hexdigest()}


def _scheme_details(sub: Submission) -> dict[str, str | int | bool]:
    """Issue 16: a Schnorr key's request in its audit entry: the scheme, an ed25519 message's
    size (its SHA-256 is the digest), a Taproot root (hex); nothing for ECDSA (entries as before)."""
    if sub.scheme == "ecdsa-secp256k1":
        return {}
    out: dict[str, str | int | bool] = {"scheme": sub.scheme}
    if sub.message:
        out["message_bytes"] = len(sub.message)
    if sub.taproot_root:
        out["taproot_root"] = sub.taproot_root.hex()
    return out


def _req_details(rec: SignRequestRecord) -> dict[str, str | int | bool]:
    return {"key_id": rec.key_id.hex(), "digest": rec.digest.hex(), "requester": rec.requester} | _request_hash(rec.request)
