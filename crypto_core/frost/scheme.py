"""The group each FROST key scheme's keys live in (scheme ids in :mod:`.ciphersuite`)."""

from __future__ import annotations

from .ciphersuite import FROST_SCHEMES, SCHEMES, ciphersuite_for
from .group import Group


def group_for(scheme: str) -> Group:
    """The group of a FROST scheme's keys (``ed25519``: edwards25519; ``schnorr-secp256k1-bip340``:
    secp256k1). Raises :class:`~crypto_core.errors.UsageError` naming ``scheme`` otherwise."""
    return ciphersuite_for(scheme).group


__all__ = ["FROST_SCHEMES", "SCHEMES", "group_for"]
