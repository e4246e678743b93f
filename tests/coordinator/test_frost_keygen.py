"""Issue 16: CreateKey per scheme on an in-process CoordinatorService whose DKG session
(``run_session``) is faked: the scheme goes to the nodes in DkgParams, each node's DkgResult is
checked by scheme (public key length and validity, empty chain code for Schnorr keys, the
scheme echoed), the key is stored with its scheme and public shares and shown with it; a bad
result aborts the keygen and stores no key."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import coordinator.service as csvc
from coordinator.audit_flush import AuditFlusher
from coordinator.db import CoordinatorDb
from coordinator.foreground import Foreground
from coordinator.keyops import KeyOperations
from coordinator.relay import NodesUnavailable
from coordinator.service import CoordinatorService
from crypto_core.frost.local import run_frost_dkg
from crypto_core.frost.public import frost_key_id
from crypto_core.group import Point
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import coordinator_pb2 as cpb, node_pb2

from .pool_util import FakeHandle

ED_PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
SECP_PUB = Point.base_mul(11).encode()
KEY_ID = b"\x0a" * 32
N, T = 3, 2


class _Stub:
    def CommitKey(self, req: Any, **_: Any) -> node_pb2.CommitKeyResponse:
        return node_pb2.CommitKeyResponse()

    def DiscardKey(self, req: Any, **_: Any) -> node_pb2.DiscardKeyResponse:
        return node_pb2.DiscardKeyResponse()


@pytest.fixture
def svc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    s = object.__new__(CoordinatorService)
    s.cfg = SimpleNamespace(  # type: ignore[assignment]
        name="coordinator", max_requests=4, threshold=T, dkg_timeout_s=5.0, step_timeout_s=5.0,
    )
    s.db = CoordinatorDb(tmp_path / "coordinator.db")
    s.audit = AuditLog.open(tmp_path / "audit.db", component="coordinator", signing_key=Ed25519PrivateKey.generate())
    s._lock, s._running, s._active = threading.Lock(), {}, 0
    s.requests = SimpleNamespace(flush_audit=AuditFlusher(s.db, s.audit).flush)  # type: ignore[assignment]
    s.nodes = {i: FakeHandle(i, _Stub()) for i in range(1, N + 1)}  # type: ignore[assignment]
    s._sessions = contextlib.nullcontext()  # type: ignore[assignment]
    s.foreground = Foreground()  # the DKG holds every node (coordinator.foreground)
    s.recovery = SimpleNamespace(key_activated=lambda key_id: None)  # type: ignore[assignment]
    s.keyops = object.__new__(KeyOperations)
    s.keyops.db = s.db
    monkeypatch.setattr(csvc, "_ident", lambda ctx: SimpleNamespace(name="admin1", role="admin"))
    yield s
    s.db.close()
    s.audit.close()


def _fake_dkg(monkeypatch: pytest.MonkeyPatch, result: node_pb2.DkgResult) -> list[node_pb2.StartSessionRequest]:
    seen: list[node_pb2.StartSessionRequest] = []

    def run_session(nodes: Any, sid: bytes, params: dict[int, node_pb2.StartSessionRequest], timeout: float) -> Any:
        seen.extend(params.values())
        return {i: node_pb2.StepResponse(session_id=sid, finished=True, dkg_result=result) for i in params}

    monkeypatch.setattr(csvc, "run_session", run_session)
    return seen


def _result(scheme: str, pub: bytes, chain: bytes = b"", shares: tuple[bytes, ...] = ()) -> node_pb2.DkgResult:
    key_id = frost_key_id(scheme, pub) if scheme != "ecdsa-secp256k1" else KEY_ID
    r = node_pb2.DkgResult(key_id=key_id, public_key=pub, chain_code=chain, threshold=T, parties=N, scheme=scheme)
    if shares and "public_shares" in node_pb2.DkgResult.DESCRIPTOR.fields_by_name:  # the contract change (report)
        r.public_shares.extend(shares)  # type: ignore[attr-defined]
    return r


@pytest.mark.parametrize("scheme", ["ed25519", "schnorr-secp256k1-bip340"])
def test_create_frost_key(svc: CoordinatorService, monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    share = run_frost_dkg(scheme, T, N)[0]
    pub = share.public_key
    seen = _fake_dkg(monkeypatch, _result(scheme, pub, shares=share.public_shares))
    resp = svc.CreateKey(cpb.CreateKeyRequest(label="sol", request_id="kg-1", scheme=scheme), None)
    assert [p.dkg.scheme for p in seen] == [scheme] * N
    assert resp.key.scheme == scheme and resp.key.public_key == pub and resp.key.chain_code == b""
    k = svc.db.get_key(share.key_id)
    assert k is not None and k.scheme == scheme and k.status == "active" and resp.key.key_id == share.key_id
    assert [k.scheme for k in svc.db.list_keys()] == [scheme]
    entry = [e for e in svc.audit.entries() if e.action == "key-create"][-1]
    assert entry.details["scheme"] == scheme
    # the same request id for another scheme names another key
    with pytest.raises(RpcError) as e:
        svc.CreateKey(cpb.CreateKeyRequest(label="sol", request_id="kg-1"), None)
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS


def test_ecdsa_key_unchanged(svc: CoordinatorService, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_dkg(monkeypatch, _result("ecdsa-secp256k1", SECP_PUB, b"\x01" * 32))
    resp = svc.CreateKey(cpb.CreateKeyRequest(label="btc", request_id="kg-2"), None)
    assert [p.dkg.scheme for p in seen] == [""] * N  # the wire's default: byte-identical DkgParams as before
    assert resp.key.scheme == "ecdsa-secp256k1" and len(resp.key.chain_code) == 32


@pytest.mark.parametrize(
    ("scheme", "result", "field"),
    [
        ("ed25519", _result("schnorr-secp256k1-bip340", ED_PUB), "dkg_result.scheme"),
        ("ed25519", _result("ed25519", SECP_PUB), "dkg_result.public_key"),
        ("ed25519", _result("ed25519", ED_PUB, b"\x01" * 32), "dkg_result.chain_code"),
        ("schnorr-secp256k1-bip340", _result("schnorr-secp256k1-bip340", ED_PUB), "dkg_result.public_key"),
        ("ecdsa-secp256k1", _result("ecdsa-secp256k1", SECP_PUB), "dkg_result.chain_code"),
        ("ed25519", node_pb2.DkgResult(key_id=KEY_ID, public_key=ED_PUB, threshold=T, parties=N, scheme="ed25519"),
         "dkg_result.public_shares"),  # a FROST key without its public shares (checked before the key id)
    ],
)
def test_bad_dkg_result_aborts_and_stores_no_key(
    svc: CoordinatorService, monkeypatch: pytest.MonkeyPatch, scheme: str, result: node_pb2.DkgResult, field: str,
) -> None:
    _fake_dkg(monkeypatch, result)
    with pytest.raises(RpcError) as e:
        svc.CreateKey(cpb.CreateKeyRequest(label="x", request_id="kg-bad", scheme=scheme), None)
    assert e.value.code == grpc.StatusCode.ABORTED and field in e.value.message
    assert svc.db.list_keys() == []
    rec = svc.db.get_request("kg-bad")
    assert rec is not None and rec.state == "failed"


def test_unknown_scheme_is_invalid_argument_before_any_work(svc: CoordinatorService, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_dkg(monkeypatch, _result("ed25519", ED_PUB))
    with pytest.raises(RpcError) as e:
        svc.CreateKey(cpb.CreateKeyRequest(label="x", request_id="kg-u", scheme="ed448"), None)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.message.startswith("scheme:")
    assert not seen and svc.db.get_request("kg-u") is None


def test_the_dkg_holds_every_node_while_it_runs_and_releases_them(svc: CoordinatorService, monkeypatch: pytest.MonkeyPatch) -> None:
    """Background refills start nothing on any node while a keygen's DKG runs (coordinator.foreground)."""
    share = run_frost_dkg("ed25519", T, N)[0]
    result = _result("ed25519", share.public_key, shares=share.public_shares)
    held: list[frozenset[int]] = []

    def run_session(nodes: Any, sid: bytes, params: dict[int, node_pb2.StartSessionRequest], timeout: float) -> Any:
        held.append(svc.foreground.nodes_held())
        return {i: node_pb2.StepResponse(session_id=sid, finished=True, dkg_result=result) for i in params}

    monkeypatch.setattr(csvc, "run_session", run_session)
    svc.CreateKey(cpb.CreateKeyRequest(label="held", request_id="kg-held", scheme="ed25519"), None)
    assert held == [frozenset(range(1, N + 1))] and svc.foreground.nodes_held() == frozenset()


