"""The refiller (issue 14, coordinator/pool.py): pools are kept between refill_at and target,
never above cap, for the preferred signer sets; a presign session's answers must agree (else the
batch is discarded on every signer); it yields to signing; epoch changes, retirement, bans and
node restarts discard pools; ClusterStatus shows them."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import coincurve
import grpc
import pytest

import coordinator.pool as pool_mod
from coordinator.pool import SETS_PER_KEY, agreed_batch
from coordinator.pool_config import PresignConfig
from coordinator.pool_store import PresigRow
from coordinator.relay import NodesUnavailable, Refused
from governance.reservation import MAX_SIGN_ATTEMPTS
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

from .pool_util import Cluster, cluster, derived


def _point() -> bytes:
    return coincurve.PrivateKey().public_key.format(compressed=True)


class FakeSessions:
    """run_session for presign sessions: every signer answers the same fresh presignatures (or
    ``tamper`` changes one node's), counting how many run at once."""

    def __init__(self, c: Cluster, tamper: int | None = None, fail: Exception | None = None, hold: float = 0.0) -> None:
        self.c, self.tamper, self.fail, self.hold = c, tamper, fail, hold
        self.started: list[node_pb2.PresignParams] = []
        self.live = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, nodes: dict[int, Any], sid: bytes, start: dict[int, Any], timeout: float, **kw: Any) -> dict[int, Any]:
        p = next(iter(start.values())).presign
        with self.lock:
            self.started.append(p)
            self.live += 1
            self.most = max(self.most, self.live)
        try:
            time.sleep(self.hold)
            if self.fail is not None:
                raise self.fail
            infos = [
                node_pb2.PresignatureInfo(
                    presig_id=os.urandom(32), key_id=p.key_id, epoch=p.epoch, derivation_path=p.derivation_path, signers=p.signers,
                    big_r=_point(), public_key=derived(self.c, tuple(p.derivation_path)),
                )
                for _ in range(p.count)
            ]
            out = {}
            for i in nodes:
                mine = [node_pb2.PresignatureInfo().__class__.FromString(x.SerializeToString()) for x in infos]
                if i == self.tamper:
                    mine[0].big_r = _point()
                for x in mine:
                    self.c.stubs[i].fresh[bytes(x.presig_id)] = x  # type: ignore[assignment]
                out[i] = node_pb2.StepResponse(session_id=sid, round=3, finished=True,
                                               presign_result=node_pb2.PresignResult(presignatures=mine))
            return out
        finally:
            with self.lock:
                self.live -= 1


def _wait_idle(c: Cluster) -> None:
    for _ in range(500):
        with c.pools._lock:
            if c.pools._inflight == 0:
                return
        time.sleep(0.01)
    raise AssertionError("presign sessions did not finish")


def _fill(c: Cluster, passes: int = 20) -> None:
    for _ in range(passes):
        c.pools.step()
        _wait_idle(c)


def test_the_refiller_fills_the_preferred_sets_to_target_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=True, paths=((), (1,)), target=8, refill_at=4, cap=32, batch=4))
    fake = FakeSessions(c)
    monkeypatch.setattr(pool_mod, "run_session", fake)
    monkeypatch.setattr(pool_mod.PresignPools, "reconcile_due", lambda self: None)
    _fill(c)
    counts = c.db.pool_counts()
    assert len(counts) == 2 * SETS_PER_KEY  # two paths x the preferred sets
    assert {s for (_, _, _, s) in counts} == {(1, 2), (1, 3)}  # all idle and healthy: by index
    assert all(v == {"ready": 8, "assigned": 0} for v in counts.values())
    assert all(p.count == 4 and p.epoch == 0 for p in fake.started)
    n = len(fake.started)
    _fill(c, 3)
    assert len(fake.started) == n  # at target: nothing more
    for i in range(4):  # use 4 of one pool: ready falls to refill_at, one batch refills it
        a = c.db.assign_presig(f"r{i}", c.key.key_id, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 9)
        assert a is not None
        c.db.discard_presigs([a.presig_id], "failed", 9)
    _fill(c, 3)
    assert len(fake.started) == n + 1 and c.db.pool_counts()[(c.key.key_id, 0, (), (1, 2))]["ready"] == 8


