"""The client API against a running 3-of-5 cluster of real processes."""

from __future__ import annotations

import hashlib

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from mpcnet.client import MpcClient, MpcError

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def verify_independently(public_key: bytes, der: bytes, digest: bytes) -> None:
    """OpenSSL (via cryptography), not our code: raises InvalidSignature on failure."""
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    pub.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_keygen_gives_an_active_key(client: MpcClient, key) -> None:
    assert key.status == "active"
    assert (key.threshold, key.parties) == (3, 5)
    assert len(key.key_id) == 32 and len(key.public_key) == 33
    assert client.get_key(key.key_id) == key
    assert key.key_id in [k.key_id for k in client.list_keys()]


def test_sign_and_verify_with_openssl(client: MpcClient, key) -> None:
    digest = hashlib.sha256(b"hello threshold world").digest()
    sig = client.sign(key.key_id, digest)
    assert sig.public_key == key.public_key
    assert len(sig.signers) == 3
    verify_independently(key.public_key, sig.der, digest)
    assert decode_dss_signature(sig.der) == (sig.r, sig.s)
    assert 0 < sig.s <= SECP256K1_ORDER // 2 and sig.recovery_id in (0, 1, 2, 3)  # low-s


def test_sign_with_derivation_path(client: MpcClient, key) -> None:
    digest = hashlib.sha256(b"derived").digest()
    sig = client.sign(key.key_id, digest, path="m/0/7")
    assert sig.public_key == key.derive("m/0/7") != key.public_key
    verify_independently(sig.public_key, sig.der, digest)


def test_request_status_is_recorded(client: MpcClient, key) -> None:
    digest = bytes(range(32))
    sig = client.sign(key.key_id, digest)
    info = client.get_request(sig.request_id)
    assert info.state == "succeeded" and info.kind == "sign"
    assert info.signature == sig


@pytest.mark.parametrize("n", [0, 31, 33])
def test_wrong_digest_length_is_invalid_argument(client: MpcClient, key, n: int) -> None:
    with pytest.raises(MpcError) as e:
        client.sign(key.key_id, b"\x01" * n)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message == f"digest: must be 32 bytes, got {n}"


def test_unknown_key_is_not_found(client: MpcClient) -> None:
    with pytest.raises(MpcError) as e:
        client.sign(b"\x42" * 32, b"\x00" * 32)
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert "key_id: unknown key 4242" in e.value.message
