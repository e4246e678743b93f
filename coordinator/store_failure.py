"""Which exceptions mean "the coordinator cannot use its own storage right now": a database write
or commit that fails (disk full, read-only, I/O error, locked) or an audit-log append that fails
(:class:`~governance.errors.GovernanceError` with field ``database``).

Such a failure is the host's condition, not the work's: the RPC layer answers it ``UNAVAILABLE``
naming the store (:meth:`coordinator.service.CoordinatorService.storage_failure`) and work that
runs on its own thread (a key operation) waits and resumes once a write succeeds again, instead
of stopping until the next start (:meth:`coordinator.keyops.KeyOperations._spawn`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from governance.errors import GovernanceError

# SQLite primary result codes of a statement that can never succeed (the program's own error:
# no such table or column, a syntax error, misuse, a bad bind index, a type mismatch, too big):
# not the host's storage, so never retried "until a write succeeds" (that would be for ever)
_PROGRAM_ERRORS = frozenset({
    1,   # SQLITE_ERROR (SQL error or missing table/column)
    2,   # SQLITE_INTERNAL
    18,  # SQLITE_TOOBIG
    20,  # SQLITE_MISMATCH
    21,  # SQLITE_MISUSE
    25,  # SQLITE_RANGE
})


def store_failure(e: BaseException) -> str | None:
    """``"database"`` or ``"audit log"`` when ``e`` is a failure of that store, else None.

    Not a store failure: a network error (:class:`ConnectionError`, :class:`TimeoutError`; both
    are ``OSError`` subclasses, and ``concurrent.futures.TimeoutError`` is ``TimeoutError``) and
    an SQLite error whose result code says the statement itself is wrong (:data:`_PROGRAM_ERRORS`):
    work that retries store failures until a write succeeds would retry those for ever."""
    if isinstance(e, (ConnectionError, TimeoutError)):
        return None
    if isinstance(e, sqlite3.OperationalError):
        code = getattr(e, "sqlite_errorcode", None)  # set by sqlite3 itself (absent on one raised by hand)
        return None if isinstance(code, int) and code & 0xFF in _PROGRAM_ERRORS else "database"
    if isinstance(e, OSError):
        return "database"
    if isinstance(e, GovernanceError) and e.field == "database":
        return "audit log"
    return None


def one_line(e: BaseException, limit: int = 300) -> str:
    """``e`` as one line of at most ``limit`` characters (for a log line or an RPC status)."""
    return " ".join(str(e).split())[:limit]


def log_failure(
    logger: logging.Logger, e: BaseException, what: str, saw: Callable[[BaseException], object] | None = None,
) -> None:
    """Log that ``what`` failed because of ``e`` (called in its ``except`` block): one line
    naming the store when ``e`` is the coordinator's own store failing (a full disk is the host's
    condition, expected while it lasts, and would repeat a traceback at every pass), else
    ``logger.exception`` with the traceback. ``saw``: the coordinator's store health
    (:meth:`coordinator.store_health.StoreHealth.saw`), told of every such failure."""
    store = store_failure(e)
    if saw is not None:
        saw(e)
    if store is not None:
        logger.error("%s: the coordinator cannot use its %s (%s)", what, store, one_line(e))
    else:
        logger.exception("%s", what)
