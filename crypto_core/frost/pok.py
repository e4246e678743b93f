"""Schnorr proof of knowledge of a discrete logarithm in a FROST :class:`Group` (Fiat-Shamir).

``prove``: ``k`` random non-zero, ``T = k*G``, ``c = H(tag; ctx, group, G, X, T) mod q``,
``z = k + c*x``. ``verify``: ``X`` and ``T`` not the identity, ``z*G == T + c*X``. The hash is
SHAKE-256 (64 bytes reduced mod q) over the framed, versioned tag ``Tag.FROST_POK`` and parts;
``ctx`` must bind the session (``sid_dkg``), the prover and the purpose (the DKG's contexts do).
Wire form: ``encode(T) || encode_scalar(z)`` (``element_len + scalar_len`` bytes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..rng import Rng
from ..tags import Tag
from ..transcript import frame
from .group import Element, Group
from .poly import random_scalar


@dataclass(frozen=True)
class Proof:
    commitment: Element  # T, a group element
    response: int  # z

    def encode(self, group: Group) -> bytes:
        return group.encode(self.commitment) + group.encode_scalar(self.response)

    @staticmethod
    def decode(group: Group, data: bytes, field: str) -> Proof:
        """Strict: ``T`` a valid non-identity element, ``z`` a canonical scalar; DecodeError."""
        n = group.element_len
        return Proof(group.decode(data[:n], field + ".T"), group.decode_scalar(data[n:], field + ".z"))


def proof_len(group: Group) -> int:
    return group.element_len + group.scalar_len


def _challenge(group: Group, ctx: bytes, statement: Element, commitment: Element) -> int:
    parts = (Tag.FROST_POK.bytes, ctx, group.name.encode(), group.encode(group.base_mul(1)),
             group.encode(statement), group.encode(commitment))
    return int.from_bytes(hashlib.shake_256(frame(parts)).digest(64), "big") % group.order


def prove(group: Group, secret: int, statement: Element, ctx: bytes, rng: Rng) -> Proof:
    """Prove knowledge of ``secret`` with ``statement == secret*G``; ``secret`` non-zero."""
    if not 0 < secret < group.order:
        raise ValueError("the witness must be a non-zero scalar")
    k = random_scalar(group, rng)
    t = group.base_mul(k)
    c = _challenge(group, ctx, statement, t)
    return Proof(t, (k + c * secret) % group.order)


def verify(group: Group, proof: Proof, statement: Element, ctx: bytes) -> bool:
    """Whether ``proof`` proves knowledge of the discrete log of ``statement`` under ``ctx``."""
    if group.is_identity(statement) or group.is_identity(proof.commitment):
        return False
    if not 0 <= proof.response < group.order:
        return False
    c = _challenge(group, ctx, statement, proof.commitment)
    return group.base_mul(proof.response) == group.add(proof.commitment, group.mul(statement, c))


__all__ = ["Proof", "proof_len", "prove", "verify"]
