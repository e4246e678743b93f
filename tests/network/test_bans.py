"""Bans, check ordering and dead sessions of the node service, driven in process (no gRPC).

Three :class:`NodeService` instances of a 2-of-3 cluster share one DKG key; the test plays the
(compromised) coordinator and calls StartSession/Step directly. Node 2 is made to cheat with
the ``tamper-ote`` fault toward node 1 (a failed OT-extension check at node 1: a ban).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from crypto_core.errors import ProtocolAbort
from mpc_node.banjournal import BanJournal, BanJournalError, journal_path
from mpc_node.config import load_node_config
from mpc_node.faults import Fault, flip
from mpc_node.service import NodeService
from mpc_node.storage import NodeStore, StoreError
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.keystore import load_keystore, read_passphrase
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import node_pb2
from tests.harness import run_collect
from tests.integration.govtools import approved_bundle
from tests.integration.relay_util import SIGN_RELEASE_ROUND, reserve_request, route

N, T = 3, 2
Code = grpc.StatusCode


class _Cheat:
    """A FaultInjector stand-in: node 2 flips its OT-extension message to node 1 in round 2."""

    def check(self, protocol: str, round: int) -> Fault | None:
        return Fault("tamper-ote", "sign", 2, receiver=1) if (protocol, round) == ("sign", 2) else None


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("bans"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)  # no admin here to attest


def _service(lay: Layout, i: int) -> NodeService:
    cfg = load_node_config(lay.node_config(i))
    pp = read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)
    keys = load_keystore(cfg.keystore, pp)
    store = NodeStore.open(cfg.store, pp, cfg.index, scrypt_n=cfg.scrypt_n)
    audit = AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=keys.identity)
    return NodeService(cfg, keys, store, audit)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: _service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        s.store.close()
        s.audit.close()


def _run(svcs: dict[int, NodeService], sid: bytes, among: list[int], **params: Any) -> dict[int, Any]:
    """Relay a whole session in process; returns final answers or the first round's errors."""
    req = node_pb2.StartSessionRequest(session_id=sid, **params)
    resps = {i: svcs[i].StartSession(req, None) for i in among}
    while not all(r.finished for r in resps.values()):
        rnd = next(iter(resps.values())).round
        out: dict[int, Any] = {}
        extra: dict[str, Any] = {}
        if "sign" in params and rnd == SIGN_RELEASE_ROUND:  # reserve attempt 1 on every node, as the coordinator does
            req_r = reserve_request(sid, params["sign"], 1)
            extra = {"attempt": 1, "reservation_receipts": [svcs[i].ReserveSigning(req_r, None).receipt for i in sorted(svcs)]}
        for k, inbox in route(resps, among).items():
            try:
                out[k] = svcs[k].Step(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox, **extra), None)
            except RpcError as e:
                out[k] = e
        if any(isinstance(v, RpcError) for v in out.values()):
            return out
        resps = out
    return resps


@pytest.fixture(scope="module")
def key(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    res = _run(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"bans"))
    k = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def _params(lay: Layout, key: node_pb2.DkgResult, signers: tuple[int, ...], request_id: str | None = None) -> node_pb2.SignParams:
    digest = os.urandom(32)
    rid, bundle = approved_bundle(lay, key.key_id, digest, request_id=request_id)
    return node_pb2.SignParams(key_id=key.key_id, signers=list(signers), digest=digest, request_id=rid, approval_bundle=bundle)


def _start(svcs, among, params) -> tuple[bytes, dict[int, node_pb2.StepResponse]]:
    sid = os.urandom(32)
    req = node_pb2.StartSessionRequest(session_id=sid, sign=params)
    return sid, {i: svcs[i].StartSession(req, None) for i in among}


def _step(svc: NodeService, sid: bytes, rnd: int, inbox) -> node_pb2.StepResponse:
    return svc.Step(node_pb2.StepRequest(session_id=sid, round=rnd, envelopes=inbox), None)


def _to_round2(svcs, among, params) -> tuple[bytes, dict[int, list]]:
    """Start a signing session and deliver round 1: returns the round-2 inboxes."""
    sid, resps = _start(svcs, among, params)
    out = {k: _step(svcs[k], sid, 1, inbox) for k, inbox in route(resps, among).items()}
    return sid, route(out, among)


def _audit(svc: NodeService, action: str) -> list:
    return [e for e in svc.audit.entries() if e.action == action]


# --- the fault, on crypto_core directly ------------------------------------------------------


