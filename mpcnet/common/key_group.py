"""The group a backed-up key lives in, by its scheme (issue 12's backups applied to issue 16's
keys). Secret-free: public checks and encodings only, so the coordinator and anyone holding a
bundle may use it (:mod:`mpcnet.common.bundle`).

A :class:`~governance.recovery.BackupKey` names its scheme: ``ecdsa-secp256k1`` keys keep the
issue-12 code paths exactly (:mod:`crypto_core.feldman`: 33-byte compressed points, the key id of
public key and chain code); FROST keys (``ed25519`` over edwards25519, ``schnorr-secp256k1-bip340``
over secp256k1) use their group from :func:`crypto_core.frost.scheme.group_for` (element and
scalar encodings of RFC 9591 sections 6.1 and 6.5), :func:`~crypto_core.frost.public.frost_key_id`
and :meth:`~crypto_core.frost.public.FrostPublic.validate` (public shares on one polynomial of
degree exactly t-1 through the key). A piece (:class:`~governance.recovery.BackupPiece` value) is
the group's 32-byte scalar encoding: big-endian for secp256k1, little-endian for Ed25519.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence

from crypto_core import feldman
from crypto_core.errors import DecodeError
from crypto_core.frost import feldman as frost_feldman
from crypto_core.frost.group import SECP256K1, Element, Group
from crypto_core.frost.public import FrostPublic
from crypto_core.frost.scheme import group_for
from governance.approval import SCHEME_ECDSA
from governance.recovery import BackupKey

_FROST_FIELD = re.compile(r"frostpublic\.(.+)")


def key_group(scheme: str) -> Group:
    """The group of a key of ``scheme`` (secp256k1 for ECDSA keys). DecodeError naming ``scheme``
    for an unknown one."""
    if scheme == SCHEME_ECDSA:
        return SECP256K1
    try:
        return group_for(scheme)
    except ValueError:
        raise DecodeError("scheme", "not a known key scheme") from None


def encode_scalar(scheme: str, value: int) -> bytes:
    """A scalar (share, piece) in the 32-byte encoding of the key's group; ValueError out of range."""
    return key_group(scheme).encode_scalar(value)


def decode_scalar(scheme: str, data: bytes, field: str = "value") -> int:
    """Strict inverse of :func:`encode_scalar` (exact length, below the order, never reduced);
    DecodeError naming ``field``."""
    return key_group(scheme).decode_scalar(bytes(data), field)


def public_share_of(scheme: str, secret: int) -> bytes:
    """The encoding of ``[secret]B`` (what the key record holds as a public share); ValueError for 0."""
    group = key_group(scheme)
    return group.encode(group.base_mul(secret))


def check_key_public(key: BackupKey) -> None:
    """The key record's group checks: the key id is its public key's (ECDSA: with the chain code;
    FROST: ``frost_key_id(scheme, public key)``), the public shares decode and lie on one
    polynomial of degree t-1 through the public key. DecodeError naming ``key_id``,
    ``public_key``, ``public_shares`` or ``public_shares[i]`` (0-based)."""
    if not key.is_frost:
        if not hmac.compare_digest(feldman.key_id_of(key.public_key, key.chain_code), key.key_id):
            raise DecodeError("key_id", "is not the id of the key's public key and chain code")
        feldman.check_public_shares(key.public_key, key.threshold, key.public_shares)
        return
    public = FrostPublic(key.scheme, key.threshold, len(key.committee), key.public_key, tuple(key.public_shares))
    try:
        public.validate()
    except DecodeError as e:
        m = _FROST_FIELD.fullmatch(e.field)
        raise DecodeError(m.group(1) if m else e.field, e.reason) from None
    if not hmac.compare_digest(public.key_id, key.key_id):
        raise DecodeError("key_id", f"is not the id of the {key.scheme} public key")


def check_commitments(key: BackupKey, commitments: Sequence[bytes], m: int, share_index: int) -> list[Element]:
    """Decode a part's ``m`` Feldman commitments in the key's group and check ``C_0`` is the public
    share at ``share_index`` (1-based). DecodeError naming ``commitments``, ``commitments[k]``."""
    if type(share_index) is not int or not 1 <= share_index <= len(key.public_shares):
        raise DecodeError("share_index", "outside the key's committee")
    public_share = key.public_shares[share_index - 1]
    if not key.is_frost:
        return list(feldman.check_commitments(commitments, m, public_share))
    return frost_feldman.check_commitments(key_group(key.scheme), commitments, m, public_share)


def piece_matches(scheme: str, commitments: Sequence[Element], officer_index: int, piece: int) -> bool:
    """Whether ``piece`` is officer ``officer_index``'s value of the polynomial committed to."""
    if scheme == SCHEME_ECDSA:
        return feldman.piece_matches(commitments, officer_index, piece)  # type: ignore[arg-type]
    return frost_feldman.piece_matches(key_group(scheme), commitments, officer_index, piece)


__all__ = [
    "check_commitments", "check_key_public", "decode_scalar", "encode_scalar", "key_group", "piece_matches",
    "public_share_of",
]
