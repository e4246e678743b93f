"""coordinator/by_request.py, and the frost_nonces lookups by request that use it: the partial
index ``frost_nonces_by_request`` instead of a scan of a table that only grows, the same rows.
(The presigs lookups: tests/coordinator/test_pool_store_lookups.py.)"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from coordinator.by_request import by_request
from coordinator.db import CoordinatorDb
from coordinator.nonce_store import NonceRow
from governance.reservation import MAX_SIGN_ATTEMPTS

KEY = hashlib.sha256(b"frost lookup key").digest()
ELEMENT = bytes(32)


def test_the_term() -> None:
    assert by_request("r-1") == "request_id = ? AND request_id != ''"
    assert by_request("") == "request_id = ?"
    assert by_request("r-1", "rid") == "rid = ? AND rid != ''"
    with pytest.raises(ValueError, match="column"):
        by_request("r-1", "x; DROP TABLE t")


def _nonces(n: int, tag: bytes) -> list[NonceRow]:
    return [
        NonceRow(hashlib.sha256(tag + b"%d %d" % (i, node)).digest(), KEY, 0, node, ELEMENT, ELEMENT)
        for i in range(n) for node in (1, 2)
    ]


def _sign(db: CoordinatorDb, n: int, tag: str, now: int) -> None:
    db.add_fresh_nonces(_nonces(n, tag.encode()), now)
    for i in range(n):
        assert db.assign_nonces(f"{tag}-{i}", KEY, 0, (1, 2), MAX_SIGN_ATTEMPTS, now) is not None


def _steps(conn: sqlite3.Connection, run: object) -> int:
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        assert callable(run)
        run()
    finally:
        conn.set_progress_handler(None, 1)
    return count[0]


def test_nonce_lookups_by_request_do_not_grow_with_the_table(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    _sign(db, 10, "a", 1)

    def costs() -> tuple[int, int]:
        return (
            _steps(db._rconn, lambda: db.nonces_of("a-3")),
            _steps(db._conn, lambda: db.set_nonce_outcomes("a-3", 1, {1: "signed", 2: "signed"}, 5)),
        )

    small = costs()
    _sign(db, 300, "b", 2)  # 30x the rows
    large = costs()
    for s, g in zip(small, large, strict=True):
        assert g <= s + 5, (small, large)


@pytest.mark.parametrize("request_id", ["a-0", "a-2", "nobody", ""])
def test_nonce_lookups_by_request_find_what_the_plain_term_finds(tmp_path: Path, request_id: str) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    _sign(db, 3, "a", 1)
    db.add_fresh_nonces(_nonces(2, b"fresh"), 2)  # request '' (the plain term with '' finds these)
    plain = db._query("SELECT nonce_id FROM frost_nonces WHERE request_id = ? ORDER BY attempt, node, nonce_id", (request_id,))
    assert sorted(n.nonce_id for n in db.nonces_of(request_id)) == sorted(bytes(r[0]) for r in plain)
    db.set_nonce_outcomes(request_id, 1, {1: "signed", 2: "failed"}, 9)
    changed = db._query("SELECT request_id, node, outcome FROM frost_nonces WHERE outcome != '' ORDER BY request_id, node")
    expect = [] if request_id in ("", "nobody") else [(request_id, 1, "signed"), (request_id, 2, "failed")]
    assert [tuple(r) for r in changed] == expect  # '' rows are fresh (attempt 0): attempt 1 matches none of them
