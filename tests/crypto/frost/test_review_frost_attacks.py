"""Review (issue 16, RA): attacks on FROST signing that held (regression tests, no fix needed).

* Ed25519 malleability: ``S + k·L``, a torsion point added to ``R`` or to the key, a small-order
  ``R``: refused by our verifier (libsodium), by OpenSSL (``cryptography``), and a torsioned key
  never decodes (RFC 8032 strict, cofactorless, prime-order subgroup only).
* BIP340 malleability: ``s + n``, ``n - s``, ``r + p``, ``r`` not on the curve: refused by
  libsecp256k1, by our :func:`bip340_verify` and by :func:`verify_signature`.
* A signer that copies another signer's commitment (or its negation) is named; the honest
  signer's share still verifies.
* Nonces are load-bearing one-time state: three shares of one nonce pair under three packages
  give the secret share (so the node must consume a nonce durably before its share leaves, as
  the contract says), while the same package signed twice gives the same share (a replay of the
  stored share reveals nothing new).
"""

from __future__ import annotations

import dataclasses

import pytest
from coincurve import PublicKeyXOnly
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl import bindings as sodium

from crypto_core.errors import DecodeError, ShareInvalid
from crypto_core.frost.ciphersuite import SCHEME_BIP340, SCHEME_ED25519, suite_for_signing
from crypto_core.frost.group import ED25519_ORDER
from crypto_core.frost.signing import (
    SigningCommitment,
    SigningPackage,
    aggregate,
    bip340_verify,
    compute_binding_factors,
    derive_interpolating_value,
    sign_share,
    signing_key,
    verify_share,
    verify_signature,
)
from crypto_core.group import P as FIELD_P, Q as SECP_Q

from .dealer import deal, round_one, run_signing

# a point of order 8 (RFC 8032 torsion; the libsodium small-order blocklist)
ORDER8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")


