"""Backup splitting of a node's key share among recovery officers, and its reconstruction
(issue 12, design section 1). Secret: this module handles shares and pieces.

A node holding share ``x_i`` of a key splits it m-of-k (:func:`split_share`): a random
polynomial ``f`` of degree ``m-1`` with ``f(0) = x_i``, officer ``j`` (1-based, ``1..k``) gets
the piece ``f(j)``, and the Feldman commitments ``C_k = a_k * G`` are public (``C_0 = S_i``, the
node's public share). :func:`reconstruct` checks every piece against the commitments
(:func:`crypto_core.feldman.piece_matches`), interpolates the first ``m`` good ones and checks the
result against ``C_0``; fewer than ``m`` good pieces raise :class:`RecoveryError` naming the
officers whose piece was bad. Any ``m-1`` pieces are uniformly distributed and independent of
``x_i`` (Shamir), so fewer than ``m`` officers learn nothing.

A share rebuilt from a backup is a :class:`RecoveredShare`: it has no pairwise (OT) material,
so it can never sign; it can only deal in a refresh or reshare (:mod:`crypto_core.reshare`)
that gives every party a fresh :class:`~crypto_core.keyshare.KeyShare`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .codec import Reader, Writer
from .errors import DecodeError, RecoveryError, UsageError
from .feldman import MAX_PIECES, lagrange_at_zero, piece_matches
from .group import Point, Q
from .keyshare import MAX_EPOCH, compute_key_id
from .params import MAX_LABEL, MAX_PARTIES
from .rng import SYSTEM_RNG, Rng
from .shamir import evaluate, feldman_commit, interpolate_points_at_zero, random_polynomial

MAGIC = b"MPCNET-RECOVERED-SHARE"
VERSION = 1

OK = "ok"
BAD_PIECE = "bad-piece"


def split_share(secret: int, m: int, k: int, rng: Rng = SYSTEM_RNG) -> tuple[list[int], list[Point]]:
    """Split ``secret`` (a scalar in ``0..q-1``) m-of-k.

    Returns ``(pieces, commitments)``: ``pieces[j-1] = f(j)`` for officers ``j = 1..k`` and the
    ``m`` Feldman commitments ``[a_0*G, .., a_{m-1}*G]`` (``a_0 = secret``; the other
    coefficients are uniform and non-zero). Raises :class:`UsageError` unless
    ``1 <= m <= k <= 255`` and the secret is in range.
    """
    if type(m) is not int or type(k) is not int or not 1 <= m <= k <= MAX_PIECES:
        raise UsageError(f"split_share: need 1 <= m <= k <= {MAX_PIECES}")
    if type(secret) is not int or not 0 <= secret < Q:
        raise UsageError("split_share: the secret is not a scalar below the group order")
    coeffs = random_polynomial(m, rng, constant=secret)
    pieces = [evaluate(coeffs, j) for j in range(1, k + 1)]
    commitments = feldman_commit(coeffs)
    coeffs.clear()
    return pieces, commitments


def reconstruct(commitments: Sequence[Point], pieces: Mapping[int, int], m: int) -> tuple[int, dict[int, str]]:
    """The share from officers' pieces ``{officer index: piece}``, checked against ``commitments``.

    Every piece is checked (outcome ``"ok"`` or ``"bad-piece"`` per officer index); with at least
    ``m`` good ones the first ``m`` (by officer index) are interpolated at 0 and the result is
    checked against ``C_0``. Returns ``(secret, outcomes)``. Raises :class:`RecoveryError` naming
    the officers with a bad piece when fewer than ``m`` are good, and :class:`UsageError` when
    ``m`` or ``len(commitments)`` or an officer index is out of range.
    """
    if type(m) is not int or not 1 <= m <= MAX_PIECES or len(commitments) != m:
        raise UsageError(f"reconstruct: need 1 <= m <= {MAX_PIECES} and exactly m commitments")
    if any(c.is_infinity for c in commitments):
        raise UsageError("reconstruct: a commitment is the identity")
    outcomes: dict[int, str] = {}
    for j in sorted(pieces):
        if type(j) is not int or not 1 <= j <= MAX_PIECES:
            raise UsageError(f"reconstruct: officer index out of 1..{MAX_PIECES}")
        outcomes[j] = OK if piece_matches(commitments, j, pieces[j]) else BAD_PIECE
    good = [j for j, o in outcomes.items() if o == OK]
    bad = tuple(j for j, o in outcomes.items() if o != OK)
    if len(good) < m:
        raise RecoveryError(bad, f"{len(good)} good pieces, {m} needed")
    chosen = good[:m]
    secret = sum(lagrange_at_zero(j, chosen) * pieces[j] for j in chosen) % Q
    if Point.base_mul(secret) != commitments[0]:  # cannot happen when every chosen piece matched
        raise RecoveryError(bad, "the reconstructed share does not match the commitments")
    return secret, outcomes


@dataclass(frozen=True, repr=False)
class RecoveredShare:
    """A key share rebuilt from officers' pieces: public data of the key plus the secret share,
    and no pairwise material (it can deal in a refresh or reshare, never sign).

    Fields are those of :class:`~crypto_core.keyshare.KeyShare` that a reshare dealer reads:
    ``threshold`` t, ``parties`` n, ``index`` (share index 1..n), ``secret_share``,
    ``public_key``, ``public_shares`` (S_1..S_n), ``chain_code`` (32 bytes), ``key_label``
    (bytes, as in KeyShare) and ``epoch`` (the epoch of the backed-up share).
    """

    threshold: int
    parties: int
    index: int
    secret_share: int
    public_key: Point
    public_shares: tuple[Point, ...]
    chain_code: bytes
    key_label: bytes
    epoch: int

    def __repr__(self) -> str:  # never print the secret share
        return (
            f"RecoveredShare(key_id={self.key_id.hex()[:16]}…, t={self.threshold}, n={self.parties}, "
            f"index={self.index}, epoch={self.epoch})"
        )

    @property
    def key_id(self) -> bytes:
        return compute_key_id(self.public_key, self.chain_code)

    def validate(self) -> None:
        """Internal consistency; raises :class:`DecodeError` naming what is wrong."""
        n, t = self.parties, self.threshold
        if not (type(t) is int and type(n) is int and 2 <= t <= n <= MAX_PARTIES):
            raise DecodeError("recovered_share.threshold", f"need 2 <= t <= n <= {MAX_PARTIES}")
        if not (type(self.index) is int and 1 <= self.index <= n):
            raise DecodeError("recovered_share.index", "index out of range")
        if len(self.public_shares) != n or any(s.is_infinity for s in self.public_shares):
            raise DecodeError("recovered_share.public_shares", "wrong count, or an identity share")
        if len(self.chain_code) != 32:
            raise DecodeError("recovered_share.chain_code", "must be 32 bytes")
        if len(self.key_label) > MAX_LABEL:
            raise DecodeError("recovered_share.key_label", f"at most {MAX_LABEL} bytes")
        if not (type(self.epoch) is int and 0 <= self.epoch <= MAX_EPOCH):
            raise DecodeError("recovered_share.epoch", f"must be in 0..{MAX_EPOCH}")
        if self.public_key.is_infinity:
            raise DecodeError("recovered_share.public_key", "identity")
        if not (type(self.secret_share) is int and 0 < self.secret_share < Q):
            raise DecodeError("recovered_share.secret_share", "not a non-zero scalar")
        if Point.base_mul(self.secret_share) != self.public_shares[self.index - 1]:
            raise DecodeError("recovered_share.secret_share", "does not match the public share")
        first = {m: self.public_shares[m - 1] for m in range(1, t + 1)}
        if interpolate_points_at_zero(first) != self.public_key:
            raise DecodeError("recovered_share.public_shares", "do not interpolate to the public key")

    def to_bytes(self) -> bytes:
        """``MAGIC | u16 version | u16 t | u16 n | u16 index | u32 epoch | var label | scalar |
        point pk | n points | 32B chain code``."""
        w = Writer().raw(MAGIC).u16(VERSION)
        w.u16(self.threshold).u16(self.parties).u16(self.index).u32(self.epoch)
        w.var(self.key_label).scalar(self.secret_share).point(self.public_key).points(list(self.public_shares))
        w.raw(self.chain_code)
        return w.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> RecoveredShare:
        """Strict decoding followed by :meth:`validate`; raises :class:`DecodeError`."""
        r = Reader(data)
        if r.take(len(MAGIC), "recovered_share.magic") != MAGIC:
            raise DecodeError("recovered_share.magic", "not a recovered-share record")
        version = r.u16("recovered_share.version")
        if version != VERSION:
            raise DecodeError("recovered_share.version", f"unsupported record version {version}")
        t = r.u16("recovered_share.threshold")
        n = r.u16("recovered_share.parties")
        if not 2 <= t <= n <= MAX_PARTIES:
            raise DecodeError("recovered_share.threshold", f"need 2 <= t <= n <= {MAX_PARTIES}")
        index = r.u16("recovered_share.index")
        epoch = r.u32("recovered_share.epoch")
        label = r.var("recovered_share.key_label", MAX_LABEL)
        secret = r.scalar("recovered_share.secret_share", nonzero=True)
        pk = r.point("recovered_share.public_key")
        shares = tuple(r.points(n, "recovered_share.public_shares"))
        cc = r.take(32, "recovered_share.chain_code")
        r.finish("recovered_share")
        rs = RecoveredShare(t, n, index, secret, pk, shares, cc, label, epoch)
        rs.validate()
        return rs


__all__ = ["BAD_PIECE", "MAGIC", "OK", "VERSION", "RecoveredShare", "reconstruct", "split_share"]
