"""The coordinator's copy of the admin-signed roster chain (issue 11 item 3).

At start the chain is the longer of the config's ``governance.roster_history`` and the one in
the database (the shorter must be a prefix of the longer); it is verified against the
coordinator's admin set (the nodes verify it again against their own). The active entries of
the roster in force are the nodes the coordinator talks to; a revoked node is never dialed. A
config without ``roster_history`` (legacy) has the fixed ``nodes`` list and no roster.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import grpc

from coordinator.config import CoordinatorConfig, NodeEndpoint
from coordinator.db import AuditEvent, CoordinatorDb
from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.roster import (
    Roster,
    RosterEntry,
    SignedRosterChange,
    active_entries,
    verify_roster_change,
    verify_roster_history,
)
from mpcnet.common.rosterchain import RosterStartError as RosterStartError, start_chain  # re-exported: the start error
from mpcnet.common.rpc import RpcError

log = logging.getLogger("coordinator.roster")
Code = grpc.StatusCode
Listener = Callable[[Roster | None, Roster], None]



class RosterBook:
    """The roster chain in force at the coordinator (thread-safe)."""

    def __init__(self, cfg: CoordinatorConfig, db: CoordinatorDb) -> None:
        self.cfg = cfg
        self.db = db
        self._lock = threading.RLock()
        self._history: list[SignedRosterChange] = []
        self._current: Roster | None = None
        self._listeners: list[Listener] = []
        self._refused_at: tuple[int, frozenset[bytes]] | None = None
        # appends the database's queued audit entries to the audit log (set by the service;
        # until then they stay queued and the next flush appends them)
        self.flush_audit: Callable[[], None] = lambda: None
        if cfg.signed_roster is None:
            return
        stored = [SignedRosterChange.from_bytes(b) for b in db.roster_changes()]
        long, self._current = start_chain(cfg.admin_set, stored, list(cfg.roster_history), where="the roster in the database")
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
            cached = self._refused_at
            if cached is not None and cached[0] == len(self._history):
                return cached[1]  # asked by every RPC: computed once per roster version
            in_use = {e.tls_fingerprint for e in self._current.entries if e.active}
            seen = {e.tls_fingerprint for c in self._history for e in c.change.new_roster.entries}
            refused = frozenset(seen - in_use)
            self._refused_at = (len(self._history), refused)
            return refused

    def signed_history(self) -> tuple[SignedRosterChange, ...]:
        with self._lock:
            return tuple(self._history)

    def entry(self, index: int) -> RosterEntry | None:
        """Entry ``index`` of the roster in force (active or revoked); None if absent or legacy."""
        with self._lock:
            return None if self._current is None else self._current.entry(index)

    def endpoints(self) -> dict[int, NodeEndpoint]:
        """Where to dial each active node: the config's ``nodes`` entry if it names the node and
        the roster has not moved the node since the config's roster (a dev cluster's ports can
        change at a restart), else the roster entry's endpoint."""
        with self._lock:
            if self._current is None:
                return dict(self.cfg.nodes)
            given = self.cfg.signed_roster
            out = {}
            for e in active_entries(self._current):
                ne = self.cfg.nodes.get(e.index)
                at_config = None if given is None else given.entry(e.index)
                moved = at_config is None or at_config.endpoint != e.endpoint
                out[e.index] = ne if ne is not None and not moved else NodeEndpoint(e.index, e.name, e.endpoint)
            return out

    def add_listener(self, fn: Listener) -> None:
        """``fn(old, new)`` runs after every applied change, in the order listeners were added
        (the service's first one moves the node handles and pushes the change to the nodes)."""
        with self._lock:
            self._listeners.append(fn)

    def apply(self, signed: SignedRosterChange, actor: str) -> Roster:
        """Verify ``signed`` as the next link of the chain against the coordinator's admin set
        (:func:`verify_roster_change`, and no key rotated away may come back), store it with its
        ``roster-apply`` audit entry (one database transaction), then run the listeners. The
        exact change in force again is a no-op (no listener runs). Returns the roster in force.

        Raises :class:`RpcError` (audited ``roster-apply`` refused, nothing changed):
        FAILED_PRECONDITION for a legacy config (no signed roster) or a change that does not
        follow the roster in force (``signed_change.previous_digest`` / ``.new_roster.version``:
        stale, forked or replayed); PERMISSION_DENIED for signatures, the governance root or a
        rule of the roster chain; each message names ``signed_change.<field>``."""
        if not isinstance(signed, SignedRosterChange):
            raise RpcError(Code.INVALID_ARGUMENT, "signed_change: must be a SignedRosterChange")
        with self._lock:
            old = self._current
            if old is None:
                msg = (
                    f"signed_change: {self.cfg.name} has no signed roster (config governance.roster_history); "
                    "roster changes cannot be applied"
                )
                self._refused(actor, signed, msg)
                raise RpcError(Code.FAILED_PRECONDITION, msg)
            if self._history and signed.to_bytes() == self._history[-1].to_bytes():
                return old
            try:
                new = verify_roster_change(old, signed, self.cfg.admin_set)
                verify_roster_history(self.cfg.admin_set, [*self._history, signed])  # keys rotated away stay away
            except GovernanceError as e:
                field = e.field.split(".", 1)[1] if e.field.startswith("history[") else e.field
                msg = f"signed_change.{field}: {e.reason}"
                self._refused(actor, signed, msg)
                if field in ("previous_digest", "new_roster.version"):
                    raise RpcError(Code.FAILED_PRECONDITION, f"{msg} (the coordinator is at version {old.version})") from None
                raise RpcError(Code.PERMISSION_DENIED, msg) from None
            event = AuditEvent(actor, "roster-apply", "", "applied", _details(signed))
            self.db.put_roster_changes(new.version, [signed.to_bytes()], audit=event)
            self._history.append(signed)
            self._current = new
            listeners = list(self._listeners)
        self._flush()
        log.info("roster is now version %d (epoch %d, %d active nodes)", new.version, new.epoch, len(active_entries(new)))
        for fn in listeners:
            try:
                fn(old, new)
            except Exception:  # the change is durable: a listener's failure must not undo it
                log.exception("roster listener failed after version %d", new.version)
        return new

    def _refused(self, actor: str, signed: SignedRosterChange, reason: str) -> None:
        self.db.queue_audit(AuditEvent(actor, "roster-apply", "", "refused", _details(signed) | detail_text("reason", reason)))
        self._flush()

    def _flush(self) -> None:
        try:
            self.flush_audit()
        except Exception:  # stays queued: the next flush appends it
            log.exception("audit flush after a roster change failed")

    def append(self, signed: SignedRosterChange, new: Roster) -> None:
        """Record an already verified change (``new`` is its roster) as the next version.
        Low level: no verification, audit, node handles, push or listeners; use :meth:`apply`."""
        with self._lock:
            self.db.put_roster_changes(new.version, [signed.to_bytes()])
            self._history.append(signed)
            self._current = new


def _details(signed: SignedRosterChange) -> dict[str, str | int | bool]:
    """The audit details of a roster change: what it makes of the roster, and who signed."""
    r = signed.change.new_roster
    return {
        "version": r.version,
        "epoch": r.epoch,
        "roster_digest": r.digest().hex(),
        "active": ",".join(str(e.index) for e in active_entries(r)),
        "revoked": ",".join(str(e.index) for e in r.entries if not e.active),
        "admins": ",".join(sorted({s.admin for s in signed.signatures})),
    }
