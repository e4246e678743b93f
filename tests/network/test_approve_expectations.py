"""An approver pins what it approves: a compromised coordinator that serves, under the request
id the approver looked at, a request for the same digest with another key or derivation path
(the same transaction hash signed from another account) gets nothing signed."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.approval import SigningRequest
from mpcnet.client import MpcClient, MpcError, SignRequest

DIGEST, KEY = bytes(range(32)), bytes(range(32, 64))


def _client(path: tuple[int, ...], key: bytes, calls: list[Any], created_in_s: float = 0.0, ttl_s: float = 60.0) -> MpcClient:
    now = time.time_ns() // 1_000_000 + int(created_in_s * 1000)
    req = SigningRequest("r-1", key, DIGEST, path, "requester1", "pay invoice 42", now, now + int(ttl_s * 1000), 1, bytes(32))
    sr = SignRequest("r-1", "pending_approval", req, req.encode(), (), 2, 3, None, "", "", 0, now)
    c = object.__new__(MpcClient)
    me = SimpleNamespace(name="approver1", signing_key=Ed25519PrivateKey.generate())
    c._me = lambda: me  # type: ignore[method-assign]
    c.get_sign_request = lambda rid: sr  # type: ignore[method-assign]
    c._call = lambda *a, **kw: calls.append(a)  # type: ignore[method-assign]
    return c


@pytest.mark.parametrize(
    "served_path, served_key, what",
    [((0, 2), KEY, "derivation_path: request r-1 is for derivation_path m/0/2, not the expected m/0/1"),
     ((0, 1), bytes(range(64, 96)), "key_id: request r-1 is for key_id")],
    ids=["another-path", "another-key"],
)
def test_approve_signs_nothing_for_another_key_or_path(served_path, served_key, what) -> None:
    calls: list[Any] = []
    c = _client(served_path, served_key, calls)
    with pytest.raises(MpcError) as e:
        c.approve("r-1", expect_digest=DIGEST, expect_key=KEY, expect_path="m/0/1")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and what in e.value.message, e.value.message
    assert "nothing was signed" in e.value.message and calls == []


@pytest.mark.parametrize(
    "created_in_s, ttl_s, what",
    [(3600.0, 60.0, "created_at_ms: request r-1 claims to be created 3600 s in the future"),
     (-120.0, 60.0, "expires_at_ms: request r-1 already expired")],
)
def test_approve_signs_nothing_dated_in_the_future_or_expired(created_in_s, ttl_s, what) -> None:
    """Approvals for a request dated far ahead would stay usable long after the approver looked."""
    calls: list[Any] = []
    c = _client((0, 1), KEY, calls, created_in_s, ttl_s)
    with pytest.raises(MpcError) as e:
        c.approve("r-1")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and what in e.value.message, e.value.message
    assert "nothing was signed" in e.value.message and calls == []
