"""The public, secret-free half of FROST signing (RFC 9591 sections 5.3-5.4): what a coordinator
needs to build a signing package from the signers' public commitments, check each signature share
against its signer's public share (identifiable abort), aggregate and verify. Nothing here takes a
secret share or a nonce; the coordinator imports FROST only through this module and
:mod:`crypto_core.frost.public` (tests/test_import_contract.py), as it imports ECDSA combining only
through :mod:`crypto_core.combiner`."""

from __future__ import annotations

from .ciphersuite import FROST_SCHEMES, ciphersuite_for
from .signing import SigningCommitment, SigningPackage, aggregate, signing_key, verify_share, verify_signature

__all__ = [
    "FROST_SCHEMES",
    "SigningCommitment",
    "SigningPackage",
    "aggregate",
    "ciphersuite_for",
    "signing_key",
    "verify_share",
    "verify_signature",
]
