"""The client-facing Coordinator RPCs: keys, signing requests and approvals, policies, audit.

Keys are created by a DKG across all n nodes; a key is activated on the nodes (CommitKey) only
once every node reported the same key. A signature is only ever produced for a signing request
that reached its approval quorum (:mod:`coordinator.requests`); the nodes re-check the approvals
themselves. Signing picks t available nodes (least loaded first) and retries with another
t-subset when a node fails mid-protocol. Before the round that releases the signature shares it
takes the request's next attempt number (durably) and reserves it on the nodes for exactly that
signer set and session; the signers release only with receipts from a majority of the nodes, so
a request takes at most MAX_SIGN_ATTEMPTS attempts that release shares, cluster-wide, and an
attempt interrupted after a partial release is finished by the next one without new approvals.
With the attempts or the nodes exhausted the request fails with a message saying what to do.
Policies change only through admin-quorum-signed proposals (:mod:`coordinator.policies`).
Every request, decision and outcome is stored in SQLite, so a restarted coordinator still
answers for it, and audited in the coordinator's own signed, hash-chained log.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.anomaly_hook import AnomalyMonitor, audit_heads
from coordinator.config import CoordinatorConfig
from coordinator.db import AuditEvent, CoordinatorDb, KeyRecord, RequestRecord, now_ms
from coordinator.faults import fault_hook
from coordinator.frost_nonce_sync import NonceSync
from coordinator.frost_sign import FrostDeps, FrostSigning
from coordinator.inputs import validated
from coordinator.keyops import KIND as KEY_OPERATION, KeyOperations
from coordinator.lifecycle_proposals import LifecycleProposals
from coordinator.metrics import DrillAges, coordinator_metrics, key_created, observe_nodes
from coordinator.nodes import NodeRegistry
from coordinator.policies import PolicyBook
from coordinator.pool import PoolDeps, PresignPools
from coordinator.presigned import PresignedDeps, PresignedSigning
from coordinator.probe_now import ProbeNow
from coordinator.recovery_service import RecoveryService
from coordinator.relay import Aborted, NodeHandle, NodesUnavailable, Refused, fanout, run_session, wait_ready
from coordinator.requests import SignRequests
from coordinator.roles import READ_ALL_REQUESTS
from coordinator.roster import RosterBook
from coordinator.roster_proposals import KIND as ROSTER_CHANGE, RosterProposals
from coordinator.roster_status import roster_status
from coordinator.roster_sync import RosterSync
from coordinator.rotation import NodeKeyRotationRelay
from coordinator.schedule import RefreshScheduler
from coordinator.schemes import check_dkg_key, check_frost_result, is_frost, scheme_of
from coordinator.session_slots import SessionSlots, reserved_for_pools
from coordinator.store_failure import failure_advice, log_failure, one_line
from coordinator.store_health import StoreProbe
from crypto_core.bip32 import derive
from crypto_core.combiner import SignatureShare, combine
from crypto_core.errors import DecodeError, ProtocolAbort
from crypto_core.group import Point
from governance.approval import ApprovalBundle, SigningRequest
from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.policy import DEFAULT_SCOPE
from governance.reservation import MAX_SIGN_ATTEMPTS, ReservationReceipt, reservation_quorum
from governance.roster import Roster
from governance.text import REQUEST_ID_RULE, escape, is_request_id, quote
from mpcnet.common.clockskew import SkewSample, measure
from mpcnet.common.govwire import audit_page, policy_state
from mpcnet.common.metrics import Metrics, NullMetrics
from mpcnet.common.pki import CertIdentity, channel_credentials
from mpcnet.common.rpc import RpcError, caller_identity, check_len, invalid, status_of, trailing
from mpcnet.common.stores.audit import AuditLog
from mpcnet.common.streams import StreamBudget
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2, governance_pb2, node_pb2

log = logging.getLogger("coordinator.service")
Code = grpc.StatusCode
MAX_SIGNER_SETS_TRIED = 50_000
# aborts naming nobody after which a request fails (each retires one signer set)
MAX_UNATTRIBUTED = 8  # bounds _pick's search for a signer set that avoids every dispute
_KEY_STATUS = {
    "pending": common_pb2.KEY_STATUS_PENDING,
    "active": common_pb2.KEY_STATUS_ACTIVE,
    "discarded": common_pb2.KEY_STATUS_DISCARDED,
}
_STATE = {
    "running": coordinator_pb2.REQUEST_STATE_RUNNING,
    "succeeded": coordinator_pb2.REQUEST_STATE_SUCCEEDED,
    "failed": coordinator_pb2.REQUEST_STATE_FAILED,
}
_KIND = {"keygen": coordinator_pb2.REQUEST_KIND_KEYGEN, "sign": coordinator_pb2.REQUEST_KIND_SIGN}
_PROPOSAL_STATE = {
    "pending": coordinator_pb2.PROPOSAL_STATE_PENDING,
    "applied": coordinator_pb2.PROPOSAL_STATE_APPLIED,
    "superseded": coordinator_pb2.PROPOSAL_STATE_SUPERSEDED,
}
_PB_PROPOSAL_STATE = {v: k for k, v in _PROPOSAL_STATE.items()}
# a signing session's nodes release their signature shares when they get the round-3 messages
SIGN_RELEASE_ROUND = 3
PROBE_S = 1.0  # the health probe's deadline (s): a node that has not answered by then is marked down
RESTART_WAIT_S = 30.0  # how long a signing request waits for too many nodes down before it fails
EPOCH_REFUSALS = 3  # a node refusing a signing session's epoch this often in one request is signed around


def _ident(ctx: Any) -> CertIdentity:
    ident = caller_identity(ctx) if ctx is not None else None
    if ident is None:  # the server authorizes every call first; this is only for direct use
        raise RpcError(Code.UNAUTHENTICATED, "a client certificate is required")
    return ident


def _signing_error(code: grpc.StatusCode, message: str, attempts: int, governance: str = "") -> RpcError:
    err = RpcError(code, message)
    err.attempts = attempts  # type: ignore[attr-defined]
    err.governance = governance  # type: ignore[attr-defined]
    return err


def _exhausted(rid: str, down: dict[int, str]) -> str:
    why = f" (last failures: {'; '.join(r for _, r in sorted(down.items()))})" if down else ""
    return (
        f"sign: request {rid} used all {MAX_SIGN_ATTEMPTS} signing attempts{why}; "
        "submit a new request for approval"
    )


def _attempts_left(taken: int) -> str:
    return (
        f"{min(taken, MAX_SIGN_ATTEMPTS)} of {MAX_SIGN_ATTEMPTS} signing attempts used; start the unavailable nodes, "
        "then submit a new request for approval"
    )
def _disputes_text(nodes: Mapping[int, NodeHandle], disputes: set[frozenset[int]]) -> str:
    """The blame this request's sessions collected, for the final error ("" if none)."""
    if not disputes:
        return ""
    parts = sorted(" and ".join(nodes[i].label for i in sorted(d)) for d in disputes)
    return "; no signer set avoids every dispute (never together: " + "; ".join(parts) + ")"


def _remaining_s(bundle: bytes, now: int) -> float:
    """Seconds until the bundle's request expires at ``now`` (ms, the coordinator's expiry clock:
    :meth:`CoordinatorDb.expiry_ms`); 0 if it has."""
    try:
        return max(0.0, (ApprovalBundle.from_bytes(bundle).request.expires_at_ms - now) / 1000)
    except GovernanceError:
        return 0.0


def _blind_text(nodes: Mapping[int, NodeHandle], blind: set[frozenset[int]]) -> str:
    """The signer sets whose sessions aborted naming nobody, for the final error ("" if none)."""
    if not blind:
        return ""
    return "; sessions that aborted naming nobody: " + "; ".join(
        sorted("{" + ", ".join(nodes[i].label for i in sorted(b)) + "}" for b in blind)
    )


def _live(bundle: bytes, now: int) -> bool:
    """True iff the bundle's request has not expired at ``now`` (ms, the coordinator's expiry
    clock: :meth:`CoordinatorDb.expiry_ms`)."""
    try:
        return now <= ApprovalBundle.from_bytes(bundle).request.expires_at_ms
    except GovernanceError:
        return False


def _printable(text: str, limit: int = 300) -> str:
    """A node's free text, escaped for our logs, errors and status (no control characters)."""
    return escape(text[:limit])


def key_info(k: KeyRecord) -> common_pb2.KeyInfo:
    return common_pb2.KeyInfo(
        key_id=k.key_id, label=k.label, public_key=k.public_key, chain_code=k.chain_code, threshold=k.threshold,
        parties=k.parties, status=_KEY_STATUS[k.status], created_unix_ms=k.created_ms, scheme=k.scheme,
    )