def _openssl_ok(pk: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


def test_ed25519_malleated_signatures_fail_under_libsodium_and_openssl() -> None:
    key = deal(SCHEME_ED25519, 2, 3, 31)
    msg = b"pay 1 SOL"
    _, _, sig = run_signing(key, [1, 3], msg)
    pk = key.public_key
    assert verify_signature(SCHEME_ED25519, pk, msg, sig) and _openssl_ok(pk, msg, sig)
    r, s = sig[:32], int.from_bytes(sig[32:], "little")
    forged = [r + (s + k * ED25519_ORDER).to_bytes(32, "little") for k in (1, 2, 3) if s + k * ED25519_ORDER < 2**256]
    forged.append(sodium.crypto_core_ed25519_add(r, ORDER8) + sig[32:])  # R + T: cofactored verifiers accept
    forged.append(ORDER8 + sig[32:])
    forged.append(b"\x01" + bytes(31) + sig[32:])  # R = identity
    for f in forged:
        assert not verify_signature(SCHEME_ED25519, pk, msg, f)
        assert not _openssl_ok(pk, msg, f)
    torsioned = sodium.crypto_core_ed25519_add(pk, ORDER8)
    with pytest.raises(DecodeError, match="public_key"):
        verify_signature(SCHEME_ED25519, torsioned, msg, sig)


def test_bip340_malleated_signatures_fail_everywhere() -> None:
    key = deal(SCHEME_BIP340, 2, 3, 32)
    msg = bytes(range(32))
    root = b"\x42" * 32
    _, _, sig = run_signing(key, [2, 3], msg, root)
    xonly = signing_key(SCHEME_BIP340, key.public_key, root)
    assert verify_signature(SCHEME_BIP340, key.public_key, msg, sig, root)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    forged = [sig[:32] + (SECP_Q - s).to_bytes(32, "big")]
    if s + SECP_Q < 2**256:
        forged.append(sig[:32] + (s + SECP_Q).to_bytes(32, "big"))
    if r + FIELD_P < 2**256:
        forged.append((r + FIELD_P).to_bytes(32, "big") + sig[32:])
    forged.append(bytes(32) + sig[32:])  # x = 0 is not on secp256k1
    for f in forged:
        assert not verify_signature(SCHEME_BIP340, key.public_key, msg, f, root)
        assert not bip340_verify(xonly, msg, f)
        assert not PublicKeyXOnly(xonly).verify(f, msg)
    # the internal key, the untweaked key and the BIP86 key are other keys: the signature binds the root
    assert not verify_signature(SCHEME_BIP340, key.public_key, msg, sig)
    assert not verify_signature(SCHEME_BIP340, key.public_key, msg, sig, b"\x43" * 32)
    assert not bip340_verify(key.public_key[1:], msg, sig)


@pytest.mark.parametrize("scheme", [SCHEME_ED25519, SCHEME_BIP340])
@pytest.mark.parametrize("negate", [False, True], ids=["copied", "negated"])
def test_a_signer_copying_another_commitment_is_named_not_its_victim(scheme: str, negate: bool) -> None:
    key = deal(scheme, 2, 3, 33)
    g = suite_for_signing(scheme).group
    nonces, comms = round_one(key, [1, 2])
    victim = comms[0]
    hid, bnd = victim.hiding, victim.binding
    if negate:
        hid, bnd = (g.encode(g.neg(g.decode(x))) for x in (hid, bnd))
    pkg = SigningPackage(scheme, b"m", (victim, SigningCommitment(2, hid, bnd)))
    honest = sign_share(key.shares[1], nonces[1], pkg)
    verify_share(key.public, pkg, 1, honest)
    # the copier knows neither its victim's nonces nor the group secret: any share it sends is named
    for guess in (honest, g.encode_scalar(0), g.encode_scalar(12345)):
        with pytest.raises(ShareInvalid) as e:
            aggregate(key.public, pkg, {1: honest, 2: guess})
        assert e.value.party == 2


def test_three_packages_on_one_nonce_pair_give_the_secret_share_one_replayed_package_does_not() -> None:
    """Why nonces are consumed before a share leaves: z = d + rho·e + lambda·c·s in three unknowns."""
    key = deal(SCHEME_ED25519, 2, 3, 34)
    suite = suite_for_signing(SCHEME_ED25519)
    g, q = suite.group, suite.group.order
    nonces, comms = round_one(key, [1, 2])
    pkgs = [SigningPackage(SCHEME_ED25519, m, comms) for m in (b"a", b"b", b"c")]
    assert sign_share(key.shares[1], nonces[1], pkgs[0]) == sign_share(key.shares[1], nonces[1], dataclasses.replace(pkgs[0]))
    rows = []
    pk = g.decode(key.public_key)
    lam = derive_interpolating_value(q, (1, 2), 1)
    for p in pkgs:
        z = g.decode_scalar(sign_share(key.shares[1], nonces[1], p))
        rhos = compute_binding_factors(suite, pk, p)
        r = g.sum(g.add(g.decode(c.hiding), g.mul(g.decode(c.binding), rhos[c.identifier])) for c in p.commitments)
        rows.append((rhos[1], lam * suite.challenge(r, pk, p.message) % q, z))
    # eliminate d: (rho_a - rho_b) e + (c_a - c_b) s = z_a - z_b, twice; solve the 2x2 system mod q
    (r0, c0, z0), (r1, c1, z1), (r2, c2, z2) = rows
    a11, a12, b1 = (r0 - r1) % q, (c0 - c1) % q, (z0 - z1) % q
    a21, a22, b2 = (r0 - r2) % q, (c0 - c2) % q, (z0 - z2) % q
    det = (a11 * a22 - a12 * a21) % q
    s = (a11 * b2 - a21 * b1) * pow(det, -1, q) % q
    assert s == key.shares[1].secret_share


def test_ed25519_commitments_with_torsion_or_small_order_never_enter_a_package() -> None:
    """A corrupted signer cannot smuggle a cofactor component into R (it would split libsodium and OpenSSL)."""
    key = deal(SCHEME_ED25519, 2, 3, 35)
    _, (c1, c2) = round_one(key, [1, 2])
    torsioned = sodium.crypto_core_ed25519_add(c2.hiding, ORDER8)
    p = 2**255 - 19
    noncanonical = [(p + y).to_bytes(32, "little") for y in range(19) if p + y < 2**255]
    for bad in (torsioned, ORDER8, bytes(32), b"\x01" + bytes(31), *noncanonical):
        for fld, changed in (("hiding", dataclasses.replace(c2, hiding=bad)), ("binding", dataclasses.replace(c2, binding=bad))):
            with pytest.raises(DecodeError, match=rf"commitments\[1\]\.{fld}"):
                SigningPackage(SCHEME_ED25519, b"m", (c1, changed))
