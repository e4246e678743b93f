"""Issue 14 (coordinator CPU per signature): a signing request's canonical bytes decoded once.

The coordinator stores each request as the canonical :class:`~governance.approval.SigningRequest`
encoding the approvers sign, and every view of it (:meth:`coordinator.requests.SignRequests.info`,
each answer to a submit, a decision or a watch) and every decision decoded those bytes again:
a strict decode, the field checks of construction and a re-encode to prove the bytes canonical.
:func:`decoded_request` keeps the last :data:`CACHED` results by their bytes. The result is a
frozen dataclass that is a pure function of the bytes, so a cached one is exactly what a fresh
decode returns; bytes that do not decode raise :class:`~governance.errors.GovernanceError` every
time (errors are never cached).
"""

from __future__ import annotations

import functools

from governance.approval import SigningRequest

CACHED = 2048
"""Requests whose decoding is kept (a few hundred bytes each; the newest win)."""


@functools.lru_cache(maxsize=CACHED)
def _decode(data: bytes) -> SigningRequest:
    return SigningRequest.from_bytes(data)


def decoded_request(data: bytes | bytearray | memoryview) -> SigningRequest:
    """:meth:`SigningRequest.from_bytes` of ``data`` (bytes-like), from the cache when these
    bytes were decoded recently. Thread-safe. Raises :class:`~governance.errors.GovernanceError`
    naming the field, as ``from_bytes``."""
    return _decode(bytes(data))


__all__ = ["CACHED", "decoded_request"]