@validated
class CoordinatorService:
    metrics: Metrics = NullMetrics("coordinator")  # replaced in __init__ (coordinator.metrics)

    def __init__(self, cfg: CoordinatorConfig, identity: Ed25519PrivateKey) -> None:
        self.cfg = cfg
        self.db = CoordinatorDb(cfg.db)
        creds = channel_credentials(cfg.cert, cfg.ca_cert)
        self.rosters = RosterBook(cfg, self.db)
        # the active nodes of the roster in force (a revoked node is never dialed); copy-on-write:
        # a roster change swaps in a new set (coordinator.nodes), so read it through self.nodes
        self.nodes = NodeRegistry(self.rosters.endpoints(), creds)
        self.audit = AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=identity)
        self.roster_sync = RosterSync(self.rosters, self.nodes, self.audit, cfg.admin_set.digest())
        self.rosters.add_listener(self.roster_sync.roster_applied)  # first: handles and push, then the others
        self.policies = PolicyBook(cfg.admin_set, cfg.initial_policy, self.db, self.audit, self.nodes)
        self.requests = SignRequests(self.db, self.audit, self.policies, self._sign, READ_ALL_REQUESTS)
        self.policies.on_applied = self.requests.policy_applied
        # issue 15: coordinator/anomaly_hook.py. Its windows run on the store's steady clock (it
        # continues across restarts), refilled from the stored requests: a restart splits no burst
        self.anomaly = AnomalyMonitor(cfg.anomaly, self.audit, cfg.name, clock=self.db.steady.now_ms)
        self.anomaly.refill_requests(
            lambda floor: self.db.requests_created_since(floor, cfg.anomaly.max_subjects * cfg.anomaly.max_events)
        )
        self.requests.anomaly = self.anomaly
        self.requests.node_name = lambda i: self.nodes[i].name if i in self.nodes else f"node-{i}"
        self.rosters.flush_audit = self.requests.flush_audit
        # governance steps commit their entries with their change; the flusher appends them in the
        # background (inline until it runs); refusals are appended after them (coordinator/audit_flush.py)
        self.policies.flush_audit, self.policies.flush_now = self.requests.flusher.soon, self.requests.flusher.flush
        self.lifecycle = LifecycleProposals(cfg.admin_set, self.db, self.audit)
        self.lifecycle.flush_audit, self.lifecycle.flush_now = self.requests.flusher.soon, self.requests.flusher.flush
        self.keyops = KeyOperations(
            cfg.admin_set, self.db, self.audit, self.nodes, self.roster_in_force, self.requests.flush_audit,
            timeout_s=cfg.dkg_timeout_s, name=cfg.name,
        )
        self.keyops.fault = fault_hook(cfg.test_mode)  # None unless test_mode (coordinator.faults)
        # foreground operations hold keys and nodes; background refills stand aside (coordinator.foreground)
        self.foreground = self.keyops.foreground
        self.keyops.recheck_s = cfg.liveness_recheck_s  # a second health check before failing (coordinator.liveness)
        self.keyops.on_back = self._node_back
        self.requests.flusher.fault = self.keyops.fault  # the audit flush's crash points (the same file)
        self.requests.flusher.health = self.db.health  # its audit-log appends feed the store health
        # a store's failing state clears itself once a probe write succeeds (coordinator/store_health.py)
        self.store_probe = StoreProbe(
            self.db.health, self.db.probe_write, cfg.audit_db.parent, lambda: not self.db.pending_audit(1),
            audit_db=cfg.audit_db,
        )
        self.lifecycle.register(KEY_OPERATION, self.keyops.decode_proposal, self.keyops.apply_proposal)
        self.schedule = RefreshScheduler(  # scheduled refreshes (coordinator/schedule.py), run by _background
            self.keyops, self.db, self.audit, self.nodes, lambda kid: self.policies.policy_for(kid).change.new_policy, name=cfg.name,
        )
        roster_proposals = RosterProposals(self.rosters, self.keyops.follow_roster, self.keyops.committing_with)
        self.lifecycle.register(ROSTER_CHANGE, roster_proposals.decode, roster_proposals.apply)
        self.recovery = RecoveryService(self)  # backup and recovery (issue 12): coordinator/recovery_service.py
        self.metrics = coordinator_metrics(self)  # coordinator.metrics (issue 15): NullMetrics without a metrics section
        self.requests.metrics = self.metrics
        self.anomaly.attach_metrics(self.metrics)  # anomalies_total / anomaly_active (coordinator/anomaly_hook.py), every rule at 0
        self.drill_metrics = DrillAges(self)
        self.requests.recover()  # before serving: flush the audit outbox, settle stored quorums
        self.policies.retry_pending(cfg.name)  # a policy proposal left pending at its quorum (pushed by the background pass)
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}
        self._active = 0
        self._rr = 0
        self._stop = threading.Event()
        self._lifecycle_resumed = False  # the background's first pass applies proposals left at their quorum
        self.health: Any = None  # the standard health servicer, set by the server
        self._sessions = SessionSlots(cfg.max_parallel_sessions, reserved_for_pools(  # issue 14: the refill policy
            cfg.max_parallel_sessions, cfg.presign.enabled, cfg.presign.max_parallel,
        ))
        # background work that finds a node unreachable has it probed now (coordinator/probe_now.py)
        self.probe_now = ProbeNow(self.probe_one)
        # issue 14: presignature pools and the one-round path (coordinator/pool.py, coordinator/presigned.py)
        self.pools = PresignPools(cfg.presign, PoolDeps(
            self.db, lambda: self.nodes, self.keyops.signing, lambda: bool(self.requests._signing), self._sessions,
            cfg.step_timeout_s, self._stand_aside, self.probe_now.request,
        ), self.metrics)
        self.foreground.listen(self.pools.wake)  # a foreground operation ended: the pools it stood aside for refill now
        self.presigned = PresignedSigning(PresignedDeps(
            self.pools, self._reserve, self.policies.attestation, cfg.step_timeout_s, self._stop,
        ))
        self.presigned.fault = self.keyops.fault  # test mode: the presig-* crash points (coordinator/faults.py)
        self.requests.presig_done = self.presigned.done
        self.frost = FrostSigning(FrostDeps(  # issue 16: FROST keys (coordinator/frost_sign.py)
            self.db, lambda: self.nodes, self.keyops.signing, self._reserve, self.policies.attestation,
            lambda actor, action, rid, outcome, details: self.audit.append(actor, action, request_id=rid, outcome=outcome,
                                                                           details=details),
            stop=self._stop, stand_aside=self._stand_aside, unreachable=self.probe_now.request,
            resync=self._resync_policies,
        ))
        self.frost_sync = NonceSync(self.db, lambda: self.nodes)
        self.frost.fault = self.keyops.fault  # test mode: the frost-assigned crash point (coordinator/faults.py)
        self.requests.presig_assign = self.presigned.assignment_at_quorum  # R10: with the quorum transaction
        # the server's long-lived streams
        self.streams = StreamBudget(cfg.max_streams, cfg.stream_lifetime_s, per_caller=cfg.max_streams_per_caller)
        for r in self.db.requests_in_state("running"):
            k = self.db.key_of_request(r.request_id) if r.kind == "keygen" else None
            if k is not None:  # killed after the key was recorded: the keygen succeeded
                # its key-create entry: one transaction with the state change (the audit outbox; flushed below).
                # An id stored before ids were checked with fullmatch stays in the details, escaped
                self.db.update_request(
                    r.request_id, state="succeeded", key_id=k.key_id, attempts=1, audit=AuditEvent(
                        cfg.name, "key-create", r.request_id if is_request_id(r.request_id) else "", k.status,
                        detail_text("label", k.label) | detail_text("request", escape(r.request_id)) | {
                            "key_id": k.key_id.hex(), "public_key": k.public_key.hex(), "recovered": True,
                        },
                    ),
                )
                self.requests.flusher.soon()
                log.info("request %s (keygen) was interrupted by a restart after key %s was recorded: succeeded",
                         escape(r.request_id), k.key_id.hex()[:16])
                continue
            self.db.update_request(
                r.request_id, state="failed", error_code=Code.UNAVAILABLE.value[0],
                error_message="interrupted by a coordinator restart; resubmit with the same request_id to retry",
            )
            log.info("request %s (%s) was interrupted by a restart: marked failed", escape(r.request_id), r.kind)

    def _stand_aside(self) -> tuple[frozenset[bytes], frozenset[int]]:
        """(keys, nodes) background refills start nothing for: keys with a key operation recorded
        or running, nodes a foreground operation holds (:mod:`coordinator.foreground`)."""
        return self.keyops.busy_keys(), self.foreground.nodes_held()

    def _node_back(self, i: int) -> None:
        """Node ``i`` answers again after it was marked down: it may have missed policies and
        roster changes (pushed again by the background pass), and recovery state."""
        self.policies.mark_unsynced(i)
        self.roster_sync.mark_unsynced(i)
        self.recovery.node_back(i)

    def roster_in_force(self) -> Roster | None:
        """The roster in force (None: a legacy config with a fixed node list)."""
        return self.rosters.current()

    def key_info(self, k: KeyRecord) -> common_pb2.KeyInfo:
        """:func:`key_info` with the key's epoch and committee."""
        info = key_info(k)
        epoch, committee = self.keyops.epoch_of(k)
        info.epoch = epoch
        info.committee.extend(committee)
        info.presignatures_ready = self.db.presigs_ready_of_key(k.key_id)  # issue 14
        return info

    def storage_failure(self, e: Exception) -> RpcError | None:
        """For the RPC layer (every Coordinator RPC): a database or audit-log write failure that a
        handler did not catch (disk full, read-only, I/O error) is UNAVAILABLE naming the store,
        never INTERNAL with a traceback; None for anything else."""
        what = self.db.health.saw(e)  # shown by ClusterStatus and the metrics until a write succeeds
        if what is None:
            return None
        reason, advice = one_line(e), failure_advice(e)
        log.error("%s failure: %s%s", what, reason, f": {advice}" if advice else "")
        return RpcError(Code.UNAVAILABLE, f"store: {self.cfg.name} cannot use its {what} ({reason}); try again when it can")

    # --- background: health probes and activation of pending keys --------------------------
    def start_background(self) -> None:
        self.requests.flusher.start()  # the audit outbox, flushed in batches (coordinator/audit_flush.py)
        threading.Thread(target=self._background, name="health", daemon=True).start()
        threading.Thread(target=self._sweep, name="expiry-sweep", daemon=True).start()
        self.requests.resume()
        self.keyops.resume()
        self.pools.start()  # issue 14: the presignature refiller (when presign.enabled)

    def stop(self) -> None:
        self._stop.set()
        self.probe_now.stop()
        self.schedule.stop()
        self.pools.stop()
        self.keyops.stop()
        self.requests.stop()
        self.streams.close()
        self.probe_now.wait_idle(PROBE_S + 1.0)  # a probe running ends within its deadline: not on closed channels
        self.nodes.close()
        self.schedule.wait_idle(1.0)  # its second health check ends once the channels are closed
        self.db.close()
        self.audit.close()

    def _sweep(self) -> None:
        while not self._stop.wait(self.cfg.sweep_interval_s):
            try:
                self.requests.expire_due()
            except Exception as e:
                if self._stop.is_set():
                    return
                log_failure(log, e, "expiry sweep failed", self.db.health.saw)

    def _background(self) -> None:
        while not self._stop.is_set():
            self.store_probe.run()  # first, on its own: the other steps may fail while a store does
            try:
                self.probe()
                if not self._lifecycle_resumed:  # first pass after a start (the nodes probed once)
                    # key-operation and roster-change proposals a kill (or a failing store) left
                    # pending at their quorum, between the apply and its record: applied now
                    # (both applies are idempotent: a recorded operation / the change in force)
                    for pid in self.lifecycle.retry_pending((KEY_OPERATION, ROSTER_CHANGE), self.cfg.name):
                        log.info("lifecycle proposal %s, left pending at its quorum by a restart, is applied", pid)
                    self._lifecycle_resumed = True
                for k in self.db.list_keys("pending"):
                    self._commit(k)
                for i, h in self.nodes.items():
                    if h.healthy and not self.roster_sync.synced(i):
                        self.roster_sync.sync_node(i)
                    if h.healthy and not self.policies.synced(i):
                        self.policies.sync_node(i)
                roster = self.rosters.current()
                if roster is not None:  # a revoked node's share must stop mattering, even after a crash
                    # (and a key whose reshare a membership change called for gets it, even after a
                    # kill between the change and the reshare's start: the change's whole history)
                    self.keyops.reconcile(roster, history=tuple(c.change.new_roster for c in self.rosters.signed_history()))
                self.schedule.check()
                self.frost.refill()  # issue 16: fresh nonce commitments for FROST keys
                self.recovery.background()
                self.drill_metrics.refresh()
                self.anomaly.poll_audit_heads(lambda: audit_heads(h for _, h in self.nodes.items()))
            except Exception as e:
                if self._stop.is_set():
                    return
                log_failure(log, e, "background check failed", self.db.health.saw)
            self._stop.wait(self.cfg.health_interval_s)

    def probe(self) -> None:
        """Ask every node's Health at once: a node that does not answer, or answers that it is not
        serving (e.g. it cannot write its store), is marked down; each answer's clock gives the
        node's skew (:mod:`mpcnet.common.clockskew`), checked against ``max_clock_skew_s``."""

        def timed(h: NodeHandle) -> Any:
            def call(req: node_pb2.NodeHealthRequest, **kw: Any) -> tuple[node_pb2.NodeHealthResponse, int, int]:
                # the wall clock on purpose: the skew measured is the node's wall clock (unix_ms) against ours
                sent = time.time_ns() // 1_000_000
                resp = h.stub.Health(req, **kw)
                return resp, sent, time.time_ns() // 1_000_000

            return call

        ok, errs = fanout(
            {i: (timed(h), node_pb2.NodeHealthRequest()) for i, h in self.nodes.items()}, PROBE_S, wait_for_ready=True
        )
        for i, (resp, sent, received) in ok.items():
            h = self.nodes[i]
            if resp.unix_ms > 0 and received >= sent:
                self._clock_measured(h, measure(sent, received, resp.unix_ms))
            self._judge(h, resp)
        for i, e in errs.items():
            self._judge(self.nodes[i], e)
        # issue 16: a node that lost fresh FROST nonces (restarted): drop the commitments (coordinator/frost_nonce_sync.py)
        self.frost_sync.observe({i: resp.nonces for i, (resp, _, _) in ok.items() if resp.serving})
        observe_nodes(self.metrics, self.nodes.values())

    def probe_one(self, i: int) -> None:
        """Probe node ``i`` alone, now, as :meth:`probe` does (deadline :data:`PROBE_S`, the same
        verdict; no clock or nonce bookkeeping, which the periodic probe keeps): asked by background
        work that found it unreachable (:mod:`coordinator.probe_now`). A node no longer here is skipped,
        and a probe that ends after :meth:`stop` began judges nothing (``stop`` waits for it)."""
        h = self.nodes.get(i)
        if h is None or self._stop.is_set():
            return
        ok, errs = fanout({i: (h.stub.Health, node_pb2.NodeHealthRequest())}, PROBE_S, wait_for_ready=True)
        if self._stop.is_set():  # stopping: no verdict (nor resync) from a probe that straddled it
            return
        self._judge(h, ok[i] if i in ok else errs[i])
        log.info("%s: the probe a background session asked for found it %s", h.label,
                 "available" if h.healthy else f"unavailable ({h.last_error})")
        observe_nodes(self.metrics, self.nodes.values())

    def _judge(self, h: NodeHandle, answer: node_pb2.NodeHealthResponse | grpc.RpcError) -> None:
        """A health probe's verdict on ``h``: an error or NOT_SERVING marks it down (with the reason,
        escaped), serving marks it up (resynced first if it was down)."""
        if isinstance(answer, grpc.RpcError):
            code, details = status_of(answer)
            h.mark_down(f"{code.name}: {details}")
        elif not answer.serving:
            h.mark_down(f"NOT_SERVING: {_printable(answer.reason) or 'no reason given'}")
        else:
            if h.healthy is False:  # back from being down: it may have missed policies and roster changes
                self._node_back(h.index)
            h.mark_up()

    def _clock_measured(self, h: NodeHandle, sample: SkewSample) -> None:
        h.clock = sample
        max_ms = round(self.cfg.max_clock_skew_s * 1000)
        if sample.beyond(max_ms):
            why = f"clock {sample.text()} beyond the tolerance of {self.cfg.max_clock_skew_s:g}s"
        else:
            why = ""
        self._set_clock_suspect(h, why)

    def _set_clock_suspect(self, h: NodeHandle, why: str) -> None:
        """Mark (``why``) or clear ("") a node's clock as suspect; log and audit each change."""
        with self._lock:
            before, h.clock_suspect = h.clock_suspect, why
        if bool(before) == bool(why):
            return
        s = h.clock
        details: dict[str, str | int | bool] = {"node": h.name, "max_skew_ms": round(self.cfg.max_clock_skew_s * 1000)}
        if s is not None:
            details.update(skew_ms=s.skew_ms, error_ms=s.error_ms)
        if why:
            details.update(detail_text("reason", why))
            log.warning("%s: %s; left out of signing while enough other nodes are available", h.label, why)
        else:
            log.info("%s: clock back within tolerance (%s)", h.label, s.text() if s else "not measured")
        try:
            self.audit.append(
                "coordinator", "node-clock", outcome="out-of-tolerance" if why else "in-tolerance", details=details
            )
        except Exception:
            if not self._stop.is_set():  # the audit log is closed while the coordinator stops
                log.exception("cannot audit a node's clock state")

    def _live_now(self, bundle: bytes) -> bool:
        """:func:`_live` on the coordinator's expiry clock (not the wall clock: README "Clock steps")."""
        return _live(bundle, self.db.expiry_ms(now_ms()))

    def _clock_refusal(self, h: NodeHandle, message: str) -> str:
        """A node refused a request as expired that has not expired by our clock: its clock is
        off. Marks it suspect; returns the reason, naming the node and its measured skew."""
        skew = h.clock.text() if h.clock is not None else "skew not measured yet"
        self._set_clock_suspect(h, f"refused a live request as expired ({skew})")
        return f"{h.label}: refused the request as expired by its own clock ({skew}): {_printable(message)}"

    # --- admission ----------------------------------------------------------------------------
    def _admit(self) -> None:
        with self._lock:
            if self._active >= self.cfg.max_requests:
                raise RpcError(Code.RESOURCE_EXHAUSTED, f"coordinator: {self.cfg.max_requests} requests already in progress")
            self._active += 1

    def _release(self) -> None:
        with self._lock:
            self._active -= 1

    def _request_id(self, given: str) -> str:
        if not given:
            return "req-" + os.urandom(12).hex()
        if not is_request_id(given):
            raise invalid("request_id", REQUEST_ID_RULE)
        return given

    def _claim(self, rid: str, kind: str, same: Any) -> RequestRecord | None:
        """Register ``rid`` as running here. Returns the finished record if it already succeeded;
        waits for a concurrent run of the same request id."""
        while True:
            with self._lock:
                ev = self._running.get(rid)
                if ev is None:
                    rec = self.db.get_request(rid)
                    if rec is not None:
                        if rec.kind != kind or not same(rec):
                            raise RpcError(Code.ALREADY_EXISTS, f"request_id: {quote(rid)} was already used for a different request")
                        if rec.state == "succeeded":
                            return rec
                    self._running[rid] = threading.Event()
                    if rec is None:
                        return None
                    break
            ev.wait()
        self.db.restart_request(rid)
        return None

    def _done(self, rid: str) -> None:
        with self._lock:
            ev = self._running.pop(rid, None)
        if ev is not None:
            ev.set()

    def _fail(self, rid: str, err: RpcError, attempts: int = 0, audit: AuditEvent | None = None) -> RpcError:
        """Record request ``rid`` FAILED with ``err`` (and ``audit``, its entry, queued in the same
        transaction: the audit outbox); returns ``err``."""
        self.db.update_request(
            rid, state="failed", error_code=err.code.value[0], error_message=err.message, attempts=attempts, audit=audit,
        )
        log.warning("request %s failed: %s: %s", rid, err.code.name, err.message, extra={"event": "request-failed", "request_id": rid})
        return err

    # --- keys --------------------------------------------------------------------------------
    def CreateKey(self, req: coordinator_pb2.CreateKeyRequest, ctx: Any) -> coordinator_pb2.CreateKeyResponse:
        """Every field was checked before this runs (:func:`coordinator.inputs.validated`). Once
        the request is recorded RUNNING, any failure ends it FAILED with a ``key-create`` audit
        entry (an unexpected one as INTERNAL, logged), never leaves it RUNNING."""
        label = req.label
        scheme = scheme_of(req.scheme)  # issue 16
        rid = self._request_id(req.request_id)
        actor = _ident(ctx).name  # before the request is recorded: nothing after it may leave it RUNNING
        self._admit()
        try:
            done = self._claim(rid, "keygen", lambda r: r.label == label)
            if done is not None:
                k = self.db.get_key(done.key_id or b"")
                assert k is not None
                if k.scheme != scheme:  # issue 16: the same request id names one key
                    raise RpcError(Code.ALREADY_EXISTS, f"request_id: {rid} created a {k.scheme} key, not a {scheme} one")
                return coordinator_pb2.CreateKeyResponse(request_id=rid, key=self.key_info(k))
            if self.db.get_request(rid) is None:
                self.db.create_request(rid, "keygen", label=label)
            try:
                started = time.monotonic()
                k = self._keygen(rid, label, scheme)
                # the state change and its key-create entry: one transaction (the audit outbox)
                self.db.update_request(rid, state="succeeded", key_id=k.key_id, attempts=1, audit=AuditEvent(
                    actor, "key-create", rid, k.status,
                    detail_text("label", label) | {"request": rid, "key_id": k.key_id.hex(), "public_key": k.public_key.hex(),
                                                   "scheme": k.scheme},
                ))
                self.metrics.keygen_seconds.observe(time.monotonic() - started)  # a created key only
                key_created(self.metrics, label)  # its signatures_total{key} child at 0 (with key_labels)
            except Exception as e:
                self._keygen_failed(actor, rid, label, e)
                raise
            self._flush_audit_now(rid)
            return coordinator_pb2.CreateKeyResponse(request_id=rid, key=self.key_info(k))
        finally:
            self._done(rid)
            self._release()

    def _keygen_failed(self, actor: str, rid: str, label: str, e: Exception) -> None:
        """End a keygen request that failed after it started: FAILED in the database first (so it
        is never left RUNNING), then its ``key-create`` audit entry (a failing audit log is logged,
        and the caller gets the original error)."""
        err = e if isinstance(e, RpcError) else (
            self.storage_failure(e) or RpcError(Code.INTERNAL, f"keygen: internal error ({type(e).__name__}); see the coordinator log")
        )
        if not isinstance(e, RpcError):
            log.error("request %s: keygen failed unexpectedly: %s", rid, escape(f"{type(e).__name__}: {e}"))
        entry: AuditEvent | None = None
        try:
            entry = AuditEvent(
                actor, "key-create", rid, "failed",
                detail_text("label", label) | {"request": rid} | detail_text("reason", f"{err.code.name}: {err.message}"),
            )
        except Exception as f:  # the failure is still recorded (never left RUNNING), without its entry
            log_failure(log, f, f"request {rid}: cannot audit its failure", self.db.health.saw)
        try:
            self._fail(rid, err, 1, audit=entry)  # with its key-create entry: one transaction (the audit outbox)
        except Exception as f:
            log_failure(log, f, f"request {rid}: cannot record its failure", self.db.health.saw)
        self._flush_audit_now(rid)

    def _flush_audit_now(self, rid: str) -> None:
        """Append the queued entries (a key-create just committed) before answering; an entry the
        log refuses now stays queued for the flusher (logged)."""
        try:
            self.requests.flush_audit()
        except Exception as f:
            log_failure(log, f, f"request {rid}: audit outbox not flushed now (it is retried)", self.db.health.saw)

    def _keygen(self, rid: str, label: str, scheme: str = "ecdsa-secp256k1") -> KeyRecord:
        t0 = time.perf_counter()
        sid = os.urandom(32)
        n, t = len(self.nodes), self.cfg.threshold
        params = node_pb2.StartSessionRequest(
            session_id=sid, dkg=node_pb2.DkgParams(
                threshold=t, parties=n, key_label=label.encode(), scheme="" if scheme == "ecdsa-secp256k1" else scheme
            )
        )
        # the DKG needs every node: background refills start nothing on them from when it has its
        # session slot until it ends, also not between its two attempts (a hold's end wakes the
        # refiller, which would fill them just before the retry)
        with contextlib.ExitStack() as held:
            for attempt in (1, 2):
                try:
                    with self._sessions:
                        if attempt == 1:
                            held.enter_context(self.foreground.hold(f"keygen request {rid}", nodes=tuple(self.nodes)))
                        final = run_session(self.nodes, sid, {i: params for i in self.nodes}, self.cfg.dkg_timeout_s)
                    break
                except NodesUnavailable as e:
                    if attempt == 1 and e.phase == "start":
                        # nodes that just restarted may still be reconnecting: one more try if they do
                        missing = [self.nodes[i] for i in e.failures]
                        if len(wait_ready(missing, 3.0)) == len(missing):
                            sid = os.urandom(32)
                            params.session_id = sid
                            continue
                    raise RpcError(Code.UNAVAILABLE, f"keygen: needs all {n} nodes; unavailable: {e}") from None
                except Aborted as e:
                    raise RpcError(Code.ABORTED, f"keygen aborted: {e}") from None
                except Refused as e:
                    raise RpcError(e.code, e.message) from None
        results = {i: r.dkg_result for i, r in final.items()}
        first = results[min(results)]  # node 1 may have been revoked
        differ = [i for i, r in results.items() if r.SerializeToString(deterministic=True) != first.SerializeToString(deterministic=True)]
        if differ:
            self._discard(first.key_id)
            for i in differ:
                self._discard(results[i].key_id)
            raise RpcError(Code.ABORTED, f"keygen aborted: node {differ[0]} finished the DKG with a different key than node {min(results)}")
        try:  # what every node agreed on is still checked: the scheme, a valid public key, chain code and id by scheme
            check_dkg_key(scheme, first.scheme, first.public_key, first.chain_code)
            if is_frost(scheme):  # issue 16: its id, and its public shares (DkgResult.public_shares, a contract change)
                shares = tuple(bytes(s) for s in getattr(first, "public_shares", ()))
                if not shares and "public_shares" in node_pb2.DkgResult.DESCRIPTOR.fields_by_name:
                    raise DecodeError("dkg_result.public_shares", "missing: the coordinator checks each signature share with them")
                check_frost_result(scheme, first.key_id, first.threshold, first.parties, first.public_key, shares)
            if len(first.key_id) != 32:
                raise DecodeError("dkg_result.key_id", f"expected 32 bytes, got {len(first.key_id)}")
        except DecodeError as e:
            self._discard(first.key_id)
            raise RpcError(Code.ABORTED, f"keygen aborted: the nodes returned an invalid key: {e}") from None
        k = KeyRecord(
            key_id=first.key_id, label=label, public_key=first.public_key, chain_code=first.chain_code,
            threshold=first.threshold, parties=first.parties, status="pending", created_ms=now_ms(), request_id=rid,
            scheme=scheme,
        )
        # issue 16: a FROST key with its public shares (the coordinator checks each signature share with them)
        self.db.add_key(k, tuple(bytes(s) for s in getattr(first, "public_shares", ())) if is_frost(scheme) else ())
        committee = tuple(sorted(final))
        if committee != tuple(range(1, len(committee) + 1)):  # the DKG's committee: the nodes it ran over
            self.db.set_key_epoch(k.key_id, 0, committee, now_ms())
        k = self._commit(k)
        log.info(
            "request %s: key %s created (%s) in %.0f ms", rid, k.key_id.hex()[:16], k.status, (time.perf_counter() - t0) * 1e3
        )
        return k

    def _commit(self, k: KeyRecord) -> KeyRecord:
        req = node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key)
        _, errs = fanout({i: (h.stub.CommitKey, req) for i, h in self.nodes.items()}, self.cfg.step_timeout_s)
        if errs:
            log.warning(
                "key %s: not yet activated on %s; will retry",
                k.key_id.hex()[:16], ", ".join(f"{self.nodes[i].label} ({status_of(e)[0].name})" for i, e in sorted(errs.items())),
            )
            return k
        self.db.set_key_status(k.key_id, "active")
        self.recovery.key_activated(k.key_id)
        return self.db.get_key(k.key_id) or k

    def _discard(self, key_id: bytes) -> None:
        fanout({i: (h.stub.DiscardKey, node_pb2.DiscardKeyRequest(key_id=key_id)) for i, h in self.nodes.items()}, 5.0)

    def GetKey(self, req: coordinator_pb2.GetKeyRequest, ctx: Any) -> common_pb2.KeyInfo:
        key_id = check_len(req.key_id, "key_id", 32)
        k = self.db.get_key(key_id)
        if k is None:
            raise RpcError(Code.NOT_FOUND, f"key_id: unknown key {key_id.hex()}")
        return self.key_info(k)

    def ListKeys(self, req: coordinator_pb2.ListKeysRequest, ctx: Any) -> coordinator_pb2.ListKeysResponse:
        return coordinator_pb2.ListKeysResponse(keys=[self.key_info(k) for k in self.db.list_keys()])

    # --- signing (only ever for an approved request: see coordinator.requests) ----------------
    def _pick(
        self, t: int, excluded: set[int], disputes: frozenset[frozenset[int]] = frozenset(),
        blind: frozenset[frozenset[int]] = frozenset(),
    ) -> tuple[int, ...] | None:
        """``t`` signers not in ``excluded``, the preferred first, such that no set in
        ``disputes`` (a node and the node that blamed it in an earlier session of this request:
        one of the two cheated, we cannot tell which) lies within them and that are not exactly
        a set in ``blind`` (an earlier session that aborted naming nobody); None if impossible.
        Nodes in more disputes come later (so a node that blames a new co-signer in every
        session is left out once an undisputed signer set exists, before it burns every attempt),
        and so do nodes of more blind sets."""
        fights = {i: sum(1 for d in disputes if i in d) + sum(1 for b in blind if i in b) for i in self.nodes}
        with self._lock:
            self._rr += 1
            rr = self._rr
            n = len(self.nodes)
            cands = [h for i, h in self.nodes.items() if i not in excluded]
            if len(cands) < t:
                return None
            # available first, fewest disputes, clock within tolerance, then least loaded, then round robin
            cands.sort(key=lambda h: (
                h.healthy is False, fights[h.index], bool(h.clock_suspect), not self.policies.synced(h.index),
                h.inflight, (h.index - rr) % n,
            ))
            order = [h.index for h in cands]
        if not disputes and not blind:
            return tuple(sorted(order[:t]))
        for tried, combo in enumerate(itertools.combinations(order, t)):  # in order of preference
            chosen = frozenset(combo)
            if chosen not in blind and not any(d <= chosen for d in disputes):
                return tuple(sorted(combo))
            if tried >= MAX_SIGNER_SETS_TRIED:
                break
        return None

    def _unattributed(
        self, rid: str, session: int, signers: tuple[int, ...], why: str, blind: set[frozenset[int]]
    ) -> bool:
        """An abort that names nobody (a cheater made blame ambiguous, or DKLs23 cannot attribute
        it): one of ``signers`` cheated, we cannot tell which. Never use exactly this signer set
        again for the request (``blind``), at most MAX_UNATTRIBUTED times per request; True if the
        caller should try another set."""
        whole = frozenset(signers)
        if whole in blind or len(blind) >= MAX_UNATTRIBUTED:
            return False
        blind.add(whole)
        log.warning(
            "request %s: session %d with nodes %s aborted naming nobody (%s); retrying with another signer set",
            rid, session, list(signers), why,
        )
        return True

    def _sign(
        self, rid: str, k: KeyRecord, digest: bytes, path: tuple[int, ...], bundle: bytes
    ) -> tuple[common_pb2.Signature, tuple[int, ...], int]:
        """Run signing sessions until one produces a verified signature; raises RpcError (with
        ``attempts`` and, for a node's governance refusal, ``governance``).

        Each session reserves the request's next attempt number (see :meth:`_reserve`) just
        before the round that releases the shares; a session that fails before that costs no
        attempt. At most MAX_SIGN_ATTEMPTS attempts are reserved per request, counted durably."""
        if is_frost(k.scheme):  # issue 16: FROST keys sign with coordinator/frost_sign.py
            rec = self.db.get_sign_request(rid)
            root = SigningRequest.from_bytes(rec.request).taproot_root if rec is not None else b""
            return self.frost.sign(rid, k, digest, rec.message if rec is not None else b"", root, bundle)
        presigned: PresignedSigning | None = getattr(self, "presigned", None)  # issue 14: one round from a pool presignature first
        signed = presigned.sign(rid, k, digest, path, bundle) if presigned is not None else None
        if signed is not None:  # (before the full protocol's reads below: not on the one-round path)
            return signed
        resynced: set[int] = set()
        rostered: set[int] = set()  # nodes that refused a release because their roster changed meanwhile
        t = k.threshold
        epoch, committee, outside = self.keyops.signing(k)  # sign in the key's epoch, with its committee only
        epoch_retries = 0
        refused_epoch: dict[int, int] = {}  # node -> its "epoch" refusals in this request
        # the key the signature must verify under: from our own record, never from the nodes
        expected = derive(Point.decode(k.public_key), k.chain_code, path).public_key
        down: dict[int, str] = {}
        disputes: set[frozenset[int]] = set()
        blind: set[frozenset[int]] = set()  # whole signer sets of aborts that named nobody
        attempts = 0
        t0 = time.perf_counter()
        wait_until: float | None = None  # when we stop waiting for nodes that are down
        returned: set[int] = set()  # nodes we waited for and that came back
        n, q = len(self.nodes), reservation_quorum(len(self.nodes))
        while True:
            if self.db.sign_attempts_taken(rid) >= MAX_SIGN_ATTEMPTS:
                raise _signing_error(Code.FAILED_PRECONDITION, _exhausted(rid, down), attempts, "attempts-exhausted")
            # the key's epoch, threshold and committee as recorded now: a refresh or reshare may
            # have committed since the request was approved (never a session mixing epochs)
            k = self.db.get_key(k.key_id) or k
            t = k.threshold
            epoch, committee, outside = self.keyops.signing(k)
            with self._sessions:  # at most max_parallel_sessions at once; the rest queue here
                signers = self._pick(t, set(down) | outside, frozenset(disputes), frozenset(blind))
                reachable = n - len(down)
                if reachable < q:  # no attempt can be reserved: do not spend one
                    signers = None
                if signers is None:
                    # nodes that failed may be restarting (a supervisor brings a killed node back
                    # within seconds): wait for them a second at a time (other requests run in
                    # between), at most RESTART_WAIT_S in all and never past the request's expiry
                    now = time.monotonic()
                    if wait_until is None:
                        wait_until = now + min(RESTART_WAIT_S, _remaining_s(bundle, self.db.expiry_ms(now_ms())))
                    switching = {i for i in outside if i in committee}  # a committing operation's nodes
                    if switching and now < wait_until:
                        self._stop.wait(0.5)  # they switch to the new epoch within moments
                        continue
                    waitable = [self.nodes[i] for i in down if i not in returned]
                    if waitable and now < wait_until:
                        came_back = wait_ready(waitable, min(1.0, wait_until - now))
                        for h in came_back:  # waited for once: a node that fails again is down
                            del down[h.index]
                            returned.add(h.index)
                            h.mark_up()
                        if came_back:
                            log.info("request %s: %s reconnected; retrying", rid, ", ".join(h.label for h in came_back))
                        continue
                if signers is None and (disputes or blind) and reachable >= q and self._pick(t, set(down) | outside) is not None:
                    raise _signing_error(  # enough nodes, but every signer set holds a disputed pair
                        Code.ABORTED,
                        f"sign aborted: nodes blamed each other{_disputes_text(self.nodes, disputes)}"
                        f"{_blind_text(self.nodes, blind)}; check the named nodes (their logs and audit trails), "
                        "then submit the request again", attempts,
                    )
                if signers is None:
                    names = "; ".join(r for _, r in sorted(down.items()))
                    raise _signing_error(
                        Code.UNAVAILABLE,
                        f"sign: needs {max(t, q)} of {n} nodes but only {n - len(down)} are available ({t} sign, a "
                        f"majority of {q} reserves each attempt); unavailable: {names}; "
                        f"{_attempts_left(self.db.sign_attempts_taken(rid))}{_disputes_text(self.nodes, disputes)}",
                        attempts,
                    )
                attempts += 1
                sid = os.urandom(32)
                params = node_pb2.SignParams(
                    policy_attestation=self.policies.attestation(),
                    key_id=k.key_id, signers=signers, derivation_path=path, digest=digest, request_id=rid, approval_bundle=bundle,
                    epoch=epoch,
                )
                start = node_pb2.StartSessionRequest(session_id=sid, sign=params)
                subset = {i: self.nodes[i] for i in signers}
                reserved: list[int] = []

                def reserve(rnd: int) -> dict[str, Any]:
                    if rnd != SIGN_RELEASE_ROUND:
                        return {}
                    gone = {i: f"{h.label}: {h.last_error or 'unavailable'}" for i, h in self.nodes.items() if h.healthy is False}
                    if n - len(gone) < q:  # known not to be reservable: do not spend an attempt
                        raise NodesUnavailable(gone)
                    attempt = self.db.next_sign_attempt(rid)  # durable before any node hears of it
                    if attempt > MAX_SIGN_ATTEMPTS:
                        raise Refused(Code.FAILED_PRECONDITION, _exhausted(rid, down), governance="attempts-exhausted")
                    # run_session calls this during this attempt (below): it sees this attempt's variables
                    reserved.append(attempt)  # noqa: B023
                    receipts = self._reserve(rid, k, digest, path, bundle, attempt, signers, sid)  # noqa: B023
                    return {"attempt": attempt, "reservation_receipts": receipts}

                try:
                    final = run_session(
                        subset, sid, {i: start for i in signers}, self.cfg.step_timeout_s, before_step=reserve,
                        last_round=SIGN_RELEASE_ROUND,
                    )
                    shares = {}
                    for i, r in final.items():
                        envs = [e for e in r.envelopes if e.receiver == 0]
                        if len(envs) != 1:
                            raise Aborted(f"node {i} returned no signature share", i)
                        share = committee.index(i) + 1  # the share's own header names its share index
                        shares[share] = SignatureShare.from_bytes(envs[0].payload, sid, share)
                    sig = combine(shares, digest, signers=sorted(shares), public_key=expected)
                except NodesUnavailable as e:
                    down.update(e.failures)
                    log.warning(
                        "request %s: session %d (attempt %s) with nodes %s failed (%s); retrying",
                        rid, attempts, reserved[0] if reserved else "none reserved", list(signers), e,
                    )
                    continue
                except Aborted as e:
                    self.anomaly.session_aborted(k.key_id)
                    # a node blamed another: one of the two cheated. Sign without that pair
                    # together (never again in one signer set for this request) while some
                    # signer set avoids every such dispute; an unattributable abort ends it
                    dispute = frozenset(x for x in (e.culprit, e.reporter) if x is not None)
                    if e.culprit is not None and dispute not in disputes:
                        disputes.add(dispute)
                        log.warning(
                            "request %s: session %d with nodes %s aborted (%s); retrying without %s in one signer set",
                            rid, attempts, list(signers), e, " and ".join(self.nodes[x].label for x in sorted(dispute)),
                        )
                        continue
                    if self._unattributed(rid, attempts, signers, str(e), blind):
                        continue
                    raise _signing_error(Code.ABORTED, f"sign aborted: {e}{_disputes_text(self.nodes, disputes)}", attempts) from None
                except ProtocolAbort as e:
                    self.anomaly.session_aborted(k.key_id)
                    if e.party is not None and 1 <= e.party <= len(committee):
                        e.party = committee[e.party - 1]  # a share index: the node at that committee position
                    # the combiner's own check: a share that does not verify is proven bad
                    if e.party is not None and e.party in self.nodes and frozenset({e.party}) not in disputes:
                        disputes.add(frozenset({e.party}))
                        log.warning(
                            "request %s: %s sent a bad signature share (%s); retrying without it", rid, self.nodes[e.party].label, e.reason
                        )
                        continue
                    if e.party is None and self._unattributed(rid, attempts, signers, e.reason, blind):
                        continue
                    who = self.nodes[e.party].label if e.party is not None and e.party in self.nodes else "unattributable"
                    raise _signing_error(
                        Code.ABORTED, f"sign aborted: {who}: {e.reason}{_disputes_text(self.nodes, disputes)}", attempts
                    ) from None
                except Refused as e:
                    if e.governance == "epoch" and e.node is not None and e.node in self.nodes and e.node not in down:
                        # a node is already in (or still before) another epoch of the key: the
                        # commit is being pushed; no attempt was reserved, try again shortly. A
                        # node that keeps saying so (a corrupted one, or one the push cannot
                        # reach) is signed around for this request, not allowed to fail it
                        refused_epoch[e.node] = refused_epoch.get(e.node, 0) + 1
                        if refused_epoch[e.node] >= EPOCH_REFUSALS:
                            down[e.node] = f"{self.nodes[e.node].label}: {e.message}"
                            log.warning("request %s: %s; signing without it", rid, e.message)
                        else:
                            self._stop.wait(0.5)
                        continue
                    if e.governance == "epoch" and epoch_retries < 5:
                        epoch_retries += 1  # a refusal naming no node: try again shortly
                        self._stop.wait(0.5)
                        continue
                    if e.banned:
                        self.anomaly.session_aborted(k.key_id, bans=len(e.banned))
                        if presigned is not None:  # no pool puts the pair together again
                            presigned.pools.dispute(k.key_id, {frozenset({e.node, b}) for b in e.banned if e.node is not None})
                    fought = {frozenset({e.node, b}) for b in e.banned if e.node is not None} - disputes
                    if e.code == Code.PERMISSION_DENIED and fought:
                        # a node refuses peers it says are banned for this key: its word against
                        # theirs (a corrupted node may claim it of honest ones), so, as for a
                        # blame, never put the pair in one signer set again for this request
                        disputes |= fought
                        log.warning("request %s: %s; retrying without those nodes in one signer set", rid, e.message)
                        continue
                    if e.governance == "attempt-taken":
                        # a node granted this attempt number to another session (our record of
                        # attempts was lost or rolled back): take the next one, within the bound.
                        # A signer saying so at a step disagrees with the majority that reserved
                        # the attempt for this session: leave it out (else a corrupted one could
                        # be picked again and again, burning every attempt unnamed)
                        if e.node is not None and e.node in self.nodes and frozenset({e.node}) not in disputes:
                            disputes.add(frozenset({e.node}))
                        log.warning("request %s: %s; trying the next attempt", rid, e.message)
                        continue
                    if e.governance == "expired" and e.node is not None and e.node not in down and self._live_now(bundle):
                        # not expired by our clock: the node's clock is off; sign without it
                        down[e.node] = self._clock_refusal(self.nodes[e.node], e.message)
                        continue
                    if e.governance == "stale-policy" and e.node is not None and e.node not in resynced:
                        resynced.add(e.node)  # it missed a policy change: bring it up to date, retry
                        self._resync_policies(e.node)
                        continue
                    if e.governance == "stale-roster" and e.node is not None and e.node not in rostered:
                        # its roster changed between its checks and its release (mpc_node/in_force.py):
                        # nothing was released; a new session starts under the roster now in force
                        rostered.add(e.node)
                        log.warning("request %s: %s; retrying under the new roster", rid, e.message)
                        continue
                    raise _signing_error(e.code, e.message, attempts, e.governance) from None
                out = common_pb2.Signature(
                    r=sig.r.to_bytes(32, "big"), s=sig.s.to_bytes(32, "big"), recovery_id=sig.recovery_id, der=sig.der(),
                    public_key=sig.public_key.encode(),
                )
                log.info(
                    "request %s: signed with key %s by nodes %s in %.0f ms (%d session%s, attempt %d)",
                    rid, k.key_id.hex()[:16], list(signers), (time.perf_counter() - t0) * 1e3, attempts,
                    "" if attempts == 1 else "s", reserved[0],
                )
                return out, signers, attempts

    def _resync_policies(self, node: int) -> None:
        """Push node ``node`` the policies it missed after it refused a signing with
        ``stale-policy`` (the DKLs23 and the FROST paths); a node gone from the roster is skipped."""
        if node in self.policies.nodes:
            self.policies.mark_unsynced(node)
            self.policies.sync_node(node)

    def _reserve(
        self, rid: str, k: KeyRecord, digest: bytes, path: tuple[int, ...], bundle: bytes, attempt: int,
        signers: tuple[int, ...], sid: bytes,
    ) -> list[bytes]:
        """Reserve ``attempt`` of ``rid`` for ``signers`` and session ``sid`` on every node at once;
        returns the receipts of at least a majority of the nodes. Raises NodesUnavailable (the
        nodes that did not answer: the caller retries with the next attempt) or Refused (a node's
        governance refusal: no valid approvals any more, expired, stale policy, ...)."""
        req = node_pb2.ReserveSigningRequest(
            key_id=k.key_id, request_id=rid, attempt=attempt, signers=signers, session_id=sid, approval_bundle=bundle,
            digest=digest, derivation_path=path,
        )
        asked = {i: h for i, h in self.nodes.items() if h.healthy is not False}  # a node known down is not waited for
        ok, errs = fanout({i: (h.stub.ReserveSigning, req) for i, h in asked.items()}, self.cfg.step_timeout_s)
        receipts: list[bytes] = []
        for i, r in sorted(ok.items()):
            try:  # keep a node's malformed or foreign receipt from spoiling the others (signers refuse any bad one)
                rec = ReservationReceipt.from_bytes(r.receipt)
            except Exception:
                log.warning("request %s: %s returned a malformed reservation receipt", rid, self.nodes[i].label)
                continue
            res = rec.reservation
            if rec.reserver == i and (res.request_id, res.attempt, res.signers, res.session_id) == (rid, attempt, signers, sid):
                receipts.append(bytes(r.receipt))
            else:
                log.warning("request %s: %s returned a receipt for something else", rid, self.nodes[i].label)
        need = reservation_quorum(len(self.nodes))
        if len(receipts) >= need:
            return receipts
        down = {i: f"{h.label}: {h.last_error or 'unavailable'}" for i, h in self.nodes.items() if i not in asked}
        for i, e in sorted(errs.items()):
            code, details = status_of(e)
            kind = trailing(e, "mpc-governance") or ""
            if kind and kind != "attempt-taken":
                raise Refused(code, details, node=i, governance=kind)
            if code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED):
                self.nodes[i].mark_down(f"{code.name}: {details}")
            down[i] = f"{self.nodes[i].label}: {code.name}: {details}"
        what = f"attempt {attempt} reserved by {len(receipts)} node(s), {need} needed"
        log.warning("request %s: %s", rid, what)
        if not down:  # every refusal was "attempt-taken"
            raise Refused(Code.FAILED_PRECONDITION, f"sign: {what}", governance="attempt-taken")
        raise NodesUnavailable({i: f"{r} ({what})" for i, r in down.items()})

    # --- requests ----------------------------------------------------------------------------
    def GetRequest(self, req: coordinator_pb2.GetRequestRequest, ctx: Any) -> coordinator_pb2.RequestStatus:
        if not is_request_id(req.request_id):
            raise invalid("request_id", REQUEST_ID_RULE)
        r = self.db.get_request(req.request_id)
        if r is None:
            raise RpcError(Code.NOT_FOUND, f"request_id: unknown request {quote(req.request_id)}")
        out = coordinator_pb2.RequestStatus(
            request_id=r.request_id, kind=_KIND[r.kind], state=_STATE[r.state], key_id=r.key_id or b"", digest=r.digest or b"",
            derivation_path=r.path, error_code=r.error_code, error_message=r.error_message, signers=r.signers,
            created_unix_ms=r.created_ms, updated_unix_ms=r.updated_ms, attempts=r.attempts,
        )
        if r.signature:
            out.signature.CopyFrom(common_pb2.Signature.FromString(r.signature))
        if r.kind == "keygen" and r.key_id:
            k = self.db.get_key(r.key_id)
            if k is not None:
                out.key.CopyFrom(self.key_info(k))
        return out

    def ClusterStatus(self, req: coordinator_pb2.ClusterStatusRequest, ctx: Any) -> coordinator_pb2.ClusterStatusResponse:
        nodes = self.nodes.snapshot()
        resp = coordinator_pb2.ClusterStatusResponse(
            threshold=self.cfg.threshold,
            parties=len(nodes),
            nodes=[
                coordinator_pb2.NodeStatus(
                    index=h.index, name=h.name, endpoint=h.endpoint, healthy=bool(h.healthy), last_error=h.last_error,
                    policies_synced=self.policies.synced(h.index),
                    clock_measured=h.clock is not None,
                    clock_skew_ms=h.clock.skew_ms if h.clock is not None else 0,
                    clock_error_ms=min(h.clock.error_ms, 2**32 - 1) if h.clock is not None else 0,
                    clock_suspect=bool(h.clock_suspect),
                    max_clock_skew_ms=round(self.cfg.max_clock_skew_s * 1000),
                )
                for h in nodes.values()
            ],
            governance_root=self.policies.governance_root,
            operations=self.keyops.not_done(),
            store_failures=[coordinator_pb2.StoreFailure(store=s, reason=r) for s, r in self.db.health.problems().items()],
        )
        roster_status(resp, self.rosters)  # roster version/epoch, each node's roster entry, the revoked ones
        self.recovery.status(resp)  # backups and drills per key (issue 12)
        self.pools.status(resp)  # presignature pools (issue 14)
        held = self.frost_sync.held()  # issue 16: fresh FROST nonce commitments per node
        for n in resp.nodes:
            n.frost_nonces = held.get(n.index, 0)
        return resp

    # --- signing requests --------------------------------------------------------------------
    def SubmitSignRequest(self, req: coordinator_pb2.SubmitSignRequestRequest, ctx: Any) -> coordinator_pb2.SignRequestInfo:
        return self.requests.submit(req, _ident(ctx).name, self.db.get_key)

    def DecideSignRequest(self, req: coordinator_pb2.DecideSignRequestRequest, ctx: Any) -> coordinator_pb2.SignRequestInfo:
        try:
            return self.requests.decide(req, _ident(ctx).name, ctx=ctx)
        except RpcError:
            self.metrics.approvals_total.labels(outcome="refused").inc()
            raise

    def GetSignRequest(self, req: coordinator_pb2.GetSignRequestRequest, ctx: Any) -> coordinator_pb2.SignRequestInfo:
        ident = _ident(ctx)
        return self.requests.get(req.request_id, ident.name, ident.role)

    def ListSignRequests(self, req: coordinator_pb2.ListSignRequestsRequest, ctx: Any) -> coordinator_pb2.ListSignRequestsResponse:
        ident = _ident(ctx)
        return self.requests.list(req, ident.name, ident.role)

    def WatchSignRequest(self, req: coordinator_pb2.GetSignRequestRequest, ctx: Any) -> Iterator[coordinator_pb2.SignRequestInfo]:
        ident = _ident(ctx)
        return self.requests.watch(req.request_id, ident.name, ident.role, ctx, self.cfg.stream_lifetime_s)

    # --- policies ----------------------------------------------------------------------------
    def GetPolicy(self, req: coordinator_pb2.GetPolicyRequest, ctx: Any) -> coordinator_pb2.PolicyInfo:
        if req.key_id:
            key_id = check_len(req.key_id, "key_id", 32)
            if self.db.get_key(key_id) is None:
                raise RpcError(Code.NOT_FOUND, f"key_id: unknown key {key_id.hex()}")
            signed = self.policies.policy_for(key_id)
            inherited = signed.change.scope == DEFAULT_SCOPE
        else:
            default = self.policies.current(DEFAULT_SCOPE)
            assert default is not None
            signed, inherited = default, False
        return coordinator_pb2.PolicyInfo(
            scope=signed.change.scope, policy=policy_state(signed), inherited=inherited,
            governance_root=self.policies.governance_root,
        )

    def _proposal(self, rec: Any) -> coordinator_pb2.PolicyProposal:
        return coordinator_pb2.PolicyProposal(
            proposal_id=rec.proposal_id, state=_PROPOSAL_STATE[rec.state], signed_change=rec.signed_change,
            proposer=rec.proposer, created_unix_ms=rec.created_ms, updated_unix_ms=rec.updated_ms,
            admin_quorum=self.cfg.admin_set.quorum,
        )

    def ProposePolicyChange(self, req: coordinator_pb2.ProposePolicyChangeRequest, ctx: Any) -> coordinator_pb2.PolicyProposal:
        caller = _ident(ctx).name
        try:
            rec = self.policies.propose(bytes(req.signed_change), caller, lambda kid: self.db.get_key(kid) is not None)
        except RpcError as e:
            self.audit.append(caller, "policy-propose", outcome="refused", details=detail_text("reason", e.message))
            raise
        return self._proposal(rec)

    def ApprovePolicyChange(self, req: coordinator_pb2.ApprovePolicyChangeRequest, ctx: Any) -> coordinator_pb2.PolicyProposal:
        return self._proposal(self.policies.approve(req.proposal_id, req.admin, bytes(req.signature), _ident(ctx).name))

    def GetPolicyProposal(self, req: coordinator_pb2.GetPolicyProposalRequest, ctx: Any) -> coordinator_pb2.PolicyProposal:
        rec = self.db.get_proposal(req.proposal_id)
        if rec is None:
            raise RpcError(Code.NOT_FOUND, f"proposal_id: unknown proposal {quote(req.proposal_id)}")
        return self._proposal(rec)

    def ListPolicyProposals(self, req: coordinator_pb2.ListPolicyProposalsRequest, ctx: Any) -> coordinator_pb2.ListPolicyProposalsResponse:
        state = None
        if req.state != coordinator_pb2.PROPOSAL_STATE_UNSPECIFIED:
            if req.state not in _PB_PROPOSAL_STATE:
                raise invalid("state", "unknown state")
            state = _PB_PROPOSAL_STATE[req.state]
        return coordinator_pb2.ListPolicyProposalsResponse(proposals=[self._proposal(r) for r in self.db.list_proposals(state)])

    def ListPolicies(self, req: coordinator_pb2.ListPoliciesRequest, ctx: Any) -> coordinator_pb2.ListPoliciesResponse:
        return coordinator_pb2.ListPoliciesResponse(
            governance_root=self.policies.governance_root, policies=[policy_state(s) for s in self.policies.heads()],
            policy_attestation=self.policies.attestation(),
        )

    def GetPolicyHistory(self, req: coordinator_pb2.GetPolicyHistoryRequest, ctx: Any) -> coordinator_pb2.PolicyHistory:
        scope = check_len(req.key_id, "key_id", 32) if req.key_id else DEFAULT_SCOPE
        history = self.policies.history(scope)
        if not history and self.db.get_key(scope) is None:
            raise RpcError(Code.NOT_FOUND, f"key_id: unknown key {scope.hex()}")
        return coordinator_pb2.PolicyHistory(scope=scope, signed_changes=[c.to_bytes() for c in history])

    def SubmitPolicyAttestation(
        self, req: coordinator_pb2.SubmitPolicyAttestationRequest, ctx: Any
    ) -> coordinator_pb2.SubmitPolicyAttestationResponse:
        stored, held = self.policies.submit_attestation(bytes(req.attestation), _ident(ctx).name)
        return coordinator_pb2.SubmitPolicyAttestationResponse(stored=stored, held_issued_at_ms=held)

    # --- audit -------------------------------------------------------------------------------
    def GetAuditLog(self, req: coordinator_pb2.GetAuditLogRequest, ctx: Any) -> governance_pb2.AuditPage:
        if req.component == self.cfg.name:
            self.requests.flush_audit()  # the entries still queued in the outbox first (coordinator/audit_flush.py)
            return audit_page(self.audit, req.after_seq, req.limit)
        for h in self.nodes.values():
            if h.name == req.component:
                try:
                    return h.stub.GetAuditLog(
                        governance_pb2.AuditLogRequest(after_seq=req.after_seq, limit=req.limit), timeout=self.cfg.step_timeout_s
                    )
                except grpc.RpcError as e:
                    code, details = status_of(e)
                    code = Code.UNAVAILABLE if code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED) else code
                    raise RpcError(code, f"component: {h.label}: {details or code.name}") from None
        names = ", ".join([self.cfg.name] + [h.name for h in self.nodes.values()])
        raise RpcError(Code.NOT_FOUND, f"component: unknown component {quote(req.component)} (known: {names})")

    # --- key lifecycle and roster (issue 11): contract in proto/mpc/v1/coordinator.proto ---------

    def ProposeRosterChange(self, req: coordinator_pb2.ProposeRosterChangeRequest, ctx: Any) -> coordinator_pb2.LifecycleProposal:
        rec = self.lifecycle.propose(ROSTER_CHANGE, bytes(req.signed_change), _ident(ctx).name, "signed_change")
        return self.lifecycle.message(rec)

    def ProposeKeyOperation(self, req: coordinator_pb2.ProposeKeyOperationRequest, ctx: Any) -> coordinator_pb2.LifecycleProposal:
        rec = self.lifecycle.propose(KEY_OPERATION, bytes(req.signed_operation), _ident(ctx).name, "signed_operation")
        return self.lifecycle.message(rec)

    def ApproveLifecycleProposal(
        self, req: coordinator_pb2.ApproveLifecycleProposalRequest, ctx: Any
    ) -> coordinator_pb2.LifecycleProposal:
        rec = self.lifecycle.approve(req.proposal_id, req.admin, bytes(req.signature), _ident(ctx).name)
        return self.lifecycle.message(rec)

    def GetLifecycleProposal(self, req: coordinator_pb2.GetLifecycleProposalRequest, ctx: Any) -> coordinator_pb2.LifecycleProposal:
        return self.lifecycle.message(self.lifecycle.get(req.proposal_id))

    def ListLifecycleProposals(
        self, req: coordinator_pb2.ListLifecycleProposalsRequest, ctx: Any
    ) -> coordinator_pb2.ListLifecycleProposalsResponse:
        return coordinator_pb2.ListLifecycleProposalsResponse(
            proposals=[self.lifecycle.message(r) for r in self.lifecycle.listing(req.state)]
        )

    def GetRoster(self, req: coordinator_pb2.GetClusterRosterRequest, ctx: Any) -> node_pb2.RosterHistory:
        return node_pb2.RosterHistory(signed_changes=list(self.rosters.history()), governance_root=self.cfg.admin_set.digest())

    def GetKeyOperation(self, req: coordinator_pb2.GetKeyOperationRequest, ctx: Any) -> coordinator_pb2.KeyOperationStatus:
        return self.keyops.get(req.operation_id)

    def ListKeyOperations(self, req: coordinator_pb2.ListKeyOperationsRequest, ctx: Any) -> coordinator_pb2.ListKeyOperationsResponse:
        return coordinator_pb2.ListKeyOperationsResponse(operations=self.keyops.listing(bytes(req.key_id) or None))

    def PrepareNodeKeyRotation(
        self, req: coordinator_pb2.PrepareNodeKeyRotationRequest, ctx: Any
    ) -> node_pb2.PrepareKeyRotationResponse:
        return self._key_rotation().prepare(req, _ident(ctx).name)

    def InstallNodeCertificate(
        self, req: coordinator_pb2.InstallNodeCertificateRequest, ctx: Any
    ) -> node_pb2.InstallStagedCertificateResponse:
        return self._key_rotation().install_certificate(req, _ident(ctx).name)

    def _key_rotation(self) -> NodeKeyRotationRelay:
        """The relay of node key rotations (coordinator/rotation.py), following the roster in force."""
        def identity_of(i: int) -> bytes | None:
            roster = self.rosters.current()  # None: a legacy config (the client checks the proof)
            entry = None if roster is None else roster.entry(i)
            return None if entry is None else bytes(entry.identity_key)

        return NodeKeyRotationRelay(self.nodes, self.audit, self.rosters.active, identity_of, self.cfg.step_timeout_s)

    # --- backup and recovery (issue 12): coordinator/recovery_service.py ------------------------

    def ProposeRecoveryConfig(self, req: coordinator_pb2.ProposeRecoveryConfigRequest, ctx: Any) -> coordinator_pb2.LifecycleProposal:
        return self.recovery.propose_config(bytes(req.signed_change), _ident(ctx).name)

    def ProposeRecoveryOrder(self, req: coordinator_pb2.ProposeRecoveryOrderRequest, ctx: Any) -> coordinator_pb2.LifecycleProposal:
        return self.recovery.propose_order(bytes(req.signed_order), _ident(ctx).name)

    def GetRecoveryConfig(self, req: coordinator_pb2.GetRecoveryConfigRequest, ctx: Any) -> coordinator_pb2.RecoveryConfigHistory:
        return self.recovery.get_config()

    def ExportBackup(self, req: coordinator_pb2.ExportBackupRequest, ctx: Any) -> coordinator_pb2.BackupInfo:
        return self.recovery.export(req, _ident(ctx).name)

    def ListBackups(self, req: coordinator_pb2.ListBackupsRequest, ctx: Any) -> coordinator_pb2.ListBackupsResponse:
        return self.recovery.list_backups(req)

    def StartDrill(self, req: coordinator_pb2.StartDrillRequest, ctx: Any) -> coordinator_pb2.Ceremony:
        return self.recovery.start_drill(req, _ident(ctx).name)

    def SubmitRecoveryPieces(self, req: coordinator_pb2.SubmitRecoveryPiecesRequest, ctx: Any) -> coordinator_pb2.Ceremony:
        return self.recovery.submit(req, _ident(ctx).name)

    def GetCeremony(self, req: coordinator_pb2.GetCeremonyRequest, ctx: Any) -> coordinator_pb2.Ceremony:
        return self.recovery.get_ceremony(req)

    def ListCeremonies(self, req: coordinator_pb2.ListCeremoniesRequest, ctx: Any) -> coordinator_pb2.ListCeremoniesResponse:
        return self.recovery.list_ceremonies(req)

