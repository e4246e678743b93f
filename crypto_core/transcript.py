"""Domain-separated, versioned, length-prefixed hashing (notes section 1.3).

``H(tag; a_1..a_k)`` is SHA-256 over ``enc(tag) || enc(a_1) || ... || enc(a_k)`` with
``enc(b) = u64_be(len(b)) || b``; the framing is injective, so ``("ab", "c")`` and
``("a", "bc")`` never collide. ``hash_to_scalar`` reads 64 bytes of SHAKE-256 and reduces mod q
(bias about 2^-256). Callers bind the session id and the sender into ``parts`` themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from .group import POINT_LEN, Point, Q
from .tags import Tag


def frame(parts: Iterable[bytes]) -> bytes:
    return b"".join(len(p).to_bytes(8, "big") + p for p in parts)


def u8(x: int) -> bytes:
    return x.to_bytes(1, "big")


def u16(x: int) -> bytes:
    return x.to_bytes(2, "big")


def u32(x: int) -> bytes:
    return x.to_bytes(4, "big")


def u64(x: int) -> bytes:
    return x.to_bytes(8, "big")


def list_of(items: Sequence[bytes]) -> bytes:
    """A list as one part: ``u32 count || frame(items)``."""
    return u32(len(items)) + frame(items)


def points(ps: Sequence[Point]) -> bytes:
    return list_of([p.encode() for p in ps])


def hash32(tag: Tag, *parts: bytes) -> bytes:
    """SHA-256 of the framed tag and parts: commitments, ids, echoes."""
    return hashlib.sha256(frame((tag.bytes, *parts))).digest()


def hash64(tag: Tag, *parts: bytes) -> bytes:
    """64 bytes of SHAKE-256: where 2*lambda_c bits are wanted (RVOLE mu)."""
    return hashlib.shake_256(frame((tag.bytes, *parts))).digest(64)


def hash_to_scalar(tag: Tag, *parts: bytes) -> int:
    """Uniform-looking scalar: 64 bytes of SHAKE-256 reduced mod q."""
    return int.from_bytes(hashlib.shake_256(frame((tag.bytes, *parts))).digest(64), "big") % Q


def prg(tag: Tag, nbytes: int, *parts: bytes) -> bytes:
    """Expand a seed (one of ``parts``) into ``nbytes`` with SHAKE-256."""
    return hashlib.shake_256(frame((tag.bytes, *parts))).digest(nbytes)


def hash_to_curve(*parts: bytes) -> Point:
    """Try-and-increment onto secp256k1: the first valid ``x = H(parts, ctr)`` with even y.

    Inputs are public, so the variable number of attempts leaks nothing.
    """
    base = frame((Tag.HASH_TO_CURVE.bytes, *parts))
    for ctr in range(1 << 16):
        x = hashlib.sha256(base + u32(ctr)).digest()
        pt = Point.lift_x(x)
        if pt is not None:
            return pt
    raise AssertionError("hash_to_curve: no point found")  # probability 2^-65536


assert POINT_LEN == 33
