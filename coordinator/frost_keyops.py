"""The new epoch's public shares of a FROST key after a refresh or reshare (issue 16 item 5).

The coordinator verifies every FROST signature share against its sender's public share
(:mod:`coordinator.frost_sign`), so a key operation on a FROST key must leave it the public
shares ``S'_1..S'_n'`` of the new epoch. Each receiver reports them
(``ReshareResult.public_shares``, or ``PendingEpochInfo.public_shares`` after a coordinator
restart); :func:`new_epoch_public_shares` accepts them only when every member of the new
committee reported the same vector and that vector hashes, with the key's scheme and public key,
the new threshold and committee, to the ``state_digest`` all the receipts of the commit
certificate signed (:func:`governance.keyop.epoch_state_digest`), and it is a valid sharing of the key
(:meth:`crypto_core.frost.public.FrostPublic.validate`: decodable elements on one polynomial of
degree ``t'-1`` through the key). The caller records them in the decision's transaction
(:meth:`coordinator.keyop_store.KeyOpStore.decide`), where the old epoch's fresh nonce
commitments are discarded too (their nodes delete the nonces at the commit).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from crypto_core.errors import DecodeError
from crypto_core.frost.public import FrostPublic
from governance.keyop import KeyOperation, epoch_state_digest

FIELD = "reshare_result.public_shares"


class PublicSharesRefused(ValueError):
    """The reported public shares cannot be recorded; the message names the field and node."""


def new_epoch_public_shares(
    op: KeyOperation, state_digest: bytes, reported: Mapping[int, Sequence[bytes]]
) -> tuple[bytes, ...]:
    """The new epoch's public shares of FROST key operation ``op`` from ``reported`` (roster
    index -> the vector that new-committee node reported), checked as in the module docstring
    against the commit certificate's ``state_digest``. Raises :class:`PublicSharesRefused`
    naming :data:`FIELD` and the first node (in committee order) that reported none or another
    vector."""
    first: tuple[bytes, ...] | None = None
    for i in op.new_committee:
        got = reported.get(i)
        if not got:
            raise PublicSharesRefused(f"{FIELD}: node {i} of the new committee reported none")
        vec = tuple(bytes(s) for s in got)
        if first is None:
            first = vec
        elif vec != first:
            raise PublicSharesRefused(f"{FIELD}: node {i} reported other public shares than node {op.new_committee[0]}")
    assert first is not None  # a committee has at least 2 members
    if len(first) != len(op.new_committee):
        raise PublicSharesRefused(f"{FIELD}: {len(first)} public shares for a committee of {len(op.new_committee)}")
    want = epoch_state_digest(op.public_key, op.chain_code, op.new_threshold, op.new_committee, first, op.scheme)
    if not hmac.compare_digest(want, state_digest):
        raise PublicSharesRefused(f"{FIELD}: do not match the state digest every receipt signed")
    try:
        FrostPublic(op.scheme, op.new_threshold, len(op.new_committee), op.public_key, first).validate()
    except DecodeError as e:
        raise PublicSharesRefused(f"{FIELD}: not a sharing of the key ({e.field}: {e.reason})") from None
    return first


__all__ = ["FIELD", "PublicSharesRefused", "new_epoch_public_shares"]