def test_the_cap_counts_assigned_and_filling(tmp_path: Path) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=True, target=8, refill_at=4, cap=10, batch=4))
    rows = [PresigRow(os.urandom(32), c.key.key_id, 0, (), (1, 2), _point(), derived(c)) for _ in range(9)]
    c.db.add_ready_presigs(rows, 1)
    for i in range(7):
        assert c.db.assign_presig(f"r{i}", c.key.key_id, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 2) is not None
    due = {pool[3]: n for _, pool, n in c.pools.due()}
    assert due[(1, 2)] == 1  # ready 2 + assigned 7: one more reaches the cap of 10
    assert due[(1, 3)] == 4
    c.pools._filling[(c.key.key_id, 0, (), (1, 3))] = 4
    due = {pool[3]: n for _, pool, n in c.pools.due()}
    assert due[(1, 3)] == 4  # filling 4 <= refill_at: 4 more up to target 8
    c.pools._filling[(c.key.key_id, 0, (), (1, 3))] = 5
    assert {pool[3]: n for _, pool, n in c.pools.due()}[(1, 3)] == 3  # fell to refill_at: topped up to target
    c.pools._filling[(c.key.key_id, 0, (), (1, 3))] = 8
    assert (1, 3) not in {pool[3] for _, pool, _ in c.pools.due()}


def test_refill_yields_to_signing_and_keeps_max_parallel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=True, target=8, refill_at=4, cap=32, batch=4, max_parallel=1))
    fake = FakeSessions(c, hold=0.05)
    monkeypatch.setattr(pool_mod, "run_session", fake)
    monkeypatch.setattr(pool_mod.PresignPools, "reconcile_due", lambda self: None)
    c.busy[0] = True  # a request is being signed: no presign session starts
    c.pools.step()
    assert fake.started == []
    c.busy[0] = False
    sessions = c.pools.deps.sessions
    for _ in range(4):  # signing holds every session slot
        sessions.acquire()
    c.pools.step()
    assert fake.started == []
    for _ in range(4):
        sessions.release()
    for _ in range(30):
        c.pools.step()
        time.sleep(0.01)
    _wait_idle(c)
    assert fake.most == 1 and len(fake.started) >= 2
    for _ in range(4):  # every slot came back
        assert sessions.acquire(blocking=False)


def test_answers_that_disagree_discard_the_batch_on_every_signer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=True, target=4, refill_at=0, cap=8, batch=4))
    monkeypatch.setattr(pool_mod, "run_session", FakeSessions(c, tamper=2))
    pool = (c.key.key_id, 0, (), (1, 2))
    assert c.pools.run_presign(c.key, pool, 4) == 0
    assert c.db.ready_presigs() == []
    assert c.stubs[1].fresh == {} and c.stubs[2].fresh == {}  # DiscardPresignatures on both
    assert c.pools._backoff[pool] > time.monotonic()
    assert (c.key.key_id, 0, (), (1, 2)) not in {p for _, p, _ in c.pools.due()}


def _resp(infos: list[node_pb2.PresignatureInfo]) -> node_pb2.StepResponse:
    return node_pb2.StepResponse(finished=True, presign_result=node_pb2.PresignResult(presignatures=infos))


def test_agreed_batch_checks_every_field(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    pool = (c.key.key_id, 0, (), (1, 2))
    good = node_pb2.PresignatureInfo(presig_id=b"\x01" * 32, key_id=c.key.key_id, epoch=0, signers=(1, 2), big_r=_point(),
                                     public_key=derived(c))
    rows = agreed_batch({1: _resp([good]), 2: _resp([good])}, pool, 1, derived(c))
    assert rows == [PresigRow(b"\x01" * 32, c.key.key_id, 0, (), (1, 2), bytes(good.big_r), derived(c))]
    bad: dict[str, Any] = {
        "presig_id": b"\x01" * 31, "epoch": 1, "signers": (1, 3), "derivation_path": (0,), "public_key": _point(),
        "big_r": b"\x05" + bytes(32), "key_id": b"\x00" * 32,
    }
    for name, value in bad.items():
        x = node_pb2.PresignatureInfo()
        x.CopyFrom(good)
        if isinstance(value, tuple):
            getattr(x, name)[:] = value
        else:
            setattr(x, name, value)
        with pytest.raises(ValueError):
            agreed_batch({1: _resp([good]), 2: _resp([x])}, pool, 1, derived(c))
    with pytest.raises(ValueError, match="returned 2"):
        agreed_batch({1: _resp([good, good]), 2: _resp([good, good])}, pool, 1, derived(c))
    with pytest.raises(ValueError, match="repeated"):
        agreed_batch({1: _resp([good, good]), 2: _resp([good, good])}, pool, 2, derived(c))
    with pytest.raises(ValueError, match="answers from"):
        agreed_batch({1: _resp([good])}, pool, 1, derived(c))


@pytest.mark.parametrize("err", [NodesUnavailable({2: "node 2: down"}), Refused(grpc.StatusCode.PERMISSION_DENIED, "banned",
                                                                                 banned=(1,), node=2)])
def test_a_failed_session_backs_off_and_a_ban_claim_keeps_the_pair_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: Exception
) -> None:
    c = cluster(tmp_path)
    monkeypatch.setattr(pool_mod, "run_session", FakeSessions(c, fail=err))
    pool = (c.key.key_id, 0, (), (1, 2))
    assert c.pools.run_presign(c.key, pool, 4) == 0
    assert pool not in {p for _, p, _ in c.pools.due()}
    if isinstance(err, Refused):
        assert {p[3] for _, p, _ in c.pools.due()} == {(1, 3), (2, 3)}  # never {1, 2} again


