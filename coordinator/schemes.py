"""A key's signature scheme on the coordinator (issue 16): what each scheme allows of a key and
of a signing request, checked where the request crosses into the coordinator.

Schemes (:data:`governance.approval.SCHEMES`): ``ecdsa-secp256k1`` (DKLs23; the empty string on
the wire), ``ed25519`` and ``schnorr-secp256k1-bip340`` (FROST, RFC 9591). Schnorr keys have no
BIP32 derivation, no chain code, no presignature pools and (for now) no refresh, reshare or
backup export.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import grpc
from nacl.bindings import crypto_core_ed25519_is_valid_point

from crypto_core.errors import DecodeError
from crypto_core.frost.public import FrostPublic, frost_key_id
from crypto_core.group import Point
from governance.approval import MAX_MESSAGE, SCHEME_BIP340, SCHEME_ECDSA, SCHEME_ED25519, SCHEMES
from mpcnet.common.rpc import RpcError, invalid

FROST_SCHEMES = (SCHEME_ED25519, SCHEME_BIP340)
DIGEST_LEN = 32
CHAIN_CODE_LEN = 32
# the group key's encoding by scheme: ed25519 32 bytes (RFC 8032), secp256k1 33 bytes (SEC1 compressed)
PUBLIC_KEY_LEN = {SCHEME_ECDSA: 33, SCHEME_ED25519: 32, SCHEME_BIP340: 33}


def scheme_of(wire: str, field: str = "scheme") -> str:
    """The scheme a request names (``""`` means ``ecdsa-secp256k1``); INVALID_ARGUMENT naming
    ``field`` for any other string."""
    scheme = wire or SCHEME_ECDSA
    if scheme not in SCHEMES:
        raise invalid(field, f"must be one of {', '.join(SCHEMES)}")
    return scheme


def is_frost(scheme: str) -> bool:
    """True for the FROST (Schnorr) schemes."""
    return scheme in FROST_SCHEMES


def check_dkg_key(scheme: str, got_scheme: str, public_key: bytes, chain_code: bytes) -> None:
    """What every node agreed on at the end of a DKG, checked against the scheme asked for:
    ``got_scheme`` (DkgResult.scheme, ``""`` = ecdsa) equal, ``public_key`` a valid group
    element of the scheme's length (not the identity; ed25519 in the prime-order subgroup),
    ``chain_code`` 32 bytes for ECDSA and empty for Schnorr keys. Raises DecodeError naming
    the ``dkg_result.<field>``."""
    if (got_scheme or SCHEME_ECDSA) != scheme:
        raise DecodeError("dkg_result.scheme", f"expected {scheme}, got {got_scheme[:40]!r}")
    want = PUBLIC_KEY_LEN[scheme]
    if len(public_key) != want:
        raise DecodeError("dkg_result.public_key", f"expected {want} bytes for a {scheme} key, got {len(public_key)}")
    if scheme == SCHEME_ED25519:
        # libsodium: canonical, on the curve, in the prime-order subgroup, not of small order
        if not crypto_core_ed25519_is_valid_point(public_key):
            raise DecodeError("dkg_result.public_key", "not a valid ed25519 group element")
    else:
        Point.decode(public_key, "dkg_result.public_key")
    chain = CHAIN_CODE_LEN if scheme == SCHEME_ECDSA else 0
    if len(chain_code) != chain:
        raise DecodeError("dkg_result.chain_code", f"expected {chain} bytes for a {scheme} key, got {len(chain_code)}")


def check_frost_result(
    scheme: str, key_id: bytes, threshold: int, parties: int, public_key: bytes, shares: tuple[bytes, ...],
) -> None:
    """A FROST key's DKG result beyond :func:`check_dkg_key`: ``key_id`` is the key's id
    (``crypto_core.frost.public.frost_key_id``) and, when given, the public shares are valid
    elements on one polynomial of degree t-1 whose value at 0 is the group key
    (``FrostPublic.validate``). DecodeError naming the ``dkg_result.<field>``."""
    if not hmac.compare_digest(key_id, frost_key_id(scheme, public_key)):
        raise DecodeError("dkg_result.key_id", "is not the id of this scheme and public key")
    if shares:
        try:
            FrostPublic(scheme, threshold, parties, public_key, shares).validate()
        except DecodeError as e:
            raise DecodeError(e.field.replace("frostpublic.", "dkg_result.", 1), e.reason) from None


def refuse_frost(scheme: str, key_id: bytes, what: str, field: str = "key_id") -> None:
    """FAILED_PRECONDITION naming ``field`` when a lifecycle operation ``what`` (refresh,
    reshare, backup export, ...) is asked of a Schnorr key, which does not support it yet."""
    if is_frost(scheme):
        raise RpcError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{field}: {what} is not yet supported for {scheme} keys (key {key_id.hex()[:16]})",
        )


@dataclass(frozen=True)
class Submission:
    """A sign request's scheme-dependent parts after :func:`check_submission`: the 32-byte
    ``digest`` approvers sign (ed25519: SHA-256 of ``message``), the ``message`` (ed25519 only,
    else empty) and the ``taproot_root`` (bip340 only: empty or 32 bytes)."""

    scheme: str
    digest: bytes
    message: bytes
    taproot_root: bytes


def _a(scheme: str) -> str:
    """``scheme`` with its article for messages ("an ed25519", "an ecdsa-secp256k1", "a schnorr-...")."""
    return f"{'an' if scheme[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {scheme}"


def check_submission(scheme: str, digest: bytes, message: bytes, root: bytes, path: tuple[int, ...]) -> Submission:
    """The per-scheme rules of SubmitSignRequest (contract, "Coordinator"); INVALID_ARGUMENT
    naming the field:

    * ecdsa-secp256k1: ``digest`` 32 bytes, ``message`` and ``taproot_merkle_root`` empty;
    * ed25519: ``message`` 1..MAX_MESSAGE bytes, ``digest`` empty or its SHA-256, no root;
    * schnorr-secp256k1-bip340: ``digest`` 32 bytes (the message signed), no message,
      ``taproot_merkle_root`` empty (BIP86) or 32 bytes;
    * Schnorr keys: ``derivation_path`` empty."""
    if scheme != SCHEME_ECDSA and path:
        raise invalid("derivation_path", f"{_a(scheme)} key has no derivation path: must be empty")
    if scheme != SCHEME_BIP340 and root:
        raise invalid("taproot_merkle_root", f"only for {SCHEME_BIP340} keys: must be empty for {_a(scheme)} key")
    if scheme == SCHEME_ED25519:
        if not 1 <= len(message) <= MAX_MESSAGE:
            raise invalid("message", f"an {scheme} key signs a message: 1 to {MAX_MESSAGE} bytes, got {len(message)}")
        h = hashlib.sha256(message).digest()
        if digest and not hmac.compare_digest(digest, h):
            raise invalid("digest", "must be empty or the SHA-256 of message")
        return Submission(scheme, h, bytes(message), b"")
    if message:
        raise invalid("message", f"only for {SCHEME_ED25519} keys: must be empty for {_a(scheme)} key (sign its digest)")
    if len(digest) != DIGEST_LEN:
        raise invalid("digest", f"must be {DIGEST_LEN} bytes, got {len(digest)}")
    if root and len(root) != DIGEST_LEN:
        raise invalid("taproot_merkle_root", f"must be empty or {DIGEST_LEN} bytes, got {len(root)}")
    return Submission(scheme, bytes(digest), b"", bytes(root))
