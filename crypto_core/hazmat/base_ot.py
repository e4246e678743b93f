"""Batched Endemic base OT (Masny-Rindal, ePrint 2019/706) with Diffie-Hellman key agreement.

Used once per ordered pair at key generation to seed the OT extension (notes section 3.1).
The extension *receiver* B is the base-OT *sender*; the extension *sender* A is the base-OT
*receiver* with random choice bits Delta. ``LAMBDA_C`` instances run in parallel.

1. A, for each k with choice c: fresh ``alpha``; ``r_{1-c}`` a fresh uniform point with unknown
   discrete log (random x-coordinate, rejection sampled); ``r_c = [alpha] - Hpt(c, k, r_{1-c})``.
2. B checks both points (valid, not identity); ``M_b = r_b + Hpt(b, k, r_{1-b})``; fresh
   ``beta``; sends ``B_k = [beta]``; keys ``K_{k,b} = Hk(k, beta*M_b)``. One ``B_k`` serves both
   branches, so the receiver's key cannot depend on its choice through B's message.
3. A: ``K_k = Hk(k, alpha*B_k) = K_{k,c}``.

Both of A's points are uniform whatever c is (real group operations, fresh CSPRNG scalars:
the lessons of "Devious Transfer", notes section 11.2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..errors import DecodeError, ProtocolAbort
from ..group import Point
from ..params import LAMBDA_C
from ..rng import Rng, random_bits, random_scalar
from ..tags import Tag
from ..transcript import frame
from . import ec_raw
from .ec_raw import RawPoint

# Base OTs per ordered pair (``count``): the key's lambda_c, one of params.SUPPORTED_LAMBDA, by default
# LAMBDA_C (public parameters, in crypto_core.params). Each base OT yields KEY_LEN-byte seeds.
KEY_LEN = 32


class _Hashers:
    """Per-session hash prefixes, so the inner loops only hash what changes."""

    def __init__(self, sid: bytes) -> None:
        self.h2c = hashlib.sha256(frame((Tag.HASH_TO_CURVE.bytes, sid)))
        self.key_prefix = hashlib.sha256(frame((Tag.BASE_OT_KEY.bytes, sid)))

    def hpt(self, b: int, k: int, p_enc: bytes, negate: bool = False) -> RawPoint:
        """``Hpt(b, k, P)`` (or its negation) as a raw point: try-and-increment, public input."""
        base = self.h2c.copy()
        base.update(_U64_1 + bytes((b,)) + _U64_2 + k.to_bytes(2, "big") + _U64_33 + p_enc)
        prefix = b"\x03" if negate else b"\x02"
        for ctr in range(1 << 16):
            h = base.copy()
            h.update(_U64_4 + ctr.to_bytes(4, "big"))
            raw = ec_raw.parse(prefix + h.digest())
            if raw is not None:
                return raw
        raise AssertionError("unreachable")  # probability 2^-65536

    def key(self, k: int, p: RawPoint) -> bytes:
        h = self.key_prefix.copy()
        h.update(_U64_2 + k.to_bytes(2, "big") + _U64_33 + ec_raw.serialize(p))
        return h.digest()


_U64_1 = (1).to_bytes(8, "big")
_U64_2 = (2).to_bytes(8, "big")
_U64_4 = (4).to_bytes(8, "big")
_U64_33 = (33).to_bytes(8, "big")


def _uniform_point(rng: Rng) -> tuple[RawPoint, bytes]:
    while True:
        raw = rng.bytes(33)
        enc = bytes((2 | (raw[0] & 1),)) + raw[1:]
        pt = ec_raw.parse(enc)
        if pt is not None:
            return pt, enc


def _scalar_bytes(rng: Rng) -> bytes:
    return random_scalar(rng).to_bytes(32, "big")


@dataclass(frozen=True)
class ReceiverState:
    """A's secret state between its message and B's reply."""

    choices: tuple[int, ...]
    alphas: tuple[bytes, ...]

    def __repr__(self) -> str:  # choice bits and scalars are secret
        return f"ReceiverState(count={len(self.alphas)}, <secret>)"


def receiver_message(sid: bytes, rng: Rng, count: int = LAMBDA_C) -> tuple[ReceiverState, list[Point]]:
    """Step 1 (A). Returns the state and ``2*count`` points ``r_{k,0}, r_{k,1}`` in order."""
    hs = _Hashers(sid)
    choices = random_bits(rng, count)
    alphas: list[bytes] = []
    out: list[Point] = []
    for k, c in enumerate(choices):
        while True:
            alpha = _scalar_bytes(rng)
            z, z_enc = _uniform_point(rng)
            rc = ec_raw.add(ec_raw.base_mul(alpha), hs.hpt(c, k, z_enc, negate=True))
            if rc is not None:
                break
        alphas.append(alpha)
        zp, rcp = Point(z, z_enc), Point(rc)
        out.extend((rcp, zp) if c == 0 else (zp, rcp))
    return ReceiverState(tuple(choices), tuple(alphas)), out


def sender_reply(
    sid: bytes, r: list[Point], rng: Rng, *, peer: int, count: int = LAMBDA_C
) -> tuple[list[tuple[bytes, bytes]], list[Point]]:
    """Step 2 (B). Returns the key pairs ``(K_{k,0}, K_{k,1})`` and the points ``B_k``."""
    if len(r) != 2 * count:
        raise ProtocolAbort(peer, f"base OT: expected {2 * count} points, got {len(r)}")
    hs = _Hashers(sid)
    keys: list[tuple[bytes, bytes]] = []
    reply: list[Point] = []
    for k in range(count):
        r0, r1 = r[2 * k], r[2 * k + 1]
        if r0.is_infinity or r1.is_infinity:
            raise ProtocolAbort(peer, f"base OT: point at infinity in instance {k}")
        m0 = ec_raw.add(r0.raw, hs.hpt(0, k, r1.encode()))
        m1 = ec_raw.add(r1.raw, hs.hpt(1, k, r0.encode()))
        if m0 is None or m1 is None:
            raise ProtocolAbort(peer, f"base OT: degenerate receiver points in instance {k}")
        beta = _scalar_bytes(rng)
        reply.append(Point(ec_raw.base_mul(beta)))
        keys.append((hs.key(k, ec_raw.mul(m0, beta)), hs.key(k, ec_raw.mul(m1, beta))))
    return keys, reply


def receiver_finish(sid: bytes, state: ReceiverState, reply: list[Point], *, peer: int) -> list[bytes]:
    """Step 3 (A). Returns ``K_{k, c_k}`` for every k."""
    if len(reply) != len(state.alphas):
        raise ProtocolAbort(peer, f"base OT: expected {len(state.alphas)} reply points, got {len(reply)}")
    hs = _Hashers(sid)
    out = []
    for k, (alpha, b) in enumerate(zip(state.alphas, reply, strict=True)):
        if b.is_infinity:
            raise ProtocolAbort(peer, f"base OT: reply point {k} is the identity")
        out.append(hs.key(k, ec_raw.mul(b.raw, alpha)))
    return out


def pack_bits(bits: tuple[int, ...] | list[int]) -> bytes:
    """Bit j at ``(b[j >> 3] >> (j & 7)) & 1`` (notes section 1.3)."""
    out = bytearray((len(bits) + 7) // 8)
    for j, bit in enumerate(bits):
        if bit:
            out[j >> 3] |= 1 << (j & 7)
    return bytes(out)


def unpack_bits(b: bytes, n: int) -> list[int]:
    if len(b) != (n + 7) // 8:
        raise DecodeError("bits", f"expected {(n + 7) // 8} bytes, got {len(b)}")
    return [(b[j >> 3] >> (j & 7)) & 1 for j in range(n)]
