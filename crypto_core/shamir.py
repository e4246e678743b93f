"""Shamir sharing over Z_q, Feldman commitments and Lagrange coefficients.

Party ``i`` evaluates at ``x_i = i`` (1-based; notes section 1.1). A polynomial of degree
``t-1`` is a list of ``t`` coefficients, constant term first.
"""

from __future__ import annotations

from collections.abc import Sequence

from .group import INFINITY, Point, Q, inv
from .rng import Rng, random_scalar


def random_polynomial(t: int, rng: Rng, constant: int | None = None) -> list[int]:
    """``t`` coefficients, all non-zero (notes section 2, round 1 step 1)."""
    coeffs = [random_scalar(rng) for _ in range(t)]
    if constant is not None:
        coeffs[0] = constant % Q
    return coeffs


def evaluate(coeffs: Sequence[int], x: int) -> int:
    acc = 0
    for a in reversed(coeffs):
        acc = (acc * x + a) % Q
    return acc


def feldman_commit(coeffs: Sequence[int]) -> list[Point]:
    return [Point.base_mul(a) for a in coeffs]


def feldman_evaluate(commitments: Sequence[Point], x: int) -> Point:
    """``sum_k x^k * F[k]`` by Horner's rule; may be the identity (callers check)."""
    acc = INFINITY
    for c in reversed(commitments):
        acc = acc * x + c
    return acc


def lagrange_coefficient(i: int, subset: Sequence[int]) -> int:
    """``lam_i^S = prod_{j in S, j != i} x_j / (x_j - x_i)`` at zero."""
    if i not in subset:
        raise ValueError("index not in the subset")
    if len(set(subset)) != len(subset):
        raise ValueError("subset has duplicate indices")
    num, den = 1, 1
    for j in subset:
        if j == i:
            continue
        num = num * j % Q
        den = den * (j - i) % Q
    return num * inv(den) % Q


def interpolate_at_zero(shares: dict[int, int]) -> int:
    """Test helper: the secret from ``{index: share}``."""
    s = list(shares)
    return sum(lagrange_coefficient(i, s) * v for i, v in shares.items()) % Q


def interpolate_points_at_zero(points: dict[int, Point]) -> Point:
    s = list(points)
    acc = INFINITY
    for i, p in points.items():
        acc = acc + p * lagrange_coefficient(i, s)
    return acc
