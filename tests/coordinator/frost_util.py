"""Fake share-holder nodes for the coordinator's FROST signing (issue 16): each answers
MakeNonces (fresh commitments it remembers) and SignSchnorr as the contract says (its nonce used
at most once; the same (request, attempt, nonce_id) replays the stored share; nonce-used /
nonce-unknown refusals), with injectable misbehaviour (a bad share, a stall, a failure).

Shares come from :class:`ToyFrost`, a stand-in for ``crypto_core.frost`` (piece A1) with the
same narrow interface: a signer's share is a keyed hash of its identifier and the whole signing
package, so a share made for another package, signer or message does not verify. It tests the
orchestration (who signs with which commitment, what is retried, what is recorded), not the
mathematics, which piece A1's own tests cover."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc

from coordinator.db import CoordinatorDb, KeyRecord
from coordinator.frost_sign import FrostDeps, FrostSigning
from coordinator.relay import NodeHandle
from mpcnet.wire.mpc.v1 import node_pb2

from .pool_util import FakeHandle, NodeError, refusal

KEY_ID = b"\x07" * 32


@dataclass(frozen=True)
class ToyPackage:
    scheme: str
    message: bytes
    commitments: tuple[tuple[int, bytes, bytes], ...]
    root: bytes


def toy_share(public_key: bytes, package: ToyPackage, identifier: int) -> bytes:
    h = hashlib.sha256(b"toy-share")
    h.update(public_key + package.scheme.encode() + package.message + package.root + identifier.to_bytes(4, "big"))
    for i, a, b in package.commitments:
        h.update(i.to_bytes(4, "big") + a + b)
    return h.digest()


class ToyFrost:
    """The :class:`coordinator.frost_sign.FrostCrypto` interface over toy shares."""

    def public(self, scheme: str, threshold: int, parties: int, public_key: bytes, public_shares: tuple[bytes, ...]) -> Any:
        return (scheme, threshold, parties, public_key, public_shares)

    def package(self, scheme: str, message: bytes, commitments: Sequence[tuple[int, bytes, bytes]], taproot_root: bytes) -> Any:
        ids = [c[0] for c in commitments]
        assert ids == sorted(set(ids)) and len(ids) >= 2
        return ToyPackage(scheme, message, tuple(commitments), taproot_root)

    def check_element(self, scheme: str, data: bytes, field: str) -> None:
        from crypto_core.errors import DecodeError

        if data == bytes(len(data)):
            raise DecodeError(field, "identity")

    def verify_share(self, public: Any, package: Any, identifier: int, share: bytes) -> None:
        from crypto_core.errors import ProtocolAbort

        if share != toy_share(public[3], package, identifier):
            raise ProtocolAbort(identifier, "signature share does not verify")

    def aggregate(self, public: Any, package: Any, shares: Mapping[int, bytes]) -> bytes:
        assert sorted(shares) == [c[0] for c in package.commitments]
        for i, s in shares.items():
            self.verify_share(public, package, i, s)
        return hashlib.sha512(b"toy-sig" + package.message + b"".join(shares[i] for i in sorted(shares))).digest()

    def verify_signature(self, scheme: str, public_key: bytes, message: bytes, signature: bytes, taproot_root: bytes) -> bool:
        return len(signature) == 64

    def signing_key(self, scheme: str, public_key: bytes, taproot_root: bytes) -> bytes:
        return public_key if scheme == "ed25519" else hashlib.sha256(public_key + taproot_root).digest()


@dataclass
class FrostNodeStub:
    """One node's FROST RPCs. ``bad``: answer a wrong share; ``stall``: DEADLINE_EXCEEDED;
    ``refuse``: a governance kind to refuse SignSchnorr with."""

    index: int
    public_key: bytes
    committee: tuple[int, ...]
    fresh: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)
    used: dict[bytes, tuple[str, int, bytes]] = field(default_factory=dict)
    bad: bool = False
    stall: bool = False
    refuse: str = ""
    signed: list[tuple[str, int, bytes]] = field(default_factory=list)
    discarded: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def MakeNonces(self, req: node_pb2.MakeNoncesRequest, **_: Any) -> node_pb2.MakeNoncesResponse:
        out = []
        with self.lock:
            for _i in range(req.count):
                nid, d, e = os.urandom(32), os.urandom(len(self.public_key)), os.urandom(len(self.public_key))
                self.fresh[nid] = (d, e)
                out.append(node_pb2.NonceCommitment(nonce_id=nid, signer=self.index, hiding=d, binding=e))
        return node_pb2.MakeNoncesResponse(commitments=out, epoch=req.epoch)

    def DiscardNonces(self, req: node_pb2.DiscardNoncesRequest, **_: Any) -> node_pb2.DiscardNoncesResponse:
        with self.lock:
            gone = [bytes(n) for n in req.nonce_ids if self.fresh.pop(bytes(n), None) is not None]
            self.discarded.extend(gone)
            return node_pb2.DiscardNoncesResponse(discarded=len(gone))

    def SignSchnorr(self, req: node_pb2.SignSchnorrRequest, **_: Any) -> node_pb2.SignSchnorrResponse:
        with self.lock:
            if self.stall:
                raise NodeError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
            if self.refuse:
                raise refusal(self.refuse, "nonce_id")
            nid = bytes(req.nonce_id)
            if nid in self.used:
                rid, attempt, share = self.used[nid]
                if (rid, attempt) != (req.request_id, req.attempt):
                    raise refusal("nonce-used", "nonce_id")
                return node_pb2.SignSchnorrResponse(share=share, signer=self.index, replayed=True)
            mine = [c for c in req.commitments if c.signer == self.index]
            if nid not in self.fresh or len(mine) != 1 or (mine[0].hiding, mine[0].binding) != self.fresh[nid]:
                raise refusal("nonce-unknown", "nonce_id")
            del self.fresh[nid]
            pkg = ToyPackage(
                "ed25519" if len(self.public_key) == 32 else "schnorr-secp256k1-bip340", bytes(req.message),
                tuple((self.committee.index(c.signer) + 1, bytes(c.hiding), bytes(c.binding)) for c in req.commitments),
                bytes(req.taproot_merkle_root),
            )
            share = toy_share(self.public_key, pkg, self.committee.index(self.index) + 1)
            if self.bad:
                share = bytes([share[0] ^ 1]) + share[1:]
            self.used[nid] = (req.request_id, req.attempt, share)
            self.signed.append((req.request_id, req.attempt, nid))
            return node_pb2.SignSchnorrResponse(share=share, signer=self.index)


@dataclass
class FrostCluster:
    db: CoordinatorDb
    key: KeyRecord
    stubs: dict[int, FrostNodeStub]
    handles: dict[int, FakeHandle]
    signing: FrostSigning
    audited: list[tuple[str, str, str, str, dict[str, Any]]]
    reserved: list[tuple[str, int, tuple[int, ...]]]


def frost_cluster(tmp: Path, t: int = 2, n: int = 3, scheme: str = "ed25519") -> FrostCluster:
    db = CoordinatorDb(tmp / "coord.db")
    pub = b"\x11" * 32 if scheme == "ed25519" else b"\x02" + b"\x11" * 32
    key = KeyRecord(KEY_ID, "frost", pub, b"", t, n, "active", 0, "kg-1", scheme)
    db.add_key(key)
    committee = tuple(range(1, n + 1))
    db.set_frost_public_shares(KEY_ID, 0, [bytes([0x02]) + bytes([i]) * 32 if scheme != "ed25519" else bytes([i]) * 32
                                           for i in committee])
    stubs = {i: FrostNodeStub(i, pub, committee) for i in committee}
    handles = {i: FakeHandle(i, stubs[i]) for i in committee}
    audited: list[tuple[str, str, str, str, dict[str, Any]]] = []
    reserved: list[tuple[str, int, tuple[int, ...]]] = []

    def reserve(rid: str, k: KeyRecord, digest: bytes, path: tuple[int, ...], bundle: bytes, attempt: int,
                signers: tuple[int, ...], sid: bytes) -> list[bytes]:
        reserved.append((rid, attempt, signers))
        return [b"receipt"]

    deps = FrostDeps(
        db, lambda: cast("dict[int, NodeHandle]", handles), lambda k: (0, committee, set()), reserve, lambda: b"",
        lambda *a: audited.append(a), crypto=ToyFrost, timeout_s=1.0,
    )
    return FrostCluster(db, key, stubs, handles, FrostSigning(deps), audited, reserved)
