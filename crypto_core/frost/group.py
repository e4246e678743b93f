"""Prime-order groups for FROST (RFC 9591 section 3.1): Ed25519 over libsodium, secp256k1 over coincurve.

A :class:`Group` fixes the scalar field (integers in ``[0, order)``) and the element encodings the
RFC names ``SerializeElement`` / ``DeserializeElement`` / ``SerializeScalar`` /
``DeserializeScalar``. Elements are opaque, immutable, hashable and ``==``-comparable; a group
only accepts its own elements (a foreign element raises :class:`TypeError`).

* :data:`ED25519` (RFC 9591 section 6.1): elements are 32-byte canonical RFC 8032 encodings of
  points of the prime-order subgroup; scalars are 32 bytes little-endian. Arithmetic goes through
  PyNaCl's :mod:`nacl.bindings` (libsodium ``crypto_core_ed25519_*`` and
  ``crypto_scalarmult_ed25519_*noclamp``). libsodium refuses the identity (and scalar 0) in its
  scalar multiplications, so the identity is handled here explicitly.
* :data:`SECP256K1` (RFC 9591 section 6.5): elements are :class:`crypto_core.group.Point`,
  encoded 33-byte SEC1 compressed; scalars are 32 bytes big-endian.

Decoding never reduces: a scalar ``>= order`` and a non-canonical element are refused with
:class:`crypto_core.errors.DecodeError` naming the field.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias

from nacl import bindings as _sodium
from nacl.exceptions import RuntimeError as _SodiumError

from ..errors import DecodeError
from ..group import INFINITY as _SECP_INFINITY, Point, Q as _SECP_Q, point_sum

Element: TypeAlias = Hashable
"""An opaque group element (a group only accepts its own kind)."""


class Group(ABC):
    """A prime-order group with its canonical encodings (RFC 9591 section 3.1)."""

    name: str
    order: int  # q, prime
    scalar_len: int  # Ns: 32
    element_len: int  # Ne: 32 (ed25519) or 33 (secp256k1)

    @abstractmethod
    def identity(self) -> Element:
        """The neutral element."""

    @abstractmethod
    def is_identity(self, p: Element) -> bool:
        """Whether ``p`` is the neutral element."""

    @abstractmethod
    def base_mul(self, k: int) -> Element:
        """``[k]B`` for the generator ``B``; ``k`` is reduced mod q (0 gives the identity)."""

    @abstractmethod
    def mul(self, p: Element, k: int) -> Element:
        """``[k]p``; ``k`` is reduced mod q."""

    @abstractmethod
    def add(self, p: Element, q: Element) -> Element:
        """``p + q``."""

    @abstractmethod
    def neg(self, p: Element) -> Element:
        """``-p``."""

    def sub(self, p: Element, q: Element) -> Element:
        """``p - q``."""
        return self.add(p, self.neg(q))

    def sum(self, points: Iterable[Element]) -> Element:
        """Sum of ``points`` (the identity for none)."""
        acc = self.identity()
        for p in points:
            acc = self.add(acc, p)
        return acc

    @abstractmethod
    def encode(self, p: Element) -> bytes:
        """SerializeElement: ``element_len`` bytes. Raises :class:`ValueError` for the identity."""

    @abstractmethod
    def decode(self, data: bytes, field: str = "element") -> Element:
        """DeserializeElement, strict.

        Raises :class:`DecodeError` (``field``) for a wrong length, a non-canonical encoding, a
        point not on the curve or outside the prime-order subgroup, or the identity.
        """

    @abstractmethod
    def encode_scalar(self, k: int) -> bytes:
        """SerializeScalar: ``scalar_len`` bytes. Raises :class:`ValueError` unless ``0 <= k < q``."""

    @abstractmethod
    def decode_scalar(self, data: bytes, field: str = "scalar", *, nonzero: bool = False) -> int:
        """DeserializeScalar, strict: exact length, value ``< q`` (never reduced), ``!= 0`` if ``nonzero``.

        Raises :class:`DecodeError` (``field``).
        """

    def _check_scalar_bytes(self, data: bytes, k: int, field: str, nonzero: bool) -> int:
        if k >= self.order:
            raise DecodeError(field, "scalar not below the group order (non-canonical)")
        if nonzero and k == 0:
            raise DecodeError(field, "scalar is zero")
        return k

    def __repr__(self) -> str:
        return f"Group({self.name})"


# --- Ed25519 ---------------------------------------------------------------------------------

ED25519_ORDER: Final = 2**252 + 27742317777372353535851937790883648493
_ED_IDENTITY_ENC: Final = b"\x01" + bytes(31)


@dataclass(frozen=True)
class Ed25519Element:
    """A point of the Ed25519 prime-order subgroup, held as its canonical 32-byte encoding."""

    enc: bytes

    def __repr__(self) -> str:
        return f"Ed25519Element({self.enc.hex()})"


_ED_IDENTITY: Final = Ed25519Element(_ED_IDENTITY_ENC)


class _Ed25519(Group):
    name = "ed25519"
    order = ED25519_ORDER
    scalar_len = 32
    element_len = 32

    @staticmethod
    def _el(p: Element) -> Ed25519Element:
        if not isinstance(p, Ed25519Element):
            raise TypeError("not an Ed25519 element")
        return p

    def identity(self) -> Element:
        return _ED_IDENTITY

    def is_identity(self, p: Element) -> bool:
        return self._el(p).enc == _ED_IDENTITY_ENC

    def base_mul(self, k: int) -> Element:
        k %= self.order
        if k == 0:
            return _ED_IDENTITY
        return Ed25519Element(_sodium.crypto_scalarmult_ed25519_base_noclamp(k.to_bytes(32, "little")))

    def mul(self, p: Element, k: int) -> Element:
        e = self._el(p)
        k %= self.order
        if k == 0 or e.enc == _ED_IDENTITY_ENC:
            return _ED_IDENTITY
        # p is in the prime-order subgroup and 0 < k < q, so [k]p is not the identity
        return Ed25519Element(_sodium.crypto_scalarmult_ed25519_noclamp(k.to_bytes(32, "little"), e.enc))

    def add(self, p: Element, q: Element) -> Element:
        a, b = self._el(p), self._el(q)
        if a.enc == _ED_IDENTITY_ENC:
            return b
        if b.enc == _ED_IDENTITY_ENC:
            return a
        return Ed25519Element(_sodium.crypto_core_ed25519_add(a.enc, b.enc))

    def neg(self, p: Element) -> Element:
        a = self._el(p)
        if a.enc == _ED_IDENTITY_ENC:
            return a
        return Ed25519Element(_sodium.crypto_core_ed25519_sub(_ED_IDENTITY_ENC, a.enc))

    def sub(self, p: Element, q: Element) -> Element:
        a, b = self._el(p), self._el(q)
        if b.enc == _ED_IDENTITY_ENC:
            return a
        return Ed25519Element(_sodium.crypto_core_ed25519_sub(a.enc, b.enc))

    def encode(self, p: Element) -> bytes:
        a = self._el(p)
        if a.enc == _ED_IDENTITY_ENC:
            raise ValueError("the identity element has no encoding (RFC 9591 SerializeElement)")
        return a.enc

    def decode(self, data: bytes, field: str = "element") -> Element:
        data = bytes(data)
        if len(data) != 32:
            raise DecodeError(field, f"expected 32 bytes, got {len(data)}")
        if data == _ED_IDENTITY_ENC:
            raise DecodeError(field, "identity element not allowed")
        # libsodium: canonical y, on the curve, not of small order, in the prime-order subgroup
        if not _sodium.crypto_core_ed25519_is_valid_point(data):
            raise DecodeError(field, "not a canonical point of the Ed25519 prime-order subgroup")
        # canonical sign bit too: libsodium's own re-encoding (p + p - p) must give back the input
        try:
            again = _sodium.crypto_core_ed25519_sub(_sodium.crypto_core_ed25519_add(data, data), data)
        except _SodiumError as exc:  # pragma: no cover - unreachable for a valid point
            raise DecodeError(field, "not a valid Ed25519 point") from exc
        if again != data:
            raise DecodeError(field, "non-canonical Ed25519 point encoding")
        return Ed25519Element(data)

    def encode_scalar(self, k: int) -> bytes:
        if not 0 <= k < self.order:
            raise ValueError("scalar out of range")
        return k.to_bytes(32, "little")

    def decode_scalar(self, data: bytes, field: str = "scalar", *, nonzero: bool = False) -> int:
        if len(data) != 32:
            raise DecodeError(field, f"expected 32 bytes, got {len(data)}")
        return self._check_scalar_bytes(data, int.from_bytes(data, "little"), field, nonzero)


# --- secp256k1 -------------------------------------------------------------------------------


class _Secp256k1(Group):
    name = "secp256k1"
    order = _SECP_Q
    scalar_len = 32
    element_len = 33

    @staticmethod
    def _pt(p: Element) -> Point:
        if not isinstance(p, Point):
            raise TypeError("not a secp256k1 element")
        return p

    def identity(self) -> Element:
        return _SECP_INFINITY

    def is_identity(self, p: Element) -> bool:
        return self._pt(p).is_infinity

    def base_mul(self, k: int) -> Element:
        return Point.base_mul(k)

    def mul(self, p: Element, k: int) -> Element:
        return self._pt(p) * k

    def add(self, p: Element, q: Element) -> Element:
        return self._pt(p) + self._pt(q)

    def neg(self, p: Element) -> Element:
        return -self._pt(p)

    def sum(self, points: Iterable[Element]) -> Element:
        return point_sum(self._pt(p) for p in points)

    def encode(self, p: Element) -> bytes:
        pt = self._pt(p)
        if pt.is_infinity:
            raise ValueError("the identity element has no encoding (RFC 9591 SerializeElement)")
        return pt.encode()

    def decode(self, data: bytes, field: str = "element") -> Element:
        return Point.decode(bytes(data), field)

    def encode_scalar(self, k: int) -> bytes:
        if not 0 <= k < self.order:
            raise ValueError("scalar out of range")
        return k.to_bytes(32, "big")

    def decode_scalar(self, data: bytes, field: str = "scalar", *, nonzero: bool = False) -> int:
        if len(data) != 32:
            raise DecodeError(field, f"expected 32 bytes, got {len(data)}")
        return self._check_scalar_bytes(data, int.from_bytes(data, "big"), field, nonzero)


ED25519: Final[Group] = _Ed25519()
SECP256K1: Final[Group] = _Secp256k1()

__all__ = ["ED25519", "ED25519_ORDER", "SECP256K1", "Ed25519Element", "Element", "Group"]
