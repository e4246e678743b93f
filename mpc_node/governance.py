"""The node's own governance: the policies it enforces and the approvals it demands.

The node trusts nothing the coordinator says about governance. Its admin set comes from its
config; every policy it enforces was installed through an admin-quorum-signed change that the
node verified itself (:meth:`NodeGovernance.install`), and the whole history of every scope is
re-verified whenever the node starts. Before a node contributes to a signature it checks the
approval bundle that came with the session against its own copy of the key's policy and its own
clock (:meth:`NodeGovernance.check_sign`); at the end it records the request as served in the
same durable step that marks the presignature used, refusing a replayed request id or one
signature more than the key's rate limit (:meth:`NodeGovernance.served_request`).

Errors are :class:`mpcnet.rpc.RpcError` with PERMISSION_DENIED (no valid approval evidence:
missing, malformed, forged, under quorum, from a requester the policy does not allow, for
another request) or FAILED_PRECONDITION (expired, made under another policy version, already
served, rate limited); the message names the field and the reason, and the trailing metadata
``mpc-governance`` says which kind it was, so an honest coordinator can react (bring the node's
policies up to date, or sign without a node that already served the request).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import grpc

from governance.approval import ApprovalBundle, QuorumResult, rate_limit_ok
from governance.audit import AuditLog
from governance.errors import GovernanceError
from governance.policy import DEFAULT_SCOPE, AdminSet, KeyPolicy, SignedPolicyChange
from mpc_node.storage import NodeStore, PolicyConflict, ServedRequest
from mpcnet.govwire import scope_name
from mpcnet.rpc import RpcError

log = logging.getLogger("mpc_node.governance")
Code = grpc.StatusCode

# GovernanceError fields that mean "the request is fine but not now / not under this policy"
_PRECONDITION_FIELDS = ("expires_at_ms", "created_at_ms", "policy_version", "policy_digest")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def refusal(code: grpc.StatusCode, kind: str, message: str) -> RpcError:
    return RpcError(code, message, metadata=[("mpc-governance", kind)])


@dataclass(frozen=True)
class Approved:
    """What :meth:`NodeGovernance.check_sign` established for a session."""

    bundle: ApprovalBundle
    result: QuorumResult
    scope: bytes
    policy: KeyPolicy


class NodeGovernance:
    def __init__(
        self, name: str, admins: AdminSet, initial: SignedPolicyChange, store: NodeStore, audit: AuditLog,
        *, clock: Callable[[], int] = now_ms, tolerance_ms: int = 0,
    ) -> None:
        """``clock`` gives the node's wall clock in ms; ``tolerance_ms`` is how far it may be off
        from the clock that stamped a request before the request counts as expired / future."""
        self.name = name
        self.clock = clock
        self.tolerance_ms = tolerance_ms
        self.admins = admins
        self.store = store
        self.audit = audit
        self._lock = threading.Lock()
        self._current: dict[bytes, SignedPolicyChange] = {}
        self._load()
        if DEFAULT_SCOPE not in self._current:
            self._install(initial, actor=name, how="initial")

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
            if current is not None and new.version == current.version and new.digest() == current.digest():
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
            try:
                self.store.put_policy_change(
                    scope, new.version, signed.to_bytes(), previous_version=None if current is None else current.version
                )
            except PolicyConflict as e:  # cannot happen under our lock unless another process writes
                raise refusal(Code.ABORTED, "conflict", f"signed_change: {e}") from None
            self._current[scope] = signed
        log.info(
            "policy of scope %s is now version %d (%s, signed by %s)",
            scope_name(scope), new.version, how, ", ".join(sorted({s.admin for s in signed.signatures})),
        )
        self._audit_policy(actor, signed, "installed", "")
        return True, signed

    def _audit_policy(self, actor: str, signed: SignedPolicyChange | None, outcome: str, reason: str) -> None:
        details: dict[str, str | int | bool] = {}
        if signed is not None:
            details["scope"] = scope_name(signed.change.scope)
            details["version"] = signed.change.new_policy.version
            details["policy_digest"] = signed.change.new_policy.digest().hex()
            details["admins"] = ",".join(sorted({s.admin for s in signed.signatures}))
        if reason:
            details["reason"] = reason[:500]
        self.audit.append(actor, "policy-install", outcome=outcome, details=details)

    # --- signing -----------------------------------------------------------------------------
    def check_sign(
        self, bundle_bytes: bytes, *, key_id: bytes, digest: bytes, path: tuple[int, ...], request_id: str
    ) -> Approved:
        """Everything a node checks before it starts a signing session (raises RpcError)."""
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
        if self.store.request_served(req.request_id):
            raise refusal(
                Code.FAILED_PRECONDITION, "served",
                f"sign.approval_bundle.request.request_id: {self.name} already served request {req.request_id!r} (replay)",
            )
        limit = policy.rate_limit
        now = self.clock()
        if not rate_limit_ok(limit, self.store.served_times(key_id, now - limit.window_seconds * 1000), now):
            raise refusal(
                Code.FAILED_PRECONDITION, "rate-limited",
                f"rate_limit: {self.name} already signed {limit.max_signatures} request(s) with this key in the last "
                f"{limit.window_seconds} s (the policy's limit)",
            )
        return Approved(bundle, result, scope, policy)

    def _verify(self, bundle: ApprovalBundle, policy: KeyPolicy) -> QuorumResult:
        try:
            return bundle.verify(policy, now_ms=self.clock(), tolerance_ms=self.tolerance_ms)
        except GovernanceError as e:
            field = e.field
            if field.startswith("approvals") or field not in _PRECONDITION_FIELDS:
                code, kind = Code.PERMISSION_DENIED, "denied"
            else:
                code = Code.FAILED_PRECONDITION
                kind = "expired" if field in ("expires_at_ms", "created_at_ms") else "stale-policy"
            prefix = "sign.approval_bundle" if field.startswith("approvals") else "sign.approval_bundle.request"
            raise refusal(code, kind, f"{prefix}.{field}: {e.reason}") from None

    def recheck(self, approved: Approved, key_id: bytes) -> ServedRequest:
        """At the end of the session, just before the share is released: the same checks against
        the policy *now* in force (a change may have been installed meanwhile) and the clock
        now; returns the record to write atomically with the presignature."""
        found = self.policy_for(key_id)
        if found is None:
            raise refusal(Code.FAILED_PRECONDITION, "stale-policy", f"sign.key_id: {self.name} has no policy for this key")
        _scope, policy = found
        self._verify(approved.bundle, policy)
        req = approved.bundle.request
        limit = policy.rate_limit
        return ServedRequest(
            req.request_id, req.key_id, req.digest, self.clock(), (limit.max_signatures, limit.window_seconds * 1000)
        )
