"""Signature scheme ids and the group each FROST scheme's keys live in.

``ecdsa-secp256k1`` is the DKLs23 scheme (the empty string on the wire means it); the two FROST
schemes are ``ed25519`` (RFC 9591 FROST(Ed25519, SHA-512)) and ``schnorr-secp256k1-bip340``
(FROST(secp256k1, SHA-256) with the BIP340 variant).
"""

from __future__ import annotations

from ..errors import UsageError
from .group import ED25519, SECP256K1, Group

SCHEMES = ("ecdsa-secp256k1", "ed25519", "schnorr-secp256k1-bip340")
FROST_SCHEMES = ("ed25519", "schnorr-secp256k1-bip340")
_GROUPS: dict[str, Group] = {"ed25519": ED25519, "schnorr-secp256k1-bip340": SECP256K1}


def group_for(scheme: str) -> Group:
    """The group of a FROST scheme's keys; :class:`UsageError` naming ``scheme`` otherwise."""
    try:
        return _GROUPS[scheme]
    except (KeyError, TypeError):
        raise UsageError(f"scheme: not a FROST scheme (one of {', '.join(FROST_SCHEMES)})") from None


__all__ = ["FROST_SCHEMES", "SCHEMES", "group_for"]
