"""Hypothesis properties of FROST signing over random (t, n), signer sets and messages.

Every Ed25519 signature verifies under OpenSSL (``cryptography``) and libsodium (PyNaCl); every
BIP340 signature verifies under libsecp256k1 (coincurve ``PublicKeyXOnly``), btclib's pure-Python
BIP340 and our :func:`bip340_verify`, with and without a Taproot root, for group keys of either Y
parity. Fewer than t signers cannot produce a valid signature.
"""

from __future__ import annotations

import dataclasses

import pytest
from coincurve import PublicKeyXOnly
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from ecc.curves.curve import is_libsecp256k1_serving
from ecc.ecc import ssa
from hypothesis import given, settings, strategies as st
from nacl.signing import VerifyKey

from crypto_core.errors import ProtocolAbort, UsageError
from crypto_core.frost.ciphersuite import SCHEME_BIP340, SCHEME_ED25519, SCHEME_RFC_SECP256K1, suite_for_signing
from crypto_core.frost.signing import SigningPackage, aggregate, bip340_verify, sign_share, signing_key, verify_share, verify_signature

from ...conftest import scaled
from .dealer import deal, round_one, run_signing


@st.composite
def setups(draw: st.DrawFn, max_n: int = 7) -> tuple[int, int, list[int]]:
    n = draw(st.integers(2, max_n))
    t = draw(st.integers(2, n))
    k = draw(st.integers(t, n))
    signers = sorted(draw(st.lists(st.integers(1, n), min_size=k, max_size=k, unique=True)))
    return t, n, signers


@settings(max_examples=scaled(25), deadline=None)
@given(setup=setups(), seed=st.integers(0, 2**32), message=st.binary(max_size=200))
def test_ed25519_signatures_verify_under_openssl_and_libsodium(setup: tuple[int, int, list[int]], seed: int, message: bytes) -> None:
    t, n, signers = setup
    key = deal(SCHEME_ED25519, t, n, seed)
    _, _, sig = run_signing(key, signers, message, seed=seed.to_bytes(5, "big"))
    assert len(sig) == 64
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(sig, message)  # raises if invalid
    VerifyKey(key.public_key).verify(message, sig)
    assert verify_signature(SCHEME_ED25519, key.public_key, message, sig)
    assert signing_key(SCHEME_ED25519, key.public_key) == key.public_key


@settings(max_examples=scaled(25), deadline=None)
@given(
    setup=setups(),
    seed=st.integers(0, 2**32),
    message=st.binary(min_size=32, max_size=32),
    root=st.one_of(st.just(b""), st.binary(min_size=32, max_size=32)),
    odd=st.booleans(),
)
def test_bip340_signatures_verify_under_libsecp256k1_btclib_and_ours(
    setup: tuple[int, int, list[int]], seed: int, message: bytes, root: bytes, odd: bool
) -> None:
    t, n, signers = setup
    q = suite_for_signing(SCHEME_BIP340).group.order
    key = deal(SCHEME_BIP340, t, n, seed)
    if (key.public_key[0] == 3) != odd:  # the group key of the wanted Y parity: negate the secret
        key = deal(SCHEME_BIP340, t, n, seed, secret=q - key.secret)
    assert key.public_key[0] == (3 if odd else 2)
    _, _, sig = run_signing(key, signers, message, root, seed=seed.to_bytes(5, "big"))
    xq = signing_key(SCHEME_BIP340, key.public_key, root)
    assert len(sig) == 64 and len(xq) == 32
    assert PublicKeyXOnly(xq).verify(sig, message)
    assert not is_libsecp256k1_serving() and ssa.verify_(message, xq, sig)
    assert bip340_verify(xq, message, sig)
    assert verify_signature(SCHEME_BIP340, key.public_key, message, sig, root)
    # bound to the root: the signature does not verify under the key of another tweak
    other = b"" if root else bytes(32)
    assert not PublicKeyXOnly(signing_key(SCHEME_BIP340, key.public_key, other)).verify(sig, message)


@settings(max_examples=scaled(10), deadline=None)
@given(setup=setups(), seed=st.integers(0, 2**32), message=st.binary(max_size=64))
def test_plain_rfc_secp256k1_suite_signs(setup: tuple[int, int, list[int]], seed: int, message: bytes) -> None:
    t, n, signers = setup
    key = deal(SCHEME_RFC_SECP256K1, t, n, seed)
    _, _, sig = run_signing(key, signers, message)
    assert len(sig) == 65 and verify_signature(SCHEME_RFC_SECP256K1, key.public_key, message, sig)


@pytest.mark.parametrize("scheme", [SCHEME_ED25519, SCHEME_BIP340])
@settings(max_examples=scaled(15), deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**32))
def test_fewer_than_t_signers_cannot_sign(scheme: str, data: st.DataObject, seed: int) -> None:
    n = data.draw(st.integers(3, 7))
    t = data.draw(st.integers(3, n))
    signers = sorted(data.draw(st.lists(st.integers(1, n), min_size=t - 1, max_size=t - 1, unique=True)))
    message = data.draw(st.binary(min_size=32, max_size=32))
    key = deal(scheme, t, n, seed)
    nonces, comms = round_one(key, signers)
    pkg = SigningPackage(scheme, message, comms)
    # the honest API refuses outright
    with pytest.raises(UsageError, match=f"the key needs {t}"):
        sign_share(key.shares[signers[0]], nonces[signers[0]], pkg)
    # signers lying about the threshold: each share is consistent on its own, the sum is no signature
    liars = {i: dataclasses.replace(key.shares[i], threshold=t - 1) for i in signers}
    shares = {i: sign_share(liars[i], nonces[i], pkg) for i in signers}
    for i in signers:
        verify_share(liars[i], pkg, i, shares[i])
    with pytest.raises(ProtocolAbort) as e:
        aggregate(liars[signers[0]], pkg, shares)
    assert e.value.party is None and "does not verify" in e.value.reason