def test_ote_fault_fails_alices_check_with_a_ban() -> None:
    """The byte ``tamper-ote`` flips (the last of the round-2 direct message: the last row of
    the OT-extension t~) fails the KOS consistency check, not the decoding."""
    from crypto_core.sign import PresignParty, SignConfig
    from tests.crypto.dkg_util import keygen

    keys = keygen(T, N)
    ps = {i: PresignParty(keys[i], SignConfig(b"S" * 32, (1, 2))) for i in (1, 2)}

    def tamper(rnd: int, j: int, k: int, part: str, data: bytes) -> bytes:
        return flip(data) if (rnd, j, k, part) == (2, 2, 1, "direct") else data

    out = run_collect(ps, tamper)
    e = out.aborts[1]
    assert isinstance(e, ProtocolAbort)
    assert (e.party, e.ban, e.reason) == (2, True, "OT extension consistency check failed")
    assert 2 not in out.aborts  # node 2's own check of node 1's message passed


# --- fail closed -----------------------------------------------------------------------------


def test_ban_write_failure_fails_the_key_closed_until_the_retry(lay, svcs, key, monkeypatch) -> None:
    n1 = svcs[1]
    monkeypatch.setattr(svcs[2], "faults", _Cheat())
    sid_a, in_a = _to_round2(svcs, [1, 2], _params(lay, key, (1, 2)))
    sid_b, in_b = _to_round2(svcs, [1, 2], _params(lay, key, (1, 2)))
    sid_c, in_c = _to_round2(svcs, [1, 3], _params(lay, key, (1, 3)))

    def broken(*a: object, **kw: object) -> None:
        raise StoreError("database: disk I/O error")

    def journal_broken(*a: object) -> None:
        raise BanJournalError("ban journal: cannot write slot 0 (Input/output error)")

    monkeypatch.setattr(n1.store, "add_ban", broken)
    monkeypatch.setattr(n1.journal, "put", journal_broken)  # the journal fails too (or is full)
    with pytest.raises(RpcError) as e:
        _step(n1, sid_a, 2, in_a[1])
    assert e.value.code == Code.ABORTED
    assert "node 2 (node-2): OT extension consistency check failed" in e.value.message
    assert ("mpc-ban", "1") in e.value.metadata and ("mpc-culprit", "2") in e.value.metadata
    assert n1._sessions[sid_a].party is None

    # the other session with node 2 was aborted by the ban; its check never ran
    with pytest.raises(RpcError) as e:
        _step(n1, sid_b, 2, in_b[1])
    assert e.value.code == Code.ABORTED and "banned by node-1 for key" in e.value.message
    assert "no check of this session ran" in e.value.message and ("mpc-ban", "1") in e.value.metadata
    # the key is fail-closed: a session without node 2 is refused too, and so is a new one
    with pytest.raises(RpcError) as e:
        _step(n1, sid_c, 2, in_c[1])
    assert e.value.code == Code.UNAVAILABLE and "a ban could not be recorded" in e.value.message
    with pytest.raises(RpcError) as e:
        _start(svcs, [1], _params(lay, key, (1, 3)))
    assert e.value.code == Code.UNAVAILABLE
    assert f"key {key.key_id.hex()[:16]}: a ban could not be recorded" in e.value.message
    assert n1.retry_bans() == 0  # the store still fails: stays closed
    assert n1.bans.closed(key.key_id) is not None
    assert [e.outcome for e in _audit(n1, "ban")] == ["not-recorded"]

    monkeypatch.undo()  # the store works again (and node 2 stops cheating)
    assert n1.retry_bans() == 1
    assert n1.store.banned(key.key_id) == frozenset({2})
    assert n1.bans.closed(key.key_id) is None
    assert [e.outcome for e in _audit(n1, "ban")] == ["not-recorded", "recorded-late"]
    with pytest.raises(RpcError) as e:
        _start(svcs, [1], _params(lay, key, (1, 2)))
    assert e.value.code == Code.PERMISSION_DENIED and "node 2 (node-2) is banned by node-1" in e.value.message
    res = _run(svcs, os.urandom(32), [1, 3], sign=_params(lay, key, (1, 3)))
    assert all(isinstance(r, node_pb2.StepResponse) and r.finished for r in res.values()), res
    # a restarted node still refuses node 2 (the ban was loaded from the store)
    again = NodeService(n1.cfg, n1.keys, n1.store, n1.audit)
    assert again.bans.banned(key.key_id) == frozenset({2})


# --- the ban journal: a ban survives a full disk and a restart --------------------------------


