"""The node's own governance: the policies it enforces and the approvals it demands.

The node trusts nothing the coordinator says about governance. Its admin set comes from its
config; every policy it enforces was installed through an admin-quorum-signed change that the
node verified itself (:meth:`NodeGovernance.install`), and the whole history of every scope is
re-verified whenever the node starts. Before a node contributes to a signature it checks the
approval bundle that came with the session against its own copy of the key's policy and its own
clock (:meth:`NodeGovernance.check_sign`); at the end it records the reserved attempt of the
request as served in the same durable step that marks the presignature used, refusing a replayed
attempt or one request more than the key's rate limit (:meth:`NodeGovernance.recheck`). A request
may be served once per reserved attempt (:mod:`governance.reservation`); it counts once.

Errors are :class:`mpcnet.common.rpc.RpcError` with PERMISSION_DENIED (no valid approval evidence:
missing, malformed, forged, under quorum, from a requester the policy does not allow, for
another request) or FAILED_PRECONDITION (expired, made under another policy version, attempt
already served, taken or exhausted, rate limited); the message names the field and the reason,
and the trailing metadata ``mpc-governance`` says which kind it was, so an honest coordinator can react (bring the node's
policies up to date, or try the next signing attempt).

Withheld changes (:mod:`governance.attestation`): with ``policy_max_age_s`` > 0 the node also
refuses, at session start and again just before it releases its share, unless the newest valid
admin-signed policy attestation it holds (pushed by an admin or the coordinator, or carried in
the session's parameters; kept durably, newest ``issued_at_ms`` wins) is at most that old by the
node's clock and names exactly the heads it enforces for the key's scope and the default scope:
FAILED_PRECONDITION ``stale-policy`` if it names a newer head (the node missed a change), else
``policy-unconfirmed`` (an admin must run ``mpc policy attest``). The attestation the check used
is pinned (:class:`mpc_node.in_force.AttestationPin`) and the releasing transaction refuses if a
newer one naming other heads was kept meanwhile (``stale-policy`` naming ``policy_attestation``);
a newer one naming the same heads does not stop the share.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from governance.approval import ApprovalBundle, QuorumResult
from governance.attestation import (
    AttestationRefusal,
    PolicyAttestation,
    PolicyHead,
    SignedPolicyAttestation,
    check_confirms,
)
from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.policy import DEFAULT_SCOPE, AdminSet, KeyPolicy, SignedPolicyChange
from mpc_node.audit_outbox import OutboxEntry
from mpc_node.bundle_cache import VerifiedBundles
from mpc_node.in_force import AttestationChanged, AttestationPin, InForce, InForceChanged, PolicyChanged
from mpc_node.storage import NodeStore, PolicyConflict, ServedRequest
from mpcnet.common.govwire import scope_name
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog

log = logging.getLogger("mpc_node.governance")
Code = grpc.StatusCode

# GovernanceError fields that mean "the request is fine but not now / not under this policy"
_PRECONDITION_FIELDS = ("expires_at_ms", "created_at_ms", "policy_version", "policy_digest")
# how far in the future an attestation may be issued by this node's clock (clock skew)
ATTESTATION_FUTURE_TOLERANCE_MS = 300_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def refusal(code: grpc.StatusCode, kind: str, message: str) -> RpcError:
    return RpcError(code, message, metadata=[("mpc-governance", kind)])


def changed_refusal(e: InForceChanged, name: str, prefix: str = "") -> RpcError:
    """The refusal of a share whose release transaction found the policy, the policy attestation
    or the roster changed since its checks (:mod:`mpc_node.in_force`): FAILED_PRECONDITION
    ``stale-policy`` naming ``<prefix>approval_bundle.request.policy_version`` or
    ``<prefix>policy_attestation``, or ``stale-roster`` naming ``<prefix>roster``; ``name`` is this node's."""
    if isinstance(e, PolicyChanged):
        return refusal(Code.FAILED_PRECONDITION, "stale-policy", f"{prefix}approval_bundle.request.{e} ({name})")
    if isinstance(e, AttestationChanged):
        return refusal(Code.FAILED_PRECONDITION, "stale-policy", f"{prefix}{e} ({name})")
    return refusal(Code.FAILED_PRECONDITION, "stale-roster", f"{prefix}{e} ({name})")


@dataclass(frozen=True)
class Approved:
    """What :meth:`NodeGovernance.check_sign` established for a session."""

    bundle: ApprovalBundle
    result: QuorumResult
    scope: bytes
    policy: KeyPolicy
    attestation: AttestationPin | None = None  # the attestation that confirmed the heads (None: not required)


