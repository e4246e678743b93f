"""Schnorr proof of knowledge of a discrete logarithm, made non-interactive by Fiat-Shamir.

``prove``: ``k <- [1,q-1]``, ``T = [k]``, ``c = Hq("schnorr"; ctx, G, X, T)``, ``z = k + c*x``.
``verify``: ``X, T`` not the identity, ``[z] == T + c*X``. The context must carry the session
id, the prover index and the purpose (Kudelski findings F-01..F-04 on kryptology's DKLs;
notes section 1.3).
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import Reader, Writer
from .group import G, Point, Q
from .rng import Rng, random_scalar
from .tags import Tag
from .transcript import hash_to_scalar

PROOF_LEN = 33 + 32


@dataclass(frozen=True)
class SchnorrProof:
    commitment: Point  # T
    response: int  # z

    def write(self, w: Writer) -> None:
        w.point(self.commitment).scalar(self.response)

    @staticmethod
    def read(r: Reader, field: str) -> SchnorrProof:
        return SchnorrProof(r.point(field + ".T"), r.scalar(field + ".z"))


def _challenge(ctx: bytes, statement: Point, commitment: Point) -> int:
    return hash_to_scalar(Tag.SCHNORR, ctx, G.encode(), statement.encode(), commitment.encode())


def prove(secret: int, statement: Point, ctx: bytes, rng: Rng) -> SchnorrProof:
    if not 0 < secret < Q:
        raise ValueError("the witness must be a non-zero scalar")
    k = random_scalar(rng)
    t = Point.base_mul(k)
    c = _challenge(ctx, statement, t)
    return SchnorrProof(t, (k + c * secret) % Q)


def verify(proof: SchnorrProof, statement: Point, ctx: bytes) -> bool:
    if statement.is_infinity or proof.commitment.is_infinity:
        return False
    if not 0 <= proof.response < Q:
        return False
    c = _challenge(ctx, statement, proof.commitment)
    return Point.base_mul(proof.response) == proof.commitment + statement * c