def test_housekeeping_discards_other_epochs_retired_keys_bans_and_removed_nodes(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    c.presign((1, 2), 1, seed=b"a")
    c.presign((2, 3), 1, seed=b"b")
    c.presign((1, 3), 1, seed=b"c")
    assert c.pools.housekeeping() == 0
    c.pools.dispute(c.key.key_id, {frozenset({2, 3})})
    assert c.pools.housekeeping() == 1
    assert {r.signers for r in c.db.ready_presigs()} == {(1, 2), (1, 3)}
    assert c.stubs[2].fresh.keys() == {r.presig_id for r in c.db.ready_presigs() if 2 in r.signers}  # discarded on the nodes
    del c.nodes[3]  # node 3 left the roster
    assert c.pools.housekeeping() == 1
    c.epoch[0] = 1  # a refresh committed
    assert c.pools.housekeeping() == 1 and c.db.ready_presigs() == []
    c.epoch[0] = 0
    c.presign((1, 2), 1, seed=b"d")
    c.db.set_key_status(c.key.key_id, "discarded")
    assert c.pools.housekeeping() == 1 and c.db.ready_presigs() == []
    assert c.pools.due() == []


def test_reconcile_discards_what_a_restarted_node_lost_and_orphans_it_holds(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    rows = c.presign((1, 2), 2)
    orphan = c.presign((1, 2), 1, seed=b"o")[0]
    with c.db._tx() as conn:  # discarded here, the node's discard was lost
        conn.execute("UPDATE presigs SET state = 'discarded' WHERE presig_id = ?", (orphan.presig_id,))
    c.stubs[1].fresh.pop(orphan.presig_id)
    c.stubs[2].fresh.pop(rows[0].presig_id)  # node 2 restarted: its fresh ones are gone ...
    c.pools.reconcile_due()
    assert [r.presig_id for r in c.db.ready_presigs()] == [rows[1].presig_id]
    assert rows[0].presig_id not in c.stubs[1].fresh  # ... and node 1's copy is discarded too
    assert orphan.presig_id not in c.stubs[2].fresh  # discarded here while the node kept it: discarded there
    stray = os.urandom(32)
    c.stubs[2].fresh[stray] = next(iter(c.stubs[2].fresh.values()))
    c.nodes[2].healthy = False
    c.pools.reconcile_due()
    c.nodes[2].healthy = True  # back: reconciled again at once
    c.pools.reconcile_due()
    assert stray not in c.stubs[2].fresh


def test_cluster_status_and_key_info_show_the_pools(tmp_path: Path) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=True, paths=((),), target=6, refill_at=2, cap=12, batch=3))
    c.presign((1, 2), 3)
    assert c.db.assign_presig("r", c.key.key_id, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 2) is not None
    resp = coordinator_pb2.ClusterStatusResponse()
    c.pools.status(resp)
    assert resp.presign_enabled
    (p,) = resp.pools
    assert (p.key_id, p.epoch, tuple(p.derivation_path), tuple(p.signers)) == (c.key.key_id, 0, (), (1, 2))
    assert (p.ready, p.assigned, p.filling, p.target, p.refill_at, p.cap) == (2, 1, 0, 6, 2, 12)
    assert c.db.presigs_ready_of_key(c.key.key_id) == 2


