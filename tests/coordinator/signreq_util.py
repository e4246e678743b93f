"""An in-process :class:`coordinator.requests.SignRequests` on real stores (the coordinator's
SQLite database and audit log in a directory), with one fixed policy (approvers alice, bert,
carol; quorum 2; requesters req-1, req-2; a high rate limit) and a signer that only records when it was called:
for tests and timings of the request path without nodes."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.db import CoordinatorDb, KeyRecord
from coordinator.requests import SignRequests
from governance.approval import Decision, SigningRequest, sign_approval
from governance.policy import DEFAULT_SCOPE, KeyPolicy, RateLimit, SignedPolicyChange
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2
from tests.governance.gov_util import APPROVER_KEYS, change, policy

KEY_ID = hashlib.sha256(b"lean-path-key").digest()
AUDIT_KEY = Ed25519PrivateKey.generate()


class Policies:
    """The two PolicyBook calls SignRequests makes, for one default policy."""

    def __init__(self, pol: KeyPolicy) -> None:
        self.signed = SignedPolicyChange(change(pol, None, scope=DEFAULT_SCOPE), ())

    def policy_for(self, key_id: bytes) -> SignedPolicyChange:
        return self.signed

    def version(self, scope: bytes, version: int) -> KeyPolicy | None:
        return self.signed.change.new_policy if version == self.signed.change.new_policy.version else None


class Harness:
    """``sr``: the SignRequests; ``signed_at``: request id -> perf_counter() when the signer ran."""

    def __init__(self, directory: Path) -> None:
        self.db = CoordinatorDb(directory / "coordinator.db")
        self.audit = AuditLog.open(directory / "audit.db", component="coordinator", signing_key=AUDIT_KEY)
        self.signed_at: dict[str, float] = {}
        self.bundles: dict[str, bytes] = {}
        pol = dataclasses.replace(policy(ttl_seconds=3600), rate_limit=RateLimit(max_signatures=100_000, window_seconds=3600))
        self.sr = SignRequests(self.db, self.audit, Policies(pol), self._sign, ("auditor",))  # type: ignore[arg-type]
        self.sr._spawn = self._inline  # type: ignore[method-assign]
        self.key = KeyRecord(KEY_ID, "lean", b"\x02" + b"\x01" * 32, b"\x00" * 32, 2, 3, "active", 1, "kg-1")
        self.db.add_key(self.key)

    def _inline(self, rid: str) -> None:
        """Run the signing thread's body in the caller's thread."""
        self.sr._signing_thread(rid)

    def _sign(
        self, rid: str, k: Any, digest: bytes, path: tuple[int, ...], bundle: bytes
    ) -> tuple[common_pb2.Signature, tuple[int, ...], int]:
        self.signed_at[rid] = time.perf_counter()
        self.bundles[rid] = bundle
        return common_pb2.Signature(r=b"\x01" * 32, s=b"\x02" * 32), (1, 2), 1

    def submit(self, rid: str) -> SigningRequest:
        info = self.sr.submit(
            coordinator_pb2.SubmitSignRequestRequest(
                key_id=KEY_ID, digest=hashlib.sha256(rid.encode()).digest(), request_id=rid, description="lean path"
            ),
            "req-1", lambda kid: self.key if kid == KEY_ID else None,
        )
        return SigningRequest.from_bytes(info.request)

    def decide(self, sreq: SigningRequest, approver: str, decision: Decision = Decision.APPROVE) -> coordinator_pb2.SignRequestInfo:
        a = sign_approval(sreq, approver, APPROVER_KEYS[approver], decision)
        return self.sr.decide(
            coordinator_pb2.DecideSignRequestRequest(
                request_id=sreq.request_id, approver=approver,
                decision=coordinator_pb2.DECISION_APPROVE if decision is Decision.APPROVE else coordinator_pb2.DECISION_REJECT,
                signature=a.signature,
            ),
            approver,
        )

    def close(self) -> None:
        self.sr.stop()
        self.audit.close()
        self.db.close()
