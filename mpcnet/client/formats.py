"""Wallet formats of secp256k1 public keys and ECDSA signatures, each input validated first.

Public keys (any function here that takes one):

- accepted as SEC1 bytes: 33 bytes compressed (prefix 02/03) or 65 bytes uncompressed (prefix
  04), on secp256k1; never the point at infinity, the empty string or the hybrid form (06/07,
  which libsecp256k1 would parse). Anything else is ``MpcError(INVALID_ARGUMENT, "FIELD: ...")``.
- written as: compressed (33 bytes), uncompressed (65 bytes), the EIP-55 Ethereum address,
  and SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``, what ``openssl dgst -verify``
  and every X.509 tool read).

Signatures ``(r, s, recovery_id)`` (1 <= r, s < q; recovery_id 0..3):

- ``compact``: ``r || s``, 64 bytes (each 32 bytes big-endian).
- ``ethereum``: ``r || s || v`` with ``v`` = 27 + recovery_id (no chain id; 65 bytes, what
  ``ecrecover``/``personal_sign`` tools take) or EIP-155 ``v = chain_id * 2 + 35 + recovery_id``.
  ``v`` is written big-endian in as few bytes as it needs (one byte, so 65 bytes in all, while
  v <= 255: every chain id up to 109, and 110 with recovery id 0; e.g. two bytes for chain id
  137, as eth-account does).
- ``chain_id``: a positive ``int`` at most :data:`MAX_CHAIN_ID` (EIP-2294's bound, so ``v`` fits
  in 64 bits), or None.
"""

from __future__ import annotations

import grpc
from coincurve import PublicKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crypto_core.group import HALF_Q, Q
from governance.text import quote
from mpcnet.client.errors import MpcError

COMPRESSED_LEN = 33
UNCOMPRESSED_LEN = 65
MAX_CHAIN_ID = (2**64 - 1) // 2 - 36
"""EIP-2294: the largest chain id whose EIP-155 ``v`` (``chain_id * 2 + 36``) fits in a uint64."""
ETHEREUM_V_BASE = 27


def _bad(field: str, reason: str) -> MpcError:
    return MpcError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {reason}")


