"""The steady clock (mpcnet/common/steadyclock.py): one timeline per store, kept across restarts
on the same boot, never behind the persisted floor after a reboot, deaf to wall-clock steps."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mpcnet.common.steadyclock import (
    ANCHOR_TABLE,
    KEEP_ANCHORS,
    ExpiryClock,
    SteadyClockError,
    SteadySource,
    anchor,
    read_boot_id,
)
from mpcnet.common.stores.sqlite import open_database

DAY_MS = 86_400_000
FLOOR_SQL = "SELECT MAX(t) FROM events"


class Machine:
    """A fake host: raw boot-time clock (ms), boot id and wall clock (ms), all settable."""

    def __init__(self, wall_ms: int = 1_700_000_000_000) -> None:
        self.raw_ms = 5_000
        self.boot = "b0"
        self.wall_ms = wall_ms

    def source(self) -> SteadySource:
        return SteadySource(lambda: self.raw_ms * 1_000_000, lambda: self.boot, lambda: self.wall_ms * 1_000_000)

    def reboot(self, boot: str) -> None:
        self.boot = boot
        self.raw_ms = 1_000


def _db(path: Path) -> sqlite3.Connection:
    conn = open_database(path)
    conn.execute(ANCHOR_TABLE)
    conn.execute("CREATE TABLE IF NOT EXISTS events (t INTEGER)")
    conn.execute("CREATE INDEX IF NOT EXISTS events_by_t ON events (t)")
    return conn


def test_new_timeline_starts_at_the_wall_clock_and_ignores_wall_steps(tmp_path: Path) -> None:
    m = Machine()
    conn = _db(tmp_path / "s.db")
    clock = anchor(conn, m.source(), FLOOR_SQL)
    assert clock.now_ms() == m.wall_ms
    m.raw_ms += 1_500
    m.wall_ms += DAY_MS  # a step forward: the steady clock does not see it
    assert clock.now_ms() == 1_700_000_000_000 + 1_500
    m.wall_ms -= 2 * DAY_MS
    m.raw_ms += 10
    assert clock.now_ms() == 1_700_000_000_000 + 1_510


def test_restart_on_the_same_boot_continues_the_timeline(tmp_path: Path) -> None:
    m = Machine()
    conn = _db(tmp_path / "s.db")
    first = anchor(conn, m.source(), FLOOR_SQL)
    m.raw_ms += 60_000
    before = first.now_ms()
    conn.close()
    m.wall_ms -= DAY_MS  # the wall clock was set back while the process was down
    conn = _db(tmp_path / "s.db")
    again = anchor(conn, m.source(), FLOOR_SQL)
    assert again.offset_ms == first.offset_ms
    assert again.now_ms() == before
    m.raw_ms += 7
    assert again.now_ms() == before + 7


def test_reboot_continues_from_the_floor(tmp_path: Path) -> None:
    m = Machine()
    conn = _db(tmp_path / "s.db")
    clock = anchor(conn, m.source(), FLOOR_SQL)
    m.raw_ms += 90_000
    last = clock.now_ms()
    conn.execute("INSERT INTO events (t) VALUES (?)", (last,))  # the highest persisted steady time
    conn.close()
    m.reboot("b1")
    m.wall_ms -= 3 * DAY_MS  # and the wall clock is wrong after the reboot: irrelevant
    conn = _db(tmp_path / "s.db")
    after = anchor(conn, m.source(), FLOOR_SQL)
    assert after.now_ms() == last  # the raw clock restarted near 0: the timeline did not
    m.raw_ms += 5
    assert after.now_ms() == last + 5
    # both boots' anchors are kept; restarting on the old boot id (impossible on a real host,
    # e.g. a copied file) still never goes behind the floor
    rows = dict(conn.execute("SELECT boot_id, high_ms FROM steady_anchors").fetchall())
    assert set(rows) == {"b0", "b1"}


def test_floor_from_the_anchors_alone(tmp_path: Path) -> None:
    m = Machine()
    conn = _db(tmp_path / "s.db")
    clock = anchor(conn, m.source(), FLOOR_SQL)
    start = clock.now_ms()
    m.reboot("b1")
    again = anchor(conn, m.source(), FLOOR_SQL)
    assert again.now_ms() == start  # the high_ms written when b0 was anchored


def test_anchor_of_the_same_boot_behind_the_floor_is_moved_up(tmp_path: Path) -> None:
    m = Machine()
    conn = _db(tmp_path / "s.db")
    clock = anchor(conn, m.source(), FLOOR_SQL)
    conn.execute("INSERT INTO events (t) VALUES (?)", (clock.now_ms() + DAY_MS,))  # a restored store
    again = anchor(conn, m.source(), FLOOR_SQL)
    assert again.now_ms() == clock.now_ms() + DAY_MS


def test_upgraded_store_starts_at_its_newest_row_not_the_wall(tmp_path: Path) -> None:
    m = Machine()
    conn = _db(tmp_path / "s.db")
    conn.execute("INSERT INTO events (t) VALUES (?)", (m.wall_ms - 3_600_000,))  # backfilled from wall times
    m.wall_ms += DAY_MS  # stepped forward at the upgrade: not trusted, the rows keep their age
    clock = anchor(conn, m.source(), FLOOR_SQL)
    assert clock.now_ms() == 1_700_000_000_000 - 3_600_000


def test_old_anchors_are_pruned(tmp_path: Path) -> None:
    m = Machine()
    conn = _db(tmp_path / "s.db")
    for i in range(KEEP_ANCHORS + 5):
        m.reboot(f"b{i}")
        m.raw_ms = 1_000 + i
        anchor(conn, m.source(), FLOOR_SQL)
    (n,) = conn.execute("SELECT COUNT(*) FROM steady_anchors").fetchone()
    assert n == KEEP_ANCHORS
    assert conn.execute("SELECT 1 FROM steady_anchors WHERE boot_id = ?", (f"b{KEEP_ANCHORS + 4}",)).fetchone()


def test_boot_id(tmp_path: Path) -> None:
    good = tmp_path / "boot_id"
    good.write_text("0f6c1b8e-3c1d-4a2b-9e7f-0123456789ab\n")
    assert read_boot_id(good) == "0f6c1b8e-3c1d-4a2b-9e7f-0123456789ab"
    bad = tmp_path / "bad"
    bad.write_text("x; DROP TABLE\n")
    with pytest.raises(SteadyClockError, match="boot_id"):
        read_boot_id(bad)
    with pytest.raises(SteadyClockError, match="boot_id"):
        read_boot_id(tmp_path / "missing")
    if Path("/proc/sys/kernel/random/boot_id").exists():
        assert read_boot_id()


def test_expiry_clock_takes_the_later_of_wall_and_steady() -> None:
    wall = [1_000_000]
    steady = [50]
    clock = ExpiryClock.start(lambda: wall[0], lambda: steady[0])
    steady[0] += 10
    wall[0] += 10
    assert clock.now_ms() == 1_000_010
    wall[0] -= DAY_MS  # a step back: expiry keeps counting from where it was
    steady[0] += 5
    assert clock.now_ms() == 1_000_015
    wall[0] += 2 * DAY_MS  # a step forward is followed
    assert clock.now_ms() == 1_000_000 - DAY_MS + 10 + 2 * DAY_MS
