"""The node's roster in force: the admin-signed roster chain (:mod:`governance.roster`), kept in
the node's store and verified against the node's *own* admin set (issue 11 item 3).

Start: the chain is the longer of the config's ``governance.roster_history`` and the store's; the
shorter must be a prefix of the longer (else the node does not start: a config naming another
roster than the one the node installed). The config's changes the store lacks are stored, with
one ``roster-install`` entry (outcome ``installed-from-config``: the versions ``from_version``
to ``version``) queued in the store's audit outbox in the same transaction. A
config without ``roster_history`` has a fixed roster (the legacy ``roster`` list): every roster
change is then refused FAILED_PRECONDITION, and such a config over a store that holds a signed
chain does not start (a revocation is never undone by editing a config; the release transaction
would refuse every share, :mod:`mpc_node.in_force`).

:meth:`NodeRoster.install` verifies one change as the next link (``verify_roster_change``, plus
the rule of ``verify_roster_history`` that a key rotated away never comes back), stores it
durably with its ``roster-install`` audit entry (one store transaction: the entry is queued in
the store's audit outbox, :mod:`mpc_node.audit_outbox`) and then calls the listeners (``fn(old, new)``) in order: the
node ends every live session at a roster change, and switches to staged operational keys.

:meth:`NodeRoster.peers` (the *active* entries) is what every envelope is sealed to and opened
with, so a revoked node's envelopes, and envelopes signed with a key rotated away, are refused.
:meth:`NodeRoster.refused_fingerprints` are the TLS certificate fingerprints of revoked entries and
of certificates rotated away: a caller presenting one is refused before any handler runs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable

import grpc

from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.policy import AdminSet
from governance.roster import Roster, RosterEntry, SignedRosterChange, active_entries, verify_roster_change, verify_roster_history
from mpc_node.audit_outbox import OutboxEntry
from mpc_node.config import NodeConfig, Peer
from mpc_node.governance import refusal
from mpc_node.storage import NodeStore, PolicyConflict
from mpcnet.common.rosterchain import RosterStartError as RosterStartError, start_chain  # re-exported: the start error
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog

log = logging.getLogger("mpc_node.roster")
Code = grpc.StatusCode
Listener = Callable[[Roster | None, Roster], None]



def _peer(e: RosterEntry) -> Peer:
    return Peer(e.index, e.name, e.identity_key, e.encryption_key)


def cert_fingerprint(cert_der: bytes) -> bytes:
    """SHA-256 of a DER certificate: what a roster entry's ``tls_fingerprint`` names."""
    return hashlib.sha256(cert_der).digest()


