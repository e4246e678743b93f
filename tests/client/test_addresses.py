"""mpcnet.common.addresses against published vectors (issue 16).

Sources (data only):
* BIP86 (bitcoin/bips bip-0086.mediawiki, "Test vectors", account 0): internal key -> output key
  -> address, key path only.
* BIP350 (bitcoin/bips bip-0350.mediawiki, "Test vectors for v1+ segregated witness addresses"):
  the valid witness v1 32-byte addresses with their scriptPubKey, and invalid addresses.
* Solana: the SPL Token program id ``TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA`` (solana-program-
  library token/program/src/lib.rs ``declare_id!``) and its 32 bytes as used in public repos'
  fixtures (e.g. ``06ddf6e1...00a9``); likewise Token-2022 ``TokenzQd...``.
"""

from __future__ import annotations

import hashlib

import pytest
from coincurve import PrivateKey, PublicKeyXOnly
from hypothesis import given, settings, strategies as st

from mpcnet.common import addresses as a

from ..conftest import scaled

BIP86 = [  # (internal_key, output_key, address)
    ("cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115",
     "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c",
     "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"),
    ("83dfe85a3151d2517290da461fe2815591ef69f2b18a2ce63f01697a8b313145",
     "a82f29944d65b86ae6b5e5cc75e294ead6c59391a1edc5e016e3498c67fc7bbb",
     "bc1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0was9fqzwh"),
    ("399f1b2f4393f29a18c937859c5dd8a77350103157eb880f02e8c08214277cef",
     "882d74e5d0572d5a816cef0041a96b6c1de832f6f9676d9605c44d5e9a97d3dc",
     "bc1p3qkhfews2uk44qtvauqyr2ttdsw7svhkl9nkm9s9c3x4ax5h60wqwruhk7"),
]

BIP350_V1 = [  # (address, network, scriptPubKey)
    ("tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c", "testnet",
     "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", "mainnet",
     "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
]

BIP350_INVALID = [
    "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",  # invalid hrp
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # bech32 checksum for v1
    "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",  # bech32 checksum for v16
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",  # bech32m checksum for v0
    "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",  # invalid character
    "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",  # witness version 17
    "bc1pw5dgrnzv",  # program of 1 byte
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",  # 41 bytes
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",  # zero padding > 4 bits
    "bc1gmk9yu",  # empty data
    # valid bech32m, but not a Taproot output (v1 with a 40-byte program; v16; v2)
    "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
    "BC1SW50QGDZ25J",
    "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs",
]

SOLANA = [  # (32 bytes hex, address)
    ("06ddf6e1d765a193d9cbe146ceeb79ac1cb485ed5f5b37913a8cf5857eff00a9", "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"),
    ("06ddf6e1ee758fde18425dbce46ccddab61afc4d83b90d27febdf928d8a18bfc", "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"),
]


@pytest.mark.parametrize(("internal", "output", "address"), BIP86)
def test_bip86_vectors(internal: str, output: str, address: str) -> None:
    ik = bytes.fromhex(internal)
    assert a.taproot_output_key(ik).hex() == output
    assert a.taproot_address(ik) == address
    assert a.taproot_address(b"\x02" + ik) == address  # the 33-byte compressed form, even y: the same key
    assert a.taproot_address(b"\x03" + ik) == address  # odd y: x-only keys ignore the parity (lift_x)
    assert a.p2tr_output_key(address).hex() == output
    assert a.taproot_address(ik, network="testnet").startswith("tb1p")


@pytest.mark.parametrize(("address", "network", "spk"), BIP350_V1)
def test_bip350_valid_v1(address: str, network: str, spk: str) -> None:
    program = a.p2tr_output_key(address, network)
    assert "5120" + program.hex() == spk
    if _is_xonly(program):
        assert a.p2tr_address(program, network) == address.lower()
    other = "testnet" if network == "mainnet" else "mainnet"
    with pytest.raises(a.AddressError, match="^address: "):
        a.p2tr_output_key(address, other)


def _is_xonly(program: bytes) -> bool:
    try:
        PublicKeyXOnly(program)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("address", BIP350_INVALID)
def test_bip350_invalid(address: str) -> None:
    for network in a.NETWORKS:
        with pytest.raises(a.AddressError, match="^address: "):
            a.p2tr_output_key(address, network)


@pytest.mark.parametrize(("key", "address"), SOLANA)
def test_solana_known_pairs(key: str, address: str) -> None:
    assert a.solana_address(bytes.fromhex(key)) == address
    assert a.solana_public_key(address).hex() == key


def test_solana_refuses_bad_keys() -> None:
    for bad in (b"", b"\x00" * 31, b"\x00" * 33, "06" * 32):
        with pytest.raises(a.AddressError, match="^public_key: must be 32 bytes"):
            a.solana_address(bad)  # type: ignore[arg-type]
    with pytest.raises(a.AddressError, match="^public_key: is not a valid Ed25519 point"):
        a.solana_address(b"\x00" * 32)  # a small-order point (the System Program's id, not a key)
    with pytest.raises(a.AddressError, match="^public_key: is not a valid Ed25519 point"):
        a.solana_address(b"\x01" + b"\x00" * 31)  # the identity
    for bad_text in ("", "0" * 43, "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DAx", "Tökenkeg" * 5, "11111111111111111111111111111111"):
        with pytest.raises(a.AddressError, match="^(address|public_key): "):
            a.solana_public_key(bad_text)


def test_taproot_refuses_bad_input() -> None:
    ik = bytes.fromhex(BIP86[0][0])
    with pytest.raises(a.AddressError, match="^public_key: must be 33 or 32 bytes"):
        a.taproot_output_key(ik[:31])
    with pytest.raises(a.AddressError, match="^public_key: is not a point"):
        a.taproot_output_key(b"\x02" + b"\xff" * 32)
    with pytest.raises(a.AddressError, match="^public_key: is not a point"):
        a.taproot_output_key(b"\x04" + ik)
    with pytest.raises(a.AddressError, match="^taproot_root: must be 0 or 32 bytes"):
        a.taproot_output_key(ik, b"\x00" * 31)
    with pytest.raises(a.AddressError, match="^network: must be one of mainnet, testnet"):
        a.taproot_address(ik, network="regtest")
    with pytest.raises(a.AddressError, match="^output_key: must be 32 bytes"):
        a.p2tr_address(b"\x02" + ik)


def _tagged(tag: str, data: bytes) -> bytes:
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + data).digest()


