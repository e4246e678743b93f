"""The coordinator's rate limit does not follow wall-clock steps (issue 14 red team).

``add_sign_request`` counted ``sign_requests.created_ms`` (the wall clock): a step forward of a
day emptied the window, a step back blocked the key for a day. It now counts
``created_steady_ms`` (schema step 11) against the database's steady clock
(mpcnet/common/steadyclock.py), which a restart continues."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from coordinator.db import _MIGRATIONS, STEADY_FLOOR_SQL, CoordinatorDb, RateLimitExceeded, SignRequestRecord
from mpcnet.common.stores.sqlite import migrate
from tests.steady_fake import FakeSteady

DAY_MS = 86_400_000
T0 = 1_750_000_000_000
LIMIT = (3, 3_600_000)
KEY = b"k" * 32


def _rec(rid: str, wall_ms: int, state: str = "pending_approval") -> SignRequestRecord:
    return SignRequestRecord(
        request_id=rid, key_id=KEY, digest=b"d" * 32, requester="alice", request=b"r", scope=b"default",
        state=state, created_ms=wall_ms, expires_ms=wall_ms + 600_000, signature=None, signers=(), error_code=0,
        error_message="", attempts=0, updated_ms=wall_ms,
    )


class Coordinator:
    def __init__(self, path: Path) -> None:
        self.path, self.steady, self.wall, self.n = path, FakeSteady(T0), T0, 0
        self.db = CoordinatorDb(path, steady=self.steady.source())

    def restart(self) -> None:
        self.db.close()
        self.db = CoordinatorDb(self.path, steady=self.steady.source())

    def submit(self) -> None:
        self.n += 1
        self.db.add_sign_request(_rec(f"r{self.n}", self.wall), rate_limit=LIMIT)

    def fill(self, count: int) -> None:
        for _ in range(count):
            self.steady.ms += 1_000
            self.wall += 1_000
            self.submit()


@pytest.fixture
def coord(tmp_path: Path) -> Coordinator:
    return Coordinator(tmp_path / "c.db")


def test_a_step_forward_a_day_does_not_empty_the_window(coord: Coordinator) -> None:
    coord.fill(3)
    coord.wall += DAY_MS
    with pytest.raises(RateLimitExceeded):
        coord.submit()
    coord.steady.ms = T0 + 1_000 + LIMIT[1]  # the first leaves the window: exactly one more
    coord.submit()
    with pytest.raises(RateLimitExceeded):
        coord.submit()
    coord.db.close()


def test_a_step_back_a_day_does_not_block_the_key(coord: Coordinator) -> None:
    coord.fill(3)
    coord.wall -= DAY_MS
    coord.steady.ms = T0 + 3_000 + LIMIT[1]  # a window after the last: the key may sign again
    coord.fill(3)
    with pytest.raises(RateLimitExceeded):
        coord.submit()
    coord.db.close()


def test_a_restart_and_a_reboot_keep_the_window(coord: Coordinator) -> None:
    coord.fill(3)
    coord.restart()
    coord.wall += DAY_MS
    with pytest.raises(RateLimitExceeded):
        coord.submit()
    coord.steady.boot, coord.steady.ms = "boot-2", 7  # a reboot: the raw clock starts over
    coord.restart()
    assert coord.db.steady.now_ms() == T0 + 3_000
    with pytest.raises(RateLimitExceeded):
        coord.submit()
    coord.db.close()


def test_the_count_and_the_floor_are_index_lookups(coord: Coordinator) -> None:
    conn = sqlite3.connect(coord.path)
    try:
        plan = " ".join(str(r) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM sign_requests WHERE key_id = ? AND created_steady_ms > ?"
            " AND state IN ('pending_approval', 'signing', 'done')", (KEY, 0)))
        assert "sign_requests_by_key_steady" in plan, plan
        floor = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + STEADY_FLOOR_SQL))
        assert "sign_requests_by_steady" in floor and "SCAN sign_requests" not in floor.replace("COVERING INDEX", ""), floor
    finally:
        conn.close()
    coord.db.close()


def test_an_upgraded_database_keeps_its_rows_in_the_window(tmp_path: Path) -> None:
    path = tmp_path / "v10.db"
    conn = sqlite3.connect(path)
    try:
        assert migrate(conn, _MIGRATIONS[:10]) == 10
        cols = "request_id, key_id, digest, requester, request, scope, state, created_ms, expires_ms, updated_ms"
        for i in range(3):
            conn.execute(f"INSERT INTO sign_requests ({cols}) VALUES (?, ?, ?, 'a', x'00', x'00', 'done', ?, ?, ?)",
                         (f"old{i}", KEY, b"d" * 32, T0 + i, T0 + 10**6, T0 + i))
        conn.commit()
    finally:
        conn.close()
    steady = FakeSteady(5, "boot-9")
    db = CoordinatorDb(path, steady=steady.source())  # the wall clock (5 ms) is not trusted: the rows are
    try:
        assert db.steady.now_ms() == T0 + 2  # the timeline starts at the newest row
        with pytest.raises(RateLimitExceeded):
            db.add_sign_request(_rec("new", T0 + DAY_MS), rate_limit=LIMIT)
        steady.ms += LIMIT[1]
        db.add_sign_request(_rec("new", T0 + DAY_MS), rate_limit=LIMIT)
    finally:
        db.close()
