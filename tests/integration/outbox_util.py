"""Tests that read a node's audit.db file directly (not through the node's GetAuditLog, which
flushes first) wait for the node's audit outbox (issue 14, mpc_node/audit_outbox.py) to drain:
a node appends the entries committed with its state changes a few milliseconds later."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def outbox_drained(node_dir: Path, timeout: float = 10.0) -> bool:
    """Wait until ``node_dir``'s node.db holds no queued audit entry (True), at most ``timeout``
    seconds (False: e.g. the node is stopped; its next start flushes them)."""
    db = Path(node_dir) / "node.db"
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                (n,) = conn.execute("SELECT COUNT(*) FROM audit_outbox").fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            n = 0  # no store (yet), or a layout without the outbox
        if n == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