class NodeGovernance:
    def __init__(
        self, name: str, admins: AdminSet, initial: SignedPolicyChange, store: NodeStore, audit: AuditLog,
        *, max_age_s: int = 86400, clock: Callable[[], int] = now_ms, tolerance_ms: int = 0,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        """``clock`` gives the node's wall clock in ms; ``tolerance_ms`` is how far it may be off
        from the clock that stamped a request before the request counts as expired / future.
        An install's entry is queued in the store's audit outbox with it (one transaction);
        ``on_queued`` then wakes the outbox flusher (:meth:`mpc_node.audit_outbox.AuditFlusher.notify`)."""
        self.name = name
        self.clock = clock
        self.tolerance_ms = tolerance_ms
        self.admins = admins
        self.store = store
        self.audit = audit
        self.on_queued = on_queued or (lambda: None)
        self.fault: Callable[[str], None] | None = None  # test mode: mpc_node/faults.py points policy-installed, attestation-stored
        self.max_age_ms = max_age_s * 1000  # 0: attestations not required
        self._lock = threading.Lock()
        self._current: dict[bytes, SignedPolicyChange] = {}
        self._attestation: SignedPolicyAttestation | None = None
        self._attestation_bytes = b""  # the held attestation's bytes (an identical offer is not re-verified)
        self.bundles = VerifiedBundles()  # bundles whose approvals' signatures verified (mpc_node/bundle_cache.py)
        self._load()
        if DEFAULT_SCOPE not in self._current:
            self._install(initial, actor=name, how="initial")
        self._load_attestation()

    # --- policies ----------------------------------------------------------------------------
    def _load(self) -> None:
        """Re-verify every stored scope's history from its first change (else refuse to start)."""
        for scope, changes in self.store.policy_changes().items():
            current: KeyPolicy | None = None
            last: SignedPolicyChange | None = None
            for i, data in enumerate(changes):
                try:
                    signed = SignedPolicyChange.from_bytes(data)
                    if signed.change.scope != scope:
                        raise GovernanceError("change.scope", "differs from the scope it is stored under")
                    current = signed.verify(self.admins, current)
                except GovernanceError as e:
                    raise RuntimeError(
                        f"stored policy history of scope {scope_name(scope)} does not verify at change {i + 1}: {e}"
                    ) from None
                last = signed
            if last is not None:
                self._current[scope] = last

    def _load_attestation(self) -> None:
        data = self.store.policy_attestation()
        if data is None:
            return
        try:
            signed = SignedPolicyAttestation.from_bytes(data)
            signed.verify(self.admins)
        except GovernanceError as e:  # e.g. the admin set in the config changed: not ours any more
            log.warning("stored policy attestation ignored: %s", e)
            return
        self._attestation = signed
        self._attestation_bytes = data

    @property
    def governance_root(self) -> bytes:
        return self.admins.digest()

    def policies(self) -> list[SignedPolicyChange]:
        with self._lock:
            return [self._current[s] for s in sorted(self._current)]

    def policy_for(self, key_id: bytes) -> tuple[bytes, KeyPolicy] | None:
        """The policy that governs ``key_id``: its own, else the default."""
        with self._lock:
            signed = self._current.get(key_id) or self._current.get(DEFAULT_SCOPE)
        return None if signed is None else (signed.change.scope, signed.change.new_policy)

    def install(self, data: bytes, *, actor: str) -> tuple[bool, SignedPolicyChange]:
        """Verify and install a change; ``(False, current)`` if it is exactly the one in force."""
        try:
            signed = SignedPolicyChange.from_bytes(data)
        except GovernanceError as e:
            self._audit_policy(actor, None, "refused", f"signed_change.{e.field}: {e.reason}")
            raise refusal(Code.INVALID_ARGUMENT, "malformed", f"signed_change.{e.field}: {e.reason}") from None
        return self._install(signed, actor=actor, how="push")

    def _install(self, signed: SignedPolicyChange, *, actor: str, how: str) -> tuple[bool, SignedPolicyChange]:
        scope = signed.change.scope
        new = signed.change.new_policy
        with self._lock:
            cur = self._current.get(scope)
            current = None if cur is None else cur.change.new_policy
            if cur is not None and current is not None and new.version == current.version and new.digest() == current.digest():
                return False, cur
            try:
                signed.verify(self.admins, current)
            except GovernanceError as e:
                code = Code.FAILED_PRECONDITION if e.field in ("previous_digest", "new_policy.version") else Code.PERMISSION_DENIED
                msg = f"signed_change.{e.field}: {e.reason}"
                self._audit_policy(actor, signed, "refused", msg)
                if how == "initial":
                    raise RuntimeError(f"governance.initial_policy.{e.field}: {e.reason}") from None
                raise refusal(code, "stale-policy" if code == Code.FAILED_PRECONDITION else "denied", msg) from None
            try:  # the change and its entry: one transaction (the store's audit outbox)
                self.store.put_policy_change(
                    scope, new.version, signed.to_bytes(), previous_version=None if current is None else current.version,
                    audit=self._policy_entry(actor, signed, "installed", ""),
                )
            except PolicyConflict as e:  # cannot happen under our lock unless another process writes
                raise refusal(Code.ABORTED, "conflict", f"signed_change: {e}") from None
            self._current[scope] = signed
        self._at("policy-installed")
        self.on_queued()
        log.info(
            "policy of scope %s is now version %d (%s, signed by %s)",
            scope_name(scope), new.version, how, ", ".join(sorted({s.admin for s in signed.signatures})),
        )
        return True, signed

    def _at(self, point: str) -> None:
        if self.fault is not None:
            self.fault(point)

    def _audit_policy(self, actor: str, signed: SignedPolicyChange | None, outcome: str, reason: str) -> None:
        """A refusal (nothing changed): appended directly, after the queued entries (the log's
        ``before_use`` hook flushes the outbox first)."""
        e = self._policy_entry(actor, signed, outcome, reason)
        self.audit.append(e.actor, e.action, outcome=e.outcome, details=e.details)

    @staticmethod
    def _policy_entry(actor: str, signed: SignedPolicyChange | None, outcome: str, reason: str) -> OutboxEntry:
        """The ``policy-install`` entry of ``signed`` (None: undecodable) with ``outcome``."""
        details: dict[str, str | int | bool] = {}
        if signed is not None:
            details["scope"] = scope_name(signed.change.scope)
            details["version"] = signed.change.new_policy.version
            details["policy_digest"] = signed.change.new_policy.digest().hex()
            details["admins"] = ",".join(sorted({s.admin for s in signed.signatures}))
        if reason:
            details.update(detail_text("reason", reason))
        return OutboxEntry(actor, "policy-install", "", outcome, details)

    # --- attestations ------------------------------------------------------------------------
    def attestation(self) -> SignedPolicyAttestation | None:
        with self._lock:
            return self._attestation

    def _head(self, scope: bytes) -> PolicyHead | None:
        """Under ``self._lock``: the head this node enforces for ``scope`` (None: no policy)."""
        signed = self._current.get(scope)
        if signed is None:
            return None
        p = signed.change.new_policy
        return PolicyHead(scope, p.version, p.digest())

    def _verified(self, data: bytes, field: str) -> SignedPolicyAttestation:
        """Decode and verify; RpcError naming ``field`` (INVALID_ARGUMENT malformed,
        PERMISSION_DENIED not signed by an admin of this cluster, FAILED_PRECONDITION future)."""
        try:
            signed = SignedPolicyAttestation.from_bytes(data)
        except GovernanceError as e:
            raise refusal(Code.INVALID_ARGUMENT, "malformed", f"{field}.{e.field}: {e.reason}") from None
        try:
            signed.verify(self.admins)
        except GovernanceError as e:
            raise refusal(Code.PERMISSION_DENIED, "denied", f"{field}.{e.field}: {e.reason}") from None
        ahead = signed.issued_at_ms - self.clock()
        if ahead > ATTESTATION_FUTURE_TOLERANCE_MS:
            raise refusal(
                Code.FAILED_PRECONDITION, "policy-unconfirmed",
                f"{field}.attestation.issued_at_ms: issued {ahead // 1000} s in the future by {self.name}'s clock "
                f"(at most {ATTESTATION_FUTURE_TOLERANCE_MS // 1000} s tolerated)",
            )
        return signed

    def _keep(self, signed: SignedPolicyAttestation, audit: OutboxEntry | None = None) -> bool:
        """Store ``signed`` durably if newer than the held one (with ``audit`` queued in the
        same transaction); True if it was."""
        with self._lock:
            held = self._attestation
            if held is not None and held.issued_at_ms >= signed.issued_at_ms:
                return False
            if not self.store.put_policy_attestation(signed.to_bytes(), signed.issued_at_ms, audit=audit):
                return False
            self._attestation = signed
            self._attestation_bytes = signed.to_bytes()
            return True

    def install_attestation(self, data: bytes, *, actor: str) -> tuple[bool, int, str]:
        """An attestation pushed by an admin or the coordinator: verify, keep if newest, audit.
        Returns (stored, issued_at_ms of the held one, how it matches this node's heads)."""
        try:
            signed = self._verified(data, "attestation")
        except RpcError as e:
            self.audit.append(actor, "policy-attest", outcome="refused", details=detail_text("reason", e.message))
            raise
        att = signed.attestation
        facts: dict[str, str | int | bool] = {"admin": att.admin, "issued_at_ms": att.issued_at_ms, "heads": len(att.heads)}
        status = self._match(att)  # what the held one matches once this one is kept
        stored = self._keep(signed, OutboxEntry(actor, "policy-attest", "", "stored", detail_text("status", status) | facts))
        held = self.attestation()
        assert held is not None
        if stored:
            self._at("attestation-stored")
            self.on_queued()
        else:  # nothing changed: the newer one held stays
            status = self._match(held.attestation)
            self.audit.append(actor, "policy-attest", outcome="older", details=detail_text("status", status) | facts)
        if stored:
            log.info("policy attestation by %s (issued at %d) stored: %s", att.admin, att.issued_at_ms, status)
        return stored, held.issued_at_ms, status

    def _keep_offered(self, signed: SignedPolicyAttestation, request_id: str) -> bool:
        """Keep an attestation carried in a signing session's parameters (verified) if it is
        newer than the held one, with its ``policy-attest`` entry (actor: this node, ``source``
        ``sign-session``, ``request``: the session's request id) queued in the same store transaction;
        then the test-mode point ``session-attestation-stored``. True if it was kept."""
        att = signed.attestation
        details: dict[str, str | int | bool] = {
            "admin": att.admin, "issued_at_ms": att.issued_at_ms, "heads": len(att.heads), "source": "sign-session",
        }
        if request_id:
            details |= detail_text("request", request_id)
        entry = OutboxEntry(self.name, "policy-attest", "", "stored", detail_text("status", self._match(att)) | details)
        if not self._keep(signed, entry):
            return False  # nothing changed (the held one is as new): nothing to audit
        self._at("session-attestation-stored")
        self.on_queued()
        log.info("policy attestation by %s (issued at %d) stored from a signing session", att.admin, att.issued_at_ms)
        return True

    def _match(self, att: PolicyAttestation) -> str:
        """``confirmed`` if ``att`` names exactly every head this node holds, else why not."""
        with self._lock:
            held = {s: self._head(s) for s in set(self._current) | {h.scope for h in att.heads}}
        try:
            check_confirms(att, held, now_ms=att.issued_at_ms, max_age_ms=1, future_tolerance_ms=0)
        except AttestationRefusal as e:
            return f"{e.kind}: {e.field}: {e.reason}"
        return "confirmed"

    def _holds(self, offered: bytes) -> bool:
        """True iff ``offered`` is byte for byte the attestation held (verified when it was kept
        or loaded, against the same admin set): keeping it again would change nothing."""
        with self._lock:
            held = self._attestation_bytes
        return bool(held) and hmac.compare_digest(held, offered)

    def check_confirmed(self, key_id: bytes, offered: bytes = b"", *, request_id: str = "") -> AttestationPin | None:
        """Refuse (RpcError FAILED_PRECONDITION) unless the newest attestation held (after
        keeping ``offered``, the session's, if valid and newer: :meth:`_keep_offered`, audited
        with ``request_id``) is fresh and names exactly the
        heads this node enforces for ``key_id``'s scope and the default scope. Returns the pin of
        the attestation that confirmed them, for the releasing transaction to re-check
        (:func:`mpc_node.in_force.check_attestation`); None when attestations are not required."""
        if offered and not self._holds(offered):
            self._keep_offered(self._verified(offered, "sign.policy_attestation"), request_id)
        if self.max_age_ms == 0:
            return None
        with self._lock:
            signed = self._attestation
            held = {key_id: self._head(key_id), DEFAULT_SCOPE: self._head(DEFAULT_SCOPE)}
        try:
            check_confirms(
                None if signed is None else signed.attestation, held, now_ms=self.clock(), max_age_ms=self.max_age_ms,
                future_tolerance_ms=ATTESTATION_FUTURE_TOLERANCE_MS,
            )
        except AttestationRefusal as e:
            raise refusal(Code.FAILED_PRECONDITION, e.kind, f"sign.{e.field}: {self.name}: {e.reason}") from None
        assert signed is not None  # check_confirms refuses a missing attestation
        att = signed.attestation
        return AttestationPin(att.issued_at_ms, att.head(key_id), att.head(DEFAULT_SCOPE))

    # --- signing -----------------------------------------------------------------------------
    def check_sign(
        self, bundle_bytes: bytes, *, key_id: bytes, digest: bytes, path: tuple[int, ...], request_id: str,
        attestation: bytes = b"", scheme: str = "ecdsa-secp256k1", taproot_root: bytes | None = b"",
    ) -> Approved:
        """Everything a node checks before it starts a signing session (raises RpcError);
        ``scheme`` / ``taproot_root`` are the key's scheme and the root signed (issue 16: FROST; a
        root of None is not compared: a reservation grants the request digest, which covers it)."""
        if not bundle_bytes:
            raise refusal(
                Code.PERMISSION_DENIED, "denied",
                "sign.approval_bundle: missing: this node signs only requests that carry their approvals",
            )
        try:
            bundle = ApprovalBundle.from_bytes(bundle_bytes)
        except GovernanceError as e:
            raise refusal(Code.PERMISSION_DENIED, "denied", f"sign.approval_bundle.{e.field}: {e.reason}") from None
        req = bundle.request
        mismatch = [
            ("request_id", req.request_id == request_id),
            ("key_id", req.key_id == key_id),
            ("digest", req.digest == digest),
            ("derivation_path", req.derivation_path == path),
            ("scheme", req.scheme == scheme),
            ("taproot_root", taproot_root is None or req.taproot_root == taproot_root),
        ]
        for field, same in mismatch:
            if not same:
                raise refusal(
                    Code.PERMISSION_DENIED, "denied",
                    f"sign.approval_bundle.request.{field}: differs from the session's {field} "
                    "(the approvals are for another request)",
                )
        found = self.policy_for(key_id)
        if found is None:
            raise refusal(Code.FAILED_PRECONDITION, "stale-policy", f"sign.key_id: {self.name} has no policy for this key")
        scope, policy = found
        result = self._verify(bundle, policy)
        pin = self.check_confirmed(key_id, attestation, request_id=request_id)
        # a request this node already served (in an earlier attempt) counts once: no new check;
        # how many attempts may release a share is bounded by the reservations
        limit = policy.rate_limit
        # steady time (the store's clock), never the wall clock: a step cannot empty or stretch the window
        recent = self.store.count_served_within(key_id, limit.window_seconds * 1000)  # indexed COUNT(*)
        if recent >= limit.max_signatures and not self.store.request_served(req.request_id):
            raise refusal(
                Code.FAILED_PRECONDITION, "rate-limited",
                f"rate_limit: {self.name} already signed {limit.max_signatures} request(s) with this key in the last "
                f"{limit.window_seconds} s (the policy's limit)",
            )
        return Approved(bundle, result, scope, policy, pin)

    def _verify(self, bundle: ApprovalBundle, policy: KeyPolicy) -> QuorumResult:
        """``bundle.verify`` through :attr:`bundles` (the signatures once per bundle and policy;
        the request, clock and expiry checks every time); RpcError naming the field."""
        try:
            return self.bundles.verify(bundle, policy, now_ms=self.clock(), tolerance_ms=self.tolerance_ms)
        except GovernanceError as e:
            field = e.field
            if field.startswith("approvals") or field not in _PRECONDITION_FIELDS:
                code, kind = Code.PERMISSION_DENIED, "denied"
            else:
                code = Code.FAILED_PRECONDITION
                kind = "expired" if field in ("expires_at_ms", "created_at_ms") else "stale-policy"
            prefix = "sign.approval_bundle" if field.startswith("approvals") else "sign.approval_bundle.request"
            raise refusal(code, kind, f"{prefix}.{field}: {e.reason}") from None

    def recheck(self, approved: Approved, key_id: bytes, *, roster_version: int) -> ServedRequest:
        """At the end of the session, just before the share is released: the same checks against
        the policy *now* in force (a change may have been installed meanwhile) and the clock
        now; returns the record to write atomically with the presignature, pinned to that policy,
        to the attestation that confirmed it and to ``roster_version`` (the roster the session started under: :mod:`mpc_node.in_force`)."""
        found = self.policy_for(key_id)
        if found is None:
            raise refusal(Code.FAILED_PRECONDITION, "stale-policy", f"sign.key_id: {self.name} has no policy for this key")
        scope, policy = found
        self._verify(approved.bundle, policy)
        pin = self.check_confirmed(key_id)
        req = approved.bundle.request
        limit = policy.rate_limit
        return ServedRequest(
            req.request_id, req.key_id, req.digest, self.clock(), (limit.max_signatures, limit.window_seconds * 1000),
            in_force=InForce(scope, policy.version, roster_version, attestation=pin),
        )