@pytest.fixture(scope="module")
def key3(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    """A key nobody is banned for (the journal test bans node 2 for it)."""
    res = _run(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"journal"))
    k = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def _journal_on_disk(svc: NodeService) -> list[tuple[bytes, int, str]]:
    """What a restarted node would read from ``svc``'s ban journal."""
    j = BanJournal.open(journal_path(svc.cfg.store), svc.me)
    try:
        return [(e.key_id, e.peer, e.reason) for e in j.entries()]
    finally:
        j.close()


def test_ban_goes_to_the_journal_when_the_store_is_full_and_survives_a_restart(lay, svcs, key3, monkeypatch) -> None:
    n1 = svcs[1]
    monkeypatch.setattr(svcs[2], "faults", _Cheat())
    sid_a, in_a = _to_round2(svcs, [1, 2], _params(lay, key3, (1, 2)))
    sid_b, in_b = _to_round2(svcs, [1, 2], _params(lay, key3, (1, 2)))

    def full(*a: object, **kw: object) -> None:
        raise StoreError("database or disk is full")

    monkeypatch.setattr(n1.store, "add_ban", full)
    with pytest.raises(RpcError) as e:
        _step(n1, sid_a, 2, in_a[1])
    assert e.value.code == Code.ABORTED and "OT extension consistency check failed" in e.value.message
    # durable before the answer left: the journal file holds the ban
    ((kid, peer, reason),) = _journal_on_disk(n1)
    assert (kid, peer) == (key3.key_id, 2)
    assert reason == f"OT extension consistency check failed in session {sid_a.hex()[:12]}"
    assert n1.bans.journaled(key3.key_id) == frozenset({2}) and n1.bans.closed(key3.key_id) is None
    assert _audit(n1, "ban")[-1].outcome == "journaled"
    # the other session with node 2 aborted without running its check; the key stays open
    with pytest.raises(RpcError) as e:
        _step(n1, sid_b, 2, in_b[1])
    assert e.value.code == Code.ABORTED and "banned by node-1 for key" in e.value.message
    res = _run(svcs, os.urandom(32), [1, 3], sign=_params(lay, key3, (1, 3)))
    assert all(isinstance(r, node_pb2.StepResponse) and r.finished for r in res.values()), res
    assert n1.retry_bans() == 0 and n1.bans.journaled(key3.key_id) == frozenset({2})  # store still full

    # the process dies before the store can take the ban: a restarted node still refuses node 2
    again = NodeService(n1.cfg, n1.keys, n1.store, n1.audit)
    try:
        assert again.bans.banned(key3.key_id) == frozenset({2})
        assert again.bans.journaled(key3.key_id) == frozenset({2}) and again.bans.closed(key3.key_id) is None
        with pytest.raises(RpcError) as e:
            _start({1: again}, [1], _params(lay, key3, (1, 2)))
        assert e.value.code == Code.PERMISSION_DENIED and "node 2 (node-2) is banned by node-1" in e.value.message
        # the disk has space again: the sweeper moves the ban into the store and frees the slot
        monkeypatch.undo()
        assert again.retry_bans() == 1
        assert n1.store.banned(key3.key_id) == frozenset({2})
        assert again.bans.banned(key3.key_id) == frozenset({2}) and again.bans.journaled(key3.key_id) == frozenset()
        assert _audit(again, "ban")[-1].outcome == "recorded-late"
        assert _journal_on_disk(again) == []
        assert again.retry_bans() == 0
    finally:
        again.journal.close()


