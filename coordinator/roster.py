"""The coordinator's copy of the admin-signed roster chain (issue 11 item 3).

At start the chain is the longer of the config's ``governance.roster_history`` and the one in
the database (the shorter must be a prefix of the longer); it is verified against the
coordinator's admin set (the nodes verify it again against their own). The active entries of
the roster in force are the nodes the coordinator talks to; a revoked node is never dialed. A
config without ``roster_history`` (legacy) has the fixed ``nodes`` list and no roster.
"""

from __future__ import annotations

import threading

from coordinator.config import CoordinatorConfig, NodeEndpoint
from coordinator.db import CoordinatorDb
from governance.errors import GovernanceError
from governance.roster import Roster, SignedRosterChange, active_entries, verify_roster_history


class RosterStartError(RuntimeError):
    """The config's roster chain and the database's disagree (the coordinator does not start)."""


class RosterBook:
    """The roster chain in force at the coordinator (thread-safe)."""

    def __init__(self, cfg: CoordinatorConfig, db: CoordinatorDb) -> None:
        self.cfg = cfg
        self.db = db
        self._lock = threading.RLock()
        self._history: list[SignedRosterChange] = []
        self._current: Roster | None = None
        if cfg.signed_roster is None:
            return
        stored = [SignedRosterChange.from_bytes(b) for b in db.roster_changes()]
        given = list(cfg.roster_history)
        short, long = (stored, given) if len(stored) <= len(given) else (given, stored)
        for k, (a, b) in enumerate(zip(short, long[: len(short)], strict=True)):
            if a.to_bytes() != b.to_bytes():
                raise RosterStartError(
                    f"governance.roster_history[{k}] differs from version {k + 1} of the roster in the database; fix the config"
                )
        try:
            self._current = verify_roster_history(cfg.admin_set, long)
        except GovernanceError as e:
            raise RosterStartError(f"the stored roster chain does not verify: {e.field}: {e.reason}") from None
        if len(stored) < len(long):
            db.put_roster_changes(len(stored) + 1, [c.to_bytes() for c in long[len(stored):]])
        self._history = long

    def current(self) -> Roster | None:
        """The roster in force (None: a legacy config)."""
        with self._lock:
            return self._current

    @property
    def version(self) -> int:
        with self._lock:
            return 0 if self._current is None else self._current.version

    def active(self) -> tuple[int, ...]:
        """The indices of the active nodes, increasing (legacy: the config's nodes)."""
        with self._lock:
            if self._current is None:
                return tuple(sorted(self.cfg.nodes))
            return tuple(e.index for e in active_entries(self._current))

    def history(self) -> tuple[bytes, ...]:
        """Every applied change, canonical, version 1 first."""
        with self._lock:
            return tuple(c.to_bytes() for c in self._history)

    def refused_fingerprints(self) -> frozenset[bytes]:
        """TLS fingerprints of revoked entries and of certificates rotated away (refused callers)."""
        with self._lock:
            if self._current is None:
                return frozenset()
            in_use = {e.tls_fingerprint for e in self._current.entries if e.active}
            seen = {e.tls_fingerprint for c in self._history for e in c.change.new_roster.entries}
            return frozenset(seen - in_use)

    def signed_history(self) -> tuple[SignedRosterChange, ...]:
        with self._lock:
            return tuple(self._history)

    def endpoints(self) -> dict[int, NodeEndpoint]:
        """Where to dial each active node: the config's ``nodes`` entry if it names the node,
        else the roster entry's endpoint."""
        with self._lock:
            if self._current is None:
                return dict(self.cfg.nodes)
            return {
                e.index: self.cfg.nodes.get(e.index) or NodeEndpoint(e.index, e.name, e.endpoint)
                for e in active_entries(self._current)
            }

    def append(self, signed: SignedRosterChange, new: Roster) -> None:
        """Record an already verified change (``new`` is its roster) as the next version."""
        with self._lock:
            self.db.put_roster_changes(new.version, [signed.to_bytes()])
            self._history.append(signed)
            self._current = new
