"""The node store's memo of when each key's requests were served, for the rate limit.

The rate limit counts the requests of a key served after steady time ``since_ms``
(``requests.steady_ms > since_ms``: the store's steady clock, mpcnet/common/steadyclock.py, never
the wall clock): twice per signature (the approvals' pre-check, ``NodeStore.count_served``, and the
authoritative count inside the consume transaction, ``storage._record_served``). In SQL that is
an index range ``COUNT(*)``, linear in the requests inside the window: about 35 us at 1,000 and
330 us at 10,000, so a node signing 150 per second under a policy with a one-hour window and a
high limit would spend tens of milliseconds per signature counting. Here each key's served
times after a floor are held sorted (``array('q')``, 8 bytes each) and a count is a binary
search.

Exactness (the count is always what the SQL would answer):

* A key is loaded with ``served_ms > floor``, the floor :data:`SLACK_MS` before the first
  ``since`` asked; a later ``since`` below the floor (a longer window after a policy change, a
  clock set back) reloads it. When ``since`` moves on, the times more than :data:`SLACK_MS`
  before it are dropped and the floor follows, so about the window's requests are held.
* A row inserted by ``_record_served`` is noted as *pending* in its transaction (counted by that
  transaction's own counts, as SQL would), added when the transaction commits and forgotten
  when it rolls back (``NodeStore._write``).
* Every write transaction not marked ``tracked`` (one that might touch ``requests`` another way)
  suspends the memo while it runs and clears it when it ends.
* A commit by another connection to the file (a tool, a test) changes SQLite's
  ``PRAGMA data_version``: checked before every use, it clears the memo.
* A stored time that is not an integer (only a hand-edited file) leaves that key to SQL.

Call every method under the store's lock (its one connection is serialized by it).
"""

from __future__ import annotations

import bisect
import contextlib
import sqlite3
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

COUNT_SQL = "SELECT COUNT(*) FROM requests WHERE key_id = ? AND steady_ms > ?"
LOAD_SQL = "SELECT steady_ms FROM requests WHERE key_id = ? AND steady_ms > ? ORDER BY steady_ms"
MAX_KEYS = 1024  # keys held; past it the memo starts over
# the floor trails the newest ``since`` by this much (ms): concurrent calls count from slightly
# different clocks (a pre-check, then a transaction that began earlier), and a ``since`` below
# the floor would reload the key
SLACK_MS = 60_000


def sql_count(c: sqlite3.Connection, key_id: bytes, since_ms: int) -> int:
    """The count in SQL (``requests_by_key_time`` index range)."""
    (n,) = c.execute(COUNT_SQL, (key_id, since_ms)).fetchone()
    return int(n)


@dataclass
class _Times:
    floor: int  # held: every served_ms > floor, sorted, from index `head` on
    times: array[int] = field(default_factory=lambda: array("q"))
    head: int = 0

    def count_after(self, since_ms: int) -> int:
        return len(self.times) - bisect.bisect_right(self.times, since_ms, lo=self.head)

    def advance(self, since_ms: int) -> None:
        """Drop the times <= ``since_ms`` (never asked for again unless the floor is lowered)."""
        self.head = bisect.bisect_right(self.times, since_ms, lo=self.head)
        self.floor = since_ms
        if self.head > 4096 and self.head * 2 > len(self.times):
            del self.times[: self.head]
            self.head = 0

    def add(self, served_ms: int) -> None:
        if served_ms <= self.floor:
            return
        if not self.times or served_ms >= self.times[-1]:
            self.times.append(served_ms)
        else:
            self.times.insert(bisect.bisect_right(self.times, served_ms, lo=self.head), served_ms)


class ServedWindows:
    """``key_id -> served times`` (see the module); ``hits`` / ``loads`` count uses (tests, metrics)."""

    def __init__(self) -> None:
        self._keys: dict[bytes, _Times] = {}
        self._pending: list[tuple[bytes, int]] = []  # inserted by the open transaction
        self._version: int | None = None  # PRAGMA data_version when the memo was last known good
        self._suspended = 0
        self.hits = 0
        self.loads = 0

    def __len__(self) -> int:
        return len(self._keys)

    def count(self, c: sqlite3.Connection, key_id: bytes, since_ms: int) -> int:
        """How many requests of ``key_id`` were served after ``since_ms`` (steady ms, exclusive),
        this transaction's own inserts included: exactly :func:`sql_count`."""
        if self._suspended:
            return sql_count(c, key_id, since_ms)
        self._check_version(c)
        held = self._keys.get(key_id)
        if held is None or since_ms < held.floor:
            held = self._load(c, key_id, since_ms)
            if held is None:
                return sql_count(c, key_id, since_ms)
        else:
            self.hits += 1
            if since_ms - SLACK_MS > held.floor:
                held.advance(since_ms - SLACK_MS)
        return held.count_after(since_ms) + sum(1 for k, t in self._pending if k == key_id and t > since_ms)

    def noted(self, key_id: bytes, served_ms: int) -> None:
        """Inside a write transaction: a ``requests`` row of ``key_id`` at ``served_ms`` was inserted."""
        self._pending.append((key_id, served_ms))

    def committed(self) -> None:
        """The write transaction committed: its inserted rows join the memo."""
        pending, self._pending = self._pending, []
        for key_id, t in pending:
            held = self._keys.get(key_id)
            if held is not None:
                held.add(t)

    def rolled_back(self) -> None:
        """The write transaction rolled back (or never began): its rows never existed."""
        self._pending = []

    def clear(self) -> None:
        self._keys.clear()
        self._pending = []
        self._version = None

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Around a write transaction that may change ``requests`` unseen: SQL answers while it
        runs, and the memo is cleared when it ends (as :meth:`KeyEpochCache.changing
        <mpc_node.key_epoch_cache.KeyEpochCache.changing>`)."""
        self._suspended += 1
        self.clear()
        try:
            yield
        finally:
            self._suspended -= 1
            self.clear()

    def _check_version(self, c: sqlite3.Connection) -> None:
        (version,) = c.execute("PRAGMA data_version").fetchone()
        if version != self._version:
            self._keys.clear()
            self._version = int(version)

    def _load(self, c: sqlite3.Connection, key_id: bytes, since_ms: int) -> _Times | None:
        since_ms -= SLACK_MS  # held from a little earlier (see SLACK_MS)
        rows = c.execute(LOAD_SQL, (key_id, since_ms)).fetchall()
        if not all(type(r[0]) is int for r in rows):
            self._keys.pop(key_id, None)
            return None
        # rows of the open transaction are in `rows` already: keep only committed ones in the memo
        own = sorted(t for k, t in self._pending if k == key_id and t > since_ms)
        times = array("q", (int(r[0]) for r in rows))
        for t in own:
            del times[bisect.bisect_left(times, t)]
        if len(self._keys) >= MAX_KEYS:
            self._keys.clear()
        held = _Times(since_ms, times)
        self._keys[key_id] = held
        self.loads += 1
        return held