def test_a_node_without_a_ban_journal_does_not_start(svcs, tmp_path, monkeypatch) -> None:
    """The disk is full at boot and the journal does not exist yet: the node refuses to start
    (``mpc-node`` prints "cannot start: ..." and exits 1) rather than sign without it."""
    import dataclasses
    import errno

    n1 = svcs[1]
    cfg = dataclasses.replace(n1.cfg, store=tmp_path / "node.db")

    def enospc(*a: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", enospc, raising=False)
    with pytest.raises(RuntimeError) as e:
        NodeService(cfg, n1.keys, n1.store, n1.audit)
    assert str(e.value) == (
        f"ban journal {tmp_path / 'node.db.bans'}: cannot create or read (No space left on device); "
        "the node cannot record bans durably and does not start"
    )


def test_mpc_node_refuses_to_start_without_a_ban_journal(lay, tmp_path) -> None:
    """The real ``mpc-node`` process: its ban journal cannot be created (here a directory is in
    the way): it exits 1 before serving, naming the journal."""
    import json
    import subprocess
    import sys

    doc = json.loads(lay.node_config(1).read_text())
    data = tmp_path / "data"
    data.mkdir()
    (data / "node.db.bans").mkdir()
    doc.update(store=str(data / "node.db"), audit_db=str(data / "audit.db"), log_file=str(tmp_path / "node.log"))
    for k in ("keystore", "passphrase_file"):  # the layout's files (relative to its config)
        if isinstance(doc.get(k), str):
            doc[k] = str((lay.node_config(1).parent / doc[k]).resolve())
    cfg = tmp_path / "node.json"
    cfg.write_text(json.dumps(doc))
    p = subprocess.run(
        [sys.executable, "-m", "mpc_node.main", "--config", str(cfg)], capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MPC_TEST_FAULT_FILE"},
    )
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert f"mpc-node: cannot start: ban journal {data / 'node.db.bans'}: cannot open (Is a directory); " in p.stderr
    assert "the node cannot record bans durably and does not start" in p.stderr


# --- one live session per request ------------------------------------------------------------


@pytest.fixture(scope="module")
def key2(svcs: dict[int, NodeService]) -> node_pb2.DkgResult:
    """A key nobody is banned for."""
    res = _run(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"two"))
    k = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def test_at_most_one_live_session_per_request(lay, svcs, key2, monkeypatch) -> None:
    n2 = svcs[2]
    p = _params(lay, key2, (2, 3))
    sid1, _ = _start(svcs, [2], p)
    s1 = n2._sessions[sid1]
    monkeypatch.setattr("mpc_node.service.SUPERSEDE_WAIT_S", 0.2)
    with s1.lock:  # session 1 is processing a step that does not end in time: refused
        with pytest.raises(RpcError) as e:
            _start(svcs, [2], p)
    assert e.value.code == Code.FAILED_PRECONDITION
    assert e.value.message.startswith("sign.request_id: node-2 is still running session")
    assert _audit(n2, "sign-start")[-1].outcome == "refused"
    assert s1.failed is None and s1.party is not None

    # a step that ends within the wait: the new session waits for it, then supersedes the old one
    monkeypatch.setattr("mpc_node.service.SUPERSEDE_WAIT_S", 10.0)
    s1.lock.acquire()
    threading.Timer(0.3, s1.lock.release).start()
    sid2, _ = _start(svcs, [2], p)
    assert s1.party is None and "superseded by session" in s1.failed.message
    with pytest.raises(RpcError) as e:
        _step(n2, sid1, 1, [])
    assert e.value.code == Code.ABORTED and "superseded" in e.value.message
    live = [s for s in n2._sessions.values() if s.request_id == p.request_id and s.failed is None and not s.done]
    assert [s.id for s in live] == [sid2]
    assert [e.outcome for e in _audit(n2, "sign-start")[-2:]] == ["superseded", "accepted"]

    # the whole request runs to the end once; a finished session does not block anything
    res = _run(svcs, os.urandom(32), [2, 3], sign=p)
    assert all(isinstance(r, node_pb2.StepResponse) and r.finished for r in res.values()), res
    # a finished session does not block a later one (whether that may release again is the
    # cross-node attempt bound's business: tests/integration/test_reservation.py)
    sid3, _ = _start(svcs, [2], p)
    assert n2._sessions[sid3].failed is None


def test_any_exception_kills_the_session_with_a_clean_error(lay, svcs, key2) -> None:
    n3 = svcs[3]
    sid, resps = _start(svcs, [2, 3], _params(lay, key2, (2, 3)))
    s = n3._sessions[sid]

    class Boom:
        def receive(self, inbox: object) -> None:
            raise KeyError("secret-looking 0x1234")

    s.party = Boom()
    with pytest.raises(RpcError) as e:
        _step(n3, sid, 1, route(resps, [2, 3])[3])
    assert e.value.code == Code.ABORTED
    assert "internal error (KeyError) while processing round-1 messages" in e.value.message
    assert "secret" not in e.value.message and "Traceback" not in e.value.message
    assert s.party is None and s.failed is e.value
    with pytest.raises(RpcError) as again:
        _step(n3, sid, 1, route(resps, [2, 3])[3])
    assert again.value is e.value