@settings(max_examples=scaled(20), deadline=None)
@given(secret=st.integers(1, 2**255), root=st.one_of(st.just(b""), st.binary(min_size=32, max_size=32)))
def test_output_key_signs_with_the_tweaked_secret(secret: int, root: bytes) -> None:
    """The output key is the one the tweaked secret signs for (BIP341 taproot_tweak_seckey): a
    BIP340 signature by the tweaked secret verifies under it (coincurve, libsecp256k1)."""
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    d = secret % n or 1
    pk = PrivateKey(d.to_bytes(32, "big")).public_key.format(compressed=True)
    if pk[0] == 3:
        d = n - d
    t = int.from_bytes(_tagged("TapTweak", pk[1:] + root), "big")
    tweaked = PrivateKey(((d + t) % n).to_bytes(32, "big"))
    q = a.taproot_output_key(pk, root)
    msg = hashlib.sha256(b"m" + root).digest()
    sig = tweaked.sign_schnorr(msg, b"\x00" * 32)
    assert PublicKeyXOnly(q).verify(sig, msg)
    assert a.p2tr_output_key(a.p2tr_address(q, "testnet"), "testnet") == q


@settings(max_examples=scaled(20), deadline=None)
@given(secret=st.integers(1, 2**255), root=st.one_of(st.just(b""), st.binary(min_size=32, max_size=32)))
def test_output_key_is_the_frost_signing_key(secret: int, root: bytes) -> None:
    """The client's output key (coincurve) and the signers' (crypto_core.frost.signing.signing_key,
    piece A1) agree: the address shown is the key the FROST signatures verify under."""
    from crypto_core.frost.signing import signing_key

    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    pk = PrivateKey((secret % n or 1).to_bytes(32, "big")).public_key.format(compressed=True)
    assert a.taproot_output_key(pk, root) == signing_key("schnorr-secp256k1-bip340", pk, root)
    for internal, output, _ in BIP86:
        assert signing_key("schnorr-secp256k1-bip340", b"\x02" + bytes.fromhex(internal)).hex() == output
