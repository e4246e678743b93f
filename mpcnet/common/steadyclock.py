"""A steady millisecond clock that wall-clock steps cannot move, kept across restarts.

Security decisions that measure time spans (the rate limits' windows) must not follow the wall
clock: stepped forward a day it empties every window at once, stepped back a day it blocks a
key for a day. This clock reads ``CLOCK_BOOTTIME`` (monotonic, counts suspend, never stepped)
and adds a per-boot offset kept in the store (table ``steady_anchors``, one row per boot id from
``/proc/sys/kernel/random/boot_id``):

* **Restart, same boot.** The anchor of the current boot id is found and reused: the restarted
  process continues the very same timeline (``steady = boottime + offset``).
* **Reboot.** A new boot id: the timeline continues from the *floor*, the highest steady time
  the store holds (the anchors' ``high_ms``, kept current by :meth:`SteadyClock.mark` at the
  stores' periodic probe writes, and the caller's indexed ``MAX``), so it never runs
  backwards; the time the machine was down is not counted (a rate window then lasts longer by
  it, never shorter).
* **New timeline.** A store without any anchor starts at its floor when it holds steady times
  (rows backfilled from before this clock existed), else at the wall clock (nothing to protect).

Times are integers in milliseconds. :func:`anchor` raises :class:`SteadyClockError` when the
boot id cannot be read or the anchor cannot be written.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mpcnet.common.stores.sqlite import write_transaction

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
ANCHOR_TABLE = (
    "CREATE TABLE IF NOT EXISTS steady_anchors (boot_id TEXT PRIMARY KEY, offset_ms INTEGER NOT NULL,"
    " high_ms INTEGER NOT NULL)"
)
KEEP_ANCHORS = 16  # rows kept (newest high_ms first); older boots are forgotten
# the reserved ``steady_anchors`` row holding the expiry clock's wall-time floor (not a boot id: a
# boot id is hex and dashes): ``offset_ms`` = floor wall time - steady time when marked (so the floor
# at steady time s is s + offset_ms: it advances with the steady clock, across restarts and reboots),
# ``high_ms`` = the floor's wall time when last marked. Kept out of the anchors' MAX and pruning.
WALL_FLOOR_ROW = "~expiry-wall-floor"
MAX_BOOT_ID = 64
MAX_STEADY_MS = 2**53  # a steady time or offset beyond this (about 285,000 years) is a corrupted value
# the wall clock in Unix ms, as SQL (millisecond precision): an upgrade's backfill caps the steady
# time it gives old rows at it, so a row stamped while the wall clock was ahead does not become the
# new timeline's start (that made every row really served in the last window look old)
WALL_NOW_MS_SQL = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)"


class SteadyClockError(Exception):
    """The boot id cannot be read or is malformed, or the anchor cannot be read or written."""


def boottime_ns() -> int:
    """``CLOCK_BOOTTIME`` in nanoseconds (monotonic since boot, suspend included)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def read_boot_id(path: Path = BOOT_ID_PATH) -> str:
    """This boot's id (a UUID, stripped). Raises SteadyClockError if unreadable or malformed."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise SteadyClockError(f"boot_id: cannot read {path} ({e.__class__.__name__})") from None
    if not text or len(text) > MAX_BOOT_ID or not all(ch in "0123456789abcdef-" for ch in text):
        raise SteadyClockError(f"boot_id: {path} does not hold a boot id")
    return text


@dataclass(frozen=True)
class SteadySource:
    """Where a :class:`SteadyClock` reads: the raw monotonic clock (ns), the boot id and the
    wall clock (ns, only to start a brand-new timeline). Tests inject all three."""

    raw_ns: Callable[[], int] = boottime_ns
    boot_id: Callable[[], str] = read_boot_id
    wall_ns: Callable[[], int] = time.time_ns


@dataclass(frozen=True)
class SteadyClock:
    """``now_ms()`` = ``raw_ns() // 10**6 + offset_ms``: never stepped, monotonic on one boot."""

    offset_ms: int
    raw_ns: Callable[[], int] = field(default=boottime_ns, repr=False)
    boot_id: str = ""  # the boot whose anchor row this clock continues ("" : none, :meth:`mark` does nothing)

    def now_ms(self) -> int:
        return self.raw_ns() // 1_000_000 + self.offset_ms

    def mark(self, c: sqlite3.Connection) -> None:
        """Inside the caller's write transaction: record the steady time now as this boot's
        ``high_ms``, so a reboot continues the timeline from here, not from the last open or
        row (the stores' periodic probe writes call it: only the downtime is lost at a reboot,
        not the uptime since; review 2)."""
        if self.boot_id:
            c.execute(
                "UPDATE steady_anchors SET high_ms = MAX(high_ms, ?) WHERE boot_id = ?", (self.now_ms(), self.boot_id),
            )


