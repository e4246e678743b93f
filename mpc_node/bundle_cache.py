"""A per-node LRU of approval bundles whose Ed25519 signatures were already verified.

A signing request reaches a node up to three times (``ReserveSigning``, ``StartSession`` and the
recheck just before the share is released), each time with the same approval bundle. What
:func:`governance.approval.tally` establishes from a bundle -- every approval is by an approver of
the policy, signed over this request, no approver twice, the quorum reached -- is a pure function
of the bundle's bytes and the policy, and never of the clock. So it is cached under the key
``(sha256(bundle bytes), policy digest)``: a policy change (a superseded policy, a revoked
approver, another quorum) changes the digest and misses the cache, and a changed bundle changes
its hash. Only the signature work is cached: :func:`governance.approval.check_request` (policy
version and digest, TTL, requester, the clock and expiry) runs on every call, so a cached bundle
is refused exactly when a fresh verification would refuse it. Failures are never cached.

Thread-safe (one lock around the dictionary; the verification itself runs outside it).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from governance.approval import ApprovalBundle, QuorumResult, check_request, verify_approvals
from governance.policy import KeyPolicy

DEFAULT_CAPACITY = 1024  # bundles; an entry is a few hundred bytes (a QuorumResult and two 32-byte keys)


def bundle_digest(bundle: ApprovalBundle) -> bytes:
    """SHA-256 of a bundle's canonical bytes (32 bytes): its cache key. Computed here from the
    bundle being verified (never taken from a caller), so no other bundle can be answered
    from its entry; the encoding is canonical, so these are the bytes it was decoded from."""
    return hashlib.sha256(bundle.to_bytes()).digest()


class VerifiedBundles:
    """LRU ``(sha256(bundle), policy digest) -> QuorumResult`` of bundles that verified.

    ``capacity`` (>= 1) bounds the entries; the least recently used one is evicted first.
    ``hits`` and ``misses`` count lookups (for tests and metrics).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError("capacity: must be an int >= 1")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[bytes, bytes], QuorumResult] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"VerifiedBundles({len(self)}/{self.capacity} bundles)"

    def verify(self, bundle: ApprovalBundle, policy: KeyPolicy, *, now_ms: int, tolerance_ms: int = 0) -> QuorumResult:
        """What ``bundle.verify(policy, now_ms=, tolerance_ms=)`` returns, with the same
        :class:`governance.errors.GovernanceError` on refusal. The request checks (clock,
        expiry, policy version and digest, requester) always run; the approvals' signatures are
        verified only if this ``(bundle, policy)`` did not verify before."""
        if not isinstance(bundle, ApprovalBundle) or not isinstance(policy, KeyPolicy):
            raise TypeError("bundle, policy: must be an ApprovalBundle and a KeyPolicy")
        key = (bundle_digest(bundle), policy.digest())
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        if hit is not None:
            check_request(policy, bundle.request, now_ms=now_ms, tolerance_ms=tolerance_ms)
            return hit
        result = verify_approvals(policy, bundle.request, bundle.approvals, now_ms=now_ms, tolerance_ms=tolerance_ms)
        with self._lock:
            self._entries[key] = result
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return result
