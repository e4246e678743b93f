"""Public Feldman checks for backups of FROST keys (issue 12 applied to issue 16). Secret-free.

The group-generic counterpart of :mod:`crypto_core.feldman` (which stays secp256k1-only for the
ECDSA keys' bundles): a node's FROST share ``s_i`` is split m-of-k with ``f(0) = s_i``; officer
``j`` holds ``f(j)``; the commitments ``C_k = a_k * B`` are encodings in the key's own group
(Ed25519: 32 bytes; secp256k1: 33-byte SEC1 compressed), ``C_0`` is the node's public share
``S_i``, and a piece is right iff ``[f(j)]B == sum_k j^k * C_k``. Nothing here reads a share or a
piece the caller does not already hold, so bundle checks (:mod:`mpcnet.common.bundle`) may import it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import DecodeError
from .group import Element, Group
from .poly import feldman_evaluate

MAX_PIECES = 255
"""Largest ``k`` (officers) and ``m`` of a backup split (officer indices are 1..255)."""


def check_commitments(group: Group, commitments: Sequence[bytes], m: int, public_share: bytes) -> list[Element]:
    """Decode ``m`` Feldman commitments (``group.element_len`` bytes each) and check ``C_0 == S_i``.

    ``public_share`` is the node's public share encoding from the key's public record. Returns the
    ``m`` elements. Raises :class:`DecodeError` naming ``commitments`` (wrong count or quorum),
    ``commitments[k]`` (wrong length, non-canonical, not in the prime-order group, the identity),
    ``public_share`` or ``commitments[0]`` (not the public share).
    """
    if type(m) is not int or not 1 <= m <= MAX_PIECES:
        raise DecodeError("commitments", f"quorum m must be in 1..{MAX_PIECES}")
    if len(commitments) != m:
        raise DecodeError("commitments", f"expected {m} commitments, got {len(commitments)}")
    elements = [group.decode(bytes(c), f"commitments[{k}]") for k, c in enumerate(commitments)]
    if elements[0] != group.decode(bytes(public_share), "public_share"):
        raise DecodeError("commitments[0]", "does not open to the node's public share")
    return elements


def piece_matches(group: Group, commitments: Sequence[Element], officer_index: int, piece: int) -> bool:
    """Whether ``[piece]B == sum_k officer_index^k * C_k`` in ``group``.

    A piece outside ``0..q-1``, an officer index outside 1..255 or no commitments give ``False``
    (never an exception).
    """
    if type(piece) is not int or not 0 <= piece < group.order:
        return False
    if type(officer_index) is not int or not 1 <= officer_index <= MAX_PIECES or not commitments:
        return False
    return group.base_mul(piece) == feldman_evaluate(group, commitments, officer_index)


__all__ = ["MAX_PIECES", "check_commitments", "piece_matches"]
