"""The node store's periodic and per-signature reads of its presignature and FROST nonce pools
(health probe counts, the refill's held count, the reconcile listing) and of the served-request
window cost what the live rows cost, not the history (used rows are kept for ever: they prove a
presignature or nonce was never offered twice). Their indexes lead with ``used`` (and the window's
with the key and time), so ``used = 0`` reads only fresh rows; this pins that (issue 14).

Cost is counted in SQLite virtual-machine steps (``set_progress_handler`` with N = 1)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

from mpc_node.served_window import sql_count
from mpc_node.storage import NodeStore

KEY = hashlib.sha256(b"node live key").digest()
OTHER = hashlib.sha256(b"node other key").digest()
PT = bytes([2]) + bytes(32)


def _id(tag: str, i: int) -> bytes:
    return hashlib.sha256(f"{tag}-{i}".encode()).digest()


def _rows(c: sqlite3.Connection, n: int, tag: str, used: int) -> None:
    """``n`` presignatures and ``n`` nonce pairs per key, ``used`` (1: history) or fresh, and for
    history ``n`` served requests per key long ago."""
    for key in (KEY, OTHER):
        t = key[:4].hex() + tag
        c.executemany(
            "INSERT INTO presignatures (sigid, key_id, record, used, created_at, epoch, path, signers, big_r, public_key,"
            " created_ms) VALUES (?, ?, x'00', ?, 1, 0, '', '1,2', ?, ?, ?)",
            [(_id(t + "p", i), key, used, PT, PT, i) for i in range(n)],
        )
        c.executemany(
            "INSERT INTO frost_nonces (nonce_id, key_id, epoch, signer, hiding, binding, used, created_ms)"
            " VALUES (?, ?, 0, 1, ?, ?, ?, ?)",
            [(_id(t + "n", i), key, PT, PT, used, i) for i in range(n)],
        )
        if used:
            c.executemany(
                "INSERT INTO requests (request_id, key_id, digest, served_at, served_ms) VALUES (?, ?, ?, 1, ?)",
                [(f"{t}-r{i}", key, bytes(32), 1_000 + i) for i in range(n)],
            )


def _cost(conn: sqlite3.Connection, call: Callable[[], object]) -> int:
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        call()
    finally:
        conn.set_progress_handler(None, 1)
    return count[0]


def test_the_node_pool_reads_do_not_grow_with_the_history(tmp_path: Path) -> None:
    with NodeStore.open(tmp_path / "n.db", b"pw", 1, scrypt_n=2**10) as s:
        conn = s._conn
        with conn:
            for key in (KEY, OTHER):
                conn.execute(
                    "INSERT INTO keys (key_id, label, public_key, threshold, parties, status, created_at, record)"
                    " VALUES (?, 'k', ?, 2, 3, 'active', 1, x'00')", (key, PT))
            _rows(conn, 8, "live", 0)
            _rows(conn, 30, "old", 1)
        calls: dict[str, Callable[[], object]] = {
            "count_fresh()": s.count_fresh,
            "count_fresh(key)": lambda: s.count_fresh(KEY),
            "fresh_presignatures()": s.fresh_presignatures,
            "fresh_presignatures(key)": lambda: s.fresh_presignatures(KEY),
            "count_fresh_nonces()": s.count_fresh_nonces,
            "count_fresh_nonces(key)": lambda: s.count_fresh_nonces(KEY),
            "fresh_nonces()": s.fresh_nonces,
            "served window count (recent)": lambda: sql_count(conn, KEY, 1_000_000),
        }
        small = {name: _cost(conn, call) for name, call in calls.items()}
        assert s.count_fresh() == 16 and len(s.fresh_nonces()) == 16
        with conn:
            _rows(conn, 600, "older", 1)  # 20x the history, the same fresh rows
        large = {name: _cost(conn, call) for name, call in calls.items()}
        assert s.count_fresh() == 16 and len(s.fresh_presignatures(KEY)) == 8 and s.count_fresh_nonces(KEY) == 8
        for name in small:
            assert large[name] <= small[name] + 5, (name, small[name], large[name])  # a scan: ~20x
