"""Issue 14 (coordinator CPU): :func:`coordinator.request_codec.decoded_request` is
``SigningRequest.from_bytes`` with a cache: the same request for the same bytes, other bytes
never mixed up, errors raised every time (never cached)."""

from __future__ import annotations

import hashlib

import pytest

from coordinator.request_codec import decoded_request
from governance.approval import SigningRequest
from governance.errors import GovernanceError


def _request(rid: str, description: str = "d") -> SigningRequest:
    return SigningRequest(
        rid, hashlib.sha256(b"key").digest(), hashlib.sha256(rid.encode()).digest(), (0, 7), "req-1", description,
        1_700_000_000_000, 1_700_000_600_000, 3, hashlib.sha256(b"policy").digest(),
    )


def test_the_decoded_request_is_what_from_bytes_gives() -> None:
    for rid in ("req-a", "req-b"):
        data = _request(rid).encode()
        first = decoded_request(data)
        assert first == SigningRequest.from_bytes(data) and first.encode() == data
        assert decoded_request(bytearray(data)) is first  # bytes-like, from the cache
    assert decoded_request(_request("req-a", "other").encode()).description == "other"


def test_bytes_that_do_not_decode_raise_every_time() -> None:
    bad = _request("req-c").encode()[:-5]  # truncated
    for _ in range(2):
        with pytest.raises(GovernanceError):
            decoded_request(bad)
