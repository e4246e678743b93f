"""In-process nodes for key-operation tests: :class:`NodeService` instances of a dev layout with a
signed roster, a relay played by the test, admin-signed key operations, signing checked with
coincurve, and node handles that let the coordinator's orchestration drive them without gRPC."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import grpc
from coincurve import PublicKey

from crypto_core.combiner import SignatureShare, combine
from crypto_core.group import Point
from crypto_core.keyshare import KeyShare
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation, sign_key_operation
from mpc_node.config import load_node_config
from mpc_node.service import NodeService
from mpc_node.storage import NodeStore
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import Layout
from mpcnet.common.keystore import load_keystore, read_passphrase
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import node_pb2
from tests.integration.govtools import approved_bundle
from tests.integration.relay_util import SIGN_RELEASE_ROUND, reserve_request, route


def services(lay: Layout, only: int | None = None) -> dict[int, NodeService]:
    """One NodeService per node of ``lay`` (each with the layout's signed roster, version 1);
    ``only``: just that node's."""
    out = {}
    for i in range(1, lay.nodes + 1) if only is None else (only,):
        cfg = load_node_config(lay.node_config(i))
        pp = read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)
        keys = load_keystore(cfg.keystore, pp)
        store = NodeStore.open(cfg.store, pp, cfg.index, scrypt_n=cfg.scrypt_n)
        audit = AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=keys.identity)
        out[i] = NodeService(cfg, keys, store, audit)
    return out


def close(svcs: dict[int, NodeService]) -> None:
    for s in svcs.values():
        s.store.close()
        s.audit.close()


def run(
    svcs: dict[int, NodeService], sid: bytes, among: Sequence[int], reserve_by: Sequence[int] | None = None, **params: Any
) -> dict[int, Any]:
    """Relay a whole session; the final answers, or the errors of the first round that failed
    (a refused start raises)."""
    req = node_pb2.StartSessionRequest(session_id=sid, **params)
    resps = {i: svcs[i].StartSession(req, None) for i in among}
    while not all(r.finished for r in resps.values()):
        rnd = max(r.round for r in resps.values() if not r.finished)
        extra: dict[str, Any] = {}
        if "sign" in params and rnd == SIGN_RELEASE_ROUND:
            req_r = reserve_request(sid, params["sign"], 1)
            extra = {"attempt": 1, "reservation_receipts": [svcs[i].ReserveSigning(req_r, None).receipt for i in reserve_by or among]}
        out: dict[int, Any] = {}
        for k, inbox in route(resps, list(among)).items():
            try:
                out[k] = svcs[k].Step(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox, **extra), None)
            except RpcError as e:
                out[k] = e
        if any(isinstance(v, RpcError) for v in out.values()):
            return {k: v for k, v in out.items() if isinstance(v, RpcError)}
        resps = out
    return resps


def dkg(svcs: dict[int, NodeService], threshold: int) -> node_pb2.DkgResult:
    n = len(svcs)
    res = run(svcs, os.urandom(32), sorted(svcs), dkg=node_pb2.DkgParams(threshold=threshold, parties=n, key_label=b"keyops"))
    k = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def operation(
    lay: Layout, root: bytes, key: Any, *, kind: KeyOpKind, old: tuple[int, ...], new: tuple[int, ...], old_t: int, new_t: int,
    old_epoch: int = 0, admins: tuple[str, ...] = ("admin1", "admin2"), roster_version: int = 1,
) -> SignedKeyOperation:
    """A key operation on ``key`` (anything with key_id, public_key, chain_code) signed by ``admins``."""
    op = KeyOperation(
        root, os.urandom(16), kind, key.key_id, key.public_key, key.chain_code, old_epoch, old_t, old, new_t, new, roster_version, "test",
    )
    return SignedKeyOperation(op, tuple(sign_key_operation(op, a, load_identity(lay.dir, a).signing_key) for a in admins))


def sign(
    lay: Layout, svcs: dict[int, NodeService], key: Any, signers: list[int], committee: tuple[int, ...], epoch: int
) -> bytes | dict[int, Any]:
    """Sign a fresh digest; the DER signature (verified here with coincurve under the key's
    unchanged public key) or the errors of the round that failed."""
    digest = os.urandom(32)
    rid, bundle = approved_bundle(lay, key.key_id, digest)
    params = node_pb2.SignParams(key_id=key.key_id, signers=signers, digest=digest, request_id=rid, approval_bundle=bundle, epoch=epoch)
    sid = os.urandom(32)
    res = run(svcs, sid, signers, reserve_by=list(committee), sign=params)
    if any(isinstance(v, RpcError) for v in res.values()):
        return res
    share_ids = {i: committee.index(i) + 1 for i in signers}
    shares = {
        share_ids[i]: SignatureShare.from_bytes(next(e for e in r.envelopes if e.receiver == 0).payload, sid, share_ids[i])
        for i, r in res.items()
    }
    der = combine(shares, digest, signers=sorted(share_ids.values()), public_key=Point.decode(key.public_key)).der()
    assert PublicKey(key.public_key).verify(der, digest, hasher=None)
    return der


def share(svc: NodeService, key_id: bytes) -> KeyShare | None:
    raw = svc.store.get_key_share(key_id)
    return None if raw is None else KeyShare.from_bytes(raw)


# --- node handles for coordinator.keyops without gRPC ----------------------------------------


class CallError(grpc.RpcError):
    """What a gRPC client sees when the handler raised :class:`RpcError`."""

    def __init__(self, e: RpcError) -> None:
        self._e = e

    def code(self) -> grpc.StatusCode:
        return self._e.code

    def details(self) -> str:
        return self._e.message

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._e.metadata


class _Stub:
    def __init__(self, handle: Handle) -> None:
        self._h = handle

    def __getattr__(self, name: str) -> Any:
        return _Method(self._h, name)


class _Done:
    """A finished call, as ``stub.Method.future(...)`` returns it."""

    def __init__(self, value: Any, error: Exception | None) -> None:
        self._value, self._error = value, error

    def result(self, timeout: float | None = None) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


class _Method:
    def __init__(self, handle: Handle, name: str) -> None:
        self._h, self._name = handle, name

    def __call__(self, req: Any, **_: Any) -> Any:
        if self._h.down:
            raise CallError(RpcError(grpc.StatusCode.UNAVAILABLE, "node is down (test)"))
        try:
            return getattr(self._h.svc, self._name)(req, None)
        except RpcError as e:
            raise CallError(e) from None

    def future(self, req: Any, **kw: Any) -> _Done:
        try:
            return _Done(self(req, **kw), None)
        except CallError as e:
            return _Done(None, e)


class Handle:
    """A :class:`coordinator.relay.NodeHandle` stand-in calling a NodeService directly; set
    ``down`` to make every call fail UNAVAILABLE."""

    def __init__(self, svc: NodeService) -> None:
        self.svc = svc
        self.index = svc.me
        self.name = svc.cfg.name
        self.endpoint = "in-process"
        self.healthy: bool | None = True
        self.last_error = ""
        self.inflight = 0
        self.down = False
        self.stub = _Stub(self)

    @property
    def label(self) -> str:
        return f"node {self.index} ({self.name})"

    def mark_down(self, reason: str) -> None:
        self.last_error = reason

    def mark_up(self) -> None:
        self.last_error = ""
