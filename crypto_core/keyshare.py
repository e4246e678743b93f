"""The key-share record a party keeps after DKG, with a versioned binary serialization.

The record is stored on disk (encrypted by the node) and must survive upgrades: it starts with
a magic string and a format version, and :meth:`KeyShare.from_bytes` dispatches on the version.
Version 1 had no lambda_c field (its OT material is always 256 base OTs per pair); version 2
stores lambda_c explicitly. Version 3 adds the epoch (u32, after lambda_c; issue 11: +1 at each
refresh or quorum change, see :mod:`crypto_core.reshare`). A record of epoch 0 is still written
as version 2, byte for byte as before, and versions 1 and 2 decode as epoch 0; a record of a later
epoch is written as version 3.
Decoding is strict and ends with :meth:`KeyShare.validate`, so a corrupted or inconsistent
record is refused instead of producing wrong signatures.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import Reader, Writer
from .errors import DecodeError
from .group import Point
from .hazmat.pairwise import PairwiseSetup
from .params import MAX_LABEL, MAX_PARTIES, SUPPORTED_LAMBDA
from .shamir import interpolate_points_at_zero
from .tags import Tag
from .transcript import hash32

MAGIC = b"MPCNET-KEYSHARE"
VERSION = 2  # written for epoch 0
VERSION_EPOCH = 3  # written for epoch >= 1
MAX_EPOCH = 2**32 - 1


def compute_key_id(public_key: Point, chain_code: bytes) -> bytes:
    return hash32(Tag.KEY_ID, public_key.encode(), chain_code)


@dataclass(frozen=True, repr=False)
class KeyShare:
    threshold: int
    parties: int
    index: int
    secret_share: int
    public_key: Point
    public_shares: tuple[Point, ...]  # S_1..S_n, S_m = [s_m]
    chain_code: bytes  # cc_root, 32 bytes
    sid_dkg: bytes  # 32 bytes
    key_label: bytes
    pairwise: tuple[PairwiseSetup, ...]  # one per peer, ascending
    lambda_c: int = 256  # base OTs per ordered pair (OT-extension rows)
    epoch: int = 0  # 0 from the DKG, +1 at each refresh or quorum change (crypto_core.reshare)

    def __repr__(self) -> str:  # never print the secret share or the seeds
        return (
            f"KeyShare(key_id={self.key_id.hex()[:16]}…, t={self.threshold}, n={self.parties}, "
            f"index={self.index}, epoch={self.epoch})"
        )

    @property
    def key_id(self) -> bytes:
        return compute_key_id(self.public_key, self.chain_code)

    def peer(self, j: int) -> PairwiseSetup:
        for p in self.pairwise:
            if p.peer == j:
                return p
        raise KeyError(f"no pairwise setup with party {j}")

    def validate(self) -> None:
        """Internal consistency; raises :class:`DecodeError` naming what is wrong."""
        n, t = self.parties, self.threshold
        if not 2 <= t <= n <= MAX_PARTIES:
            raise DecodeError("keyshare.threshold", f"need 2 <= t <= n <= {MAX_PARTIES}")
        if not 1 <= self.index <= n:
            raise DecodeError("keyshare.index", "index out of range")
        if len(self.public_shares) != n:
            raise DecodeError("keyshare.public_shares", "wrong count")
        if len(self.chain_code) != 32 or len(self.sid_dkg) != 32:
            raise DecodeError("keyshare.chain_code", "wrong length")
        if self.public_key.is_infinity:
            raise DecodeError("keyshare.public_key", "identity")
        if Point.base_mul(self.secret_share) != self.public_shares[self.index - 1]:
            raise DecodeError("keyshare.secret_share", "does not match the public share")
        if interpolate_points_at_zero({m: self.public_shares[m - 1] for m in range(1, t + 1)}) != self.public_key:
            raise DecodeError("keyshare.public_shares", "do not interpolate to the public key")
        if self.lambda_c not in SUPPORTED_LAMBDA:
            raise DecodeError("keyshare.lambda_c", f"must be one of {SUPPORTED_LAMBDA}")
        if not isinstance(self.epoch, int) or not 0 <= self.epoch <= MAX_EPOCH:
            raise DecodeError("keyshare.epoch", f"must be in 0..{MAX_EPOCH}")
        for p in self.pairwise:
            if p.as_bob.lambda_c != self.lambda_c or p.as_alice.lambda_c != self.lambda_c:
                raise DecodeError("keyshare.pairwise", f"OT material for peer {p.peer} does not have lambda_c rows")
        peers = [p.peer for p in self.pairwise]
        if peers != [m for m in range(1, n + 1) if m != self.index]:
            raise DecodeError("keyshare.pairwise", "must hold exactly one entry per peer, ascending")

    def to_bytes(self) -> bytes:
        w = Writer().raw(MAGIC).u16(VERSION if self.epoch == 0 else VERSION_EPOCH)
        w.u16(self.threshold).u16(self.parties).u16(self.index).u16(self.lambda_c)
        if self.epoch != 0:
            w.u32(self.epoch)
        w.var(self.key_label)
        w.scalar(self.secret_share).point(self.public_key).points(list(self.public_shares))
        w.raw(self.chain_code).raw(self.sid_dkg)
        for p in self.pairwise:
            p.write(w)
        return w.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> KeyShare:
        r = Reader(data)
        if r.take(len(MAGIC), "keyshare.magic") != MAGIC:
            raise DecodeError("keyshare.magic", "not a key-share record")
        version = r.u16("keyshare.version")
        if version not in (1, 2, VERSION_EPOCH):
            raise DecodeError("keyshare.version", f"unsupported record version {version}")
        t = r.u16("keyshare.threshold")
        n = r.u16("keyshare.parties")
        if not 2 <= t <= n <= MAX_PARTIES:
            raise DecodeError("keyshare.threshold", f"need 2 <= t <= n <= {MAX_PARTIES}")
        index = r.u16("keyshare.index")
        lambda_c = 256 if version == 1 else r.u16("keyshare.lambda_c")
        if lambda_c not in SUPPORTED_LAMBDA:
            raise DecodeError("keyshare.lambda_c", f"must be one of {SUPPORTED_LAMBDA}")
        epoch = r.u32("keyshare.epoch") if version == VERSION_EPOCH else 0
        if version == VERSION_EPOCH and epoch == 0:
            raise DecodeError("keyshare.epoch", "a version-3 record must have epoch >= 1 (epoch 0 is written as version 2)")
        label = r.var("keyshare.key_label", MAX_LABEL)
        secret = r.scalar("keyshare.secret_share", nonzero=True)
        pk = r.point("keyshare.public_key")
        shares = tuple(r.points(n, "keyshare.public_shares"))
        cc = r.take(32, "keyshare.chain_code")
        sid = r.take(32, "keyshare.sid_dkg")
        pairwise = tuple(PairwiseSetup.read(r, f"keyshare.pairwise[{k}]", lambda_c) for k in range(n - 1))
        r.finish("keyshare")
        ks = KeyShare(t, n, index, secret, pk, shares, cc, sid, label, pairwise, lambda_c, epoch)
        ks.validate()
        return ks
