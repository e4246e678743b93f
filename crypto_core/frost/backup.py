"""Backup splitting of a node's FROST key share among recovery officers, and its reconstruction
(issue 12 applied to issue 16's keys). Secret: this module handles shares and pieces.

The FROST counterpart of :mod:`crypto_core.backup` (unchanged, secp256k1-only): the same Shamir
m-of-k split with Feldman commitments, over the key's own group (:func:`group_for` of its scheme:
edwards25519 for ``ed25519``, secp256k1 for ``schnorr-secp256k1-bip340``). A node holding share
``s_i`` draws ``f`` of degree ``m-1`` with ``f(0) = s_i`` and uniform non-zero other coefficients;
officer ``j`` (1..k) gets ``f(j)``; the commitments ``[a_k]B`` are public, ``C_0 = S_i``. Any
``m-1`` pieces are uniform and independent of ``s_i``. Pieces travel as the group's RFC 9591
scalar encoding (Ed25519 32 bytes little-endian, secp256k1 32 bytes big-endian; section 6.1/6.5).

:func:`reconstruct` checks every piece against the commitments
(:func:`crypto_core.frost.feldman.piece_matches`), interpolates the first ``m`` good ones and
checks the result against ``C_0``; fewer than ``m`` good pieces raise :class:`RecoveryError`
naming the officers whose piece was bad. A FROST share has no pairwise material, so a rebuilt
share with its key's public part *is* a :class:`~crypto_core.frost.keyshare.FrostKeyShare` (see
:mod:`crypto_core.frost.reshare`'s docstring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import RecoveryError, UsageError
from ..rng import SYSTEM_RNG, Rng
from .feldman import MAX_PIECES, piece_matches
from .group import Element, Group
from .poly import evaluate, feldman_commit, lagrange_at, random_polynomial

OK = "ok"
BAD_PIECE = "bad-piece"


def split_share(
    group: Group, secret: int, m: int, k: int, rng: Rng = SYSTEM_RNG
) -> tuple[list[int], list[Element]]:
    """Split ``secret`` (a scalar in ``1..q-1`` of ``group``) m-of-k.

    Returns ``(pieces, commitments)``: ``pieces[j-1] = f(j)`` for officers ``j = 1..k`` and the
    ``m`` Feldman commitments ``[a_0 B, .., a_{m-1} B]`` (``a_0 = secret``). Raises
    :class:`UsageError` unless ``1 <= m <= k <= 255`` and the secret is a non-zero scalar (a
    FROST share is never zero: its public share would be the identity).
    """
    if not isinstance(group, Group):
        raise UsageError("split_share: group must be a FROST Group")
    if type(m) is not int or type(k) is not int or not 1 <= m <= k <= MAX_PIECES:
        raise UsageError(f"split_share: need 1 <= m <= k <= {MAX_PIECES}")
    if type(secret) is not int or not 0 < secret < group.order:
        raise UsageError("split_share: the secret is not a non-zero scalar below the group order")
    coeffs = [secret, *random_polynomial(group, m - 1, rng)]
    try:
        pieces = [evaluate(group, coeffs, j) for j in range(1, k + 1)]
        commitments = feldman_commit(group, coeffs)
    finally:
        coeffs.clear()
    return pieces, commitments


def reconstruct(
    group: Group, commitments: Sequence[Element], pieces: Mapping[int, int], m: int
) -> tuple[int, dict[int, str]]:
    """The share from officers' pieces ``{officer index: piece}``, checked against ``commitments``.

    Every piece is checked (outcome ``"ok"`` or ``"bad-piece"`` per officer index); with at least
    ``m`` good ones the first ``m`` (by officer index) are interpolated at 0 and the result checked
    against ``C_0``. Returns ``(secret, outcomes)``. Raises :class:`RecoveryError` naming the
    officers with a bad piece when fewer than ``m`` are good; :class:`UsageError` when ``m``, the
    number of commitments or an officer index is out of range, or a commitment is the identity.
    """
    if not isinstance(group, Group):
        raise UsageError("reconstruct: group must be a FROST Group")
    if type(m) is not int or not 1 <= m <= MAX_PIECES or len(commitments) != m:
        raise UsageError(f"reconstruct: need 1 <= m <= {MAX_PIECES} and exactly m commitments")
    if any(group.is_identity(c) for c in commitments):
        raise UsageError("reconstruct: a commitment is the identity")
    outcomes: dict[int, str] = {}
    for j in sorted(pieces):
        if type(j) is not int or not 1 <= j <= MAX_PIECES:
            raise UsageError(f"reconstruct: officer index out of 1..{MAX_PIECES}")
        outcomes[j] = OK if piece_matches(group, commitments, j, pieces[j]) else BAD_PIECE
    good = [j for j, o in outcomes.items() if o == OK]
    bad = tuple(j for j, o in outcomes.items() if o != OK)
    if len(good) < m:
        raise RecoveryError(bad, f"{len(good)} good pieces, {m} needed")
    chosen = good[:m]
    secret = sum(lagrange_at(group, j, chosen) * pieces[j] for j in chosen) % group.order
    if group.base_mul(secret) != commitments[0]:  # cannot happen when every chosen piece matched
        raise RecoveryError(bad, "the reconstructed share does not match the commitments")
    return secret, outcomes


__all__ = ["BAD_PIECE", "OK", "reconstruct", "split_share"]
