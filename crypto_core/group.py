"""secp256k1 scalars and points over coincurve, with an explicit point at infinity.

Scalars are plain ``int`` in ``[0, q)`` (fast in the hot loops of the OT extension); their
wire form is 32 bytes big-endian and decoding rejects values ``>= q`` instead of reducing.
Points wrap :class:`coincurve.PublicKey`, which cannot hold the identity, so :data:`INFINITY`
is a :class:`Point` with no key. A point's wire form is 33-byte SEC1 compressed; the identity
is 33 zero bytes and is refused wherever the protocol says "not infinity" (notes section 1.3).
"""

from __future__ import annotations

from collections.abc import Iterable

from coincurve import PublicKey

from .errors import DecodeError
from .hazmat import ec_raw
from .hazmat.ec_raw import RawPoint

P = 2**256 - 2**32 - 977
Q = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HALF_Q = (Q - 1) // 2
SCALAR_LEN = 32
POINT_LEN = 33
_INFINITY_BYTES = bytes(POINT_LEN)


def scalar_to_bytes(k: int) -> bytes:
    """32-byte big-endian encoding of a scalar in ``[0, q)``."""
    if not 0 <= k < Q:
        raise ValueError("scalar out of range")
    return k.to_bytes(SCALAR_LEN, "big")


def scalar_from_bytes(b: bytes, field: str = "scalar", *, nonzero: bool = False) -> int:
    """Strict decoding: exactly 32 bytes, value ``< q`` (and ``!= 0`` when ``nonzero``)."""
    if len(b) != SCALAR_LEN:
        raise DecodeError(field, f"expected {SCALAR_LEN} bytes, got {len(b)}")
    k = int.from_bytes(b, "big")
    if k >= Q:
        raise DecodeError(field, "scalar not below the group order (non-canonical)")
    if nonzero and k == 0:
        raise DecodeError(field, "scalar is zero")
    return k


def inv(k: int) -> int:
    """Inverse modulo q; ``k`` must be non-zero."""
    if k % Q == 0:
        raise ZeroDivisionError("inverse of zero scalar")
    return pow(k, -1, Q)


class Point:
    """A secp256k1 point, possibly the identity. Immutable."""

    __slots__ = ("_enc", "_raw")

    def __init__(self, raw: RawPoint | None, enc: bytes | None = None) -> None:
        self._raw = raw
        self._enc = enc

    # construction -------------------------------------------------------------------------
    @staticmethod
    def base_mul(k: int) -> Point:
        """``[k]G`` (constant-time fixed-base multiplication in libsecp256k1)."""
        k %= Q
        if k == 0:
            return INFINITY
        return Point(ec_raw.base_mul(k.to_bytes(32, "big")))

    @staticmethod
    def decode(b: bytes, field: str = "point", *, allow_infinity: bool = False) -> Point:
        """Strict decoding: 33 bytes, compressed SEC1, on the curve; identity only if allowed."""
        if len(b) != POINT_LEN:
            raise DecodeError(field, f"expected {POINT_LEN} bytes, got {len(b)}")
        b = bytes(b)
        if b == _INFINITY_BYTES:
            if allow_infinity:
                return INFINITY
            raise DecodeError(field, "point at infinity not allowed")
        if b[0] not in (2, 3):
            raise DecodeError(field, "not a compressed point encoding")
        raw = ec_raw.parse(b)
        if raw is None:
            raise DecodeError(field, "not a point on secp256k1")
        return Point(raw, b)

    @staticmethod
    def lift_x(x: bytes, odd: bool = False) -> Point | None:
        """The point with x-coordinate ``x`` (32 bytes) and the given parity, or ``None``."""
        enc = (b"\x03" if odd else b"\x02") + x
        if len(enc) != POINT_LEN:
            return None
        raw = ec_raw.parse(enc)  # rejects x >= p and x not on the curve
        return None if raw is None else Point(raw, enc)

    @staticmethod
    def from_public_key(pk: PublicKey) -> Point:
        return Point.decode(pk.format(compressed=True))

    # properties ----------------------------------------------------------------------------
    @property
    def is_infinity(self) -> bool:
        return self._raw is None

    @property
    def raw(self) -> RawPoint:
        if self._raw is None:
            raise ValueError("the point at infinity has no libsecp256k1 form")
        return self._raw

    def encode(self) -> bytes:
        enc = self._enc
        if enc is None:
            enc = ec_raw.serialize(self._raw)
            self._enc = enc
        return enc

    def encode_uncompressed(self) -> bytes:
        if self._raw is None:
            raise ValueError("the point at infinity has no uncompressed encoding")
        return ec_raw.serialize_uncompressed(self._raw)

    @property
    def x(self) -> int:
        if self._raw is None:
            raise ValueError("the point at infinity has no x-coordinate")
        return int.from_bytes(self.encode()[1:], "big")

    @property
    def y_is_odd(self) -> bool:
        if self._raw is None:
            raise ValueError("the point at infinity has no y-coordinate")
        return self.encode()[0] == 3

    @property
    def public_key(self) -> PublicKey:
        if self._raw is None:
            raise ValueError("the point at infinity is not a public key")
        return PublicKey(self.encode())

    # arithmetic ----------------------------------------------------------------------------
    def __add__(self, other: Point) -> Point:
        if self._raw is None:
            return other
        if other._raw is None:
            return self
        raw = ec_raw.add(self._raw, other._raw)
        return INFINITY if raw is None else Point(raw)

    def __neg__(self) -> Point:
        if self._raw is None:
            return self
        return Point(ec_raw.neg(self._raw))

    def __sub__(self, other: Point) -> Point:
        return self + (-other)

    def __mul__(self, k: int) -> Point:
        k %= Q
        if k == 0 or self._raw is None:
            return INFINITY
        return Point(ec_raw.mul(self._raw, k.to_bytes(32, "big")))

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Point):
            return NotImplemented
        return self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash(self.encode())

    def __repr__(self) -> str:
        return "Point(INFINITY)" if self._raw is None else f"Point({self.encode().hex()})"


INFINITY = Point(None, _INFINITY_BYTES)
G = Point.base_mul(1)


def point_sum(points: Iterable[Point]) -> Point:
    """Sum of points; the identity for an empty sum or when the sum cancels."""
    raws = [p._raw for p in points if p._raw is not None]
    if not raws:
        return INFINITY
    if len(raws) == 1:
        return Point(raws[0])
    raw = ec_raw.add_many(raws)
    return INFINITY if raw is None else Point(raw)