def test_checks_of_one_pair_run_one_at_a_time(lay, svcs, key2, monkeypatch) -> None:
    """Many sessions of node 1 with a cheating node 2, stepped concurrently: one check fails,
    every other session aborts with the ban and none of their checks runs."""
    n1 = svcs[1]
    monkeypatch.setattr(svcs[2], "faults", _Cheat())
    sessions = [_to_round2(svcs, [1, 2], _params(lay, key2, (1, 2))) for _ in range(6)]
    import crypto_core.hazmat.ot_ext as ot_ext

    real = ot_ext.sender_extend
    running, peak, ran = [0], [0], [0]
    mu = threading.Lock()

    def counting(*a: Any, **kw: Any) -> Any:
        with mu:
            running[0] += 1
            ran[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return real(*a, **kw)
        finally:
            with mu:
                running[0] -= 1

    monkeypatch.setattr(ot_ext, "sender_extend", counting)
    errs: list[RpcError] = []
    barrier = threading.Barrier(len(sessions))

    def go(sid: bytes, inboxes: dict[int, list]) -> None:
        barrier.wait(timeout=30)
        try:
            _step(n1, sid, 2, inboxes[1])
        except RpcError as e:
            errs.append(e)

    threads = [threading.Thread(target=go, args=x) for x in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(errs) == len(sessions)
    failed = [e for e in errs if "OT extension consistency check failed" in e.message and "banned by" not in e.message]
    assert len(failed) == 1
    assert all("banned by node-1" in e.message for e in errs if e is not failed[0])
    assert all(e.code == Code.ABORTED and ("mpc-culprit", "2") in e.metadata for e in errs)
    assert ran[0] == 1 and peak[0] == 1
    assert n1.store.banned(key2.key_id) == frozenset({2})


def test_the_coordinators_abort_reason_is_checked_caller_text(lay, svcs, key2, caplog) -> None:
    """AbortSession's reason is caller text (governance.text): one with a newline, CR or ESC (a
    forged log line, terminal escapes) is INVALID_ARGUMENT naming ``reason``, logs nothing and
    leaves the session as it was; a clean reason is logged once per node."""
    import logging

    sid, _ = _start(svcs, [1, 3], _params(lay, key2, (1, 3)))
    forged = "bye\n2026-01-01 00:00:00,000 node-1 WARNING mpc_node.service: forged line\x1b[2J\r"
    with caplog.at_level(logging.INFO, logger="mpc_node.service"):
        for i in (1, 3):
            with pytest.raises(RpcError) as e:
                svcs[i].AbortSession(node_pb2.AbortSessionRequest(session_id=sid, reason=forged), None)
            assert e.value.code == Code.INVALID_ARGUMENT and e.value.message.startswith("reason: "), e.value.message
        assert not any("forged line" in r.getMessage() for r in caplog.records)
        for i in (1, 3):
            assert svcs[i].AbortSession(node_pb2.AbortSessionRequest(session_id=sid, reason="operator stop"), None).existed
    lines = [r.getMessage() for r in caplog.records if "aborted by the coordinator" in r.getMessage()]
    assert len(lines) == 2 and all("operator stop" in line for line in lines)


def test_reserve_signing_errors_name_its_own_fields(lay, svcs, key2) -> None:
    """ReserveSigning shares the signing checks, but its fields are top-level (no ``sign.``)."""
    p = _params(lay, key2, (2, 3))
    req = reserve_request(os.urandom(32), p, 1)
    req.approval_bundle = b""
    with pytest.raises(RpcError) as e:
        svcs[1].ReserveSigning(req, None)
    assert e.value.code == Code.PERMISSION_DENIED and e.value.message.startswith("approval_bundle: missing"), e.value.message
    req = reserve_request(os.urandom(32), p, 1)
    req.key_id = bytes(32)
    with pytest.raises(RpcError) as e:
        svcs[1].ReserveSigning(req, None)
    assert e.value.code == Code.NOT_FOUND and e.value.message.startswith("key_id: "), e.value.message


def test_receipts_only_with_the_releasing_step(lay, svcs, key2) -> None:
    """A reserved attempt and its receipts travel with the round-3 delivery only (no parking of
    receipts in earlier rounds), at most one per roster node; a refusal changes nothing."""
    p = _params(lay, key2, (2, 3))
    sid, inboxes = _to_round2(svcs, [2, 3], p)
    for extra, what in (
        ({"attempt": 1}, "only the round-3 delivery"),
        ({"reservation_receipts": [b"x"]}, "only the round-3 delivery"),
    ):
        with pytest.raises(RpcError) as e:
            svcs[2].Step(node_pb2.StepRequest(session_id=sid, round=2, envelopes=inboxes[2], **extra), None)
        assert e.value.code == Code.INVALID_ARGUMENT and e.value.message.startswith("reservation_receipts: "), e.value.message
        assert what in e.value.message
    out = _step(svcs[2], sid, 2, inboxes[2])  # the session is unharmed
    assert out.round == 3
    with pytest.raises(RpcError) as e:
        svcs[2].Step(node_pb2.StepRequest(session_id=sid, round=3, reservation_receipts=[b"x"] * (N + 1)), None)
    assert e.value.code == Code.INVALID_ARGUMENT and f"at most {N}" in e.value.message
