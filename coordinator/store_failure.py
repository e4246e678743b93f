"""Which exceptions mean "the coordinator cannot use its own storage right now": a database write
or commit that fails (disk full, read-only, I/O error, locked) or an audit-log append that fails
(:class:`~governance.errors.GovernanceError` with field ``database``).

Such a failure is the host's condition, not the work's: the RPC layer answers it ``UNAVAILABLE``
naming the store (:meth:`coordinator.service.CoordinatorService.storage_failure`) and work that
runs on its own thread (a key operation) waits and resumes once a write succeeds again, instead
of stopping until the next start (:meth:`coordinator.keyops.KeyOperations._spawn`).
"""

from __future__ import annotations

import sqlite3

from governance.errors import GovernanceError


def store_failure(e: BaseException) -> str | None:
    """``"database"`` or ``"audit log"`` when ``e`` is a failure of that store, else None."""
    if isinstance(e, (sqlite3.OperationalError, OSError)):
        return "database"
    if isinstance(e, GovernanceError) and e.field == "database":
        return "audit log"
    return None


def one_line(e: BaseException, limit: int = 300) -> str:
    """``e`` as one line of at most ``limit`` characters (for a log line or an RPC status)."""
    return " ".join(str(e).split())[:limit]
