"""Test helpers that play governance roles directly: approval bundles signed with the demo
approvers' keys (read from the cluster directory), and admin-signed policy changes, as a
compromised coordinator or a test harness calling the nodes itself would build them."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from governance.approval import ApprovalBundle, Decision, SigningRequest, sign_approval
from governance.policy import DEFAULT_SCOPE, KeyPolicy, PolicyChange, SignedPolicyChange, sign_policy_change
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import Layout


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_request_id(prefix: str = "t") -> str:
    return f"{prefix}-{os.urandom(8).hex()}"


def default_policy(lay: Layout) -> KeyPolicy:
    return lay.governance()[1].change.new_policy


def signing_request(
    lay: Layout, key_id: bytes, digest: bytes, path: Sequence[int] = (), *, request_id: str | None = None,
    policy: KeyPolicy | None = None, requester: str = "requester1", ttl_ms: int = 600_000, created_ms: int | None = None,
) -> SigningRequest:
    policy = policy or default_policy(lay)
    created = now_ms() if created_ms is None else created_ms
    return SigningRequest(
        request_id or new_request_id(), key_id, digest, tuple(path), requester, "test harness request",
        created, created + ttl_ms, policy.version, policy.digest(),
    )


def approvals(lay: Layout, req: SigningRequest, *names: str, decision: Decision = Decision.APPROVE) -> list:
    return [sign_approval(req, n, load_identity(lay.dir, n).signing_key, decision) for n in names]


def bundle(lay: Layout, req: SigningRequest, *names: str) -> bytes:
    return ApprovalBundle(req, tuple(approvals(lay, req, *names))).to_bytes()


def approved_bundle(
    lay: Layout, key_id: bytes, digest: bytes, path: Sequence[int] = (), request_id: str | None = None
) -> tuple[str, bytes]:
    """A fresh request id and a bundle approved by approver1 and approver2 under the default policy."""
    req = signing_request(lay, key_id, digest, path, request_id=request_id)
    return req.request_id, bundle(lay, req, "approver1", "approver2")


def signed_change(
    lay: Layout, new_policy: KeyPolicy, previous: KeyPolicy | None, *admins: str, scope: bytes = DEFAULT_SCOPE
) -> SignedPolicyChange:
    admin_set = lay.governance()[0]
    change = PolicyChange(scope, new_policy, None if previous is None else previous.digest(), admin_set.digest())
    return SignedPolicyChange(change, tuple(sign_policy_change(change, a, load_identity(lay.dir, a).signing_key) for a in admins))
