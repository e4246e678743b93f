"""FROST threshold Schnorr (RFC 9591): Ed25519 and secp256k1 (BIP340 / Taproot), sans-IO.

* :mod:`.group`: the prime-order groups (:data:`ED25519` over libsodium, :data:`SECP256K1`).
* :mod:`.ciphersuite`: FROST(Ed25519, SHA-512), FROST(secp256k1, SHA-256) and the BIP340 variant.
* :mod:`.signing`: round one (:func:`commit`), round two (:func:`sign_share`), identifiable
  abort (:func:`verify_share`), :func:`aggregate`, :func:`verify_signature`, :func:`signing_key`.

Scheme ids: :data:`SCHEMES` (every key scheme of the network), :data:`FROST_SCHEMES` (the FROST ones).
"""

from __future__ import annotations

from .ciphersuite import (
    ED25519_SHA512,
    FROST_SCHEMES,
    SCHEME_BIP340,
    SCHEME_ECDSA,
    SCHEME_ED25519,
    SCHEMES,
    SECP256K1_BIP340,
    SECP256K1_SHA256,
    Ciphersuite,
    ciphersuite_for,
)
from .group import ED25519, SECP256K1, Element, Group
from .signing import (
    SigningCommitment,
    SigningNonces,
    SigningPackage,
    aggregate,
    bip340_verify,
    commit,
    sign_share,
    signing_key,
    verify_share,
    verify_signature,
)

__all__ = [
    "ED25519",
    "ED25519_SHA512",
    "FROST_SCHEMES",
    "SCHEMES",
    "SCHEME_BIP340",
    "SCHEME_ECDSA",
    "SCHEME_ED25519",
    "SECP256K1",
    "SECP256K1_BIP340",
    "SECP256K1_SHA256",
    "Ciphersuite",
    "Element",
    "Group",
    "SigningCommitment",
    "SigningNonces",
    "SigningPackage",
    "aggregate",
    "bip340_verify",
    "ciphersuite_for",
    "commit",
    "sign_share",
    "signing_key",
    "verify_share",
    "verify_signature",
]
