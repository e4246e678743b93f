"""BIP340 verification vectors, BIP86 and BIP341 key-path tweaks (data in vectors/, sources in SOURCES.md).

Every row of bitcoin/bips ``bip-0340/test-vectors.csv`` goes through our specification-level
:func:`bip340_verify`, libsecp256k1 (coincurve ``PublicKeyXOnly``) and btclib's pure-Python
verifier, and all three agree with the expected result. :func:`signing_key` reproduces the
BIP86 output keys (no script tree) and the BIP341 wallet vectors' tweaked keys (with a root).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from coincurve import PublicKeyXOnly
from ecc.curves.curve import is_libsecp256k1_serving
from ecc.ecc import ssa

from crypto_core.errors import DecodeError, UsageError
from crypto_core.frost.ciphersuite import SCHEME_BIP340, SCHEME_ED25519
from crypto_core.frost.signing import bip340_verify, signing_key, taptweak

VECTORS = Path(__file__).parent / "vectors"
ROWS = list(csv.DictReader((VECTORS / "bip340-test-vectors.csv").read_text().splitlines()))


def _coincurve(pk: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        return bool(PublicKeyXOnly(pk).verify(sig, msg))
    except ValueError:  # a key that does not lift
        return False


def _btclib(pk: bytes, msg: bytes, sig: bytes) -> bool:
    assert not is_libsecp256k1_serving()  # the pure-Python arithmetic: independent of libsecp256k1
    try:
        return bool(ssa.verify_(msg, pk, sig))
    except Exception:  # btclib raises for structurally invalid keys/signatures
        return False


def test_the_csv_has_every_bip340_vector() -> None:
    assert [int(r["index"]) for r in ROWS] == list(range(19))


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"v{r['index']}")
def test_bip340_vector_through_our_verifier_libsecp256k1_and_btclib(row: dict[str, str]) -> None:
    pk = bytes.fromhex(row["public key"])
    msg = bytes.fromhex(row["message"])
    sig = bytes.fromhex(row["signature"])
    expected = row["verification result"] == "TRUE"
    assert bip340_verify(pk, msg, sig) is expected
    assert _coincurve(pk, msg, sig) is expected
    assert _btclib(pk, msg, sig) is expected


def test_bip340_verify_refuses_malformed_lengths() -> None:
    row = ROWS[1]
    pk, msg, sig = (bytes.fromhex(row[k]) for k in ("public key", "message", "signature"))
    assert bip340_verify(pk, msg, sig)
    assert not bip340_verify(pk[:-1], msg, sig)
    assert not bip340_verify(pk, msg, sig[:-1])
    assert not bip340_verify(pk, msg, sig + b"\x00")


@pytest.mark.parametrize("v", json.loads((VECTORS / "bip86.json").read_text())["vectors"], ids=lambda v: v["internal_key"][:8])
def test_bip86_output_key_from_the_internal_key(v: dict[str, str]) -> None:
    internal = bytes.fromhex(v["internal_key"])
    for parity in (b"\x02", b"\x03"):  # the group key is lifted to even Y first (BIP340 x-only keys)
        assert signing_key(SCHEME_BIP340, parity + internal).hex() == v["output_key"]


@pytest.mark.parametrize("v", json.loads((VECTORS / "bip341-key-tweak.json").read_text())["vectors"], ids=lambda v: v["internal_key"][:8])
def test_bip341_tweaked_key_with_and_without_a_script_root(v: dict[str, str]) -> None:
    internal = bytes.fromhex(v["internal_key"])
    root = bytes.fromhex(v["merkle_root"])
    assert signing_key(SCHEME_BIP340, b"\x02" + internal, root).hex() == v["output_key"]


def test_signing_key_validates_its_inputs() -> None:
    internal = bytes.fromhex(json.loads((VECTORS / "bip86.json").read_text())["vectors"][0]["internal_key"])
    with pytest.raises(UsageError, match="taproot_root"):
        signing_key(SCHEME_BIP340, b"\x02" + internal, bytes(31))
    with pytest.raises(UsageError, match="taproot_root"):
        signing_key(SCHEME_ED25519, bytes.fromhex("15d21ccd7ee42959562fc8aa63224c8851fb3ec85a3faf66040d380fb9738673"), bytes(32))
    with pytest.raises(DecodeError) as e:
        signing_key(SCHEME_BIP340, internal)  # x-only is not the group key encoding
    assert e.value.field == "public_key"
    with pytest.raises(UsageError, match="scheme"):
        signing_key("ecdsa-secp256k1", b"\x02" + internal)


def test_taptweak_is_the_bip341_tagged_hash() -> None:
    import hashlib

    x = bytes(range(32))
    tag = hashlib.sha256(b"TapTweak").digest()
    assert taptweak(x) == int.from_bytes(hashlib.sha256(tag + tag + x).digest(), "big")
    assert taptweak(x, b"\x11" * 32) == int.from_bytes(hashlib.sha256(tag + tag + x + b"\x11" * 32).digest(), "big")