def anchor(conn: sqlite3.Connection, source: SteadySource, floor_sql: str) -> SteadyClock:
    """The store's steady clock for this boot, anchored durably in one write transaction on
    ``conn`` (which must hold :data:`ANCHOR_TABLE`). ``floor_sql`` selects one value: the highest
    steady time in the caller's tables (NULL when none), answered from an index.

    The clock reads at least the floor at once; the anchor row of this boot records its offset
    and the time now (``high_ms``). Raises SteadyClockError (boot id, database, or a stored
    anchor or floor that is not an integer in [0, MAX_STEADY_MS] ms, offsets in
    [-MAX_STEADY_MS, MAX_STEADY_MS]: a corrupted row is refused at open, naming
    ``steady_anchors``, instead of a bare traceback or every later insert overflowing)."""
    boot_id = source.boot_id()
    try:
        with write_transaction(conn) as c:
            raw = source.raw_ns() // 1_000_000
            for held, value in c.execute("SELECT offset_ms, high_ms FROM steady_anchors"):
                _checked(held, "steady_anchors.offset_ms", -MAX_STEADY_MS)
                _checked(value, "steady_anchors.high_ms", 0)
            (held_high,) = c.execute("SELECT MAX(high_ms) FROM steady_anchors WHERE boot_id != ?", (WALL_FLOOR_ROW,)).fetchone()
            (rows_high,) = c.execute(floor_sql).fetchone()
            if rows_high is not None:
                _checked(rows_high, "steady_anchors: the newest steady time of the store's rows", 0)
            highs = [int(v) for v in (held_high, rows_high) if v is not None]
            row = c.execute("SELECT offset_ms FROM steady_anchors WHERE boot_id = ?", (boot_id,)).fetchone()
            if row is not None:
                offset = int(row[0])
            elif not highs:  # a brand-new timeline, nothing to protect
                offset = source.wall_ns() // 1_000_000 - raw
            else:
                offset = max(highs) - raw
            floor = max(highs, default=raw + offset)
            if raw + offset < floor:  # never behind a persisted time (a restored store, a copied file)
                offset = floor - raw
            now = raw + offset
            c.execute(
                "INSERT INTO steady_anchors (boot_id, offset_ms, high_ms) VALUES (?, ?, ?) ON CONFLICT (boot_id)"
                " DO UPDATE SET offset_ms = excluded.offset_ms, high_ms = MAX(high_ms, excluded.high_ms)",
                (boot_id, offset, now),
            )
            c.execute(
                "DELETE FROM steady_anchors WHERE boot_id != ? AND boot_id NOT IN"
                " (SELECT boot_id FROM steady_anchors WHERE boot_id != ? ORDER BY high_ms DESC, rowid DESC LIMIT ?)",
                (WALL_FLOOR_ROW, WALL_FLOOR_ROW, KEEP_ANCHORS),
            )
    except sqlite3.Error as e:
        raise SteadyClockError(f"steady_anchors: cannot anchor the steady clock ({e})") from None
    return SteadyClock(offset, source.raw_ns, boot_id)


def read_wall_floor(c: sqlite3.Connection) -> int | None:
    """The persisted expiry floor's offset (ms: floor wall time - steady time; the floor now is
    the steady time now + it), or None if none was marked. Raises SteadyClockError if the row
    is corrupted (not an integer in [-MAX_STEADY_MS, MAX_STEADY_MS])."""
    try:
        row = c.execute("SELECT offset_ms FROM steady_anchors WHERE boot_id = ?", (WALL_FLOOR_ROW,)).fetchone()
    except sqlite3.Error as e:
        raise SteadyClockError(f"steady_anchors: cannot read the expiry floor ({e})") from None
    return None if row is None else _checked(row[0], "steady_anchors: the expiry floor", -MAX_STEADY_MS)


def mark_wall_floor(c: sqlite3.Connection, expiry_ms: int, steady_ms: int, *, reset: bool = False) -> None:
    """Inside the caller's write transaction: record ``expiry_ms`` (the expiry clock now, ms since
    the epoch) at steady time ``steady_ms`` as the floor; it only moves forward, unless ``reset``
    (the operator's ``reset-clock-floor``: the floor becomes exactly ``expiry_ms``)."""
    offset = expiry_ms - steady_ms
    c.execute(
        "INSERT INTO steady_anchors (boot_id, offset_ms, high_ms) VALUES (?, ?, ?) ON CONFLICT (boot_id) DO UPDATE SET"
        + (" offset_ms = excluded.offset_ms, high_ms = excluded.high_ms" if reset else
           " offset_ms = MAX(offset_ms, excluded.offset_ms), high_ms = MAX(high_ms, excluded.high_ms)"),
        (WALL_FLOOR_ROW, offset, max(expiry_ms, 0)),
    )


def _checked(value: object, what: str, low: int) -> int:
    """``value`` if it is an integer in [low, MAX_STEADY_MS]; else SteadyClockError naming ``what``."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_STEADY_MS:
        raise SteadyClockError(f"{what}: not an integer in range (a corrupted row); the steady clock cannot be anchored")
    return value


@dataclass(frozen=True)
class ExpiryClock:
    """The wall clock for expiry judgements that a step back cannot rewind: ``now_ms()`` is the
    later of the wall clock and (the wall clock at start + the steady time elapsed since). A
    step forward is followed at once (things expire early, never late); after a step back the
    clock keeps counting from where it was until the process restarts."""

    wall_ms: Callable[[], int]
    steady_ms: Callable[[], int]
    wall_at_start: int
    steady_at_start: int

    @staticmethod
    def start(wall_ms: Callable[[], int], steady_ms: Callable[[], int], floor_offset_ms: int | None = None) -> ExpiryClock:
        """Started now: both clocks read once. ``floor_offset_ms`` (see :func:`read_wall_floor`):
        the persisted floor, so the clock starts at the later of the wall clock and the floor
        (the last expiry time seen, plus the steady time since): a wall step back across a
        restart or reboot revives nothing."""
        wall, steady = wall_ms(), steady_ms()
        if floor_offset_ms is not None:
            wall = max(wall, steady + floor_offset_ms)
        return ExpiryClock(wall_ms, steady_ms, wall, steady)

    def now_ms(self) -> int:
        return self.at(self.wall_ms())

    def at(self, wall_ms: int) -> int:
        """:meth:`now_ms` for a wall-clock reading the caller took itself (``wall_ms``, ms since
        the epoch): the later of it and the wall clock at start + the steady time elapsed since."""
        return max(wall_ms, self.wall_at_start + self.steady_ms() - self.steady_at_start)
