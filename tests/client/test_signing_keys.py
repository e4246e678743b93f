"""Issue 14 (lean path): the SDK checks every reported signature against its key (derived along
the request's path) but fetches the key once per client, not once per signature; the cache is
bounded and keyed by key, scheme, path and Taproot root."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from coincurve import PrivateKey

from governance.approval import SigningRequest
from mpcnet.client.sdk import MpcError
from mpcnet.client.signing_keys import SigningKeyCache
from mpcnet.wire.mpc.v1 import common_pb2
from tests.network.test_sdk_request_substitution import KEY, Stub, _done, client


def _request(rid: str, path: tuple[int, ...] = ()) -> SigningRequest:
    return SigningRequest(rid, KEY, b"\x02" * 32, path, "requester1", "x", 1, 2**62, 1, bytes(32))


def test_the_cache_is_keyed_by_path_and_bounded() -> None:
    c = SigningKeyCache(limit=2)
    c.put(_request("a"), b"\x02" * 33)
    assert c.get(_request("b")) == b"\x02" * 33  # another request of the same key and path
    assert c.get(_request("a", (1,))) is None  # another path: another key
    c.put(_request("a", (1,)), b"\x03" * 33)
    c.put(_request("a", (2,)), b"\x04" * 33)  # full: starts again
    assert c.get(_request("a")) is None and c.get(_request("a", (2,))) == b"\x04" * 33


@pytest.mark.parametrize("signer,ok", [(b"\x11" * 32, True), (b"\x22" * 32, False)])
def test_one_get_key_for_many_signatures_and_the_check_stays(signer: bytes, ok: bool) -> None:
    key_pk = PrivateKey(b"\x11" * 32).public_key.format(compressed=True)
    fetched = [0]

    class KStub(Stub):
        def GetKey(self, req: Any, timeout: float | None = None) -> common_pb2.KeyInfo:
            fetched[0] += 1
            return common_pb2.KeyInfo(key_id=KEY, public_key=key_pk, chain_code=bytes(32), threshold=2, parties=3)

    c, _ = client(_done(signer))
    c._stub = KStub(_done(signer))  # type: ignore[assignment]
    for _ in range(3):
        if ok:
            assert c.get_sign_request("r-1").signature is not None
        else:
            with pytest.raises(MpcError) as e:
                c.get_sign_request("r-1")
            assert e.value.code == grpc.StatusCode.DATA_LOSS and "signature.public_key" in e.value.message
    assert fetched[0] == 1
