"""Sessions and the roster in force (issue 11 item 3), on in-process node services with real
stores: a roster change ends every live session; a revoked node may not be named as a signer,
and its envelopes abort a session; the reservation quorum is a majority of the *active* nodes."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import grpc
import pytest

from governance.roster import SignedRosterChange, change_endpoint, revoke_node
from mpc_node.config import load_node_config
from mpc_node.envelope import seal_broadcast
from mpc_node.service import NodeService
from mpc_node.storage import NodeStore
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.keystore import load_keystore, read_passphrase
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import common_pb2, node_pb2
from tests.integration.govtools import approved_bundle
from tests.integration.relay_util import SIGN_RELEASE_ROUND, reserve_request, route
from tests.integration.rostertools import history, signed_next

N, T = 4, 2
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("roster-sessions"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


def _service(lay: Layout, i: int, d: Path) -> NodeService:
    cfg = load_node_config(lay.node_config(i))
    cfg = dataclasses.replace(cfg, store=d / f"node-{i}.db", audit_db=d / f"audit-{i}.db")
    pp = read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)
    keys = load_keystore(cfg.keystore, pp)
    store = NodeStore.open(cfg.store, pp, cfg.index, scrypt_n=cfg.scrypt_n)
    audit = AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=keys.identity)
    return NodeService(cfg, keys, store, audit)


@pytest.fixture
def svcs(lay: Layout, tmp_path: Path):
    """Four fresh node services (own stores) holding one 2-of-4 key."""
    out = {i: _service(lay, i, tmp_path) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        s.store.close()
        s.audit.close()


def _run(svcs: dict[int, NodeService], sid: bytes, among: list[int], receipts_from: list[int] | None = None, **params: Any) -> dict:
    """Relay a whole session in process (a signing session reserves with ``receipts_from``,
    default every node); returns the final answers or the first failing round's errors."""
    req = node_pb2.StartSessionRequest(session_id=sid, **params)
    resps = {i: svcs[i].StartSession(req, None) for i in among}
    while not all(r.finished for r in resps.values()):
        rnd = next(iter(resps.values())).round
        extra: dict[str, Any] = {}
        if "sign" in params and rnd == SIGN_RELEASE_ROUND:
            req_r = reserve_request(sid, params["sign"], 1)
            extra = {
                "attempt": 1,
                "reservation_receipts": [svcs[i].ReserveSigning(req_r, None).receipt for i in (receipts_from or sorted(svcs))],
            }
        out: dict[int, Any] = {}
        for k, inbox in route(resps, among).items():
            try:
                out[k] = svcs[k].Step(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox, **extra), None)
            except RpcError as e:
                out[k] = e
        if any(isinstance(v, RpcError) for v in out.values()):
            return out
        resps = out
    return resps


@pytest.fixture
def key(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    res = _run(svcs, os.urandom(32), [1, 2, 3, 4], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"roster"))
    k = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def _params(lay: Layout, key: node_pb2.DkgResult, signers: tuple[int, ...]) -> node_pb2.SignParams:
    digest = os.urandom(32)
    rid, bundle = approved_bundle(lay, key.key_id, digest)
    return node_pb2.SignParams(key_id=key.key_id, signers=list(signers), digest=digest, request_id=rid, approval_bundle=bundle)


def _install(svcs: dict[int, NodeService], signed: SignedRosterChange, among: list[int] | None = None) -> None:
    req = node_pb2.InstallRosterChangeRequest(signed_change=signed.to_bytes())
    for i in among or sorted(svcs):
        resp = svcs[i].InstallRosterChange(req, None)
        assert resp.installed and resp.version == signed.change.new_roster.version


def _finished(res: dict) -> bool:
    return all(isinstance(r, node_pb2.StepResponse) and r.finished for r in res.values())


def test_a_roster_change_ends_every_live_session(lay, svcs, key) -> None:
    sid = os.urandom(32)
    req = node_pb2.StartSessionRequest(session_id=sid, sign=_params(lay, key, (1, 2)))
    resps = {i: svcs[i].StartSession(req, None) for i in (1, 2)}
    r1 = history(lay)[0].change.new_roster
    _install(svcs, signed_next(lay, r1, change_endpoint(r1, 3, "127.0.0.1:9")))  # even an endpoint-only change
    for k, inbox in route(resps, [1, 2]).items():
        with pytest.raises(RpcError) as e:
            svcs[k].Step(node_pb2.StepRequest(session_id=sid, round=1, envelopes=inbox), None)
        assert e.value.code == Code.ABORTED
        assert "the roster changed to version 2; the session cannot continue" in e.value.message
    # a new session under the new roster works
    assert _finished(_run(svcs, os.urandom(32), [1, 2], sign=_params(lay, key, (1, 2))))


def test_a_revoked_node_is_no_signer_and_its_envelopes_abort_a_session(lay, svcs, key) -> None:
    r1 = history(lay)[0].change.new_roster
    _install(svcs, signed_next(lay, r1, revoke_node(r1, 4)))
    assert sorted(svcs[1].peers()) == [1, 2, 3]

    with pytest.raises(RpcError) as e:  # naming it as a signer is refused
        svcs[1].StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=_params(lay, key, (1, 4))), None)
    assert e.value.code == Code.INVALID_ARGUMENT
    assert e.value.message == "sign.signers: party 4 is not an active node of this node's roster (1,2,3)"

    # an envelope signed by the revoked node, relayed into a live session, aborts it
    sid = os.urandom(32)
    req = node_pb2.StartSessionRequest(session_id=sid, sign=_params(lay, key, (1, 2)))
    resps = {i: svcs[i].StartSession(req, None) for i in (1, 2)}
    forged = seal_broadcast(b"x" * 64, identity=svcs[4].keys.identity, session_id=sid, round=1, sender=4)
    inbox = [*route(resps, [1, 2])[1], common_pb2.Envelope(
        session_id=forged.session_id, round=forged.round, sender=forged.sender, receiver=forged.receiver,
        payload=forged.payload, ephemeral_key=forged.ephemeral_key, signature=forged.signature,
    )]
    with pytest.raises(RpcError) as e:
        svcs[1].Step(node_pb2.StepRequest(session_id=sid, round=1, envelopes=inbox), None)
    assert e.value.code == Code.ABORTED and "sender 4 is not a peer in this session" in e.value.message
    # the remaining three still sign (the key's threshold is 2)
    assert _finished(_run(svcs, os.urandom(32), [2, 3], sign=_params(lay, key, (2, 3)), receipts_from=[1, 2, 3]))


def test_the_reservation_quorum_follows_the_active_nodes(lay, svcs, key) -> None:
    # 4 active nodes: a majority is 3, so receipts of 2 are not enough
    res = _run(svcs, os.urandom(32), [1, 2], sign=_params(lay, key, (1, 2)), receipts_from=[1, 2])
    errs = [r for r in res.values() if isinstance(r, RpcError)]
    assert errs and all(e.code == Code.PERMISSION_DENIED for e in errs), res
    assert all("reservation_receipts" in e.message or "receipts" in e.message for e in errs), [e.message for e in errs]
    r1 = history(lay)[0].change.new_roster
    _install(svcs, signed_next(lay, r1, revoke_node(r1, 4)), among=[1, 2, 3])
    # 3 active nodes: a majority is 2
    assert _finished(_run(svcs, os.urandom(32), [1, 2], sign=_params(lay, key, (1, 2)), receipts_from=[1, 2]))
