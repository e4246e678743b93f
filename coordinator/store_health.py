"""Whether the coordinator can use its own stores now: its database and its audit log.

Set when a write fails as a store failure (:func:`coordinator.store_failure.store_failure`: disk
full, read-only, I/O error), from every path that sees one -- a database write transaction
(:meth:`coordinator.db.CoordinatorDb._tx`), the RPC layer (``storage_failure``), a background
pass (``log_failure``) and the audit outbox flush -- and cleared by the next successful write of
that store -- or by :class:`StoreProbe`, which the background pass runs: a failing store is
probed at every pass (the database: a row rewritten in ``store_probe``; the audit log: a small
file written and fsynced in its directory, when no entry waits in the outbox -- a queued entry is
the flusher's own probe), so the state clears itself once the disk is fixed even when nothing
else writes. Shown by ``ClusterStatus`` (``mpc status``, ``mpc status --watch``) and exported as
``mpcnet_coordinator_store_healthy`` (README "Monitoring"). Thread-safe.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from coordinator.store_failure import failure_advice, one_line, store_failure
from mpcnet.common.datadir_check import probe_write
from mpcnet.common.stores.sqlite import Migration

log = logging.getLogger("coordinator.store_health")

STORES = ("database", "audit log")  # the names store_failure() gives
PROBE_HEALTHY_S = 60.0  # seconds between two probes of a healthy database (a failing store: every pass)
AUDIT_PROBE_BYTES = 4096  # the audit log's probe file

STORE_PROBE_MIGRATION: Migration = (
    "CREATE TABLE IF NOT EXISTS store_probe (id INTEGER PRIMARY KEY CHECK (id = 1), written_ms INTEGER NOT NULL)",
)


class StoreHealth:
    """The last failure of each store since its last successful write (none: healthy)."""

    def __init__(self, wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._lock = threading.Lock()
        self._wall_ms = wall_ms
        self._failed: dict[str, str] = {}  # store -> one-line reason of its last failed write
        self._since: dict[str, int] = {}  # store -> Unix ms of the first failed write since it was last healthy

    def failed(self, store: str, reason: str) -> None:
        """``store`` (one of :data:`STORES`) could not be written: ``reason`` (one line, <= 300 chars)."""
        if store not in STORES:
            raise ValueError(f"store: one of {', '.join(STORES)}")
        with self._lock:
            self._failed[store] = " ".join(reason.split())[:300]
            self._since.setdefault(store, self._wall_ms())

    def saw(self, e: BaseException) -> str | None:
        """Record ``e`` if it is a store failure; the store it names, else None."""
        store = store_failure(e)
        if store is not None:
            self.failed(store, one_line(e))
        return store

    def wrote(self, store: str) -> None:
        """A write of ``store`` succeeded: it is healthy again."""
        with self._lock:
            self._failed.pop(store, None)
            self._since.pop(store, None)

    def problems(self) -> dict[str, str]:
        """``{store: reason}`` of the stores whose last write failed (empty: healthy)."""
        with self._lock:
            return dict(sorted(self._failed.items()))

    def failing_since(self) -> dict[str, int]:
        """``{store: Unix ms}`` of the first failed write of each failing store since it was last
        written successfully."""
        with self._lock:
            return dict(sorted(self._since.items()))

    def healthy(self) -> bool:
        """True when no store's last write failed."""
        with self._lock:
            return not self._failed


class StoreProbe:
    """Probe writes that clear a store's failing state once the store can be written again.

    ``write_db(now_ms)``: rewrite the database's probe row through its write transaction (which
    feeds :class:`StoreHealth` itself: :meth:`coordinator.db.CoordinatorDb.probe_write`);
    ``audit_dir``: the audit log's directory; ``audit_db``: the audit log's file (and its WAL),
    which must open for writing too (a probe file beside a read-only file would succeed);
    ``outbox_empty()``: True when no audit entry waits in the outbox. :meth:`run` never raises."""

    def __init__(
        self, health: StoreHealth, write_db: Callable[[int], None], audit_dir: Path, outbox_empty: Callable[[], bool],
        *, healthy_every_s: float = PROBE_HEALTHY_S, clock: Callable[[], float] = time.monotonic,
        audit_db: Path | None = None,
    ) -> None:
        self.health = health
        self._audit_db = None if audit_db is None else Path(audit_db)
        self._write_db = write_db
        self._audit_dir = Path(audit_dir)
        self._outbox_empty = outbox_empty
        self._every_s = healthy_every_s
        self._clock = clock
        self._last_db = float("-inf")

    def run(self) -> dict[str, str]:
        """Probe the failing stores now (the database also every ``healthy_every_s`` seconds while
        healthy: a read-only remount of an idle coordinator is seen); log each store that can be
        written again, with how long it failed. Returns :meth:`StoreHealth.problems` after it."""
        before = self.health.problems()
        since = self.health.failing_since()
        now = self._clock()
        if "database" in before or now - self._last_db >= self._every_s:
            self._last_db = now
            try:
                self._write_db(time.time_ns() // 1_000_000)
            except Exception as e:  # recorded by the write transaction (a store failure) or here
                if self.health.saw(e) is None:
                    log.warning("store probe: the database write failed: %s", one_line(e))
        if "audit log" in before:
            self._probe_audit()
        after = self.health.problems()
        for store in sorted(before.keys() - after.keys()):
            took = max(0, time.time_ns() // 1_000_000 - since.get(store, 0)) / 1000 if store in since else 0.0
            log.info("store probe: the coordinator's %s can be written again (it failed for %.0f s)", store, took)
        for store in sorted(after.keys() - before.keys()):
            advice = failure_advice(OSError(after[store])) or ""
            log.error("store probe: the coordinator's %s cannot be written (%s)%s", store, after[store], f": {advice}" if advice else "")
        return after

    def _probe_audit(self) -> None:
        try:
            if not self._outbox_empty():
                return  # the flusher retries the queued entries: its success clears it
        except Exception as e:  # reading the outbox is the database's
            self.health.saw(e)
            return
        try:
            probe_write(self._audit_dir, AUDIT_PROBE_BYTES)
            if self._audit_db is not None:
                for f in (self._audit_db, self._audit_db.with_name(self._audit_db.name + "-wal")):
                    try:  # the file itself writable (a read-only mode or mount), nothing written to it
                        os.close(os.open(f, os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK))  # a FIFO put in its place: no hang
                    except FileNotFoundError:
                        continue
        except OSError as e:
            self.health.failed("audit log", one_line(e))
            return
        self.health.wrote("audit log")
