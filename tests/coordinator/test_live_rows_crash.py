"""Schema step 9 (coordinator/live_rows.py) killed in the middle, on a version-8 database with
rows: nothing of it is applied (version 8, the old indexes, every row), and the next open
completes it (review of p14d: the step is one transaction, a restart redoes it)."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from coordinator.db import _MIGRATIONS, CoordinatorDb
from mpcnet.common.stores.sqlite import migrate

KEY = hashlib.sha256(b"crash key").digest()
R = bytes([2]) + bytes(32)
N = 3000

_CHILD = textwrap.dedent("""
    import os, sqlite3, sys
    from coordinator.db import _MIGRATIONS
    from mpcnet.common.stores.sqlite import migrate
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    def trace(sql):
        if sql.startswith(sys.argv[2]):
            conn.set_progress_handler(lambda: os._exit(9), 100)  # killed inside the step's transaction
    conn.set_trace_callback(trace)
    migrate(conn, _MIGRATIONS)
    os._exit(0)
""")


def _v8_with_rows(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        assert migrate(conn, _MIGRATIONS[:8]) == 8
        conn.execute("BEGIN")
        for i in range(N):
            state = "ready" if i % 10 == 0 else "used"
            conn.execute(
                "INSERT INTO presigs (presig_id, key_id, epoch, path, signers, big_r, public_key, state, request_id, attempt,"
                " created_ms, updated_ms) VALUES (?, ?, 0, '', '1,2', ?, ?, ?, ?, ?, ?, ?)",
                (hashlib.sha256(b"p%d" % i).digest(), KEY, R, R, state, "" if state == "ready" else f"r{i}",
                 0 if state == "ready" else 1, i, i),
            )
            conn.execute(
                "INSERT INTO frost_nonces (nonce_id, key_id, epoch, node, hiding, binding, state, created_ms, updated_ms)"
                " VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?)",
                (hashlib.sha256(b"n%d" % i).digest(), KEY, 1 + i % 2, R, R, "fresh" if i % 10 == 0 else "discarded", i, i),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


def _indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        conn.close()


def test_a_crash_inside_step_9_leaves_version_8_and_the_next_open_completes_it(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    _v8_with_rows(path)
    root = Path(__file__).resolve().parents[2]
    for stmt in ("CREATE INDEX IF NOT EXISTS presigs_live", "CREATE INDEX IF NOT EXISTS frost_nonces_live"):
        p = subprocess.run([sys.executable, "-c", _CHILD, str(path), stmt], cwd=root, capture_output=True, timeout=120)
        assert p.returncode == 9, p.stderr.decode()[-2000:]
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA user_version").fetchone() == (8,)
            assert conn.execute("SELECT COUNT(*) FROM presigs").fetchone() == (N,)
            assert conn.execute("SELECT COUNT(*) FROM frost_nonces").fetchone() == (N,)
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            conn.close()
        names = _indexes(path)
        assert {"presigs_by_pool", "frost_nonces_fresh"} <= names and not {"presigs_live", "frost_nonces_live"} & names
    db = CoordinatorDb(path)
    try:
        assert db._query("PRAGMA user_version") == [(len(_MIGRATIONS),)]
        assert len(db.ready_presigs(KEY)) == N // 10
        assert db.fresh_nonce_counts(KEY, 0) == {1: N // 10}
    finally:
        db.close()
    names = _indexes(path)
    assert {"presigs_live", "frost_nonces_live"} <= names and not {"presigs_by_pool", "frost_nonces_fresh"} & names


_DOWNGRADE = (  # README, "History costs nothing to the periodic work": back to version 8
    "DROP TABLE IF EXISTS key_change_steady",  # step 12, when the database has it
    "DROP TABLE IF EXISTS ceremony_steady",
    # step 11 (steady times) first, when the database has it
    "DROP TRIGGER IF EXISTS sign_requests_steady_default",
    "DROP INDEX IF EXISTS sign_requests_by_key_steady",
    "DROP INDEX IF EXISTS sign_requests_by_steady",
    "ALTER TABLE sign_requests DROP COLUMN created_steady_ms",
    "DROP TABLE IF EXISTS steady_anchors",
    "DROP TABLE IF EXISTS store_probe",  # then step 10 (the store probe), when the database has it
    "DROP INDEX presigs_live",
    "DROP INDEX frost_nonces_live",
    "CREATE INDEX presigs_by_pool ON presigs (key_id, epoch, path, signers, state)",
    "CREATE INDEX frost_nonces_fresh ON frost_nonces (key_id, epoch, node, state)",
    "PRAGMA user_version = 8",
)


def _layout(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return sorted((str(n), str(s).replace(" IF NOT EXISTS", "")) for n, s in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"))
    finally:
        conn.close()


def test_the_documented_downgrade_gives_the_version_8_layout_and_upgrades_again(tmp_path: Path) -> None:
    v8 = tmp_path / "v8.db"
    conn = sqlite3.connect(v8)
    try:
        assert migrate(conn, _MIGRATIONS[:8]) == 8
    finally:
        conn.close()
    path = tmp_path / "c.db"
    _v8_with_rows(path)
    CoordinatorDb(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for s in _DOWNGRADE:
            conn.execute(s)
        conn.execute("COMMIT")
        assert migrate(conn, _MIGRATIONS[:8]) == 8  # what the version-8 coordinator does at start
    finally:
        conn.close()
    assert _layout(path) == _layout(v8)
    db = CoordinatorDb(path)
    try:
        assert db._query("PRAGMA user_version") == [(len(_MIGRATIONS),)]
        assert len(db.ready_presigs(KEY)) == N // 10
    finally:
        db.close()