def test_the_dkg_keeps_every_node_held_between_its_two_attempts(svc: CoordinatorService, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first DKG attempt that nodes failed to start (just restarted, reconnecting) is retried;
    the hold spans both attempts and the wait between them, so the refiller (woken when a hold
    ends) does not start presign sessions on every node just before the second attempt."""
    share = run_frost_dkg("ed25519", T, N)[0]
    result = _result("ed25519", share.public_key, shares=share.public_shares)
    held: list[frozenset[int]] = []
    ended: list[int] = []
    svc.foreground.listen(lambda: ended.append(len(held)))
    calls = iter((1, 2))

    def run_session(nodes: Any, sid: bytes, params: dict[int, node_pb2.StartSessionRequest], timeout: float) -> Any:
        held.append(svc.foreground.nodes_held())
        if next(calls) == 1:
            raise NodesUnavailable({3: "node 3: UNAVAILABLE"}, phase="start")
        return {i: node_pb2.StepResponse(session_id=sid, finished=True, dkg_result=result) for i in params}

    def wait_ready(handles: Any, timeout: float) -> Any:
        held.append(svc.foreground.nodes_held())
        return list(handles)

    waiting: list[frozenset[int]] = []  # what is held while the keygen waits for a session slot

    class Slots:
        def __enter__(self) -> None:
            waiting.append(svc.foreground.nodes_held())

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(svc, "_sessions", Slots())
    monkeypatch.setattr(csvc, "run_session", run_session)
    monkeypatch.setattr(csvc, "wait_ready", wait_ready)
    svc.CreateKey(cpb.CreateKeyRequest(label="held", request_id="kg-retry", scheme="ed25519"), None)
    assert held == [frozenset(range(1, N + 1))] * 3
    assert waiting == [frozenset(), frozenset(range(1, N + 1))]  # nothing held before it has its first slot
    assert ended == [3] and svc.foreground.nodes_held() == frozenset()  # one hold, ended once after the DKG
