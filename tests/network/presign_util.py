"""In-process helpers for presignature pool tests (issue 14): the test plays the coordinator
toward :class:`~mpc_node.service.NodeService` instances (no gRPC), as tests/network/test_bans.py does."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import grpc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from crypto_core.bip32 import derive
from crypto_core.combiner import Signature, SignatureShare, combine
from crypto_core.group import Point
from mpc_node.config import load_node_config
from mpc_node.envelope import Envelope, open_envelope
from mpc_node.service import NodeService
from mpc_node.storage import NodeStore
from mpcnet.cluster.launcher import Layout
from mpcnet.common.keystore import load_keystore, read_passphrase
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import node_pb2
from tests.integration.govtools import approved_bundle
from tests.integration.relay_util import route

Code = grpc.StatusCode


def service(lay: Layout, i: int) -> NodeService:
    """Node ``i`` of ``lay`` in process, its store and audit log opened afresh."""
    cfg = load_node_config(lay.node_config(i))
    pp = read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)
    keys = load_keystore(cfg.keystore, pp)
    store = NodeStore.open(cfg.store, pp, cfg.index, scrypt_n=cfg.scrypt_n)
    audit = AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=keys.identity)
    return NodeService(cfg, keys, store, audit)


def close(svc: NodeService) -> None:
    svc.stop()
    svc.journal.close()
    svc.store.close()
    svc.audit.close()


def restart(lay: Layout, svcs: dict[int, NodeService], i: int) -> NodeService:
    """Node ``i`` stops (its store closed) and starts again on the same files."""
    close(svcs[i])
    svcs[i] = service(lay, i)
    return svcs[i]


def run_session(svcs: dict[int, NodeService], sid: bytes, among: Sequence[int], **params: Any) -> dict[int, Any]:
    """Relay a whole session in process with no reservation: final answers, or the first round's errors."""
    req = node_pb2.StartSessionRequest(session_id=sid, **params)
    resps = {i: svcs[i].StartSession(req, None) for i in among}
    while not all(r.finished for r in resps.values()):
        rnd = next(iter(resps.values())).round
        out: dict[int, Any] = {}
        for k, inbox in route(resps, list(among)).items():
            try:
                out[k] = svcs[k].Step(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox), None)
            except RpcError as e:
                out[k] = e
        if any(isinstance(v, RpcError) for v in out.values()):
            return out
        resps = out
    return resps


def presign(
    svcs: dict[int, NodeService], key: node_pb2.DkgResult, signers: Sequence[int], *, path: Sequence[int] = (),
    count: int = 2, epoch: int = 0,
) -> list[node_pb2.PresignatureInfo]:
    """A presign session on ``signers``: the (agreed) presignatures it stored."""
    params = node_pb2.PresignParams(key_id=key.key_id, signers=list(signers), derivation_path=list(path), epoch=epoch, count=count)
    res = run_session(svcs, os.urandom(32), list(signers), presign=params)
    assert all(isinstance(r, node_pb2.StepResponse) and r.finished for r in res.values()), res
    lists = [list(r.presign_result.presignatures) for r in res.values()]
    public = [
        [(p.presig_id, p.key_id, p.epoch, tuple(p.derivation_path), tuple(p.signers), p.big_r, p.public_key) for p in x] for x in lists
    ]
    assert all(x == public[0] for x in public) and len(public[0]) == count, public  # created_unix_ms is each node's own
    return lists[0]


def sign_request(
    lay: Layout, key: node_pb2.DkgResult, p: node_pb2.PresignatureInfo, *, attempt: int = 1, request_id: str | None = None,
    digest: bytes | None = None, path: Sequence[int] | None = None, signers: Sequence[int] | None = None,
    epoch: int | None = None, receipts: Sequence[bytes] = (),
) -> node_pb2.SignPresignedRequest:
    """A SignPresigned request for presignature ``p`` with a freshly approved request (or ``request_id``'s)."""
    digest = os.urandom(32) if digest is None else digest
    path = list(p.derivation_path) if path is None else list(path)
    rid, bundle = approved_bundle(lay, key.key_id, digest, path, request_id=request_id)
    return node_pb2.SignPresignedRequest(
        presig_id=p.presig_id, key_id=key.key_id, epoch=p.epoch if epoch is None else epoch,
        signers=list(p.signers) if signers is None else list(signers), derivation_path=path, digest=digest, request_id=rid,
        approval_bundle=bundle, attempt=attempt, reservation_receipts=list(receipts),
    )


def share_of(svc: NodeService, resp: node_pb2.SignPresignedResponse, presig_id: bytes) -> SignatureShare:
    """The share in ``resp``, its envelope opened against ``svc``'s own identity key."""
    e = resp.share
    env = Envelope(e.session_id, e.round, e.sender, e.receiver, e.payload, e.ephemeral_key, e.signature)
    payload = open_envelope(
        env, sender_identity_public=svc.keys.identity_public, my_encryption=svc.keys.encryption,
        expected_session_id=presig_id, expected_round=4, expected_sender=svc.me, me=1 if svc.me != 1 else 2,
    )
    return SignatureShare.from_bytes(payload, presig_id, resp.signer)


def combine_verified(
    key: node_pb2.DkgResult, req: node_pb2.SignPresignedRequest, shares: dict[int, SignatureShare]
) -> Signature:
    """Combine under the coordinator's own PK' of the path and verify under OpenSSL (``cryptography``)."""
    pk = derive(Point.decode(key.public_key), key.chain_code, tuple(req.derivation_path)).public_key
    sig = combine(shares, req.digest, signers=sorted(shares), public_key=pk, derivation_path=tuple(req.derivation_path))
    openssl = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), pk.encode())
    openssl.verify(encode_dss_signature(sig.r, sig.s), req.digest, ec.ECDSA(Prehashed(hashes.SHA256())))  # raises if invalid
    return sig


def kind(e: RpcError) -> str:
    """The ``mpc-governance`` refusal kind of ``e`` ("" without one)."""
    return dict(e.metadata or ()).get("mpc-governance", "")
