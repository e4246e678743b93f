"""Tests that read a node's audit.db file directly (not through the node's GetAuditLog, which
flushes first) wait for the node's audit outbox (issue 14, mpc_node/audit_outbox.py): a node
appends the entries committed with its state changes a few milliseconds later (and deletes
them from the outbox later still)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path


def _events(db: Path, sql: str) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return [str(r[0]) for r in conn.execute(sql)]
    finally:
        conn.close()


def outbox_drained(node_dir: Path, timeout: float = 10.0) -> bool:
    """Wait until every entry queued in ``node_dir``'s outbox is in its audit.db (True), at
    most ``timeout`` seconds (False: e.g. the node is stopped; its next start flushes them)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            queued = set(_events(Path(node_dir) / "node.db", "SELECT event FROM audit_outbox"))
            if queued:
                logged = set()
                for text in _events(Path(node_dir) / "audit.db", "SELECT details FROM audit ORDER BY seq DESC LIMIT 5000"):
                    ev = json.loads(text).get("event")
                    if isinstance(ev, str):
                        logged.add(ev)
                queued -= logged
        except sqlite3.Error:
            queued = set()  # no store (yet), or a layout without the outbox
        if not queued:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