class NodeRoster:
    """The roster chain in force on this node (thread-safe)."""

    def __init__(
        self, cfg: NodeConfig, store: NodeStore, audit: AuditLog, *, on_queued: Callable[[], None] | None = None,
        fault: Callable[[str], None] | None = None,
    ) -> None:
        """``on_queued`` wakes the audit outbox flusher after an install queued its entry;
        ``fault`` is the test-mode step point hook (:meth:`mpc_node.faults.FaultInjector.at`:
        ``roster-config-stored`` here, ``roster-installed`` in :meth:`install`). Raises
        :class:`RosterStartError` (a config and a store naming different chains)."""
        self._cfg = cfg
        self._on_queued = on_queued or (lambda: None)
        self.fault = fault  # test mode: mpc_node/faults.py points roster-config-stored, roster-installed
        self._admins: AdminSet = cfg.admin_set
        self._store = store
        self._audit = audit
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._history: list[SignedRosterChange] = []
        self._current: Roster | None = None
        self._refused: frozenset[bytes] = frozenset()
        self._active: dict[int, Peer] = {}  # the active entries of _current as peers (set with it: _set)
        if cfg.signed_roster is None:
            held = len(store.roster_changes())
            if held:  # the chain outranks a config: its revocations must not be undone by an edit
                raise RosterStartError(
                    f"the store holds a signed roster chain (version {held}) but the config gives a fixed roster (no "
                    "governance.roster_history): a node revoked by the admins would be back, and every signature share "
                    "refused as stale-roster; give the cluster's governance.roster_history"
                )
            self._legacy = {i: p for i, p in cfg.roster.items()}
            return
        self._legacy = {}
        stored = [SignedRosterChange.from_bytes(b) for b in store.roster_changes()]
        long, roster = start_chain(
            self._admins, stored, list(cfg.roster_history),
            where="the roster this node installed (a config for another cluster or roster)",
        )
        if len(stored) < len(long):  # the config's changes the store lacks and their entry: one transaction
            entry = _install_entry(cfg.name, long[-1], "installed-from-config", "")
            entry = OutboxEntry(entry.actor, entry.action, "", entry.outcome, {**entry.details, "from_version": len(stored) + 1})
            self._store.put_roster_changes(len(stored) + 1, [c.to_bytes() for c in long[len(stored):]], audit=entry)
            if self.fault is not None:
                self.fault("roster-config-stored")
            self._on_queued()
            log.info("roster versions %d..%d stored from the config", len(stored) + 1, len(long))
        self._history = long
        self._set(roster)

    # --- reading -----------------------------------------------------------------------------
    @property
    def signed(self) -> bool:
        """False for a legacy config (fixed roster, no changes possible)."""
        return self._cfg.signed_roster is not None

    def current(self) -> Roster | None:
        """The roster in force (None: a legacy config with a fixed roster)."""
        with self._lock:
            return self._current

    @property
    def version(self) -> int:
        with self._lock:
            return 0 if self._current is None else self._current.version

    def peers(self) -> dict[int, Peer]:
        """The ACTIVE nodes of the roster in force, by index: a new dict for the caller (made
        from the one built when that roster came in force, :meth:`_set`)."""
        with self._lock:
            return dict(self._legacy if self._current is None else self._active)

    def entry(self, index: int) -> RosterEntry | None:
        """The entry of ``index`` (active or revoked); None if absent or a legacy config."""
        with self._lock:
            return None if self._current is None else self._current.entry(index)

    def history(self) -> tuple[bytes, ...]:
        """Every installed change, canonical, version 1 first."""
        with self._lock:
            return tuple(c.to_bytes() for c in self._history)

    def refused_fingerprints(self) -> frozenset[bytes]:
        """TLS certificate fingerprints of revoked entries and of certificates rotated away."""
        with self._lock:
            return self._refused

    def add_listener(self, fn: Listener) -> None:
        """``fn(old, new)`` is called after every install, in the order listeners were added."""
        with self._lock:
            self._listeners.append(fn)

    # --- changing ----------------------------------------------------------------------------
    def install(self, data: bytes, *, actor: str) -> tuple[bool, Roster]:
        """Verify and install one roster change (the next version); ``(False, current)`` if it
        is exactly the last one installed. Raises RpcError: INVALID_ARGUMENT (malformed),
        FAILED_PRECONDITION (a legacy config; not the next version: ``stale-roster``),
        PERMISSION_DENIED (signatures, governance root, a rule of the roster chain)."""
        if not self.signed:
            raise refusal(
                Code.FAILED_PRECONDITION, "no-roster",
                f"signed_change: {self._cfg.name} has no signed roster (its config has no governance.roster_history); "
                "roster changes cannot be installed",
            )
        try:
            signed = SignedRosterChange.from_bytes(data)
        except GovernanceError as e:
            self._audit_install(actor, None, "refused", f"signed_change.{e.field}: {e.reason}")
            raise refusal(Code.INVALID_ARGUMENT, "malformed", f"signed_change.{e.field}: {e.reason}") from None
        with self._lock:
            old = self._current
            assert old is not None
            if self._history and signed.to_bytes() == self._history[-1].to_bytes():
                return False, old
            try:
                new = verify_roster_change(old, signed, self._admins)
                verify_roster_history(self._admins, [*self._history, signed])  # keys rotated away stay away
            except GovernanceError as e:
                field = e.field.split(".", 1)[1] if e.field.startswith("history[") else e.field  # this change's field
                stale = field in ("previous_digest", "new_roster.version")
                msg = f"signed_change.{field}: {e.reason}"
                self._audit_install(actor, signed, "refused", msg)
                if stale:
                    raise refusal(Code.FAILED_PRECONDITION, "stale-roster", f"{msg} (this node is at version {old.version})") from None
                raise refusal(Code.PERMISSION_DENIED, "denied", msg) from None
            try:  # the change and its entry: one transaction
                self._store.put_roster_changes(new.version, [signed.to_bytes()], audit=_install_entry(actor, signed, "installed", ""))
            except PolicyConflict as e:  # another process writing the store
                raise RpcError(Code.ABORTED, f"signed_change: {e}") from None
            self._history.append(signed)
            self._set(new)
            listeners = list(self._listeners)
        if self.fault is not None:
            self.fault("roster-installed")
        self._on_queued()
        log.info("roster is now version %d (epoch %d, %d active nodes)", new.version, new.epoch, len(active_entries(new)))
        for fn in listeners:
            try:
                fn(old, new)
            except Exception:  # a listener's failure must not undo the (durable) install
                log.exception("roster listener failed after version %d", new.version)
        return True, new

    def _set(self, roster: Roster) -> None:
        """Under the lock (or in __init__): make ``roster`` the one in force."""
        self._current = roster
        self._active = {e.index: _peer(e) for e in active_entries(roster)}
        in_use = {e.tls_fingerprint for e in roster.entries if e.active}
        refused = {e.tls_fingerprint for e in roster.entries if not e.active}
        for c in self._history:
            refused |= {e.tls_fingerprint for e in c.change.new_roster.entries} - in_use
        self._refused = frozenset(refused)

    def _audit_install(self, actor: str, signed: SignedRosterChange | None, outcome: str, reason: str) -> None:
        """A refusal (nothing changed): appended directly, after the queued entries (the log's
        ``before_use`` hook flushes the outbox first)."""
        e = _install_entry(actor, signed, outcome, reason)
        self._audit.append(e.actor, e.action, outcome=e.outcome, details=e.details)


def _install_entry(actor: str, signed: SignedRosterChange | None, outcome: str, reason: str) -> OutboxEntry:
    """The ``roster-install`` entry of ``signed`` (None: undecodable) with ``outcome``."""
    details: dict[str, str | int | bool] = {}
    if signed is not None:
        r = signed.change.new_roster
        details |= {
            "version": r.version, "epoch": r.epoch, "roster_digest": r.digest().hex(),
            "active": ",".join(str(e.index) for e in active_entries(r)),
            "revoked": ",".join(str(e.index) for e in r.entries if not e.active),
            "admins": ",".join(sorted({s.admin for s in signed.signatures})),
        }
    if reason:
        details |= detail_text("reason", reason)
    return OutboxEntry(actor, "roster-install", "", outcome, details)
