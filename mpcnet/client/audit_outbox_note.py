"""What an offline look at a node's audit.db cannot see: entries still in its store's outbox.

A node commits its ``sign-start`` / ``sign-reserve`` / ``sign-share`` entries to the
``audit_outbox`` table of its store (``node.db``, next to ``audit.db`` in a node's directory) with
the state change they record, and appends them to audit.db in the background and at its next
start (mpc_node/audit_outbox.py). So ``mpc audit verify --db`` / ``export --db`` on the audit.db
of a node that was killed, or is running, may miss its last entries: the chain is intact, the
trail is not all there yet. :func:`queued_note` says so. The outbox's columns are not sealed, so
this needs no passphrase; the store is opened read-only and never written.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from governance.text import quote

STORE_NAME = "node.db"  # the store's file name next to audit.db in a node's directory (mpc-cluster layout)


def queued_beside(audit_db: Path) -> int | None:
    """How many entries the store next to ``audit_db`` still holds in its audit outbox: 0 when
    there is no such store or outbox, None when the store exists but cannot be read."""
    store = audit_db.parent / STORE_NAME
    if not store.is_file():
        return 0
    try:
        conn = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0)
    except (sqlite3.Error, OSError, ValueError):
        return None
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_outbox'").fetchone() is None:
            return 0
        (n,) = conn.execute("SELECT COUNT(*) FROM audit_outbox").fetchone()
        return int(n)
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def queued_note(audit_db: Path) -> str:
    """A one-line note for stderr when entries may be missing from ``audit_db``, else ""."""
    n = queued_beside(audit_db)
    store = quote(str(audit_db.parent / STORE_NAME), 200)
    if n is None:
        return f"note: cannot read the audit outbox of {store}: entries queued there would not be in this file yet"
    if n == 0:
        return ""
    return (
        f"note: {n} audit entries are queued in {store} (its audit outbox) and not in this file yet; "
        "the node appends them when it runs or starts again (possibly some of them already are: each is appended once)"
    )
