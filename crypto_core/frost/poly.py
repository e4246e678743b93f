"""Shamir sharing, Feldman commitments and Lagrange interpolation over any FROST :class:`Group`.

The group-generic counterpart of :mod:`crypto_core.shamir` (which stays secp256k1-only for the
DKLs23 code). Party ``i`` evaluates at ``x = i`` (1-based; RFC 9591 identifiers are the same
integers as scalars). A polynomial of degree ``t-1`` is ``t`` coefficients, constant term first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..rng import Rng
from .group import Element, Group


def random_scalar(group: Group, rng: Rng) -> int:
    """A uniform non-zero scalar: 64 random bytes reduced mod q (bias below 2^-250), 0 redrawn."""
    while True:
        k = int.from_bytes(rng.bytes(64), "big") % group.order
        if k:
            return k


def random_polynomial(group: Group, t: int, rng: Rng) -> list[int]:
    """``t`` non-zero coefficients (a secret polynomial of degree ``t-1``)."""
    return [random_scalar(group, rng) for _ in range(t)]


def evaluate(group: Group, coeffs: Sequence[int], x: int) -> int:
    """``f(x) mod q`` by Horner's rule."""
    acc = 0
    for a in reversed(coeffs):
        acc = (acc * x + a) % group.order
    return acc


def feldman_commit(group: Group, coeffs: Sequence[int]) -> list[Element]:
    """``[a_k * G]`` for every coefficient."""
    return [group.base_mul(a) for a in coeffs]


def feldman_evaluate(group: Group, commitments: Sequence[Element], x: int) -> Element:
    """``sum_k x^k * F[k]`` by Horner's rule; may be the identity (callers check)."""
    acc = group.identity()
    for c in reversed(commitments):
        acc = group.add(group.mul(acc, x), c)
    return acc


def lagrange_at(group: Group, i: int, xs: Sequence[int], x: int = 0) -> int:
    """``prod_{j in xs, j != i} (x - j) / (i - j)`` mod q. ``xs`` distinct, ``i`` in ``xs``;
    raises ``ValueError`` otherwise."""
    q = group.order
    if i not in xs or len(set(xs)) != len(xs):
        raise ValueError("lagrange_at: i must be one of a set of distinct indices")
    num, den = 1, 1
    for j in xs:
        if j != i:
            num = num * (x - j) % q
            den = den * (i - j) % q
    return num * pow(den, -1, q) % q


def interpolate_elements(group: Group, points: Mapping[int, Element], x: int = 0) -> Element:
    """The polynomial in the exponent through ``{index: element}``, evaluated at ``x``."""
    xs = list(points)
    acc = group.identity()
    for i, p in points.items():
        acc = group.add(acc, group.mul(p, lagrange_at(group, i, xs, x)))
    return acc


def interpolate_scalars(group: Group, shares: Mapping[int, int]) -> int:
    """Test helper: the secret ``f(0)`` from ``{index: share}``."""
    xs = list(shares)
    return sum(lagrange_at(group, i, xs) * v for i, v in shares.items()) % group.order


__all__ = [
    "evaluate", "feldman_commit", "feldman_evaluate", "interpolate_elements", "interpolate_scalars", "lagrange_at",
    "random_polynomial", "random_scalar",
]
