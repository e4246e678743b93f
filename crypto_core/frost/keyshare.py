"""The FROST key-share record (issue 16): one party's share of an Ed25519 or BIP340 key.

A record is stored on disk (sealed by the node) and must survive upgrades and later lifecycle
operations: like the ECDSA :class:`crypto_core.keyshare.KeyShare` it carries the epoch (+1 at each
refresh or quorum change), the DKG's ``sid_dkg`` and committee-position indices ``1..n``, so refresh,
reshare and backups can treat it the same way; it has no chain code and no OT material.

Binary form, version 1 (all integers big-endian)::

    "MPCNET-FROSTSHARE" | u16 version=1 | u8 len | scheme (ASCII) | u16 t | u16 n | u16 index
    | u32 epoch | u32 len | key_label | secret_share (scalar_len, the group's scalar encoding)
    | public_key (element_len) | n x public_share (element_len) | sid_dkg (32)

Decoding is strict (every field checked, no trailing bytes) and ends with
:meth:`FrostKeyShare.validate`; any failure is a :class:`~crypto_core.errors.DecodeError` whose
``field`` is ``frostshare.<name>``. ``public_key`` and ``public_shares`` are group element encodings
(32 bytes Ed25519, 33 bytes SEC1 compressed secp256k1); for a BIP340 key ``public_key`` is the
untweaked group key P (its even-Y lift and the Taproot tweak are applied at signing).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..codec import Reader, Writer
from ..errors import DecodeError, UsageError
from ..params import MAX_LABEL, MAX_PARTIES
from .group import Group
from .public import FrostPublic, check_public, frost_key_id, scheme_group
from .scheme import group_for

MAGIC = b"MPCNET-FROSTSHARE"
VERSION = 1
MAX_EPOCH = 2**32 - 1
SID_LEN = 32


def is_frost_record(data: bytes) -> bool:
    """Whether ``data`` starts with the FROST key-share magic (a cheap dispatch, not validation)."""
    return bytes(data[: len(MAGIC)]) == MAGIC


@dataclass(frozen=True, repr=False)
class FrostKeyShare:
    """One party's share of a FROST key (committee position ``index`` in ``1..n``)."""

    scheme: str
    threshold: int
    parties: int
    index: int
    secret_share: int  # s_index, secret
    public_key: bytes
    public_shares: tuple[bytes, ...]
    sid_dkg: bytes  # 32 bytes, the DKG's session id (binds t, n, scheme, label, contributions)
    key_label: bytes
    epoch: int = 0  # 0 from the DKG, +1 at each refresh or quorum change

    def __repr__(self) -> str:  # never the secret share
        return (
            f"FrostKeyShare(scheme={self.scheme!r}, key_id={self.key_id.hex()[:16]}…, t={self.threshold}, "
            f"n={self.parties}, index={self.index}, epoch={self.epoch})"
        )

    @property
    def key_id(self) -> bytes:
        return frost_key_id(self.scheme, self.public_key)

    @property
    def group(self) -> Group:
        return group_for(self.scheme)

    def public(self) -> FrostPublic:
        return FrostPublic(self.scheme, self.threshold, self.parties, self.public_key, self.public_shares)

    def validate(self) -> None:
        """Internal consistency; raises :class:`DecodeError` naming the field (``frostshare.*``):
        the public checks of :meth:`FrostPublic.validate`, ``index`` in 1..n, the secret share a
        non-zero scalar matching its public share, ``sid_dkg`` 32 bytes, the label at most
        MAX_LABEL bytes, the epoch in 0..2^32-1."""
        group, shares = check_public(self, "frostshare")
        if type(self.index) is not int or not 1 <= self.index <= self.parties:
            raise DecodeError("frostshare.index", "index out of range 1..n")
        if type(self.secret_share) is not int or not 0 < self.secret_share < group.order:
            raise DecodeError("frostshare.secret_share", "not a non-zero scalar")
        if group.base_mul(self.secret_share) != shares[self.index - 1]:
            raise DecodeError("frostshare.secret_share", "does not match the public share")
        if not isinstance(self.sid_dkg, bytes) or len(self.sid_dkg) != SID_LEN:
            raise DecodeError("frostshare.sid_dkg", f"must be {SID_LEN} bytes")
        if not isinstance(self.key_label, bytes) or len(self.key_label) > MAX_LABEL:
            raise DecodeError("frostshare.key_label", f"at most {MAX_LABEL} bytes")
        if type(self.epoch) is not int or not 0 <= self.epoch <= MAX_EPOCH:
            raise DecodeError("frostshare.epoch", f"must be in 0..{MAX_EPOCH}")

    def to_bytes(self) -> bytes:
        """The version-1 record (layout in the module docstring). Raises UsageError if invalid."""
        try:
            self.validate()
        except DecodeError as e:
            raise UsageError(f"cannot serialize an invalid key share: {e}") from None
        group = self.group
        scheme = self.scheme.encode("ascii")
        w = Writer().raw(MAGIC).u16(VERSION).u8(len(scheme)).raw(scheme)
        w.u16(self.threshold).u16(self.parties).u16(self.index).u32(self.epoch).var(self.key_label)
        w.raw(group.encode_scalar(self.secret_share)).raw(self.public_key)
        for s in self.public_shares:
            w.raw(s)
        return w.raw(self.sid_dkg).getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> FrostKeyShare:
        """Strict decoding of a record; :class:`DecodeError` naming the field on any fault."""
        r = Reader(data)
        if r.take(len(MAGIC), "frostshare.magic") != MAGIC:
            raise DecodeError("frostshare.magic", "not a FROST key-share record")
        version = r.u16("frostshare.version")
        if version != VERSION:
            raise DecodeError("frostshare.version", f"unsupported record version {version}")
        raw_scheme = r.take(r.u8("frostshare.scheme.length"), "frostshare.scheme")
        scheme = raw_scheme.decode("ascii", "replace")
        group = scheme_group(scheme if raw_scheme.isascii() else None, "frostshare.scheme")
        t = r.u16("frostshare.threshold")
        n = r.u16("frostshare.parties")
        if not 2 <= t <= n <= MAX_PARTIES:
            raise DecodeError("frostshare.threshold", f"need 2 <= t <= n <= {MAX_PARTIES}")
        index = r.u16("frostshare.index")
        if not 1 <= index <= n:
            raise DecodeError("frostshare.index", "index out of range 1..n")
        epoch = r.u32("frostshare.epoch")
        label = r.var("frostshare.key_label", MAX_LABEL)
        secret = group.decode_scalar(r.take(group.scalar_len, "frostshare.secret_share"), "frostshare.secret_share",
                                     nonzero=True)
        pk = r.take(group.element_len, "frostshare.public_key")
        shares = tuple(r.take(group.element_len, f"frostshare.public_shares[{k}]") for k in range(n))
        sid = r.take(SID_LEN, "frostshare.sid_dkg")
        r.finish("frostshare")
        ks = FrostKeyShare(scheme, t, n, index, secret, pk, shares, sid, label, epoch)
        ks.validate()
        return ks


__all__ = ["MAGIC", "VERSION", "FrostKeyShare", "FrostPublic", "frost_key_id", "is_frost_record"]
