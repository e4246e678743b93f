"""The presigs table's lookups by request (issue 14, coordinator/by_request.py ``by_request``):
they use the partial index ``presigs_by_request`` instead of scanning a table that only grows
(rows are kept), and they find exactly the rows the plain ``request_id = ?`` finds.

The scan is detected by counting SQLite virtual-machine steps (``set_progress_handler`` with
N = 1) during one lookup: a scan's steps grow with the table, an index probe's do not."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from coordinator.by_request import by_request
from coordinator.db import CoordinatorDb
from coordinator.pool_store import PresigRow
from governance.reservation import MAX_SIGN_ATTEMPTS

KEY = hashlib.sha256(b"lookup key").digest()
R = bytes([2]) + bytes(32)
PK = bytes([3]) + bytes(32)


def _rows(n: int, tag: bytes) -> list[PresigRow]:
    return [PresigRow(hashlib.sha256(tag + b"%d" % i).digest(), KEY, 0, (), (1, 2), R, PK) for i in range(n)]


def _sign(db: CoordinatorDb, n: int, tag: str, now: int) -> None:
    """``n`` requests each assigned a presignature and marked used (as a DONE does)."""
    db.add_ready_presigs(_rows(n, tag.encode()), now)
    for i in range(n):
        a = db.assign_presig(f"{tag}-{i}", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, now)
        assert a is not None
        with db._tx() as c:
            assert db.mark_presig_used(c, a.presig_id, f"{tag}-{i}", now)


@contextmanager
def _steps(conn: sqlite3.Connection) -> Iterator[list[int]]:
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        yield count
    finally:
        conn.set_progress_handler(None, 1)


def _cost(conn: sqlite3.Connection, lookup: Callable[[], object]) -> int:
    with _steps(conn) as count:
        lookup()
    return count[0]


def test_lookups_by_request_do_not_grow_with_the_table(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    _sign(db, 20, "a", 1)
    db.add_ready_presigs(_rows(1, b"live"), 2)
    live = db.assign_presig("live-1", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 2)
    assert live is not None

    def costs() -> tuple[int, int, int, int]:
        return (  # the writer's probe ("one assignment at a time": live-1 has one), then the readers'
            _cost(db._conn, lambda: db.assign_presig("live-1", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 3)),
            _cost(db._rconn, lambda: db.presig_assigned_to("live-1")),
            _cost(db._rconn, lambda: db.signed_presigned("a-3")),
            _cost(db._rconn, lambda: db.signed_presigned("nobody")),
        )

    small = costs()
    _sign(db, 400, "b", 4)  # 20x the rows
    large = costs()
    for s, g in zip(small, large, strict=True):
        assert g <= s + 5, (small, large)  # an index probe: the same handful of steps (a scan: ~20x)


@pytest.mark.parametrize("request_id", ["a-0", "a-1", "live-1", "nobody", ""])
def test_lookups_by_request_find_what_the_plain_term_finds(tmp_path: Path, request_id: str) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    _sign(db, 3, "a", 1)
    db.add_ready_presigs(_rows(2, b"live"), 2)
    assert db.assign_presig("live-1", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 2) is not None
    with db._tx() as c:  # a row with no request: the plain term with '' finds it, so must ours
        c.execute("UPDATE presigs SET state = 'assigned' WHERE state = 'ready'")
    for state in ("assigned", "used"):
        plain = db._query("SELECT presig_id FROM presigs WHERE request_id = ? AND state = ? ORDER BY presig_id", (request_id, state))
        ours = db._query(f"SELECT presig_id FROM presigs WHERE {by_request(request_id)} AND state = ? ORDER BY presig_id",
                         (request_id, state))
        assert ours == plain
    assert db.signed_presigned(request_id) == bool(
        db._query("SELECT 1 FROM presigs WHERE request_id = ? AND state = 'used'", (request_id,)))
    got = db.presig_assigned_to(request_id)
    plain_assigned = db._query("SELECT presig_id FROM presigs WHERE request_id = ? AND state = 'assigned'", (request_id,))
    assert (got is None) == (not plain_assigned)


def test_the_plans_use_the_partial_index(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    for sql in (
        f"SELECT 1 FROM presigs WHERE {by_request('r')} AND state = 'assigned'",
        f"SELECT 1 FROM presigs WHERE {by_request('r')} AND state = 'used' LIMIT 1",
    ):
        plan = " ".join(str(r[3]) for r in db._query("EXPLAIN QUERY PLAN " + sql, ("r",)))
        assert "presigs_by_request" in plan, plan
