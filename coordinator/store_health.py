"""Whether the coordinator can use its own stores now: its database and its audit log.

Set when a write fails as a store failure (:func:`coordinator.store_failure.store_failure`: disk
full, read-only, I/O error), from every path that sees one -- a database write transaction
(:meth:`coordinator.db.CoordinatorDb._tx`), the RPC layer (``storage_failure``), a background
pass (``log_failure``) and the audit outbox flush -- and cleared by the next successful write of
that store. Shown by ``ClusterStatus`` (``mpc status``) and exported as
``mpcnet_coordinator_store_healthy`` (README "Monitoring"). Thread-safe.
"""

from __future__ import annotations

import threading

from coordinator.store_failure import one_line, store_failure

STORES = ("database", "audit log")  # the names store_failure() gives


class StoreHealth:
    """The last failure of each store since its last successful write (none: healthy)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed: dict[str, str] = {}  # store -> one-line reason of its last failed write

    def failed(self, store: str, reason: str) -> None:
        """``store`` (one of :data:`STORES`) could not be written: ``reason`` (one line, <= 300 chars)."""
        if store not in STORES:
            raise ValueError(f"store: one of {', '.join(STORES)}")
        with self._lock:
            self._failed[store] = " ".join(reason.split())[:300]

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

    def problems(self) -> dict[str, str]:
        """``{store: reason}`` of the stores whose last write failed (empty: healthy)."""
        with self._lock:
            return dict(sorted(self._failed.items()))

    def healthy(self) -> bool:
        """True when no store's last write failed."""
        with self._lock:
            return not self._failed
