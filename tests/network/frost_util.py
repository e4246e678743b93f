"""In-process helpers for FROST node tests (issue 16): the test plays the coordinator toward
:class:`~mpc_node.service.NodeService` instances (no gRPC), as presign_util does for pools."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence

import coincurve
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crypto_core.frost.signing import SigningCommitment, SigningPackage, aggregate, signing_key
from governance.approval import SCHEME_ED25519
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout
from mpcnet.wire.mpc.v1 import node_pb2
from tests.integration.govtools import bundle, signing_request

from .presign_util import run_session


def frost_dkg(svcs: dict[int, NodeService], scheme: str, t: int, label: bytes = b"frost") -> node_pb2.DkgResult:
    """A FROST keygen on every node of ``svcs`` through StartSession/Step, committed everywhere."""
    among = sorted(svcs)
    res = run_session(svcs, os.urandom(32), among, dkg=node_pb2.DkgParams(threshold=t, parties=len(among), key_label=label, scheme=scheme))
    results = [r.dkg_result for r in res.values()]
    assert all(r == results[0] for r in results), results
    k: node_pb2.DkgResult = results[0]
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def make_nonces(
    svcs: dict[int, NodeService], key: node_pb2.DkgResult, signers: Sequence[int], count: int = 1,
) -> dict[int, list[node_pb2.NonceCommitment]]:
    """``count`` fresh nonce commitments of each signer (MakeNonces at epoch 0)."""
    return {
        i: list(svcs[i].MakeNonces(node_pb2.MakeNoncesRequest(key_id=key.key_id, epoch=0, count=count), None).commitments)
        for i in signers
    }


def message_for(scheme: str) -> tuple[bytes, bytes]:
    """(message signed, request digest): ed25519 a message and its SHA-256; bip340 a 32-byte digest twice."""
    if scheme == SCHEME_ED25519:
        m = b"pay 1 SOL to " + os.urandom(20)
        return m, hashlib.sha256(m).digest()
    d = os.urandom(32)
    return d, d


def schnorr_request(
    lay: Layout, key: node_pb2.DkgResult, commitments: Sequence[node_pb2.NonceCommitment], *, message: bytes | None = None,
    root: bytes = b"", attempt: int = 1, request_id: str | None = None, approved_digest: bytes | None = None,
    approved_root: bytes | None = None, approved_scheme: str | None = None, session: bytes | None = None, epoch: int = 0,
    nonce_id: bytes | None = None,
) -> node_pb2.SignSchnorrRequest:
    """A SignSchnorr request (one per signer: set ``nonce_id``) for a freshly approved request."""
    if message is None:
        message, digest = message_for(key.scheme)
    else:
        digest = hashlib.sha256(message).digest() if key.scheme == SCHEME_ED25519 else message
    req = dataclasses.replace(
        signing_request(lay, key.key_id, digest if approved_digest is None else approved_digest, request_id=request_id),
        scheme=approved_scheme or key.scheme, taproot_root=root if approved_root is None else approved_root,
    )
    return node_pb2.SignSchnorrRequest(
        key_id=key.key_id, epoch=epoch, request_id=req.request_id, approval_bundle=bundle(lay, req, "approver1", "approver2"),
        message=message, taproot_merkle_root=root, commitments=list(commitments), nonce_id=nonce_id or b"", attempt=attempt,
        session_id=session or os.urandom(32),
    )


def for_signer(req: node_pb2.SignSchnorrRequest, i: int) -> node_pb2.SignSchnorrRequest:
    """``req`` addressed to signer ``i`` (its own nonce id from the package)."""
    out = node_pb2.SignSchnorrRequest()
    out.CopyFrom(req)
    out.nonce_id = next(c.nonce_id for c in req.commitments if c.signer == i)
    return out


def aggregate_verified(svc: NodeService, key: node_pb2.DkgResult, req: node_pb2.SignSchnorrRequest, shares: dict[int, bytes]) -> bytes:
    """Aggregate (roster index = share index: a full-roster committee) and verify under an
    independent library: ``cryptography`` (OpenSSL) for ed25519, coincurve x-only for bip340."""
    public = svc._any_key(key.key_id).public()
    package = SigningPackage(
        key.scheme, bytes(req.message),
        tuple(SigningCommitment(c.signer, bytes(c.hiding), bytes(c.binding)) for c in req.commitments),
        taproot_root=bytes(req.taproot_merkle_root),
    )
    sig = aggregate(public, package, shares)
    if key.scheme == SCHEME_ED25519:
        Ed25519PublicKey.from_public_bytes(bytes(key.public_key)).verify(sig, bytes(req.message))  # raises if invalid
    else:
        xonly = signing_key(key.scheme, bytes(key.public_key), bytes(req.taproot_merkle_root))
        assert coincurve.PublicKeyXOnly(xonly).verify(sig, bytes(req.message))
    return sig
