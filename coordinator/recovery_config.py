"""The recovery-officer configuration on the coordinator (issue 12): its admin-signed chain and
pushing it to the nodes (like :mod:`coordinator.roster_sync` pushes the roster).

:class:`RecoveryConfigBook` holds the chain of ``SignedRecoveryConfigChange`` (version 1
first), verified again at start-up against the coordinator's own admin set
(:func:`governance.recovery.verify_recovery_config_history`). :meth:`RecoveryConfigBook.apply`
takes a change that reached the admin quorum (a ``recovery-config`` lifecycle proposal),
verifies it as the next link, stores it with its ``recovery-config`` audit entry (one
transaction), then calls its listeners (push to the nodes, new backups of every key).

:meth:`RecoveryConfigBook.sync_node` sends the whole history to a node with
``InstallRecoveryConfig`` (the node verifies every change against its own admin set and keeps
the longer chain; a history that does not extend its own is refused, logged and audited once
per reason). Nodes that were down are synced by the background pass.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import grpc

from coordinator.db import AuditEvent, CoordinatorDb, now_ms
from coordinator.relay import NodeHandle
from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.policy import AdminSet
from governance.recovery import (
    RecoveryConfig,
    RecoveryConfigChange,
    SignedRecoveryConfigChange,
    verify_recovery_config_change,
    verify_recovery_config_history,
)
from mpcnet.common.rpc import RpcError, status_of
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import node_pb2

log = logging.getLogger("coordinator.recovery_config")
Code = grpc.StatusCode
SYNC_TIMEOUT_S = 5.0
Listener = Callable[[RecoveryConfig], None]


def config_details(signed: SignedRecoveryConfigChange) -> dict[str, str | int | bool]:
    """Audit details of a configuration change (officers by name, quorums, drill period)."""
    c = signed.change.config
    return {
        "version": c.version, "quorum": c.quorum, "export_quorum": c.export_quorum, "drill_period_s": c.drill_period_s,
        "officers": ",".join(o.name for o in c.officers)[:500], "signers": ",".join(s.admin for s in signed.signatures)[:300],
    }


class RecoveryConfigBook:
    """The verified recovery configuration chain and its push to the nodes. Thread-safe."""

    def __init__(
        self, admins: AdminSet, db: CoordinatorDb, audit: AuditLog, nodes: Mapping[int, NodeHandle],
        flush: Callable[[], None],
    ) -> None:
        self.admins = admins
        self.db = db
        self.audit = audit
        self.nodes = nodes
        self.flush = flush
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._synced: dict[int, int] = {}  # node -> the configuration version it confirmed
        self._reported: dict[int, str] = {}
        history = db.recovery_config_changes()
        try:
            self._signed = [SignedRecoveryConfigChange.from_bytes(b) for b in history]
            self._current = verify_recovery_config_history(admins, self._signed) if self._signed else None
        except GovernanceError as e:
            raise RuntimeError(f"db: the stored recovery configuration chain does not verify: {e.field}: {e.reason}") from None

    # --- reading -------------------------------------------------------------------------------
    def current(self) -> RecoveryConfig | None:
        """The configuration in force (None: no recovery officers configured)."""
        with self._lock:
            return self._current

    @property
    def version(self) -> int:
        c = self.current()
        return 0 if c is None else c.version

    def signed(self, version: int | None = None) -> SignedRecoveryConfigChange | None:
        """The signed change that made ``version`` (default: the one in force)."""
        with self._lock:
            if not self._signed:
                return None
            v = len(self._signed) if version is None else version
            return self._signed[v - 1] if 1 <= v <= len(self._signed) else None

    def config(self, version: int) -> RecoveryConfig | None:
        s = self.signed(version)
        return None if s is None else s.change.config

    def history(self) -> list[bytes]:
        with self._lock:
            return [s.to_bytes() for s in self._signed]

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def applied(self, change: RecoveryConfigChange) -> bool:
        """True if ``change`` (its canonical encoding) is the stored link of its version: it was
        applied (e.g. by a coordinator killed before its proposal was marked applied)."""
        stored = self.signed(change.config.version)
        return stored is not None and hmac.compare_digest(stored.change.encode(), change.encode())

    # --- applying ------------------------------------------------------------------------------
    def apply(self, signed: SignedRecoveryConfigChange, actor: str) -> RecoveryConfig:
        """Verify ``signed`` as the next link (admin quorum, root, chain digest, version) and
        store it with its audit entry; then push it and tell the listeners. A change already
        stored (:meth:`applied`: the coordinator died while pushing it) is pushed and announced
        again, nothing stored. RpcError PERMISSION_DENIED / FAILED_PRECONDITION naming
        ``signed_change.<field>``."""
        if self.applied(signed.change):
            log.info("recovery configuration version %d was applied before; pushing it again", signed.change.config.version)
            self.sync_all()
            self._announce(signed.change.config)
            return signed.change.config
        with self._lock:
            try:
                config = verify_recovery_config_change(self._current, signed, self.admins)
            except GovernanceError as e:
                code = Code.PERMISSION_DENIED if "signature" in e.field or "root" in e.field else Code.FAILED_PRECONDITION
                raise RpcError(code, f"signed_change.{e.field}: {e.reason}") from None
            ev = AuditEvent(actor, "recovery-config", "", "applied", config_details(signed))
            try:
                self.db.put_recovery_config(config.version, signed.to_bytes(), ev, now_ms())
            except ValueError as e:
                raise RpcError(Code.FAILED_PRECONDITION, f"signed_change: {e}") from None
            self._signed.append(signed)
            self._current = config
        self.flush()
        log.info("recovery configuration version %d applied (%d officers, quorum %d)", config.version, len(config.officers),
                 config.quorum)
        self.sync_all()
        self._announce(config)
        return config

    def _announce(self, config: RecoveryConfig) -> None:
        for fn in self._listeners:
            try:
                fn(config)
            except Exception:
                log.exception("a recovery configuration listener failed")

    # --- pushing -------------------------------------------------------------------------------
    def synced(self, i: int) -> bool:
        """True if node ``i`` confirmed the whole chain (always, with no configuration)."""
        v = self.version
        with self._lock:
            return v == 0 or self._synced.get(i, 0) >= v

    def mark_unsynced(self, i: int) -> None:
        with self._lock:
            self._synced.pop(i, None)

    def sync_all(self) -> None:
        targets = list(self.nodes.keys())
        if targets:
            with ThreadPoolExecutor(max_workers=len(targets)) as ex:
                list(ex.map(self.sync_node, targets))

    def sync_node(self, i: int) -> bool:
        """Send the whole chain to node ``i``; True if it now holds it."""
        history = self.history()
        if not history:
            return True
        h = self.nodes.get(i)
        if h is None:
            return False
        try:
            resp = h.stub.InstallRecoveryConfig(node_pb2.InstallRecoveryConfigRequest(history=history), timeout=SYNC_TIMEOUT_S)
        except grpc.RpcError as e:
            code, details = status_of(e)
            self.mark_unsynced(i)
            log.warning("%s: cannot install the recovery configuration (%s: %s); will retry", h.label, code.name, details)
            if code not in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED, Code.UNIMPLEMENTED):
                self._report(i, h.name, f"{code.name}: {details}")
            return False
        except ValueError as e:  # the handle was closed under us
            self.mark_unsynced(i)
            log.info("%s: recovery configuration sync stopped (%s)", h.label, e)
            return False
        version = int(resp.version)
        with self._lock:
            self._synced[i] = version
            self._reported.pop(i, None)
        if resp.installed:
            self.audit.append("coordinator", "recovery-config-push", outcome="synced", details={"node": h.name, "version": version})
        return version >= len(history)

    def _report(self, i: int, name: str, reason: str) -> None:
        with self._lock:
            if self._reported.get(i) == reason:
                return
            self._reported[i] = reason
        self.audit.append("coordinator", "recovery-config-push", outcome="refused", details={"node": name} | detail_text("reason", reason))
