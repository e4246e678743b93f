"""Pushing the roster chain to the nodes (issue 11 item 3), like :mod:`coordinator.policies`
pushes policies.

After :meth:`coordinator.roster.RosterBook.apply`, :meth:`RosterSync.roster_applied` (the
service's first roster listener) moves the node handles to the new roster's active nodes (a
revoked node's channel is closed and never dialed again; an added node gets a handle) and pushes
the chain to every active node. A node that is down, or behind (restarted with an older store, or
added with a shorter history), is brought up to date by :meth:`RosterSync.sync_node` from the
background loop: ``GetRoster`` tells what it holds; when that is a prefix of the coordinator's
chain, the missing changes are sent oldest first with ``InstallRosterChange`` (each node verifies
every one against its own admin set). A node holding a chain that is not a prefix of the
coordinator's (another governance root, a fork, or a longer chain) is never pushed to: it is
logged, audited (``roster-push`` refused) and reported as not synced.
"""

from __future__ import annotations

import hmac
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc

from coordinator.nodes import NodeRegistry
from coordinator.roster import RosterBook
from governance.audit import detail_text
from governance.roster import Roster
from mpcnet.common.rpc import status_of
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import node_pb2

log = logging.getLogger("coordinator.roster_sync")
Code = grpc.StatusCode
SYNC_TIMEOUT_S = 5.0


class RosterSync:
    """Which node holds the coordinator's whole roster chain, and bringing the others up to it.

    ``governance_root`` is the coordinator's admin set digest (a node reporting another root is
    not synced). Thread-safe; one sync at a time per node.
    """

    def __init__(self, book: RosterBook, nodes: NodeRegistry, audit: AuditLog, governance_root: bytes) -> None:
        self.book = book
        self.nodes = nodes
        self.audit = audit
        self.governance_root = governance_root
        self._lock = threading.Lock()
        self._follow_lock = threading.Lock()
        self._synced: dict[int, int] = {}  # node -> the roster version it confirmed
        self._sync_locks: dict[int, threading.Lock] = {}
        self._reported: dict[int, str] = {}  # node -> the refusal last audited (audited once, not every tick)

    # --- reading ---------------------------------------------------------------------------------
    def synced(self, i: int) -> bool:
        """True if node ``i`` confirmed the coordinator's whole chain (always, legacy config)."""
        current = self.book.current()
        if current is None:
            return True
        with self._lock:
            return self._synced.get(i, 0) == current.version

    def node_version(self, i: int) -> int:
        """The roster version node ``i`` last confirmed (0: not yet known)."""
        with self._lock:
            return self._synced.get(i, 0)

    # --- pushing ---------------------------------------------------------------------------------
    def mark_unsynced(self, i: int) -> None:
        """Node ``i`` may have missed changes (it was down): ask it again at the next sync."""
        with self._lock:
            self._synced.pop(i, None)

    def roster_applied(self, old: Roster | None, new: Roster) -> None:
        """A :meth:`RosterBook.apply` listener: follow the new roster with the node handles,
        then push the chain to every active node (those down are synced when they are back)."""
        with self._follow_lock:  # concurrent applies: the last follow always sees the latest roster
            added, removed = self.nodes.follow(self.book.endpoints())
        with self._lock:
            for i in removed:
                self._synced.pop(i, None)
        if added or removed:
            log.info(
                "roster version %d: %d active node(s); new handles for %s; closed %s",
                new.version, len(self.nodes), ",".join(map(str, added)) or "none", ",".join(map(str, removed)) or "none",
            )
        self.sync_all()

    def sync_all(self, only_unsynced: bool = False) -> None:
        """Sync every active node at once (``only_unsynced``: those not known to be in sync)."""
        targets = [i for i in self.nodes.keys() if not (only_unsynced and self.synced(i))]
        if not targets:
            return
        with ThreadPoolExecutor(max_workers=len(targets)) as ex:
            list(ex.map(self.sync_node, targets))

    def sync_node(self, i: int) -> bool:
        """Bring node ``i`` up to the coordinator's chain; True if it now holds all of it."""
        history = self.book.history()
        if not history:
            return True  # legacy: a fixed roster, nothing to push
        if i not in self.nodes:
            return False  # revoked (or never known): never dialed
        h = self.nodes[i]
        with self._lock:
            lock = self._sync_locks.setdefault(i, threading.Lock())
        with lock:
            pushed = 0
            try:
                resp = h.stub.GetRoster(node_pb2.GetRosterRequest(), timeout=SYNC_TIMEOUT_S)
                if not hmac.compare_digest(bytes(resp.governance_root), self.governance_root):
                    return self._diverged(i, h.name, h.label, "another governance root (admin set) than the coordinator")
                have = [bytes(b) for b in resp.signed_changes]
                if len(have) > len(history):
                    return self._diverged(
                        i, h.name, h.label, f"a longer roster chain ({len(have)} versions) than the coordinator ({len(history)})"
                    )
                for k, (theirs, ours) in enumerate(zip(have, history[: len(have)], strict=True)):
                    if not hmac.compare_digest(theirs, ours):
                        return self._diverged(i, h.name, h.label, f"another roster version {k + 1} than the coordinator (a fork)")
                version = len(have)
                for signed in history[len(have):]:  # oldest first: each is the next link there
                    resp_i = h.stub.InstallRosterChange(
                        node_pb2.InstallRosterChangeRequest(signed_change=signed), timeout=SYNC_TIMEOUT_S
                    )
                    version = int(resp_i.version)
                    pushed += 1
            except grpc.RpcError as e:
                code, details = status_of(e)
                self.mark_unsynced(i)
                log.warning("%s: cannot sync the roster (%s: %s); will retry", h.label, code.name, details)
                if code not in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED):
                    self._report(i, h.name, f"{code.name}: {details}")
                return False
            except ValueError as e:  # the handle was closed under us (revoked meanwhile)
                self.mark_unsynced(i)
                log.info("%s: roster sync stopped (%s)", h.label, e)
                return False
            with self._lock:
                self._synced[i] = version
                self._reported.pop(i, None)
            if pushed:
                self.audit.append(
                    "coordinator", "roster-push", outcome="synced", details={"node": h.name, "changes": pushed, "version": version}
                )
                log.info("%s: pushed %d roster change(s); it is at version %d", h.label, pushed, version)
            return version == self.book.version

    def _diverged(self, i: int, name: str, label: str, what: str) -> bool:
        self.mark_unsynced(i)
        if self._report(i, name, f"holds {what}"):
            log.error("%s holds %s: not pushing the roster to it", label, what)
        return False

    def _report(self, i: int, name: str, reason: str) -> bool:
        """Audit ``roster-push`` refused for node ``i``, unless the same reason was the last one
        audited for it (the background sync retries every health interval). True if audited."""
        with self._lock:
            if self._reported.get(i) == reason:
                return False
            self._reported[i] = reason
        self.audit.append("coordinator", "roster-push", outcome="refused", details={"node": name} | detail_text("reason", reason))
        return True
