"""The coordinator's FROST signing (coordinator/frost_sign.py) with the real RFC 9591 crypto of
crypto_core.frost (pieces A1/A2): fake nodes hold real key shares from an in-process DKG, make
real nonces (``commit``) and real shares (``sign_share``). The signature the coordinator returns
verifies under independent libraries (Ed25519: OpenSSL through ``cryptography``; BIP340:
libsecp256k1 through coincurve's x-only key) and a corrupted share is named by ``verify_share``."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from coincurve import PublicKeyXOnly
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coordinator.db import CoordinatorDb, KeyRecord
from coordinator.frost_sign import FrostDeps, FrostSigning
from coordinator.relay import NodeHandle
from crypto_core.frost.keyshare import FrostKeyShare
from crypto_core.frost.local import run_frost_dkg
from crypto_core.frost.signing import SigningCommitment, SigningNonces, SigningPackage, commit, sign_share
from mpcnet.wire.mpc.v1 import node_pb2

from .pool_util import FakeHandle, refusal

ED, BIP = "ed25519", "schnorr-secp256k1-bip340"


@functools.cache
def _shares(scheme: str, t: int, n: int) -> tuple[FrostKeyShare, ...]:
    return tuple(run_frost_dkg(scheme, t, n))


@dataclass
class RealFrostNode:
    key: FrostKeyShare
    roster: int
    committee: tuple[int, ...]
    corrupt: bool = False
    fresh: dict[bytes, SigningNonces] = field(default_factory=dict)
    used: dict[bytes, tuple[str, int, bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def MakeNonces(self, req: node_pb2.MakeNoncesRequest, **_: Any) -> node_pb2.MakeNoncesResponse:
        out = []
        with self.lock:
            for _i in range(req.count):
                nonces, c = commit(self.key.scheme, self.key.secret_share)
                nid = os.urandom(32)
                self.fresh[nid] = nonces
                out.append(node_pb2.NonceCommitment(nonce_id=nid, signer=self.roster, hiding=c.hiding, binding=c.binding))
        return node_pb2.MakeNoncesResponse(commitments=out, epoch=req.epoch)

    def DiscardNonces(self, req: node_pb2.DiscardNoncesRequest, **_: Any) -> node_pb2.DiscardNoncesResponse:
        with self.lock:
            return node_pb2.DiscardNoncesResponse(discarded=sum(self.fresh.pop(bytes(n), None) is not None for n in req.nonce_ids))

    def SignSchnorr(self, req: node_pb2.SignSchnorrRequest, **_: Any) -> node_pb2.SignSchnorrResponse:
        with self.lock:
            nid = bytes(req.nonce_id)
            if nid in self.used:
                rid, attempt, share = self.used[nid]
                if (rid, attempt) != (req.request_id, req.attempt):
                    raise refusal("nonce-used", "nonce_id")
                return node_pb2.SignSchnorrResponse(share=share, signer=self.roster, replayed=True)
            nonces = self.fresh.pop(nid, None)
            if nonces is None:
                raise refusal("nonce-unknown", "nonce_id")
            package = SigningPackage(self.key.scheme, bytes(req.message), tuple(
                SigningCommitment(self.committee.index(c.signer) + 1, bytes(c.hiding), bytes(c.binding)) for c in req.commitments
            ), bytes(req.taproot_merkle_root))
            share = sign_share(self.key, nonces, package)
            if self.corrupt:
                share = share[:-1] + bytes([share[-1] ^ 1])
            self.used[nid] = (req.request_id, req.attempt, share)
            return node_pb2.SignSchnorrResponse(share=share, signer=self.roster)


def _cluster(tmp: Path, scheme: str, t: int, n: int) -> tuple[FrostSigning, KeyRecord, dict[int, RealFrostNode]]:
    shares = _shares(scheme, t, n)
    pub = shares[0].public_key
    db = CoordinatorDb(tmp / "coord.db")
    key = KeyRecord(shares[0].key_id, "real", pub, b"", t, n, "active", 0, "kg", scheme)
    db.add_key(key, tuple(shares[0].public_shares))  # the key and its public shares in one transaction
    assert db.frost_public_shares(key.key_id, 0) == tuple(shares[0].public_shares)
    committee = tuple(range(1, n + 1))
    nodes = {i: RealFrostNode(shares[i - 1], i, committee) for i in committee}
    handles = {i: FakeHandle(i, nodes[i]) for i in committee}
    deps = FrostDeps(
        db, lambda: cast("dict[int, NodeHandle]", handles), lambda k: (0, committee, set()),
        lambda *a: [b"receipt"], lambda: b"", lambda *a: None, timeout_s=5.0,
    )
    return FrostSigning(deps), key, nodes


def test_ed25519_signature_verifies_under_openssl(tmp_path: Path) -> None:
    signing, key, _ = _cluster(tmp_path, ED, 2, 3)
    msg = b"solana: transfer 1 SOL"
    sig, signers, attempt = signing.sign("req-ed", key, hashlib.sha256(msg).digest(), msg, b"", b"bundle")
    assert attempt == 1 and len(signers) == 2 and sig.public_key == key.public_key
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(sig.schnorr, msg)  # raises if invalid


@pytest.mark.parametrize("root", [b"", b"\x5a" * 32], ids=["bip86", "script-root"])
def test_bip340_signature_verifies_under_libsecp256k1(tmp_path: Path, root: bytes) -> None:
    signing, key, _ = _cluster(tmp_path, BIP, 3, 5)
    digest = hashlib.sha256(b"taproot sighash").digest()
    sig, signers, _ = signing.sign("req-tr", key, digest, b"", root, b"bundle")
    assert len(signers) == 3 and len(sig.public_key) == 32
    assert PublicKeyXOnly(sig.public_key).verify(sig.schnorr, digest)


def test_corrupted_share_is_named_and_the_next_subset_signs(tmp_path: Path) -> None:
    signing, key, nodes = _cluster(tmp_path, ED, 2, 3)
    nodes[1].corrupt = True
    audited: list[tuple[Any, ...]] = []
    signing.deps = FrostDeps(**{**signing.deps.__dict__, "audit": lambda *a: audited.append(a)})
    msg = b"m"
    sig, signers, attempt = signing.sign("req-bad", key, hashlib.sha256(msg).digest(), msg, b"", b"bundle")
    assert attempt == 2 and signers == (2, 3)
    assert [(a[1], a[4]["node"]) for a in audited] == [("frost-bad-share", 1)]
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(sig.schnorr, msg)


def test_malformed_commitments_are_not_stored(tmp_path: Path) -> None:
    signing, key, nodes = _cluster(tmp_path, ED, 2, 3)

    def identity(req: node_pb2.MakeNoncesRequest, **_: Any) -> node_pb2.MakeNoncesResponse:
        ident = b"\x01" + bytes(31)  # the ed25519 identity element
        return node_pb2.MakeNoncesResponse(epoch=0, commitments=[
            node_pb2.NonceCommitment(nonce_id=os.urandom(32), signer=1, hiding=ident, binding=ident)])

    nodes[1].MakeNonces = identity  # type: ignore[method-assign]
    assert signing.make_nonces(key, 0, 1) == 0
    assert signing.db.fresh_nonce_counts(key.key_id, 0) == {}
