"""Prime-order groups for FROST (RFC 9591 section 6): the contract's :class:`Group` interface.

PLACEHOLDER of piece A2 until piece A1's ``crypto_core/frost/group.py`` is merged (A1's file
replaces this one; only the contract's names are used elsewhere in A2's code).

* :data:`ED25519`: edwards25519, the prime-order subgroup of order ``L = 2^252 + ...``; elements
  are 32-byte RFC 8032 encodings, scalars 32 bytes little-endian. Arithmetic through PyNaCl's
  ``nacl.bindings`` (libsodium); the identity is handled here explicitly (libsodium refuses it).
* :data:`SECP256K1`: secp256k1 through :class:`crypto_core.group.Point` (coincurve); elements are
  33-byte SEC1 compressed, scalars 32 bytes big-endian.

Decoding is strict (RFC 9591 DeserializeElement / DeserializeScalar): wrong length, non-canonical,
off-curve, the identity, and for Ed25519 an element outside the prime-order subgroup are refused
with :class:`~crypto_core.errors.DecodeError` naming the field; a scalar ``>= q`` is refused, never
reduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nacl import bindings as _na

from ..errors import DecodeError
from ..group import Point, Q as _SECP_Q


class Group(Protocol):
    """A prime-order group with its encodings (RFC 9591 section 3.1)."""

    name: str
    order: int
    scalar_len: int
    element_len: int

    def base_mul(self, k: int) -> object: ...
    def mul(self, p: object, k: int) -> object: ...
    def add(self, p: object, q: object) -> object: ...
    def neg(self, p: object) -> object: ...
    def identity(self) -> object: ...
    def is_identity(self, p: object) -> bool: ...
    def encode(self, p: object) -> bytes: ...
    def decode(self, b: bytes, field: str) -> object: ...
    def encode_scalar(self, k: int) -> bytes: ...
    def decode_scalar(self, b: bytes, field: str, nonzero: bool = False) -> int: ...


_L = 2**252 + 27742317777372353535851937790883648493
_P25519 = 2**255 - 19
_ED_IDENTITY = b"\x01" + bytes(31)


@dataclass(frozen=True)
class EdElement:
    """An edwards25519 element by its canonical 32-byte encoding (identity: ``01 00..00``)."""

    enc: bytes


class Ed25519Group:
    name = "edwards25519"
    order = _L
    scalar_len = 32
    element_len = 32

    def identity(self) -> EdElement:
        return EdElement(_ED_IDENTITY)

    def is_identity(self, p: object) -> bool:
        return isinstance(p, EdElement) and p.enc == _ED_IDENTITY

    def base_mul(self, k: int) -> EdElement:
        k %= _L
        if k == 0:
            return self.identity()
        return EdElement(_na.crypto_scalarmult_ed25519_base_noclamp(k.to_bytes(32, "little")))

    def mul(self, p: object, k: int) -> EdElement:
        assert isinstance(p, EdElement)
        k %= _L
        if k == 0 or p.enc == _ED_IDENTITY:
            return self.identity()
        return EdElement(_na.crypto_scalarmult_ed25519_noclamp(k.to_bytes(32, "little"), p.enc))

    def add(self, p: object, q: object) -> EdElement:
        assert isinstance(p, EdElement) and isinstance(q, EdElement)
        if p.enc == _ED_IDENTITY:
            return q
        if q.enc == _ED_IDENTITY:
            return p
        return EdElement(_na.crypto_core_ed25519_add(p.enc, q.enc))

    def neg(self, p: object) -> EdElement:
        assert isinstance(p, EdElement)
        if p.enc == _ED_IDENTITY:
            return p
        return EdElement(_na.crypto_core_ed25519_sub(_ED_IDENTITY, p.enc))

    def encode(self, p: object) -> bytes:
        assert isinstance(p, EdElement)
        if p.enc == _ED_IDENTITY:
            raise ValueError("the identity element has no encoding (RFC 9591 SerializeElement)")
        return p.enc

    def decode(self, b: bytes, field: str) -> EdElement:
        b = bytes(b)
        if len(b) != 32:
            raise DecodeError(field, f"expected 32 bytes, got {len(b)}")
        if int.from_bytes(b, "little") & ((1 << 255) - 1) >= _P25519:
            raise DecodeError(field, "non-canonical element encoding (y >= p)")
        if b == _ED_IDENTITY:
            raise DecodeError(field, "the identity element is not allowed")
        if not _na.crypto_core_ed25519_is_valid_point(b):
            raise DecodeError(field, "not a point of the prime-order subgroup of edwards25519")
        return EdElement(b)

    def encode_scalar(self, k: int) -> bytes:
        if not 0 <= k < _L:
            raise ValueError("scalar out of range")
        return k.to_bytes(32, "little")

    def decode_scalar(self, b: bytes, field: str, nonzero: bool = False) -> int:
        if len(b) != 32:
            raise DecodeError(field, f"expected 32 bytes, got {len(b)}")
        k = int.from_bytes(b, "little")
        if k >= _L:
            raise DecodeError(field, "scalar not below the group order (non-canonical)")
        if nonzero and k == 0:
            raise DecodeError(field, "scalar is zero")
        return k


class Secp256k1Group:
    name = "secp256k1"
    order = _SECP_Q
    scalar_len = 32
    element_len = 33

    def identity(self) -> Point:
        return Point.base_mul(0)

    def is_identity(self, p: object) -> bool:
        assert isinstance(p, Point)
        return p.is_infinity

    def base_mul(self, k: int) -> Point:
        return Point.base_mul(k)

    def mul(self, p: object, k: int) -> Point:
        assert isinstance(p, Point)
        return p * k

    def add(self, p: object, q: object) -> Point:
        assert isinstance(p, Point) and isinstance(q, Point)
        return p + q

    def neg(self, p: object) -> Point:
        assert isinstance(p, Point)
        return -p

    def encode(self, p: object) -> bytes:
        assert isinstance(p, Point)
        if p.is_infinity:
            raise ValueError("the identity element has no encoding (RFC 9591 SerializeElement)")
        return p.encode()

    def decode(self, b: bytes, field: str) -> Point:
        return Point.decode(bytes(b), field)

    def encode_scalar(self, k: int) -> bytes:
        if not 0 <= k < _SECP_Q:
            raise ValueError("scalar out of range")
        return k.to_bytes(32, "big")

    def decode_scalar(self, b: bytes, field: str, nonzero: bool = False) -> int:
        if len(b) != 32:
            raise DecodeError(field, f"expected 32 bytes, got {len(b)}")
        k = int.from_bytes(b, "big")
        if k >= _SECP_Q:
            raise DecodeError(field, "scalar not below the group order (non-canonical)")
        if nonzero and k == 0:
            raise DecodeError(field, "scalar is zero")
        return k


ED25519: Group = Ed25519Group()
SECP256K1: Group = Secp256k1Group()