def check_public_key(data: object, field: str = "public_key") -> PublicKey:
    """``data`` as a validated secp256k1 point (see the module docstring); else MpcError
    INVALID_ARGUMENT naming ``field``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _bad(field, f"must be bytes (a SEC1 public key), got {type(data).__name__}")
    b = bytes(data)
    if not ((len(b) == COMPRESSED_LEN and b[0] in (2, 3)) or (len(b) == UNCOMPRESSED_LEN and b[0] == 4)):
        raise _bad(
            field,
            f"must be a SEC1 public key: {COMPRESSED_LEN} bytes starting 02/03 or {UNCOMPRESSED_LEN} bytes "
            f"starting 04, got {len(b)} bytes {quote(b[:8])}",
        )
    try:
        return PublicKey(b)
    except ValueError:
        raise _bad(field, "not a point on secp256k1") from None


def compressed(public_key: bytes, field: str = "public_key") -> bytes:
    """The 33-byte compressed SEC1 form of a validated public key."""
    return check_public_key(public_key, field).format(compressed=True)


def uncompressed(public_key: bytes, field: str = "public_key") -> bytes:
    """The 65-byte uncompressed SEC1 form (``04 || x || y``) of a validated public key."""
    return check_public_key(public_key, field).format(compressed=False)


def ethereum_address(public_key: bytes, field: str = "public_key") -> str:
    """EIP-55 checksummed address (``0x`` + 40 hex digits) of a secp256k1 public key (33 or 65
    bytes SEC1, validated: MpcError INVALID_ARGUMENT naming ``field`` otherwise)."""
    from Crypto.Hash import keccak

    raw = uncompressed(public_key, field)
    addr = keccak.new(digest_bits=256, data=raw[1:]).digest()[-20:].hex()
    check = keccak.new(digest_bits=256, data=addr.encode()).hexdigest()
    return "0x" + "".join(c.upper() if int(check[i], 16) >= 8 else c for i, c in enumerate(addr))


def public_key_pem(public_key: bytes, field: str = "public_key") -> str:
    """SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``, several lines, ending in a
    newline; the point inside uncompressed, as OpenSSL writes it) of a validated public key."""
    raw = uncompressed(public_key, field)
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), raw)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def check_chain_id(chain_id: object, field: str = "chain_id") -> int | None:
    """``chain_id`` if it is None or an ``int`` (not a bool) in ``1..MAX_CHAIN_ID``; else MpcError
    INVALID_ARGUMENT."""
    if chain_id is None:
        return None
    if not isinstance(chain_id, int) or isinstance(chain_id, bool):
        raise _bad(field, f"must be a whole number (an EIP-155 chain id such as 1), got {type(chain_id).__name__}")
    if not 1 <= chain_id <= MAX_CHAIN_ID:
        raise _bad(field, f"must be 1..{MAX_CHAIN_ID}, got {chain_id}")
    return chain_id


def check_signature(r: object, s: object, recovery_id: object, field: str = "signature") -> tuple[int, int, int]:
    """``(r, s, recovery_id)`` if 1 <= r < q, 1 <= s <= (q-1)/2 (low-s, as every signature
    here is and Ethereum requires) and recovery_id in 0..3; else MpcError INVALID_ARGUMENT."""
    for name, v in (("r", r), ("s", s), ("recovery_id", recovery_id)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise _bad(f"{field}.{name}", f"must be an int, got {type(v).__name__}")
    assert isinstance(r, int) and isinstance(s, int) and isinstance(recovery_id, int)
    if not 1 <= r < Q:
        raise _bad(f"{field}.r", "must be in 1..q-1")
    if not 1 <= s <= HALF_Q:
        raise _bad(f"{field}.s", "must be in 1..(q-1)/2 (low-s)")
    if not 0 <= recovery_id <= 3:
        raise _bad(f"{field}.recovery_id", f"must be 0..3, got {recovery_id}")
    return r, s, recovery_id


def compact(r: int, s: int) -> bytes:
    """``r || s``: 64 bytes, each value 32 bytes big-endian."""
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def recoverable(r: int, s: int, recovery_id: int) -> bytes:
    """``r || s || recovery_id`` (65 bytes): the form libsecp256k1 (coincurve) recovers from."""
    return compact(r, s) + bytes([recovery_id])


def ethereum_v(recovery_id: int, chain_id: int | None = None) -> int:
    """27 + recovery_id without a chain id, else EIP-155 ``chain_id * 2 + 35 + recovery_id``.

    Only recovery ids 0 and 1 have an Ethereum ``v`` (ids 2 and 3, for an R whose x coordinate
    is at least the group order, probability about 2^-127, would make ``v`` ambiguous: id 2 on
    chain c is id 0 on chain c + 1); others raise MpcError INVALID_ARGUMENT naming
    ``recovery_id``."""
    if isinstance(recovery_id, bool) or recovery_id not in (0, 1):
        raise _bad("recovery_id", "an Ethereum signature needs recovery id 0 or 1")
    cid = check_chain_id(chain_id)
    return ETHEREUM_V_BASE + recovery_id if cid is None else cid * 2 + 35 + recovery_id


def ethereum_signature(r: int, s: int, recovery_id: int, chain_id: int | None = None) -> bytes:
    """``r || s || v`` (v from :func:`ethereum_v`, big-endian in as few bytes as it needs: 65
    bytes in all while v < 256)."""
    v = ethereum_v(recovery_id, chain_id)
    return compact(r, s) + v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big")


def recover_public_key(r: int, s: int, recovery_id: int, digest: bytes) -> bytes:
    """The compressed public key that signed the 32-byte ``digest`` with ``(r, s, recovery_id)``
    (raises MpcError INVALID_ARGUMENT if none does)."""
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise _bad("digest", "must be 32 bytes")
    try:
        pk = PublicKey.from_signature_and_message(recoverable(r, s, recovery_id), digest, hasher=None)
    except ValueError:
        raise _bad("signature", "no public key recovers from it") from None
    return pk.format(compressed=True)
