"""Review 2 (p16) of the steady clock (mpcnet/common/steadyclock.py): an upgraded store holding a
row from the future, and a corrupted ``steady_anchors`` row.

* A row served while the wall clock was ahead (then set right) was backfilled with that future
  time; the brand-new timeline started at it, so every row really served in the last window
  looked a day old and the key could sign the policy's limit again at once. The backfill now
  caps a row's steady time at the wall clock of the upgrade (never later than now): such a row
  counts for one whole window from the upgrade, the others keep their age.
* An anchor value that is not an integer in range (a corrupted or hostile row) made the open fail
  with a bare ValueError/TypeError traceback, or (near 2**63) every later insert fail with an
  OverflowError; it is now refused at open as a SteadyClockError naming ``steady_anchors``."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from coordinator.db import _MIGRATIONS, CoordinatorDb, RateLimitExceeded, SignRequestRecord
from mpc_node.storage import NodeStore, RateLimited, ServedRequest, StoreError
from mpcnet.common.steadyclock import ANCHOR_TABLE, SteadyClockError, anchor
from mpcnet.common.stores.sqlite import migrate, open_database
from tests.steady_fake import FakeSteady

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
PASS = b"pw"
N = 2**10
KEY = b"k" * 32
PUB = b"\x02" + b"\x11" * 32


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _old_node_store(path: Path, served: list[int]) -> None:
    """A node store as schema 11 left it (no steady_ms, no anchors) holding requests served at ``served``."""
    with NodeStore.open(path, PASS, 1, scrypt_n=N, steady=FakeSteady(5, "boot-0").source()) as s:
        s.put_key_share(KEY, b"share", label="k", public_key=PUB, threshold=2, parties=2)
        s.activate_key(KEY)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for stmt in (
            "DROP TRIGGER requests_steady_default", "DROP INDEX requests_by_key_steady", "DROP INDEX requests_by_steady",
            "ALTER TABLE requests DROP COLUMN steady_ms", "DROP TABLE steady_anchors", "PRAGMA user_version = 11",
        ):
            conn.execute(stmt)
        for i, ms in enumerate(served):
            conn.execute("INSERT INTO requests (request_id, key_id, digest, served_at, served_ms) VALUES (?, ?, ?, ?, ?)",
                         (f"old{i}", KEY, b"\x07" * 32, ms // 1000, ms))
    finally:
        conn.close()


def test_node_upgrade_with_a_future_row_keeps_the_limit(tmp_path: Path) -> None:
    now = _now_ms()
    # ten served in the last hour, one while the wall clock was a day ahead (then set right)
    _old_node_store(tmp_path / "n.db", [now - 60_000 + i for i in range(10)] + [now + DAY_MS])
    steady = FakeSteady(7, "boot-1")
    with NodeStore.open(tmp_path / "n.db", PASS, 1, scrypt_n=N, steady=steady.source()) as s:
        assert s.count_served_within(KEY, HOUR_MS) == 11
        s.put_presignature(b"\x01" * 32, KEY, b"fresh")
        with pytest.raises(RateLimited):
            s.consume_presignature(b"\x01" * 32, b"tomb", request=ServedRequest("new", KEY, b"\x07" * 32, now, (10, HOUR_MS)))
        steady.ms += HOUR_MS + 1_000  # a window later all have left it
        assert s.count_served_within(KEY, HOUR_MS) == 0


def _rec(rid: str, wall_ms: int) -> SignRequestRecord:
    return SignRequestRecord(
        request_id=rid, key_id=KEY, digest=b"d" * 32, requester="alice", request=b"r", scope=b"default",
        state="done", created_ms=wall_ms, expires_ms=wall_ms + 600_000, signature=None, signers=(), error_code=0,
        error_message="", attempts=0, updated_ms=wall_ms,
    )


def test_coordinator_upgrade_with_a_future_row_keeps_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "v10.db"
    now = _now_ms()
    conn = sqlite3.connect(path)
    try:
        assert migrate(conn, _MIGRATIONS[:10]) == 10
        cols = "request_id, key_id, digest, requester, request, scope, state, created_ms, expires_ms, updated_ms"
        for i, ms in enumerate([now - 60_000, now - 50_000, now + DAY_MS]):
            conn.execute(f"INSERT INTO sign_requests ({cols}) VALUES (?, ?, ?, 'a', x'00', x'00', 'done', ?, ?, ?)",
                         (f"old{i}", KEY, b"d" * 32, ms, ms + 600_000, ms))
        conn.commit()
    finally:
        conn.close()
    db = CoordinatorDb(path, steady=FakeSteady(7, "boot-1").source())
    try:
        with pytest.raises(RateLimitExceeded):
            db.add_sign_request(_rec("new", now), rate_limit=(3, HOUR_MS))
    finally:
        db.close()


@pytest.mark.parametrize("high", ["'garbage'", "1e300", str(2**63 - 1), "-5", "NULL"])
def test_a_corrupted_anchor_is_refused_naming_it(tmp_path: Path, high: str) -> None:
    conn = open_database(tmp_path / "a.db")
    conn.execute(ANCHOR_TABLE)
    conn.execute("CREATE TABLE events (t INTEGER)")
    conn.execute(f"INSERT INTO steady_anchors (boot_id, offset_ms, high_ms) VALUES ('other', 0, {high})"
                 if high != "NULL" else "INSERT INTO steady_anchors (boot_id, offset_ms, high_ms) VALUES ('b', 0, 0)")
    if high == "NULL":  # this boot's offset corrupted instead
        conn.execute("UPDATE steady_anchors SET offset_ms = 'x'")
    with pytest.raises(SteadyClockError, match="steady_anchors"):
        anchor(conn, FakeSteady(5, "b").source(), "SELECT MAX(t) FROM events")


def test_a_node_store_with_a_corrupted_anchor_fails_to_open_with_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    NodeStore.open(path, PASS, 1, scrypt_n=N, steady=FakeSteady(5, "boot-0").source()).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE steady_anchors SET high_ms = ?", (2**63 - 1,))
    conn.close()
    with pytest.raises(StoreError, match="steady_anchors"):
        NodeStore.open(path, PASS, 1, scrypt_n=N, steady=FakeSteady(5, "boot-1").source())


def test_idle_uptime_before_a_reboot_is_kept_by_the_probe_writes(tmp_path: Path) -> None:
    """The anchor's ``high_ms`` was written only at open, so a reboot continued the timeline from
    the last open or served row: the hours the host then ran idle were lost and a key that had
    reached its limit was blocked for a whole window after the reboot (only the downtime is
    meant to be lost). The periodic store probe now records the steady time in the anchor."""
    steady = FakeSteady(1_000_000, "boot-1")
    path = tmp_path / "n.db"
    with NodeStore.open(path, PASS, 1, scrypt_n=N, steady=steady.source()) as s:
        s.put_key_share(KEY, b"share", label="k", public_key=PUB, threshold=2, parties=2)
        s.activate_key(KEY)
        for i in range(3):
            s.put_presignature(bytes([i + 1]) * 32, KEY, b"fresh")
            s.consume_presignature(bytes([i + 1]) * 32, b"tomb", request=ServedRequest(f"r{i}", KEY, b"\x07" * 32, 1, (3, HOUR_MS)))
        steady.ms += 2 * HOUR_MS  # up, idle, for two hours (the probe writes every few seconds)
        s.probe_write(steady.ms)
    steady.boot, steady.ms = "boot-2", 10  # a reboot right after
    with NodeStore.open(path, PASS, 1, scrypt_n=N, steady=steady.source()) as s:
        assert s.count_served_within(KEY, HOUR_MS) == 0


def test_idle_uptime_before_a_reboot_is_kept_by_the_coordinator_probe(tmp_path: Path) -> None:
    steady = FakeSteady(1_000_000, "boot-1")
    db = CoordinatorDb(tmp_path / "c.db", steady=steady.source())
    try:
        for i in range(3):
            db.add_sign_request(_rec(f"r{i}", 1_000_000), rate_limit=(3, HOUR_MS))
        steady.ms += 2 * HOUR_MS
        db.probe_write(steady.ms)
    finally:
        db.close()
    steady.boot, steady.ms = "boot-2", 10
    db = CoordinatorDb(tmp_path / "c.db", steady=steady.source())
    try:
        db.add_sign_request(_rec("after-reboot", 1_000_000), rate_limit=(3, HOUR_MS))
    finally:
        db.close()
