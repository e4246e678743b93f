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
from collections.abc import Callable

from governance.errors import GovernanceError
from mpcnet.common.sqlite_errors import Kind, classify, classify_text


def store_failure(e: BaseException) -> str | None:
    """``"database"`` or ``"audit log"`` when ``e`` is a failure of that store, else None.

    Classified by :func:`mpcnet.common.sqlite_errors.classify`: a network error
    (:class:`ConnectionError`, :class:`TimeoutError`; ``concurrent.futures.TimeoutError`` is
    ``TimeoutError``) is no storage error, and an SQLite error whose result code says the
    statement itself is wrong (:attr:`~mpcnet.common.sqlite_errors.Kind.PROGRAM`: no such table,
    a constraint, misuse) is not the host's storage: work that retries store failures until a
    write succeeds would retry those for ever."""
    if isinstance(e, GovernanceError):
        return "audit log" if e.field == "database" else None
    fault = classify(e)
    return "database" if fault is not None and fault.host else None


def failure_advice(e: BaseException) -> str:
    """What a storage failure ``e`` is and what the operator should do, one line (e.g. ``"disk
    full: free space on its file system ..."``: :func:`mpcnet.common.sqlite_errors.classify`);
    "" when ``e`` is no storage failure or of no known kind."""
    fault = classify(e) if not isinstance(e, GovernanceError) else classify_text(str(e))
    if fault is None or fault.kind is Kind.UNKNOWN:
        return ""
    return f"{fault.kind.value}: {fault.advice}"


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
        advice = failure_advice(e)
        logger.error("%s: the coordinator cannot use its %s (%s)%s", what, store, one_line(e), f": {advice}" if advice else "")
    else:
        logger.exception("%s", what)
