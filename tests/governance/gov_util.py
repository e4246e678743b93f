"""Shared keys and builders for the governance tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from governance.approval import Approval, Decision, SigningRequest, sign_approval
from governance.policy import AdminSet, KeyPolicy, PolicyChange, RateLimit

NOW_MS = 1_750_000_000_000
KEY_ID = hashlib.sha256(b"key-1").digest()
OTHER_KEY_ID = hashlib.sha256(b"key-2").digest()
CLUSTER_ID = hashlib.sha256(b"cluster-1").digest()
OTHER_CLUSTER_ID = hashlib.sha256(b"cluster-2").digest()

ADMIN_KEYS = {name: Ed25519PrivateKey.generate() for name in ("ada", "bob", "cyd")}
APPROVER_KEYS = {name: Ed25519PrivateKey.generate() for name in ("alice", "bert", "carol", "dave")}
OUTSIDER_KEY = Ed25519PrivateKey.generate()


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def admin_set(quorum: int = 2, cluster_id: bytes = CLUSTER_ID) -> AdminSet:
    return AdminSet({n: raw(k) for n, k in ADMIN_KEYS.items()}, quorum, cluster_id)


def policy(
    *, version: int = 1, quorum: int = 2, approvers: Iterable[str] = ("alice", "bert", "carol"), ttl_seconds: int = 3600
) -> KeyPolicy:
    return KeyPolicy(
        version=version,
        approvers={n: raw(APPROVER_KEYS[n]) for n in approvers},
        approval_quorum=quorum,
        requesters=frozenset({"req-1", "req-2"}),
        ttl_seconds=ttl_seconds,
        rate_limit=RateLimit(max_signatures=10, window_seconds=3600),
    )


def request(**overrides: object) -> SigningRequest:
    fields: dict[str, object] = dict(
        request_id="req_0001",
        key_id=KEY_ID,
        digest=hashlib.sha256(b"pay 1 BTC to x").digest(),
        derivation_path=(0, 1, 2),
        requester="req-1",
        description="Pay supplier invoice #42, second line",
        created_at_ms=NOW_MS - 1000,
        expires_at_ms=NOW_MS + 600_000,
        policy_version=1,
        policy_digest=policy().digest(),
    )
    fields.update(overrides)
    return SigningRequest(**fields)  # type: ignore[arg-type]


def approve(req: SigningRequest, *names: str, decision: Decision = Decision.APPROVE) -> list[Approval]:
    return [sign_approval(req, n, APPROVER_KEYS[n], decision) for n in names]


def change(
    new_policy: KeyPolicy, previous: KeyPolicy | None, scope: bytes = KEY_ID, admins: AdminSet | None = None
) -> PolicyChange:
    root = (admins or admin_set()).digest()
    return PolicyChange(scope, new_policy, None if previous is None else previous.digest(), root)
