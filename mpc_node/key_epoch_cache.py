"""The node store's memo of each key's epoch state (:class:`mpc_node.epoch_store.KeyEpoch`).

Every ``SignPresigned`` reads its key's epoch state twice (the committee before the share is
computed, the "still active at this epoch" check inside the consume transaction): two SQL
queries each (``keys`` and ``key_epochs``), about 10-15 us. Both tables change in write
transactions of the store's own connection (the node process holds its store; tools open it
read-only or while the node is stopped), so the store keeps what it read here and forgets it
all at the end of every write transaction that may change them: by default every one
(``NodeStore._write``); only the writers marked ``tracked``, which provably touch neither table
(consume, put presignatures, served requests, reservations, audit queue and drop, the health
probe), keep it. Refresh, reshare, leave, key creation, activation and discard, a restore
and any future writer therefore invalidate it without naming it. A commit by another connection
to the file (a tool, a test) changes SQLite's ``PRAGMA data_version``, checked before every use
(about 4 us): it clears the memo.

Coherence: the store serializes every read and write with one re-entrant lock; the memo is read,
filled and cleared only under it. While a write that may change the tables is open, the memo is
*suspended* (neither read nor filled: a read inside that transaction may see its own uncommitted
rows, and a rollback would make them wrong), and it is cleared when that transaction ends,
committed or rolled back. Absent keys (``None``) are not kept. A :class:`KeyEpoch` is frozen:
handing out the same instance is safe.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpc_node.epoch_store import KeyEpoch

MAX_KEYS = 4096  # entries kept (a KeyEpoch is a few hundred bytes); past it the memo starts over


class KeyEpochCache:
    """``key_id -> KeyEpoch`` as last read from the store; call only under the store's lock."""

    def __init__(self) -> None:
        self._entries: dict[bytes, KeyEpoch] = {}
        self._suspended = 0  # depth of open writes that may change keys / key_epochs
        self._version: int | None = None  # PRAGMA data_version the entries were read at
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, c: sqlite3.Connection, key_id: bytes, read: Callable[[sqlite3.Connection, bytes], KeyEpoch | None]) -> KeyEpoch | None:
        """The key's epoch state: the memo's, else ``read(c, key_id)`` (kept unless suspended or None)."""
        if self._suspended:
            return read(c, key_id)
        (version,) = c.execute("PRAGMA data_version").fetchone()  # another connection committed: start over
        if version != self._version:
            self._entries.clear()
            self._version = int(version)
        hit = self._entries.get(key_id)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        held = read(c, key_id)
        if held is not None:
            if len(self._entries) >= MAX_KEYS:
                self._entries.clear()
            self._entries[key_id] = held
        return held

    def clear(self) -> None:
        """Forget every entry (the store closed, or a write that may have changed them ended)."""
        self._entries.clear()
        self._version = None

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Around a write transaction that may change ``keys`` / ``key_epochs``: suspended while
        it runs, cleared when it ends (committed, rolled back or failed to begin)."""
        self._suspended += 1
        self._entries.clear()
        try:
            yield
        finally:
            self._suspended -= 1
            self._entries.clear()
