"""Approvals this process already verified (survey R13: a client re-verified every approval of a
request in every answer about it: the submit, each decision, each change a watch brings).

:func:`check_approval_once` is :func:`governance.approval.check_approval` remembered per
(policy digest, canonical request bytes, approver, decision, signature): the check is a pure
function of exactly those (the policy a digest names is one policy; the request bytes are the
signed message), so a remembered success is the same answer the check would give again. Only
successes are kept (a failure is checked again, and raises again); the newest
:data:`MAX_REMEMBERED` are kept, process-wide (a :class:`~mpcnet.client.sdk.SigningTeam`'s
clients share them), under a lock (threads share clients).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from governance.approval import Approval, SigningRequest, check_approval
from governance.policy import KeyPolicy

MAX_REMEMBERED = 8192
_lock = threading.Lock()
_verified: OrderedDict[tuple[bytes, bytes, str, str, bytes], None] = OrderedDict()


_Key = tuple[bytes, bytes, str, str, bytes]


def _key(policy: KeyPolicy, request: SigningRequest, approval: Approval) -> _Key:
    return (policy.digest(), request.encode(), approval.approver, approval.decision.value, bytes(approval.signature))


class OwnApprovals:
    """Issue 14: the decisions one client (one identity) signed itself, which the answer to the
    decision lists again. One per :class:`~mpcnet.client.sdk.MpcClient`, never shared with other
    clients (in a real deployment they are other processes: each verifies the others' approvals);
    bounded (the newest :data:`MAX_REMEMBERED`); thread-safe."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._keys: OrderedDict[_Key, None] = OrderedDict()

    def remember(self, policy: KeyPolicy, request: SigningRequest, approval: Approval, public_key: bytes) -> bool:
        """Remember ``approval``, which this client just made (:func:`~governance.approval.sign_approval`
        over ``request`` with the private key whose raw public key is ``public_key``), as verified
        under ``policy`` when ``policy`` names exactly that key for its approver: the check would
        verify this client's own signature under its own key. Anything else (another key in the
        policy, an approver it does not name) is not remembered and gets the full check when the
        answer lists it. Returns whether it was remembered."""
        want = policy.approvers.get(approval.approver)
        if want is None or bytes(want) != bytes(public_key):
            return False
        key = _key(policy, request, approval)
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self._limit:
                self._keys.popitem(last=False)
        return True

    def holds(self, key: _Key) -> bool:
        with self._lock:
            return key in self._keys


def check_approval_once(policy: KeyPolicy, request: SigningRequest, approval: Approval, own: OwnApprovals | None = None) -> None:
    """:func:`check_approval` of ``approval`` over ``request`` under ``policy``, skipped when this
    process already verified the same one, or when it is one of ``own`` (the calling client's own
    decisions, :class:`OwnApprovals`); the key is computed here from the objects checked:
    ``policy.digest()`` and ``request.encode()``, about 2 us against 115 us for the Ed25519
    check. Raises :class:`~governance.errors.GovernanceError` as :func:`check_approval` does."""
    key = _key(policy, request, approval)
    if own is not None and own.holds(key):
        return
    with _lock:
        if key in _verified:
            _verified.move_to_end(key)
            return
    check_approval(policy, request, approval)
    with _lock:
        _verified[key] = None
        while len(_verified) > MAX_REMEMBERED:
            _verified.popitem(last=False)


def forget() -> None:
    """Drop every remembered success (tests)."""
    with _lock:
        _verified.clear()
