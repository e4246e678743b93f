"""The roster in force of a local dev cluster, as its own processes store it (issue 11).

``mpc node remove`` revokes a node through the coordinator; the launcher never hears of it. But
a revoked node refuses to start (``mpc_node``: "not an active node of the roster in force"), so
``mpc-cluster up`` after ``stop`` must know which nodes are revoked, and ``mpc-cluster status``
must not call a revoked node's process a healthy member. This module reads the admin-signed
roster chain from the places the cluster keeps it, without any process running:

- the coordinator's database (``DIR/coordinator/coordinator.db``, table ``roster_changes``),
- every node's store (``DIR/nodes/node-N/node.db``, the same table),
- ``DIR/roster.json`` (what ``mpc-cluster up`` and ``add-node`` write into the configs),

verifies each chain against the cluster's own admin set (``DIR/governance.json``) with
:func:`governance.roster.verify_roster_history` and keeps the longest one that verifies (chains
only ever extend one another; a chain that does not verify is ignored, never trusted). The
databases are opened read-only (SQLite URI ``mode=ro``), so a running process is not disturbed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from governance.errors import GovernanceError
from governance.roster import Roster, SignedRosterChange, verify_roster_history
from mpcnet.cluster.launcher import Layout

MAX_CHAIN = 10_000  # roster versions read from one source at most


def _from_db(path: Path) -> list[bytes]:
    """The signed roster changes stored in the SQLite database ``path`` (version 1 first); []
    if it does not exist, has no such table or cannot be read."""
    if not path.is_file():
        return []
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return []
    try:
        rows = con.execute("SELECT signed_change FROM roster_changes ORDER BY version LIMIT ?", (MAX_CHAIN,)).fetchall()
        return [bytes(r[0]) for r in rows]
    except sqlite3.Error:
        return []
    finally:
        con.close()


def _from_json(path: Path) -> list[bytes]:
    """``DIR/roster.json`` (a JSON list of ``SignedRosterChange.to_dict()``) as signed bytes; []
    if it is missing or damaged."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return [SignedRosterChange.from_dict(d).to_bytes() for d in doc[:MAX_CHAIN]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError, GovernanceError):
        return []


def sources(lay: Layout) -> list[Path]:
    """Where the cluster keeps roster chains: the coordinator's database, then every node's
    store (every node directory under ``DIR/nodes``), then ``DIR/roster.json``."""
    nodes = sorted((lay.dir / "nodes").glob("node-*/node.db")) if (lay.dir / "nodes").is_dir() else []
    return [lay.coordinator_dir / "coordinator.db", *nodes, lay.roster_path]


def history_in_force(lay: Layout) -> tuple[SignedRosterChange, ...]:
    """The longest chain, among :func:`sources`, that verifies against the cluster's admin set
    (version 1 first); ``()`` if no source holds a verifying chain (a cluster made before
    issue 11, or ``DIR/governance.json`` unreadable)."""
    try:
        admins, _ = lay.governance()
    except (OSError, ValueError, TypeError, KeyError, GovernanceError):
        return ()
    best: tuple[SignedRosterChange, ...] = ()
    for src in sources(lay):
        raw = _from_json(src) if src.suffix == ".json" else _from_db(src)
        if not raw or len(raw) <= len(best):
            continue
        with contextlib.suppress(GovernanceError, ValueError):
            chain = tuple(SignedRosterChange.from_bytes(b) for b in raw)
            verify_roster_history(admins, list(chain))
            best = chain
    return best


def roster_in_force(lay: Layout) -> Roster | None:
    """The last roster of :func:`history_in_force`; None if no source holds a verifying chain."""
    history = history_in_force(lay)
    return history[-1].change.new_roster if history else None


def revoked_names(lay: Layout) -> set[str]:
    """The process names (``node-N``) of the nodes revoked in :func:`roster_in_force`."""
    roster = roster_in_force(lay)
    if roster is None:
        return set()
    return {f"node-{e.index}" for e in roster.entries if not e.active}
