"""RFC 9591 Appendix E test vectors (FROST(Ed25519, SHA-512) E.1, FROST(secp256k1, SHA-256) E.5).

Stored beside the tests in ``vectors/`` (source: vectors/SOURCES.md). Reproduces exactly: the group
key and public shares from the dealt shares, the nonces from the given randomness, the
commitments, the binding-factor inputs and binding factors, the signature shares and the
signature; and verifies the signature (Ed25519 also under OpenSSL and PyNaCl).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.signing import VerifyKey

from crypto_core.frost.ciphersuite import SCHEME_ED25519, SCHEME_RFC_SECP256K1, suite_for_signing
from crypto_core.frost.signing import (
    SigningCommitment,
    SigningNonces,
    SigningPackage,
    aggregate,
    commitment_of,
    compute_binding_factors,
    encode_group_commitment_list,
    nonce_generate,
    sign_share,
    verify_share,
    verify_signature,
)

from .dealer import DealtShare

VECTORS = Path(__file__).parent / "vectors"
CASES = [("frost-ed25519-sha512.json", SCHEME_ED25519), ("frost-secp256k1-sha256.json", SCHEME_RFC_SECP256K1)]


def _load(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((VECTORS / name).read_text())


@pytest.mark.parametrize(("name", "scheme"), CASES)
def test_rfc9591_vector_reproduces_every_intermediate_value(name: str, scheme: str) -> None:
    v = _load(name)
    suite = suite_for_signing(scheme)
    g = suite.group
    inp = v["inputs"]
    msg = bytes.fromhex(inp["message"])
    n = int(v["config"]["MAX_PARTICIPANTS"])
    t = int(v["config"]["MIN_PARTICIPANTS"])

    # the group key and the shares: the dealt polynomial reproduces the given shares and key
    secret = g.decode_scalar(bytes.fromhex(inp["group_secret_key"]))
    coeffs = [secret] + [g.decode_scalar(bytes.fromhex(c)) for c in inp["share_polynomial_coefficients"]]
    shares = {}
    for p in inp["participant_shares"]:
        x = p["identifier"]
        s = g.decode_scalar(bytes.fromhex(p["participant_share"]))
        assert s == sum(c * x**k for k, c in enumerate(coeffs)) % g.order
        shares[x] = s
    pk = g.encode(g.base_mul(secret))
    assert pk.hex() == inp["group_public_key"]
    pubs = tuple(g.encode(g.base_mul(shares[i])) for i in range(1, n + 1))
    keys = {i: DealtShare(scheme, t, n, i, shares[i], pk, pubs) for i in range(1, n + 1)}

    # round one: nonces from the given randomness (hedged with the share), commitments
    nonces: dict[int, SigningNonces] = {}
    comms = []
    for o in v["round_one_outputs"]["outputs"]:
        i = o["identifier"]
        d = nonce_generate(suite, shares[i], bytes.fromhex(o["hiding_nonce_randomness"]))
        e = nonce_generate(suite, shares[i], bytes.fromhex(o["binding_nonce_randomness"]))
        assert g.encode_scalar(d).hex() == o["hiding_nonce"]
        assert g.encode_scalar(e).hex() == o["binding_nonce"]
        nonces[i] = SigningNonces(d, e)
        c = commitment_of(scheme, nonces[i], i)
        assert c.hiding.hex() == o["hiding_nonce_commitment"]
        assert c.binding.hex() == o["binding_nonce_commitment"]
        comms.append(c)
    assert [c.identifier for c in comms] == inp["participant_list"]
    package = SigningPackage(scheme, msg, tuple(comms))

    # binding factors and their inputs
    rho = compute_binding_factors(suite, g.decode(pk), package)
    prefix = pk + suite.H4(msg) + suite.H5(encode_group_commitment_list(suite, package.commitments))
    for o in v["round_one_outputs"]["outputs"]:
        i = o["identifier"]
        assert (prefix + g.encode_scalar(i)).hex() == o["binding_factor_input"]
        assert g.encode_scalar(rho[i]).hex() == o["binding_factor"]

    # round two: shares, each verifying against the signer's public share
    got = {i: sign_share(keys[i], nonces[i], package) for i in package.identifiers}
    for o in v["round_two_outputs"]["outputs"]:
        assert got[o["identifier"]].hex() == o["sig_share"]
        verify_share(keys[1], package, o["identifier"], got[o["identifier"]])

    # aggregate: the exact signature, which verifies
    sig = aggregate(keys[1], package, got)
    assert sig.hex() == v["final_output"]["sig"]
    assert verify_signature(scheme, pk, msg, sig)
    if scheme == SCHEME_ED25519:
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)  # OpenSSL; raises if invalid
        VerifyKey(pk).verify(msg, sig)  # libsodium


@pytest.mark.parametrize(("name", "scheme"), CASES)
def test_rfc9591_signature_rejected_when_any_byte_changes(name: str, scheme: str) -> None:
    v = _load(name)
    pk = bytes.fromhex(v["inputs"]["group_public_key"])
    msg = bytes.fromhex(v["inputs"]["message"])
    sig = bytes.fromhex(v["final_output"]["sig"])
    for pos in range(0, len(sig), 7):
        bad = bytearray(sig)
        bad[pos] ^= 0x01
        assert not verify_signature(scheme, pk, msg, bytes(bad))
    assert not verify_signature(scheme, pk, msg + b"!", sig)
    assert not verify_signature(scheme, pk, msg, sig[:-1])


def test_commitment_identifier_placeholder_is_refused_in_a_package() -> None:
    v = _load("frost-ed25519-sha512.json")
    o = v["round_one_outputs"]["outputs"]
    c0 = SigningCommitment(0, bytes.fromhex(o[0]["hiding_nonce_commitment"]), bytes.fromhex(o[0]["binding_nonce_commitment"]))
    c3 = SigningCommitment(3, bytes.fromhex(o[1]["hiding_nonce_commitment"]), bytes.fromhex(o[1]["binding_nonce_commitment"]))
    with pytest.raises(ValueError, match=r"commitments\[0\]\.identifier"):
        SigningPackage(SCHEME_ED25519, b"m", (c0, c3))
