"""Review (issue 16, RA): the FROST signing core's boundaries under attack.

Findings (each test failed before its fix in crypto_core/frost/):

* P2: a :class:`SigningNonces` (one-time secret state) could be ``copy``-ed, ``deepcopy``-ed and
  ``pickle``-d: a duplicate in memory signs twice, and a pickle is the nonces in plaintext. The
  presignature precedent (tests/crypto/test_review_presig_copy.py) refuses all three.
* P3: ``SigningNonces`` accepted any value at construction (0, negative, ``bool``, ``>= 2^256``):
  a record that ``to_bytes`` cannot write or ``from_bytes`` refuses to read back.
* P3: ``verify_signature`` / ``signing_key`` / ``bip340_verify`` passed their inputs through
  ``bytes()``, so an ``int`` message ``n`` was read as ``n`` zero bytes: ``verify_signature(...,
  message=0, ...)`` accepted a signature over the empty message.
* P4: error texts echoed caller text without bound (``ciphersuite_for``) or unescaped
  (``verify_share``'s identifier).
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from crypto_core.errors import UsageError
from crypto_core.frost.ciphersuite import SCHEME_BIP340, SCHEME_ED25519, SCHEME_RFC_SECP256K1, ciphersuite_for
from crypto_core.frost.signing import SigningNonces, bip340_verify, commit, signing_key, verify_share, verify_signature
from crypto_core.rng import DeterministicRng

from .dealer import deal, run_signing

ALL = [SCHEME_ED25519, SCHEME_BIP340, SCHEME_RFC_SECP256K1]
DUPLICATORS: list[Callable[[Any], object]] = [copy.copy, copy.deepcopy, pickle.dumps]


@pytest.mark.parametrize("dup", DUPLICATORS, ids=["copy", "deepcopy", "pickle"])
@pytest.mark.parametrize("scheme", ALL)
def test_signing_nonces_cannot_be_duplicated_or_pickled(scheme: str, dup: Callable[[Any], object]) -> None:
    key = deal(scheme, 2, 3, 21)
    nonces, _ = commit(scheme, key.shares[1].secret_share, DeterministicRng(b"dup"), identifier=1)
    before = nonces.to_bytes()
    with pytest.raises(UsageError, match="cannot be copied"):
        dup(nonces)
    assert nonces.to_bytes() == before  # the refusal changed nothing; the storage record still works
    assert SigningNonces.from_bytes(before, scheme).to_bytes() == before


@pytest.mark.parametrize("bad", [0, -1, 2**256, True, 1.5, "1", None])
def test_signing_nonces_refuse_values_no_record_can_hold(bad: object) -> None:
    for args in ((bad, 1), (1, bad)):
        with pytest.raises(UsageError, match="nonces"):
            SigningNonces(*args)
    assert SigningNonces(1, 2**256 - 1).to_bytes()  # the record bound (range per scheme: from_bytes)


@pytest.mark.parametrize("scheme", ALL)
def test_verify_signature_refuses_non_bytes_instead_of_reading_zero_bytes(scheme: str) -> None:
    key = deal(scheme, 2, 3, 22)
    _, _, sig = run_signing(key, [1, 2], b"")
    assert verify_signature(scheme, key.public_key, b"", sig)
    assert verify_signature(scheme, bytearray(key.public_key), memoryview(b""), bytearray(sig))  # type: ignore[arg-type]  # bytes-like is fine
    for message in (0, 32):
        with pytest.raises(TypeError, match="message"):
            verify_signature(scheme, key.public_key, message, sig)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="signature"):
        verify_signature(scheme, key.public_key, b"", 64)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="public_key"):
        verify_signature(scheme, 33, b"", sig)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="public_key"):
        signing_key(scheme, 33)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="message"):
        verify_signature(scheme, key.public_key, "", sig)  # type: ignore[arg-type]


def test_bip340_verify_refuses_non_bytes() -> None:
    key = deal(SCHEME_BIP340, 2, 3, 23)
    _, _, sig = run_signing(key, [1, 3], b"")
    xonly = signing_key(SCHEME_BIP340, key.public_key)
    assert bip340_verify(xonly, b"", sig)
    for args in ((xonly, 0, sig), (32, b"", sig), (xonly, b"", 64)):
        with pytest.raises(TypeError):
            bip340_verify(*args)


def test_errors_bound_and_escape_caller_text() -> None:
    with pytest.raises(UsageError) as e:
        ciphersuite_for("x" * 100_000 + "\x1b[2J")
    assert len(str(e.value)) < 200 and "\x1b" not in str(e.value)
    key = deal(SCHEME_ED25519, 2, 3, 24)
    pkg, shares, _ = run_signing(key, [1, 2], b"m")
    with pytest.raises(UsageError) as e:
        verify_share(key.public, pkg, "3\n\x1b[31mforged line", shares[1])  # type: ignore[arg-type]
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)
