"""Thin, allocation-light calls into libsecp256k1 through coincurve's cffi binding.

:class:`~crypto_core.group.Point` and the base-OT loops use these instead of
``coincurve.PublicKey`` methods, which re-parse and re-serialize on every operation. Points
here are ``secp256k1_pubkey*`` cdata (64-byte internal form); none is ever the identity.
Scalars are 32-byte big-endian strings in ``[1, q)``.
"""

from __future__ import annotations

from typing import Any

from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

_CTX = GLOBAL_CONTEXT.ctx
_COMPRESSED = lib.SECP256K1_EC_COMPRESSED
_UNCOMPRESSED = lib.SECP256K1_EC_UNCOMPRESSED

RawPoint = Any  # cdata 'secp256k1_pubkey *'


def parse(b: bytes) -> RawPoint | None:
    """A compressed or uncompressed SEC1 encoding, or ``None`` if invalid / off the curve."""
    pk = ffi.new("secp256k1_pubkey *")
    if lib.secp256k1_ec_pubkey_parse(_CTX, pk, b, len(b)):
        return pk
    return None


def serialize(pk: RawPoint) -> bytes:
    out = ffi.new("unsigned char[33]")
    ln = ffi.new("size_t *", 33)
    lib.secp256k1_ec_pubkey_serialize(_CTX, out, ln, pk, _COMPRESSED)
    return bytes(ffi.buffer(out, 33))


def serialize_uncompressed(pk: RawPoint) -> bytes:
    out = ffi.new("unsigned char[65]")
    ln = ffi.new("size_t *", 65)
    lib.secp256k1_ec_pubkey_serialize(_CTX, out, ln, pk, _UNCOMPRESSED)
    return bytes(ffi.buffer(out, 65))


def base_mul(k: bytes) -> RawPoint:
    """``[k]G`` for ``k`` in ``[1, q)`` (constant-time ecmult_gen)."""
    pk = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_create(_CTX, pk, k):
        raise ValueError("invalid scalar")
    return pk


def mul(p: RawPoint, k: bytes) -> RawPoint:
    """``k*P`` for ``k`` in ``[1, q)`` (never the identity for such k)."""
    out = ffi.new("secp256k1_pubkey *")
    ffi.memmove(out, p, 64)
    if not lib.secp256k1_ec_pubkey_tweak_mul(_CTX, out, k):
        raise ValueError("invalid scalar")
    return out


def add(a: RawPoint, b: RawPoint) -> RawPoint | None:
    """``a + b``, or ``None`` when the sum is the identity."""
    out = ffi.new("secp256k1_pubkey *")
    if lib.secp256k1_ec_pubkey_combine(_CTX, out, [a, b], 2):
        return out
    return None


def add_many(ps: list[RawPoint]) -> RawPoint | None:
    out = ffi.new("secp256k1_pubkey *")
    if lib.secp256k1_ec_pubkey_combine(_CTX, out, ps, len(ps)):
        return out
    return None


def neg(p: RawPoint) -> RawPoint:
    out = ffi.new("secp256k1_pubkey *")
    ffi.memmove(out, p, 64)
    lib.secp256k1_ec_pubkey_negate(_CTX, out)
    return out
