"""Issue 14 (lean path): the public key a request's signature must verify under, remembered.

:meth:`mpcnet.client.sdk.MpcClient._signed_by_its_key` checks every signature the coordinator
reports against the request's key as :meth:`~mpcnet.client.sdk.MpcClient.get_key` reports it,
derived along the request's path (ECDSA, BIP32) or tweaked (BIP341/BIP86 for Taproot). A key's
scheme, public key and chain code never change after its DKG (refresh and reshare keep them), so
the derived key for one (key id, scheme, path, Taproot root) is computed once per client and
reused: the check stays, its ``GetKey`` call and BIP32 derivation per signature go. A coordinator
that lied at the first fetch is caught no later than before; one that answers a later fetch
differently no longer changes what an earlier answer was checked against (a pin, as for requests).
"""

from __future__ import annotations

import threading

from governance.approval import SigningRequest

MAX_SIGNING_KEYS = 1024
"""Entries kept; when full the cache starts again empty (a refetch costs one GetKey)."""

_Ref = tuple[bytes, str, tuple[int, ...], bytes]


class SigningKeyCache:
    """(key id, scheme, derivation path, Taproot root) of a request -> the compressed (33-byte
    SEC1) or x-only (32-byte) public key its signature must be by. Thread-safe."""

    def __init__(self, limit: int = MAX_SIGNING_KEYS) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._keys: dict[_Ref, bytes] = {}

    @staticmethod
    def _ref(q: SigningRequest) -> _Ref:
        return (q.key_id, q.scheme, tuple(q.derivation_path), q.taproot_root)

    def get(self, q: SigningRequest) -> bytes | None:
        """The remembered key for ``q``'s key, path and root, or None."""
        with self._lock:
            return self._keys.get(self._ref(q))

    def put(self, q: SigningRequest, public_key: bytes) -> None:
        """Remember ``public_key`` (already checked against :meth:`get_key`'s answer) for ``q``."""
        with self._lock:
            if len(self._keys) >= self._limit:
                self._keys.clear()
            self._keys[self._ref(q)] = public_key


__all__ = ["MAX_SIGNING_KEYS", "SigningKeyCache"]
