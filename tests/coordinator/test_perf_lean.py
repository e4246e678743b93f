"""Issue 14, the lean one-round path on the coordinator: reads on their own connection never wait
for a write in progress (and see every committed write); the audit flusher batches the state
changes of its linger window into one append and one drop; the session slots count their users
and the pool refiller's policy (refill while fewer than max_parallel_sessions - 1 protocol
sessions run or wait)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.audit_flush import LINGER_S, AuditFlusher
from coordinator.db import AuditEvent, CoordinatorDb, OutboxEntry
from coordinator.session_slots import SessionSlots, reserved_for_pools
from mpcnet.common.stores.audit import AuditLog

KEY = Ed25519PrivateKey.generate()


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


def test_session_slots_count_their_users_and_the_refill_policy_without_reserved_slots() -> None:
    with pytest.raises(ValueError, match="max_parallel_sessions"):
        SessionSlots(0)
    with pytest.raises(ValueError, match="presign.max_parallel"):
        SessionSlots(2, reserved=2)
    s = SessionSlots(4)
    assert s.demand == 0 and not s.crowded()
    with s:
        with s:
            assert s.demand == 2 and not s.crowded()  # 2 < 4 - 1: the refiller may start one
            with s:
                assert s.crowded()  # 3 run: signing keeps the last slot
    assert s.demand == 0 and not s.crowded()
    assert s.acquire(blocking=False)  # the refiller's slot is not demand
    assert s.demand == 0
    s.release()
    one = SessionSlots(1)
    assert not one.crowded()
    with one:
        assert one.crowded()


def test_reserved_slots_are_the_refillers_even_when_signing_waits() -> None:
    assert reserved_for_pools(4, True, 1) == 1
    assert reserved_for_pools(4, False, 1) == 0 and reserved_for_pools(1, True, 1) == 0 and reserved_for_pools(3, True, 3) == 0
    s = SessionSlots(3, reserved=1)
    order: list[str] = []
    with s, s:  # signing holds its whole share (3 - 1)
        assert not s.crowded()  # the refiller is never held back by demand
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
