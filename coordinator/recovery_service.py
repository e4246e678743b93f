"""The backup and recovery RPCs of the Coordinator (issue 12), wired into
:class:`coordinator.service.CoordinatorService` by delegation so the service keeps one line per
RPC: recovery configuration (:mod:`coordinator.recovery_config`), bundles
(:mod:`coordinator.backups`), ceremonies (:mod:`coordinator.ceremonies`) and the two lifecycle
proposal kinds (:mod:`coordinator.recovery_proposals`).

Hooks the service calls: :meth:`RecoveryService.background` (every health pass: the first one
applies the recovery proposals a killed coordinator left pending at their quorum; push the
configuration to nodes that lack it, collect missing bundles with backoff, resume ceremonies),
:meth:`RecoveryService.key_activated` (after a keygen's activation) and the key operations'
``on_done`` (after a commit: a new bundle of the key's new epoch), :meth:`node_back` (a node
that was down may have a new store), :meth:`status` (``ClusterStatus``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from coordinator.backups import Backups
from coordinator.ceremonies import Ceremonies
from coordinator.recovery_config import RecoveryConfigBook
from coordinator.recovery_proposals import CONFIG_KIND, ORDER_KIND, RecoveryProposals
from coordinator.store_failure import log_failure
from governance.recovery import RecoveryConfig
from mpcnet.wire.mpc.v1 import coordinator_pb2

if TYPE_CHECKING:
    from coordinator.service import CoordinatorService

log = logging.getLogger("coordinator.recovery")


class RecoveryService:
    """Everything of issue 12 on the coordinator, over the service's stores and nodes."""

    def __init__(self, svc: CoordinatorService) -> None:
        admins = svc.cfg.admin_set
        flush = svc.requests.flush_audit
        self.lifecycle = svc.lifecycle
        self.name = svc.cfg.name
        self._resumed = False
        self._backups_busy = threading.Lock()
        self._ceremonies_busy = threading.Lock()
        self.nodes = svc.nodes
        self.book = RecoveryConfigBook(admins, svc.db, svc.audit, svc.nodes, flush)
        self.backups = Backups(
            admins, svc.db, svc.audit, svc.nodes, self.book, svc.keyops.epoch_of, svc.rosters.signed_history, flush, name=svc.cfg.name,
        )
        self.ceremonies = Ceremonies(
            svc.db, svc.audit, svc.nodes, self.book, self.backups, svc.keyops, svc.roster_in_force, flush, name=svc.cfg.name,
            timeout_s=svc.cfg.dkg_timeout_s,
        )
        self.proposals = RecoveryProposals(admins, svc.db, self.book, svc.keyops, self.ceremonies, svc.nodes, svc.roster_in_force)
        svc.lifecycle.register(CONFIG_KIND, self.proposals.decode_config, self.proposals.apply_config)
        svc.lifecycle.register(ORDER_KIND, self.proposals.decode_order, self.proposals.apply_order)
        self.book.add_listener(self._config_applied)
        svc.keyops.on_done = self.key_activated

    def _config_applied(self, config: RecoveryConfig) -> None:
        self.backups.soon()

    # --- hooks ---------------------------------------------------------------------------------
    def key_activated(self, key_id: bytes) -> None:
        """A key was activated or committed a new epoch: make its new bundle now (in a thread)."""
        if self.book.version:
            self.backups.soon(key_id)

    def node_back(self, i: int) -> None:
        """Node ``i`` answers again: it may have a new store (send it the configuration again) and
        the keys whose bundle waited for it are collected at the next pass (no backoff)."""
        self.book.mark_unsynced(i)
        self.backups.node_back(i)

    def background(self) -> None:
        if not self._resumed:  # first pass after a start: finish what a killed coordinator left half applied
            self._resumed = True
            for pid in self.lifecycle.retry_pending((CONFIG_KIND, ORDER_KIND), self.name):
                log.info("lifecycle proposal %s, left pending by a restart, is applied", pid)
        for i, h in self.nodes.items():
            if h.healthy and not self.book.synced(i):
                self.book.sync_node(i)
        # bundle collection and ceremonies call the nodes with long deadlines (a hung node, e.g.
        # SIGSTOPped or behind a black-holed link, answers nothing for PART_TIMEOUT_S or the DKG
        # timeout): they run beside the health loop, one pass of each at a time, never in it
        self._beside(self._backups_busy, self.backups.check, "backup-pass")
        self._beside(self._ceremonies_busy, self.ceremonies.check, "ceremony-pass")

    @staticmethod
    def _beside(busy: threading.Lock, fn: Callable[[], object], name: str) -> None:
        if not busy.acquire(blocking=False):
            return  # the previous pass is still waiting for a node

        def run() -> None:
            try:
                fn()
            except Exception as e:
                log_failure(log, e, f"{name} failed")
            finally:
                busy.release()

        threading.Thread(target=run, name=name, daemon=True).start()

    def status(self, resp: coordinator_pb2.ClusterStatusResponse) -> None:
        resp.recovery_config_version = self.book.version
        resp.backups.extend(self.backups.status())

    # --- RPCs ----------------------------------------------------------------------------------
    def propose_config(self, data: bytes, caller: str) -> coordinator_pb2.LifecycleProposal:
        return self.lifecycle.message(self.lifecycle.propose(CONFIG_KIND, data, caller, "signed_change"))

    def propose_order(self, data: bytes, caller: str) -> coordinator_pb2.LifecycleProposal:
        return self.lifecycle.message(self.lifecycle.propose(ORDER_KIND, data, caller, "signed_order"))

    def get_config(self) -> coordinator_pb2.RecoveryConfigHistory:
        return coordinator_pb2.RecoveryConfigHistory(history=self.book.history(), governance_root=self.book.admins.digest())

    def export(self, req: coordinator_pb2.ExportBackupRequest, caller: str) -> coordinator_pb2.BackupInfo:
        return self.backups.export(bytes(req.key_id), bytes(req.bundle_digest), caller)

    def list_backups(self, req: coordinator_pb2.ListBackupsRequest) -> coordinator_pb2.ListBackupsResponse:
        return coordinator_pb2.ListBackupsResponse(backups=self.backups.listing(bytes(req.key_id) or None))

    def start_drill(self, req: coordinator_pb2.StartDrillRequest, caller: str) -> coordinator_pb2.Ceremony:
        return self.ceremonies.message(self.ceremonies.start_drill(bytes(req.key_id), caller))

    def submit(self, req: coordinator_pb2.SubmitRecoveryPiecesRequest, caller: str) -> coordinator_pb2.Ceremony:
        return self.ceremonies.message(self.ceremonies.submit(req, caller))

    def get_ceremony(self, req: coordinator_pb2.GetCeremonyRequest) -> coordinator_pb2.Ceremony:
        return self.ceremonies.message(self.ceremonies.get(bytes(req.ceremony_id)))

    def list_ceremonies(self, req: coordinator_pb2.ListCeremoniesRequest) -> coordinator_pb2.ListCeremoniesResponse:
        return coordinator_pb2.ListCeremoniesResponse(ceremonies=self.ceremonies.listing(bytes(req.key_id) or None))
