"""Issue 14, the lean one-round path on the coordinator: reads on their own connection never wait
for a write in progress (and see every committed write); the audit flusher batches the state
changes of its linger window into one append and one drop; the session slots keep the refiller's
own slots; the refiller yields to signing unless a request found its pools empty, and such a
request waits for the batch being made and signs in one round from it."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import coincurve
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import coordinator.pool as pool_mod
from coordinator.audit_flush import LINGER_S, AuditFlusher
from coordinator.db import AuditEvent, CoordinatorDb, KeyRecord, OutboxEntry
from coordinator.pool_config import PresignConfig
from coordinator.pool_store import PoolKey
from coordinator.session_slots import SessionSlots, reserved_for_pools
from mpcnet.common.stores.audit import AuditLog

from .pool_util import Cluster, cluster
from .test_pool_refill import _wait_idle

KEY = Ed25519PrivateKey.generate()
DIGEST = hashlib.sha256(b"pay 1 coin").digest()


def _event(i: int) -> AuditEvent:
    return AuditEvent("coordinator", "sign-done", f"r{i}", "done", {"i": i})


def test_a_read_does_not_wait_for_a_write_in_progress_and_sees_what_committed(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "coordinator.db")
    try:
        db.queue_audit(_event(0))
        inside, release = threading.Event(), threading.Event()

        def slow_write() -> None:
            with db._tx() as c:  # holds the write lock and the transaction open
                c.execute("DELETE FROM audit_outbox")
                inside.set()
                release.wait(10)

        t = threading.Thread(target=slow_write)
        t.start()
        try:
            assert inside.wait(10)
            t0 = time.monotonic()
            before = db.pending_audit()  # the uncommitted delete is not seen, and no wait for it
            assert time.monotonic() - t0 < 1.0
            assert [e.audit.request_id for e in before] == ["r0"]
        finally:
            release.set()
            t.join(10)
        assert db.pending_audit() == []  # committed: the next read sees it
    finally:
        db.close()


class CountingOutbox:
    def __init__(self, db: CoordinatorDb) -> None:
        self.db = db
        self.drops: list[int] = []

    def pending_audit(self, limit: int = 1000) -> list[OutboxEntry]:
        return self.db.pending_audit(limit)

    def drop_audit(self, events: list[str]) -> None:
        self.drops.append(len(events))
        self.db.drop_audit(events)


def test_the_flusher_batches_the_changes_of_its_linger_window(tmp_path: Path) -> None:
    assert 0 < LINGER_S <= 0.1  # the log lags by about this much at most in normal operation
    db = CoordinatorDb(tmp_path / "coordinator.db")
    audit = AuditLog.open(tmp_path / "audit.db", component="coordinator", signing_key=KEY)
    outbox = CountingOutbox(db)
    f = AuditFlusher(outbox, audit, linger_s=0.3)
    f.start()
    try:
        for i in range(5):  # five state changes well inside one window
            db.queue_audit(_event(i))
            f.soon()
        deadline = time.monotonic() + 10
        while f.flushed < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert f.flushed == 5 and outbox.drops == [5] and f.batches == 1
        assert [e.request_id for e in audit.entries()][-5:] == [f"r{i}" for i in range(5)]
    finally:
        f.stop()
        db.close()


def test_stop_flushes_what_is_queued_without_waiting_for_the_linger(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "coordinator.db")
    audit = AuditLog.open(tmp_path / "audit.db", component="coordinator", signing_key=KEY)
    f = AuditFlusher(db, audit, linger_s=30.0)
    f.start()
    try:
        db.queue_audit(_event(1))
        f.soon()
        t0 = time.monotonic()
        f.stop()
        assert time.monotonic() - t0 < 5.0
        assert db.pending_audit() == [] and [e.request_id for e in audit.entries()][-1:] == ["r1"]
    finally:
        db.close()


def _sign_once(s: SessionSlots, then: Callable[[], object]) -> None:
    with s:
        then()


def test_session_slots_count_their_users() -> None:
    with pytest.raises(ValueError, match="max_parallel_sessions"):
        SessionSlots(0)
    with pytest.raises(ValueError, match="presign.max_parallel"):
        SessionSlots(2, reserved=2)
    s = SessionSlots(4)
    assert s.demand == 0
    with s:
        with s:
            assert s.demand == 2
    assert s.demand == 0
    assert s.acquire(blocking=False)  # the refiller's slot is not demand
    assert s.demand == 0
    s.release()


def test_reserved_slots_are_the_refillers_even_when_signing_waits() -> None:
    assert reserved_for_pools(4, True, 1) == 1
    assert reserved_for_pools(4, False, 1) == 0 and reserved_for_pools(1, True, 1) == 0 and reserved_for_pools(3, True, 3) == 0
    s = SessionSlots(3, reserved=1)
    order: list[str] = []
    with s, s:  # signing holds its whole share (3 - 1)
        waiter = threading.Thread(target=_sign_once, args=(s, lambda: order.append("signed")))
        waiter.start()
        deadline = time.monotonic() + 5
        while s.demand < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.demand == 3 and order == []  # a third signing session waits...
        assert s.acquire(blocking=False)  # ...while the refiller takes the reserved slot
        assert not s.acquire(blocking=False)  # every slot is taken now
        s.release()
        assert order == []  # the reserved slot is never a signing slot
    waiter.join(5)
    assert order == ["signed"] and s.demand == 0


def test_a_waiter_counts_as_demand_until_it_runs() -> None:
    s = SessionSlots(1)
    got = threading.Event()
    with s:
        t = threading.Thread(target=_sign_once, args=(s, got.set))
        t.start()
        deadline = time.monotonic() + 5
        while s.demand < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.demand == 2 and not got.is_set()
    t.join(5)
    assert got.is_set() and s.demand == 0


@pytest.mark.parametrize("reserved", [0, 1])
def test_a_timed_out_wait_holds_nothing(reserved: int) -> None:
    s = SessionSlots(2, reserved=reserved)
    with s:
        if not reserved:
            assert s.acquire(blocking=False)  # now every slot is taken
        assert s.__enter__(True, 0.01) is False  # a timeout: nothing held, nothing counted
        assert s.demand == 1
        if not reserved:
            s.release()
    assert s.demand == 0
    with s:  # both slots are free again
        assert s.acquire(blocking=False)
        s.release()


# --- a request with empty pools waits for the batch being made (coordinator/pool.py wait_for_fill) ---


def _slow_presign(c: Cluster, hold_s: float) -> Callable[[KeyRecord, PoolKey, int], int]:
    """A presign session that takes ``hold_s`` and stores ``count`` real presignatures."""

    def run(k: KeyRecord, pool: PoolKey, count: int) -> int:
        time.sleep(hold_s)
        return len(c.presign(pool[3], count, path=pool[2], seed=bytes(pool[3]) + os.urandom(4)))

    return run


def test_wait_for_fill_waits_only_while_a_session_of_that_pool_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=True, target=4, refill_at=2, cap=32, batch=4))
    kid = c.key.key_id
    assert not c.pools.wait_for_fill(kid, 0, (), 5.0)  # the refiller is not running: no wait at all
    monkeypatch.setattr(c.pools, "_thread", threading.current_thread())  # as if started
    t0 = time.monotonic()
    assert not c.pools.wait_for_fill(kid, 0, (), 5.0)  # nothing filling: only the grace
    assert time.monotonic() - t0 < 1.0
    monkeypatch.setattr(c.pools, "run_presign", _slow_presign(c, 0.3))
    c.pools.step()  # starts the sessions of both preferred sets
    assert not c.pools.wait_for_fill(kid, 0, (7,), 0.2)  # another path: not waited for
    assert c.pools.wait_for_fill(kid, 0, (), 5.0)  # a session of this pool ended
    assert c.db.ready_presigs()
    _wait_idle(c)


def test_a_request_finding_its_pools_empty_signs_from_the_batch_being_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=True, target=2, refill_at=1, cap=32, batch=2))
    monkeypatch.setattr(c.pools, "run_presign", _slow_presign(c, 0.2))
    monkeypatch.setattr(c.pools, "reconcile_due", lambda: None)
    c.pools.start()
    try:
        out = c.signing.sign("req-1", c.key, DIGEST, (), b"bundle")
        assert out is not None  # one round, not the full protocol
        sig, signers, attempt = out
        assert signers in ((1, 2), (1, 3))
        assert attempt == 1 and c.db.sign_attempts_taken("req-1") == 1
        assert coincurve.PublicKey(c.keys[1].public_key.encode()).verify(sig.der, DIGEST, hasher=None)
    finally:
        c.pools.stop()
        _wait_idle(c)


def test_the_refiller_yields_to_signing_unless_a_request_is_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=True, target=4, refill_at=2, cap=32, batch=4))
    started: list[PoolKey] = []

    def run(k: KeyRecord, pool: PoolKey, count: int) -> int:
        started.append(pool)
        return 0

    monkeypatch.setattr(c.pools, "run_presign", run)
    monkeypatch.setattr(c.pools, "reconcile_due", lambda: None)
    c.busy[0] = True  # requests are being signed (from full pools, say)
    c.pools.step()
    _wait_idle(c)
    assert started == []
    c.pools.fallback("empty")  # a request found its pools empty: refill while signing
    c.pools.step()
    _wait_idle(c)
    assert started
    monkeypatch.setattr(pool_mod, "WANTED_S", 0.0)
    c.pools.fallback("empty")
    started.clear()
    c.pools.step()  # no longer wanted: signing wins again
    _wait_idle(c)
    assert started == []
