"""Reviving a stored presignature record: hazardous.

A presignature must sign at most once: a second signature share from the same presignature
(``u_i``, ``v_i`` and the nonce share reused) lets anyone holding both shares solve for the
signer's key share. :class:`~crypto_core.sign.Presignature` enforces this in memory
(:meth:`~crypto_core.sign.Presignature.mark_used` before
:meth:`~crypto_core.sign.Presignature.signature_share`), but a *record* cannot know whether a
newer tombstone replaced it elsewhere: an old backup, a copied file or a rolled-back database
revives a fresh presignature that was already used. So decoding one is not part of the public
API; a caller of :func:`load_presignature` must guarantee that the record it passes is the
current, only copy (the node keeps presignatures in its store, which tombstones them durably
and atomically before a share leaves; today it signs at once and stores only the tombstone).
"""

from __future__ import annotations

from ..bip32 import check_path
from ..codec import Reader
from ..errors import DecodeError, UsageError
from ..session import check_participants
from ..sign import PRESIG_MAGIC, PRESIG_VERSION, PRESIG_VERSION_V1, RECORD_FRESH, RECORD_USED, Presignature

__all__ = ["load_presignature"]


def load_presignature(data: bytes) -> Presignature:
    """Decode a record written by :meth:`Presignature.to_bytes <crypto_core.sign.Presignature.to_bytes>`.

    A fresh record yields a presignature that can sign once more; a tombstone one that refuses
    to sign (:class:`~crypto_core.errors.PresignatureUsed`). Version 2 carries the key epoch and
    ``sid_dkg``; a version-1 record (issue 13 and before: only tombstones were ever stored)
    still decodes, with ``epoch = sid_dkg = None``, and refuses to sign even if fresh (nodes
    delete every fresh presignature at start, design D5, so none should exist). Decoding is
    strict (magic, version,
    status, exact lengths, canonical scalars, points on the curve, a valid derivation path and
    signer set in increasing order, no trailing bytes). Raises :class:`~crypto_core.errors.DecodeError` naming the
    field; the message never contains the secret. A revived presignature is a pool one
    (:attr:`~crypto_core.sign.Presignature.pool`: its ``R`` may have been public before the
    digest): it signs only re-randomised shares.
    """
    r = Reader(data)
    if r.take(len(PRESIG_MAGIC), "presignature.magic") != PRESIG_MAGIC:
        raise DecodeError("presignature.magic", "not a presignature record")
    version = r.u16("presignature.version")
    if version not in (PRESIG_VERSION, PRESIG_VERSION_V1):
        raise DecodeError("presignature.version", f"unsupported version {version}")
    status = r.u8("presignature.status")
    if status not in (RECORD_FRESH, RECORD_USED):
        raise DecodeError("presignature.status", "unknown status")
    index = r.u16("presignature.index")
    sigid = r.take(32, "presignature.sigid")
    key_id = r.take(32, "presignature.key_id")
    epoch: int | None = None
    sid_dkg: bytes | None = None
    if version == PRESIG_VERSION:
        epoch = r.u32("presignature.epoch")
        sid_dkg = r.take(32, "presignature.sid_dkg")
    pk = r.point("presignature.public_key")
    path = tuple(r.u32(f"presignature.derivation_path[{i}]") for i in range(r.u16("presignature.path_len")))
    signers = tuple(r.u16(f"presignature.signers[{i}]") for i in range(r.u16("presignature.signer_count")))
    R = r.point("presignature.R")
    secret = None
    if status == RECORD_FRESH:
        phi, u, v = r.scalars(3, "presignature.secret")
        secret = (phi, u, v)
    r.finish("presignature")
    try:
        check_path(path)
        check_participants(signers, index)
    except UsageError as e:
        raise DecodeError("presignature", str(e)) from None
    if signers != tuple(sorted(signers)):  # one encoding per record: presigning writes them sorted
        raise DecodeError("presignature.signers", "not in increasing order")
    return Presignature(
        index=index, sigid=sigid, key_id=key_id, public_key=pk, derivation_path=path, signers=signers, R=R, _secret=secret,
        epoch=epoch, sid_dkg=sid_dkg, pool=True,
    )
