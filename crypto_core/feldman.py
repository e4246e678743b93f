"""Public Feldman checks for backups: commitments, pieces and public shares (issue 12).

Secret-free (the coordinator may import it, ``COORDINATOR_CRYPTO_ALLOWED``): every function reads
public points and, in :func:`piece_matches`, a scalar the caller already holds. It depends only on
:mod:`crypto_core.group`, :mod:`crypto_core.errors` and the hashing of :mod:`crypto_core.transcript`,
never on :mod:`crypto_core.shamir` or :mod:`crypto_core.keyshare` (which the coordinator must not
load).

A node's share ``x_i`` is split m-of-k with a polynomial ``f`` of degree ``m-1``, ``f(0) = x_i``;
officer ``j`` (1-based) holds the piece ``f(j)``. The Feldman commitments are
``C_k = a_k * G`` for the coefficients ``a_0..a_{m-1}``, so ``C_0 = x_i * G = S_i``, the node's
public share, and a piece is right iff ``f(j) * G == sum_k j^k * C_k``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import DecodeError
from .group import INFINITY, Point, Q, inv
from .tags import Tag
from .transcript import hash32

MAX_PIECES = 255
"""Largest ``k`` (officers) and ``m`` of a backup split (officer indices are 1..255)."""


def check_commitments(commitments: Sequence[bytes], m: int, public_share: bytes) -> list[Point]:
    """Decode ``m`` Feldman commitments (33-byte compressed points) and check ``C_0 == S_i``.

    ``public_share`` is the node's 33-byte public share ``S_i`` from the key's public record.
    Returns the ``m`` points. Raises :class:`DecodeError` with field ``commitments`` (wrong
    count), ``commitments[k]`` (not a point on the curve, or the identity) or ``commitments[0]``
    (not the public share).
    """
    if not 1 <= m <= MAX_PIECES:
        raise DecodeError("commitments", f"quorum m must be in 1..{MAX_PIECES}, got {m}")
    if len(commitments) != m:
        raise DecodeError("commitments", f"expected {m} commitments, got {len(commitments)}")
    points = [Point.decode(bytes(c), f"commitments[{k}]") for k, c in enumerate(commitments)]
    share = Point.decode(bytes(public_share), "public_share")
    if points[0] != share:
        raise DecodeError("commitments[0]", "does not open to the node's public share")
    return points


def evaluate_in_exponent(commitments: Sequence[Point], x: int) -> Point:
    """``sum_k x^k * C_k`` by Horner's rule (may be the identity)."""
    acc = INFINITY
    for c in reversed(commitments):
        acc = acc * x + c
    return acc


def piece_matches(commitments: Sequence[Point], officer_index: int, piece: int) -> bool:
    """Whether ``piece * G == sum_k officer_index^k * C_k``.

    ``officer_index`` is 1..255, ``piece`` a scalar; a piece outside ``0..q-1``, an index out of
    range or an empty commitment vector gives ``False`` (never an exception).
    """
    if type(piece) is not int or not 0 <= piece < Q:
        return False
    if type(officer_index) is not int or not 1 <= officer_index <= MAX_PIECES or not commitments:
        return False
    return Point.base_mul(piece) == evaluate_in_exponent(commitments, officer_index)


def lagrange_at_zero(i: int, subset: Sequence[int]) -> int:
    """``prod_{j in S, j != i} j / (j - i)`` mod q (distinct non-zero indices; ``i`` in ``S``)."""
    if i not in subset or len(set(subset)) != len(subset) or 0 in subset:
        raise ValueError("lagrange_at_zero: i must be in a set of distinct non-zero indices")
    num, den = 1, 1
    for j in subset:
        if j != i:
            num = num * j % Q
            den = den * (j - i) % Q
    return num * inv(den) % Q


def interpolate_in_exponent(points: dict[int, Point], x: int) -> Point:
    """The degree-``len(points)-1`` polynomial in the exponent through ``points``, at ``x``."""
    xs = list(points)
    acc = INFINITY
    for i, p in points.items():
        num, den = 1, 1
        for j in xs:
            if j != i:
                num = num * (x - j) % Q
                den = den * (i - j) % Q
        acc = acc + p * (num * inv(den) % Q)
    return acc


def key_id_of(public_key: bytes, chain_code: bytes) -> bytes:
    """The 32-byte key id of a key's public record (as ``crypto_core.keyshare.compute_key_id``):
    ``public_key`` a 33-byte compressed point, ``chain_code`` 32 bytes; DecodeError otherwise."""
    pk = Point.decode(bytes(public_key), "public_key")
    if len(chain_code) != 32:
        raise DecodeError("chain_code", f"expected 32 bytes, got {len(chain_code)}")
    return hash32(Tag.KEY_ID, pk.encode(), bytes(chain_code))


def check_public_shares(public_key: bytes, threshold: int, public_shares: Sequence[bytes]) -> None:
    """Check a key's public shares ``S_1..S_n`` against its public key.

    Every share must be a 33-byte compressed point on the curve (not the identity), and all of
    them must lie on one polynomial of degree ``threshold-1`` in the exponent whose value at 0
    is ``public_key``: the first ``threshold`` interpolate to the public key, and every later
    one is that polynomial's value at its index. Raises :class:`DecodeError` with field
    ``public_key``, ``threshold``, ``public_shares`` (count) or ``public_shares[i]`` (0-based,
    the first share at fault).
    """
    pk = Point.decode(bytes(public_key), "public_key")
    n = len(public_shares)
    if type(threshold) is not int or not 1 <= threshold <= n:
        raise DecodeError("threshold", f"need 1 <= threshold <= number of public shares ({n})")
    shares = [Point.decode(bytes(s), f"public_shares[{k}]") for k, s in enumerate(public_shares)]
    first = {m: shares[m - 1] for m in range(1, threshold + 1)}
    if interpolate_in_exponent(first, 0) != pk:
        raise DecodeError("public_shares", f"the first {threshold} do not interpolate to the public key")
    for m in range(threshold + 1, n + 1):
        if interpolate_in_exponent(first, m) != shares[m - 1]:
            raise DecodeError(f"public_shares[{m - 1}]", "not on the key's sharing polynomial")


__all__ = [
    "MAX_PIECES", "check_commitments", "check_public_shares", "evaluate_in_exponent", "interpolate_in_exponent",
    "key_id_of", "lagrange_at_zero", "piece_matches",
]
