"""The approvals this coordinator process has verified (Ed25519, with
:func:`governance.approval.check_approval`), so the tally at every later decision need not verify
them again (:func:`governance.approval.tally_verified`).

An entry names exactly what was verified: the policy (its digest), the canonical request
encoding (its SHA-256), the approver, the decision and the signature bytes. Only this process's
memory holds it: after a restart nothing is vetted and the full :func:`~governance.approval.tally`
re-verifies what is stored. Bounded (least recently used first out); forgetting an entry only
costs one verification.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable

from governance.approval import Approval

CAPACITY = 16384  # approvals remembered

VettedKey = tuple[bytes, bytes, str, str, bytes]


def vetted_key(policy_digest: bytes, request_encoding: bytes, approval: Approval) -> VettedKey:
    """The identity of one verified approval (what its signature covered, under which policy)."""
    return (
        policy_digest, hashlib.sha256(request_encoding).digest(), approval.approver, approval.decision.value,
        bytes(approval.signature),
    )


class VettedApprovals:
    """A bounded, thread-safe set of :func:`vetted_key`."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity: must be at least 1")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._keys: OrderedDict[VettedKey, None] = OrderedDict()

    def add(self, keys: Iterable[VettedKey]) -> None:
        """Remember approvals whose signatures were just verified."""
        with self._lock:
            for k in keys:
                self._keys[k] = None
                self._keys.move_to_end(k)
            while len(self._keys) > self.capacity:
                self._keys.popitem(last=False)

    def all_vetted(self, keys: Iterable[VettedKey]) -> bool:
        """Whether every one of ``keys`` was verified by this process (and is still remembered)."""
        with self._lock:
            return all(k in self._keys for k in keys)