def test_an_assignment_of_a_request_that_ended_without_it_is_discarded(tmp_path: Path) -> None:
    """A request that expired (or failed) while it held an assignment, e.g. while the coordinator
    was down, would keep a place under the cap for ever: housekeeping discards it."""
    c = cluster(tmp_path)
    rows = c.presign((1, 2), 2)
    a = c.db.assign_presig("req-1", c.key.key_id, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 2)
    b = c.db.assign_presig("req-2", c.key.key_id, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 2)
    assert a is not None and b is not None
    with c.db._tx() as conn:
        for rid, state in (("req-1", "expired"), ("req-2", "signing")):
            conn.execute(
                "INSERT INTO sign_requests (request_id, key_id, digest, requester, request, scope, state, created_ms,"
                " expires_ms, updated_ms) VALUES (?, ?, ?, 'r', x'', x'', ?, 0, 0, 0)", (rid, c.key.key_id, bytes(32), state),
            )
    assert c.pools.housekeeping() == 1
    assert c.db.presig_assigned_to("req-1") is None and c.db.presig_assigned_to("req-2") == b
    assert a.presig_id not in c.stubs[1].fresh and rows[1].presig_id in c.stubs[1].fresh


def test_pool_metrics_have_bounded_labels_and_no_key_id(tmp_path: Path) -> None:
    from mpcnet.common.metrics import Metrics, exported_families

    c = cluster(tmp_path)
    m = Metrics("coordinator")
    c.pools.metrics = m
    rows = c.presign((1, 2), 3)
    a = c.db.assign_presig("r", c.key.key_id, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 2)
    assert a is not None
    c.pools.used(a)
    c.pools.discard([rows[1]], "epoch")
    c.pools.fallback("presig-unknown")
    c.pools.fallback("something a node made up")  # never a new label value
    c.pools._set_gauges()  # each refill pass
    text = m.render().decode()
    assert 'mpcnet_pool_presignatures{state="ready"} 1.0' in text
    assert 'mpcnet_pool_presignatures{state="assigned"} 1.0' in text
    assert "mpcnet_pool_presignatures_used_total 1.0" in text
    assert 'mpcnet_pool_presignatures_discarded_total{reason="epoch"} 1.0' in text
    assert 'mpcnet_presign_fallbacks_total{reason="presig-unknown"} 1.0' in text
    assert 'mpcnet_presign_fallbacks_total{reason="refused"} 1.0' in text
    assert c.key.key_id.hex()[:16] not in text and "made up" not in text
    fams = exported_families("coordinator")
    assert {"mpcnet_pool_presignatures", "mpcnet_presign_fallbacks"} <= fams
    assert "mpcnet_pool_presignatures" not in exported_families("node")


def test_the_refilled_sets_do_not_move_with_load_but_follow_health(tmp_path: Path) -> None:
    """Ranking pools by the nodes' in-flight sessions would start a pool for every signer set
    over time (each kept, each counting under the nodes' cap); health and disputes do move it."""
    c = cluster(tmp_path)
    c.nodes[1].inflight = 9
    assert [p[3] for _, p, _ in c.pools.due()] == [(1, 2), (1, 3)]
    assert c.pools.signing_sets(c.key, (1, 2, 3), set())[0] == (2, 3)  # signing does prefer idle nodes
    c.nodes[1].healthy = False
    assert [p[3] for _, p, _ in c.pools.due()] == [(2, 3)]


def test_a_discard_of_ready_ones_leaves_one_a_request_took_meanwhile(tmp_path: Path) -> None:
    """Housekeeping and reconcile read the ready presignatures, then discard: one assigned in
    between stays with its request, here and on its signers."""
    c = cluster(tmp_path)
    rows = c.presign((1, 2), 3)
    a = c.db.assign_presig("req-1", c.key.key_id, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 2)
    assert a is not None and a.presig_id == rows[0].presig_id
    assert c.pools.discard(rows, "epoch") == 2
    assert c.db.presig_assigned_to("req-1") == a
    assert a.presig_id in c.stubs[1].fresh and a.presig_id in c.stubs[2].fresh
    assert all(r.presig_id not in c.stubs[1].fresh for r in rows[1:])
    out = c.signing.sign("req-1", c.key, hashlib.sha256(b"x").digest(), (), b"b")
    assert out is not None
