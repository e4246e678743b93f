"""The node's protocol engine: sessions of the sans-IO crypto_core parties behind envelopes.

Every outgoing protocol payload is sealed (signed; direct parts also encrypted to the receiver)
with the node's operational keys; every incoming envelope is opened against the node's *own*
roster, so the coordinator can relay but never forge, alter, re-route or replay a message: any
such attempt aborts the session with a message naming the node and what was wrong.

A session accepts exactly one delivery per round. Re-delivering the very same round (a relay
retrying a call) returns the cached answer; a different delivery for a round already processed
is treated as equivocation by the relay and aborts the session.

Durability: a DKG result is stored (pending) before the node answers the last round; a
presignature is stored and then durably marked used before its signature share leaves the node.

Bans (selective failure, see :mod:`mpc_node.bans`): a signing step that runs a ban-able
consistency check holds the check locks of (key, every peer of the session) and first makes
sure that no peer is banned or ban-pending and the key is not fail-closed (else the session
aborts with the ban as reason, its check never run). A failed check records the ban durably
and aborts every other live session of the key with that peer before its own abort leaves; if
the store cannot take the ban (a full disk), the preallocated ban journal does
(:mod:`mpc_node.banjournal`; the sweeper moves it into the store); if neither can, every session
of the key is refused until the sweeper makes it durable. Without a ban journal (it cannot be
created at start) the node does not start.
At most one live signing session per request id: a new one supersedes the old one.

Governance: a signing session starts only with an approval bundle that meets the quorum of the
node's own copy of the key's policy (see :mod:`mpc_node.governance`). A signature share leaves
only for a *reserved attempt* (:mod:`governance.reservation`): the step that releases it must
carry receipts from a majority of the node's own roster granting exactly this request, attempt,
signer set and session (``ReserveSigning`` grants one per attempt, durably); the node records its
own reservation and the served attempt (refusing a replay, a conflicting grant or a rate-limit
excess) in the same transaction that marks the presignature used. Every decision goes to the
node's signed, hash-chained audit log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import sqlite3
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from crypto_core.bip32 import check_path
from crypto_core.dkg import DkgConfig, DkgParty
from crypto_core.errors import ProtocolAbort, ProtocolError, UsageError
from crypto_core.keyshare import KeyShare
from crypto_core.params import MAX_LABEL
from crypto_core.session import Delivery, RoundOutput
from governance.approval import SigningRequest
from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.reservation import MAX_SIGN_ATTEMPTS, Reservation, reservation_quorum, sign_reservation, verify_receipts
from governance.roster import Roster
from governance.text import REQUEST_ID_RE, REQUEST_ID_RULE, quote
from mpc_node.audit_outbox import AuditFlusher, OutboxEntry, problem_text
from mpc_node.backups import NodeBackups
from mpc_node.banjournal import BanJournal, BanJournalError, journal_path
from mpc_node.bans import JOURNALED, NOT_RECORDED, RECORDED, Ban, BanRegistry, Refusal
from mpc_node.clock import NodeClock
from mpc_node.config import NodeConfig, Peer
from mpc_node.envelope import Envelope, EnvelopeError, open_envelope, seal_broadcast, seal_direct
from mpc_node.epochs import EpochService
from mpc_node.expiry_floor import behind_note, start_expiry_clock
from mpc_node.faults import FaultInjector, flip
from mpc_node.fields import (
    MAX_ABORT_REASON,
    at_most,
    governance_blob,
    text_field,
    utf8_text_field,
)
from mpc_node.frost_sign import FROST_SCHEMES, NodeNonces, check_scheme, is_frost_record, scheme_refusal
from mpc_node.governance import Approved, NodeGovernance, changed_refusal, refusal
from mpc_node.in_force import InForce, InForceChanged
from mpc_node.keyops import ReshareSetup
from mpc_node.metrics import count_abort, node_metrics, timed_round
from mpc_node.presig_store import PoolError
from mpc_node.presign import Banned, NodePools, PresignSetup, ban_refusal, check_bans
from mpc_node.roster_state import NodeRoster
from mpc_node.rotation import KeyRotation
from mpc_node.storage import (
    KeyStateError,
    NodeStore,
    RateLimited,
    RequestAlreadyServed,
    Reservation as StoredReservation,
    ReservationConflict,
    StoreError,
)
from mpcnet.common.govwire import audit_page, policy_state
from mpcnet.common.keystore import OperationalKeys
from mpcnet.common.metrics import Metrics, NullMetrics
from mpcnet.common.pkcs11token import TokenError, TokenIdentity
from mpcnet.common.rpc import RpcError, caller_identity, check_len, invalid
from mpcnet.common.sqlite_errors import describe
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import common_pb2, governance_pb2, node_pb2

if TYPE_CHECKING:
    from crypto_core.frost.keyshare import FrostKeyShare

log = logging.getLogger("mpc_node.service")

SESSION_ID_LEN = 32
SEEN_SESSIONS = 100_000
MAX_ENVELOPES_PER_PARTY = 4  # a Step delivers at most this many envelopes per roster node
FINISHED_GRACE_S = 10.0
VERSION = "mpcnet-node/0.1"
# signing rounds whose delivery runs a ban-able consistency check: round-2 messages (Alice's
# OT-extension check in RvoleAlice.respond), round-3 messages (Bob's mu check, Gamma checks)
CHECKED_SIGN_ROUNDS = frozenset({2, 3})
SUPERSEDE_WAIT_S = 10.0  # how long a new session of a request waits for a step of its old one
SIGN_RELEASE_ROUND = 3  # delivering the round-3 messages of a signing session releases the share
STORE_PROBE_INTERVAL_S = 2.0  # while the store is writable; every sweep (1 s) while it is not
HEALTH_SERVICES = ("", node_pb2.DESCRIPTOR.services_by_name["Node"].full_name)

Code = grpc.StatusCode


@dataclass
class Session:
    id: bytes
    kind: str  # "dkg" | "sign"
    party: Any
    participants: tuple[int, ...]
    peers: tuple[int, ...]
    expect_round: int  # the round whose messages the next Step must deliver
    lock: threading.Lock = field(default_factory=threading.Lock)
    created: float = field(default_factory=time.monotonic)
    touched: float = field(default_factory=time.monotonic)
    failed: RpcError | None = None
    done: bool = False
    last: tuple[int, bytes, node_pb2.StepResponse] | None = None  # (round, inbox digest, answer)
    # signing only
    key: KeyShare | None = None
    key_id: bytes = b""
    digest: bytes = b""
    path: tuple[int, ...] = ()
    request_id: str = ""
    approved: Approved | None = None
    attempt: int = 0  # the reserved attempt and its receipts, from the step that releases the share
    receipts: tuple[bytes, ...] = ()
    # dkg only
    label: str = ""
    # the key's committee (roster index of protocol party k at position k-1; () = identity):
    # envelopes carry roster indices, crypto_core parties share indices
    committee: tuple[int, ...] = ()
    reshare: ReshareSetup | None = None  # reshare only
    presign: PresignSetup | None = None  # a presign session (kind "sign", issue 14: mpc_node/presign.py)
    roster_version: int = 0  # signing: the roster its signers were checked under (the release refuses if it changed)

    def to_roster(self, party: int) -> int:
        return self.committee[party - 1] if self.committee else party

    def to_party(self, index: int) -> int:
        return self.committee.index(index) + 1 if self.committee else index

    @property
    def short(self) -> str:
        return self.id.hex()[:12]


class NodeService:
    """The Node RPCs, independent of gRPC transport details (handlers raise RpcError)."""

    metrics: Metrics = NullMetrics("node")  # replaced in __init__ (mpc_node.metrics)

    def __init__(
        self, cfg: NodeConfig, keys: OperationalKeys, store: NodeStore, audit: AuditLog, clock: NodeClock | None = None
    ) -> None:
        self.cfg = cfg
        self.clock = clock or NodeClock.from_env(cfg.test_mode)
        # expiry (approvals, requests, attestations' age, recovery orders) is judged by the later of
        # the wall clock and (the wall clock at start + the store's steady time since): a wall step
        # back does not revive what expired (mpcnet/common/steadyclock.py); started from the floor the
        # store persisted, so neither does a step back across a restart or reboot (mpc_node/expiry_floor.py)
        self.expiry_clock = start_expiry_clock(
            store, lambda: self.clock.now_ms(), round(cfg.clock_tolerance_s * 1000)  # self.clock as swapped (tests)
        )
        self.keys = keys  # replaced (one reference, under keys_lock) by a key rotation switch
        self.keys_lock = threading.Lock()
        self.store = store
        self.audit = audit
        # sign-start/-reserve/-share entries are committed with their state change, in the store's
        # outbox, and appended to the log in batches (mpc_node/audit_outbox.py); flushed at start
        self.outbox = AuditFlusher(store, audit)
        try:
            self.outbox.flush()
        except GovernanceError as e:  # the entries stay queued; the start refuses, naming the log
            raise GovernanceError(
                "audit_db", f"cannot append the entries queued in the store to the audit log ({problem_text(e)}); they stay queued"
            ) from None
        self.outbox.attach()
        self.me = cfg.index
        self.faults = FaultInjector(cfg.test_mode)
        if self.faults.path is not None:
            store.write_fault = self.faults.store_fault
        self._store_problem = ""  # why the store cannot be written ("" = it can)
        self._store_lock = threading.Lock()
        self._store_probed = 0.0
        self.health: Any = None  # the standard health servicer, set by the server
        self._sessions: dict[bytes, Session] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self._keys: dict[bytes, Any] = {}  # KeyShare, or a FrostKeyShare (issue 16: _any_key)
        self._keys_lock = threading.Lock()
        self._key_gen = 0  # bumped when a key's epoch changes (a share read before must not be cached)
        self._stop = threading.Event()
        # installs (and the config's changes stored at start) queue their entry; test mode: the
        # roster-config-stored / roster-installed crash points (mpc_node/faults.py)
        self.roster_state = NodeRoster(cfg, store, audit, on_queued=self.outbox.notify, fault=self.faults.at)
        mine = self.roster_state.peers().get(self.me)
        if mine is None:
            raise RuntimeError(f"node {self.me} is not an active node of the roster in force (revoked or not enrolled)")
        self.roster_state.add_listener(self._roster_changed)
        # switches to staged keys the roster in force names (a kill right after its install), and on
        # every install; a signed roster naming keys this node does not hold: NOT_SERVING (rotation.problem)
        self.rotation = KeyRotation(self)
        self.rotation.fault = lambda step: self.faults.at(f"key-switch-{step}")  # test mode: crash points
        self.rotation.attach(self.roster_state)
        mine = self.roster_state.peers()[self.me]
        keys = self.keys
        if (mine.identity_public != keys.identity_public or mine.encryption_public != keys.encryption_public) and (
            self.roster_state.current() is None
        ):
            raise RuntimeError(
                f"roster entry {self.me} does not match this node's keystore (wrong keystore or stale roster)"
            )
        self.gov = NodeGovernance(
            cfg.name, cfg.admin_set, cfg.initial_policy, store, audit, max_age_s=cfg.policy_max_age_s,
            clock=self.expiry_clock.now_ms, tolerance_ms=round(cfg.clock_tolerance_s * 1000), on_queued=self.outbox.notify,
        )
        self.gov.fault = self.faults.at  # test mode: the policy-installed / attestation-stored crash points
        try:  # no signing without a place a ban can always go (even once the disk is full)
            self.journal = BanJournal.open(journal_path(cfg.store), cfg.index)
        except BanJournalError as e:
            raise RuntimeError(f"{e}; the node cannot record bans durably and does not start") from None
        self.bans = BanRegistry(store, self.journal, entry=self._ban_entry)  # a ban's store write queues its entry
        self.epochs = EpochService(self)
        self.backups = NodeBackups(self)
        self._discard_fresh_at_start()  # audited in the same transactions (NodePools/NodeNonces then find none)
        self.pools = NodePools(self)  # issue 14: deletes every fresh presignature first
        self.nonces = NodeNonces(self)  # issue 16: FROST nonces (mpc_node/frost_sign.py); deletes every fresh one first
        self.metrics = node_metrics(self)  # mpc_node.metrics (issue 15): NullMetrics without a metrics section
        self.outbox.start()

    def _discard_fresh_at_start(self) -> None:
        """At start, before serving: delete every fresh presignature and FROST nonce left from
        before (a restored store must never revive one), each deletion in one transaction with
        its ``presign-discard`` / ``frost-nonces-discard`` entry (the audit outbox), flushed to the
        log here. A store that cannot be written is left to :class:`NodePools` and
        :class:`NodeNonces`, which refuse the leftovers until they can delete them."""
        name = self.cfg.name

        def entry(action: str, n: int) -> OutboxEntry | None:
            return OutboxEntry(name, action, "", "discarded", {"count": n, "reason": "node-start"}) if n else None

        try:
            if self.store.delete_all_fresh_presignatures(audit=functools.partial(entry, "presign-discard")):
                self.faults.at("audit-queued", "presign-discard/discarded")
            if self.store.delete_all_fresh_nonces(audit=functools.partial(entry, "frost-nonces-discard")):
                self.faults.at("audit-queued", "frost-nonces-discard/discarded")
        except StoreError as e:
            log.error("cannot delete the fresh presignatures/nonces left from before the start now (%s)", _short(e))
            return
        try:
            self.outbox.flush()
        except Exception as e:  # the entries stay queued: the flusher retries (and signing waits for it)
            log.error("audit outbox not flushed at start: %s", problem_text(e))

    # ---------------------------------------------------------------------------------------
    def peers(self) -> dict[int, Peer]:
        """The active nodes of the roster in force, by roster index (every envelope is sealed to
        and opened with these keys only)."""
        return self.roster_state.peers()

    def node_name(self, i: int | None) -> str:
        if i is None:
            return "unattributable"
        p = self.peers().get(i)
        if p is not None:
            return f"node {i} ({p.name})"
        e = self.roster_state.entry(i)
        return f"node {i} ({e.name}, revoked)" if e is not None else f"party {i}"

    def _roster_changed(self, old: Roster | None, new: Roster) -> None:
        """A roster change is an epoch boundary: every live session ends (its peers' keys or
        membership may have changed; envelopes are only ever opened with the roster in force)."""
        with self._lock:
            live = [s for s in self._sessions.values() if not s.done and s.failed is None]
        for s in live:
            err = self._abort_error(s, None, f"the roster changed to version {new.version}; the session cannot continue")
            if s.lock.acquire(timeout=SUPERSEDE_WAIT_S):
                try:
                    if not s.done and s.failed is None:
                        self._kill(s, err)
                finally:
                    s.lock.release()
            else:
                s.failed = err
        if live:
            log.info("roster version %d: %d live session(s) ended", new.version, len(live))

    def warm_up(self) -> None:
        """Decode active key shares into the cache in the background (the first signature with a
        key then does not pay for decoding and validating its share)."""

        def run() -> None:
            for row in self.store.list_keys():
                if row.status == "active" and not self._stop.is_set():
                    try:
                        self._any_key(row.key_id)
                    except Exception:
                        log.exception("key %s: cannot load", row.key_id.hex()[:16])

        threading.Thread(target=run, name="warm-up", daemon=True).start()

    def start_sweeper(self) -> threading.Thread:
        t = threading.Thread(target=self._sweep_loop, name="session-sweeper", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()
        try:  # a restart's expiry clock starts from here (mpc_node/expiry_floor.py)
            self.store.mark_expiry_floor()
        except StoreError as e:
            log.warning("expiry floor not marked at stop (marked at the last store probe): %s", e)
        self.outbox.stop()  # after a last flush (an entry queued later is flushed by the next use or start)

    def _sweep_loop(self) -> None:
        self.probe_store()
        while not self._stop.wait(1.0):
            try:
                self.sweep()
                self.retry_bans()
                if self._store_problem or time.monotonic() - self._store_probed >= STORE_PROBE_INTERVAL_S:
                    self.probe_store()
            except Exception as e:  # the sweeper must survive (the next pass retries)
                log.error("session sweeper: %s", type(e).__name__)

    # --- store health --------------------------------------------------------------------------
    @property
    def store_problem(self) -> str:
        """Why the store cannot be written, or "" when the last write succeeded."""
        return self._store_problem

    def probe_store(self) -> str:
        """Write the store's probe row; update the health state (the standard health service says
        NOT_SERVING while writes fail, SERVING again once one succeeds). Returns why the write
        failed, "" if it succeeded."""
        self._store_probed = time.monotonic()
        try:
            self.store.probe_write(self.clock.now_ms())
            identity = self.keys.identity
            if isinstance(identity, TokenIdentity):  # the token signs everything: unusable = not serving (R2)
                identity.sign(b"MPCNET/v1/node/token-probe")
        except (StoreError, OSError, sqlite3.Error, TokenError) as e:
            problem = describe(e)  # its kind and what to do (disk full, read-only, ...: mpcnet.common.sqlite_errors)
            self._set_store_problem(problem)
            return problem
        self._set_store_problem("")
        return ""

    def _set_store_problem(self, problem: str) -> None:
        with self._store_lock:
            before, self._store_problem = self._store_problem, problem
            if bool(before) == bool(problem):
                return
            if self.health is not None:
                from grpc_health.v1 import health_pb2

                bad = problem or self.rotation.problem  # a key rotation can stop serving too (mpc_node/rotation.py)
                status = health_pb2.HealthCheckResponse.NOT_SERVING if bad else health_pb2.HealthCheckResponse.SERVING
                for name in HEALTH_SERVICES:
                    self.health.set(name, status)
        if problem:
            what = "the PKCS#11 token is unusable" if problem.startswith("pkcs11") else f"store {self.cfg.store} cannot be written"
            log.error("%s (%s): NOT_SERVING until a write succeeds again", what, problem)
        else:
            log.info("store %s can be written again: SERVING", self.cfg.store)
        try:  # the audit log may live on the same failing disk
            self.audit.append(
                self.cfg.name, "store-health", outcome="unwritable" if problem else "writable",
                details=detail_text("reason", problem) if problem else {},
            )
        except Exception as e:
            log.warning("cannot audit the store's health change: %s", _short(e))

    @contextlib.contextmanager
    def _store_guard(self) -> Iterator[None]:
        """Turn a store or audit-log failure into UNAVAILABLE naming the problem (never INTERNAL),
        and re-probe the store so that the node's health says whether it can still write."""
        try:
            yield
        except (StoreError, OSError, sqlite3.Error, GovernanceError) as e:
            raise self._unusable(e) from None

    def storage_failure(self, e: Exception) -> RpcError | None:
        """For the RPC layer (every Node RPC): a store or audit-log write failure that a handler
        did not catch becomes UNAVAILABLE naming the store, never INTERNAL; so does a PKCS#11 token
        failure (the identity signs in the token); None for anything else."""
        if isinstance(e, TokenError):
            log.error("token failure: %s", _short(e))
            self.probe_store()  # health: NOT_SERVING until the token signs again
            return RpcError(Code.UNAVAILABLE, f"pkcs11: {self.cfg.name} cannot use its PKCS#11 token; use other nodes")
        return self._unusable(e) if isinstance(e, (StoreError, OSError, sqlite3.Error)) else None

    def _unusable(self, e: Exception) -> RpcError:
        what = "audit log" if isinstance(e, GovernanceError) else "store"
        log.error("%s failure: %s", what, _short(e))
        self.probe_store()
        return RpcError(Code.UNAVAILABLE, f"store: {self.cfg.name} cannot use its {what} ({describe(e)}); use other nodes")

    def sweep(self, now: float | None = None) -> int:
        """Drop sessions idle for longer than the timeout. Returns how many were dropped."""
        now = time.monotonic() if now is None else now
        limit = self.cfg.session_timeout_s
        # an ended session is kept briefly (to answer a relay's retry) but not for the whole timeout:
        # its cached last answer can be large
        ended_limit = min(limit, FINISHED_GRACE_S)
        with self._lock:
            old = [
                s for s in self._sessions.values()
                if now - s.touched > (ended_limit if (s.done or s.failed is not None) else limit)
            ]
            for s in old:
                del self._sessions[s.id]
        for s in old:
            if not s.done and s.failed is None:
                count_abort(self.metrics, s.kind, "timeout")
                log.info("session %s (%s): expired after %.0fs idle, dropped", s.short, s.kind, limit,
                         extra={"event": "session-expired", "session_id": s.id.hex()})
        return len(old)

    @property
    def active_sessions(self) -> int:
        with self._lock:
            return sum(1 for s in self._sessions.values() if not s.done and s.failed is None)

    # --- info --------------------------------------------------------------------------------
    def GetInfo(self, req: node_pb2.GetInfoRequest, ctx: Any) -> node_pb2.NodeInfo:
        return node_pb2.NodeInfo(
            unix_ms=self.clock.now_ms(),
            index=self.me,
            name=self.cfg.name,
            identity_public=self.keys.identity_public,
            encryption_public=self.keys.encryption_public,
            parties=len(self.peers()),
            threshold=self.cfg.threshold,
            version=VERSION,
            governance_root=self.gov.governance_root,
        )

    def Health(self, req: node_pb2.NodeHealthRequest, ctx: Any) -> node_pb2.NodeHealthResponse:
        problem = self.rotation.problem or self._store_problem
        audit = self.outbox.problem  # it refuses signing sessions until a flush succeeds (_audit_sign_start)
        return node_pb2.NodeHealthResponse(
            serving=not (problem or audit), active_sessions=self.active_sessions, max_sessions=self.cfg.max_sessions,
            unix_ms=self.clock.now_ms(),
            reason=self.rotation.problem or (
                (f"token unusable: {problem}" if problem.startswith("pkcs11") else f"store cannot be written: {problem}")
                if problem else (f"audit log cannot be written: {audit}" if audit else
                                 behind_note(self.expiry_clock, self.clock.now_ms(), round(self.cfg.clock_tolerance_s * 1000)))),
            presignatures=self.pools.fresh_count(), presign_sessions=len(self.pools.live_sessions()),
            nonces=self.nonces.fresh_count(),
        )

    # --- sessions ----------------------------------------------------------------------------
    def StartSession(self, req: node_pb2.StartSessionRequest, ctx: Any) -> node_pb2.StepResponse:
        # one small durable write first: a node that cannot write its store must refuse here, not
        # after its peers released their signature shares for the request
        if self.rotation.problem:
            raise RpcError(Code.FAILED_PRECONDITION, f"roster: {self.cfg.name}: {self.rotation.problem}; it takes no sessions")
        # throttled (issue 14, R4): at most every STORE_PROBE_INTERVAL_S while the store is
        # writable, every time while it is not; a signing session's sign-start entry is itself
        # a durable store write (the audit outbox) before any round is answered
        # (a keygen or reshare session writes nothing at its start: always probed)
        probe = (
            req.WhichOneof("params") != "sign" or bool(self._store_problem)
            or time.monotonic() - self._store_probed >= STORE_PROBE_INTERVAL_S
        )
        problem = self.probe_store() if probe else ""
        if problem:
            raise RpcError(
                Code.UNAVAILABLE,
                f"store: {self.cfg.name} cannot write its store ({problem}); "
                "it takes no sessions until a write succeeds again",
            )
        with self._store_guard():
            return self._start_session(req, ctx)

    def _start_session(self, req: node_pb2.StartSessionRequest, ctx: Any) -> node_pb2.StepResponse:
        sid = check_len(req.session_id, "session_id", SESSION_ID_LEN)
        which = req.WhichOneof("params")
        if which == "dkg":
            s, out = self._new_dkg(sid, req.dkg)
        elif which == "sign":
            s, out = self._new_sign(sid, req.sign, ctx)
        elif which == "reshare":
            s, out = self._new_reshare(sid, req.reshare, ctx)
        elif which == "presign":
            s, out = self.pools.new_session(sid, req.presign, ctx)
        else:
            raise invalid("params", "missing: give dkg, sign, reshare or presign parameters")
        deadline = time.monotonic() + SUPERSEDE_WAIT_S
        while True:
            with self._lock:
                if sid in self._seen:
                    raise RpcError(Code.ALREADY_EXISTS, f"session_id: session {sid.hex()[:12]} was already used on this node")
                if self.active_sessions_locked() >= self.cfg.max_sessions:
                    raise RpcError(
                        Code.RESOURCE_EXHAUSTED, f"sessions: {self.cfg.name} already runs {self.cfg.max_sessions} sessions (the limit)"
                    )
                old = self._live_session_for(s.request_id) if s.kind == "sign" and s.presign is None else None
                if s.kind == "reshare" and any(
                    o.kind == "reshare" and o.key_id == s.key_id and not o.done and o.failed is None for o in self._sessions.values()
                ):
                    err = RpcError(
                        Code.FAILED_PRECONDITION,
                        f"reshare.operation.key_id: {self.cfg.name} already runs a refresh/reshare session of key {s.key_id.hex()[:16]}",
                    )
                    self.epochs.audit_event(_caller(ctx), "key-reshare", "refused", detail_text("reason", err.message))
                    raise err
                if old is None:
                    self._seen[sid] = None
                    while len(self._seen) > SEEN_SESSIONS:
                        self._seen.popitem(last=False)
                    self._sessions[sid] = s
                    break
            self._supersede(old, s, deadline, ctx)
        if s.kind == "sign" and s.presign is None:
            try:  # the session's first store write (the audit outbox): a node that cannot write refuses here
                self._audit_sign_start(s)
            except Exception as e:
                s.failed = RpcError(Code.UNAVAILABLE, f"store: {self.cfg.name} could not record the session's start ({type(e).__name__})")
                raise
        elif s.kind == "reshare":
            self.epochs.audit_start(s, _caller(ctx))
        with s.lock:
            try:
                resp = self._emit(s, out)
            except RpcError as e:
                self._kill(s, e)
                raise
            except Exception as e:
                raise self._crashed(s, e, 0) from None
        log.info("session %s (%s): started, participants %s", s.short, s.kind, list(s.participants),
                 extra={"event": "session-started", "session_id": s.id.hex()})
        return resp

    def active_sessions_locked(self) -> int:
        return sum(1 for s in self._sessions.values() if not s.done and s.failed is None)

    def _live_session_for(self, request_id: str) -> Session | None:
        """The live signing session of ``request_id`` (call holding ``self._lock``)."""
        for o in self._sessions.values():
            if o.kind == "sign" and o.request_id == request_id and not o.done and o.failed is None:
                return o
        return None

    def _supersede(self, old: Session, new: Session, deadline: float, ctx: Any) -> None:
        """At most one live signing session per request id: ``new`` replaces ``old``.

        ``old`` is ended exactly as if the coordinator had aborted it first (which it may do at
        any time anyway), so an honest coordinator's retry that overtakes its own AbortSession,
        or a restarted coordinator resuming a request, still works. A step ``old`` is processing
        right now finishes first (waited for until ``deadline``, monotonic seconds); if it does
        not, ``new`` is refused: FAILED_PRECONDITION naming ``sign.request_id`` (audited).
        """
        if not old.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            err = RpcError(
                Code.FAILED_PRECONDITION,
                f"sign.request_id: {self.cfg.name} is still running session {old.short} for request {new.request_id!r} "
                "(at most one live signing session per request)",
            )
            self._audit_sign("sign-start", new.request_id, "refused", err.message, actor=_caller(ctx), key_id=new.key_id)
            raise err
        try:
            if old.done or old.failed is not None:
                return
            self._kill(old, self._abort_error(old, None, f"superseded by session {new.short} for the same request"))
        finally:
            old.lock.release()
        log.info("session %s (sign): superseded by session %s for the same request", old.short, new.short)
        self._audit_sign(
            "sign-start", new.request_id, "superseded", f"session {old.short} superseded by session {new.short}",
            actor=_caller(ctx), key_id=new.key_id,
        )

    def _new_reshare(self, sid: bytes, p: node_pb2.ReshareParams, ctx: Any) -> tuple[Session, Callable[[], RoundOutput]]:
        setup, party = self.epochs.new_reshare(sid, p, _caller(ctx))
        parts = setup.participants
        s = Session(sid, "reshare", party, parts, tuple(j for j in parts if j != self.me), 1, key_id=setup.operation.key_id, reshare=setup)
        return s, party.start

    def _new_dkg(self, sid: bytes, p: node_pb2.DkgParams) -> tuple[Session, Callable[[], RoundOutput]]:
        committee = tuple(sorted(self.peers()))  # the active roster: share index k is committee[k-1]
        n = len(committee)
        if p.parties != n:
            raise invalid("dkg.parties", f"must be {n} (the active nodes of this node's roster), got {p.parties}")
        if p.threshold != self.cfg.threshold:
            raise invalid("dkg.threshold", f"this node accepts only threshold {self.cfg.threshold}, got {p.threshold}")
        label = utf8_text_field(p.key_label, "dkg.key_label", MAX_LABEL)
        scheme = check_scheme(p.scheme, "dkg.scheme")
        if self.me not in committee:
            raise RpcError(Code.FAILED_PRECONDITION, f"dkg: {self.cfg.name} is not an active node of its roster")
        party: Any
        if scheme in FROST_SCHEMES:  # issue 16: FROST keys (no OT setup, no chain code)
            from crypto_core.frost.dkg import FrostDkgConfig, FrostDkgParty

            party = FrostDkgParty(FrostDkgConfig(sid, p.threshold, n, committee.index(self.me) + 1, scheme, p.key_label))
        else:
            party = DkgParty(DkgConfig(sid, p.threshold, n, committee.index(self.me) + 1, p.key_label))
        s = Session(
            sid, "dkg", party, committee, tuple(j for j in committee if j != self.me), 1, label=label,
            committee=() if committee == tuple(range(1, n + 1)) else committee,
        )
        return s, party.start

    def _new_sign(self, sid: bytes, p: node_pb2.SignParams, ctx: Any = None) -> tuple[Session, Callable[[], RoundOutput]]:
        try:
            return self._new_sign_checked(sid, p)
        except RpcError as e:
            self._audit_sign("sign-start", p.request_id, "refused", e.message, actor=_caller(ctx), key_id=p.key_id)
            raise

    def _new_sign_checked(self, sid: bytes, p: node_pb2.SignParams) -> tuple[Session, Callable[[], RoundOutput]]:
        from crypto_core.sign import PresignParty, SignConfig

        key_id = check_len(p.key_id, "sign.key_id", 32)
        if self.bans.closed(key_id) is not None:
            raise self._closed_error(key_id)
        digest = check_len(p.digest, "sign.digest", 32)
        if not REQUEST_ID_RE.fullmatch(p.request_id):
            raise invalid("sign.request_id", REQUEST_ID_RULE)
        try:
            path = check_path(tuple(p.derivation_path))
        except UsageError as e:
            raise invalid("sign.derivation_path", str(e).split(": ", 1)[-1]) from None
        governance_blob(p.approval_bundle, "sign.approval_bundle")
        governance_blob(p.policy_attestation, "sign.policy_attestation")
        roster_version = self.roster_state.version  # before the peers: the release refuses if it changed since
        peers = self.peers()
        at_most(p.signers, "sign.signers", len(peers), "party indices")
        signers = tuple(p.signers)
        if len(set(signers)) != len(signers):
            raise invalid("sign.signers", "duplicate party index")
        for j in signers:
            if j not in peers:
                raise invalid("sign.signers", f"party {j} is not an active node of this node's roster ({_indices(peers)})")
        if self.me not in signers:
            raise invalid("sign.signers", f"does not include this node ({self.me})")
        key = self._key(key_id)
        committee = self._committee(key_id, key, p.epoch)
        outside = [j for j in signers if j not in committee]
        if outside:
            raise invalid("sign.signers", f"node {outside[0]} is not in the committee of key {key_id.hex()[:16]} ({list(committee)})")
        if len(signers) != key.threshold:
            raise invalid("sign.signers", f"key needs exactly {key.threshold} signers, got {len(signers)}")
        approved = self.gov.check_sign(
            p.approval_bundle, key_id=key_id, digest=digest, path=path, request_id=p.request_id,
            attestation=bytes(p.policy_attestation),
        )
        banned = self.bans.banned(key_id)
        bad = sorted(set(signers) & banned)
        if bad:
            raise RpcError(
                Code.PERMISSION_DENIED,
                f"sign.signers: {self.node_name(bad[0])} is banned by {self.cfg.name} for key {key_id.hex()[:16]}",
                metadata=[("mpc-banned", ",".join(map(str, bad)))],
            )
        cmap = () if committee == tuple(range(1, len(committee) + 1)) else committee
        try:
            party = PresignParty(key, SignConfig(
                sid, tuple(sorted(committee.index(j) + 1 for j in signers)), path,
                frozenset(committee.index(j) + 1 for j in banned if j in committee),
            ))
        except UsageError as e:
            raise invalid("sign", str(e)) from None
        ordered = tuple(sorted(signers))
        s = Session(
            sid, "sign", party, ordered, tuple(j for j in ordered if j != self.me), 1,
            key=key, key_id=key_id, digest=digest, path=path, request_id=p.request_id, approved=approved, committee=cmap,
            roster_version=roster_version,
        )
        return s, party.start

    def _audit_sign_start(self, s: Session) -> None:
        approved = s.approved
        assert approved is not None
        req = approved.bundle.request
        if self.outbox.problem:  # its shares would be released with nothing reaching the log
            raise RpcError(
                Code.UNAVAILABLE,
                f"audit: {self.cfg.name} cannot append to its audit log ({self.outbox.problem}); it takes no signing sessions",
            )
        self.store.queue_audit(OutboxEntry(
            req.requester, "sign-start", req.request_id, "accepted",
            {
                "key_id": s.key_id.hex(), "digest": s.digest.hex(), "path": _path_text(s.path), "session": s.id.hex()[:16],
                "signers": ",".join(map(str, s.participants)), "policy_version": approved.policy.version,
                "approved_by": ",".join(sorted(approved.result.approved)), "request_sha256": req.request_digest().hex(),
            },
        ))
        self._store_probed = time.monotonic()  # a durable store write succeeded: it stands for the probe (R4)
        self.outbox.notify()

    def audit_queued(self, action: str, outcome: str) -> None:
        """An ``action``/``outcome`` entry was committed to the audit outbox with its state change:
        the test-mode crash point ``audit-queued`` (:mod:`mpc_node.faults`; the entry must reach
        the log exactly once after a restart), then wake the flusher."""
        self.faults.at("audit-queued", f"{action}/{outcome}")
        self.outbox.notify()

    def _audit_sign(self, action: str, request_id: str, outcome: str, reason: str, *, actor: str, key_id: bytes = b"") -> None:
        details: dict[str, str | int | bool] = detail_text("reason", reason)
        if key_id:
            details["key_id"] = key_id.hex()[:64]
        rid = request_id if REQUEST_ID_RE.fullmatch(request_id or "") else ""
        if request_id and not rid:
            details["request"] = quote(request_id)  # caller text: a short escaped prefix (fits any entry)
        try:
            self.audit.append(actor, action, request_id=rid, outcome=outcome, details=details)
        except Exception:
            log.exception("cannot write the audit log")
            raise

    def _committee(self, key_id: bytes, key: KeyShare | FrostKeyShare, epoch: int) -> tuple[int, ...]:
        """The committee of ``key`` at its active epoch here; FAILED_PRECONDITION naming
        ``sign.epoch`` when the session is for another epoch."""
        if epoch != key.epoch:
            raise refusal(  # kind "epoch": the coordinator re-reads the key's epoch and tries again
                Code.FAILED_PRECONDITION, "epoch",
                f"sign.epoch: is {epoch}, the active epoch of key {key_id.hex()[:16]} on {self.cfg.name} is {key.epoch}",
            )
        held = self.store.key_epoch(key_id)
        return held.committee if held is not None else tuple(range(1, key.parties + 1))

    def active_share(self, key_id: bytes) -> KeyShare | None:
        """This node's active DKLs23 share of ``key_id`` (None if it holds none). A FROST key:
        refused, never None (issue 16: its refresh/reshare reads the share in :mod:`mpc_node.epochs`,
        its backups and drills in :mod:`mpc_node.backups`)."""
        try:
            ks = self._any_key(key_id)
        except RpcError:
            return None
        if not isinstance(ks, KeyShare):  # issue 16: the lifecycle of FROST keys comes later
            raise scheme_refusal(key_id, ks.scheme, f"a {ks.scheme} key has no DKLs23 share")
        return ks

    def drop_key(self, key_id: bytes) -> None:
        """Forget the cached share of ``key_id`` (its epoch changed)."""
        with self._keys_lock:
            self._keys.pop(key_id, None)
            self._key_gen += 1

    def _key(self, key_id: bytes) -> KeyShare:
        """This node's active DKLs23 share of ``key_id``; a FROST key (issue 16) is refused
        (FAILED_PRECONDITION naming ``sign.key_id``): DKLs signing and presignatures are not for
        it (it signs with SignSchnorr)."""
        ks = self._any_key(key_id)
        if not isinstance(ks, KeyShare):
            raise scheme_refusal(
                key_id, ks.scheme,
                f"DKLs23 signing and presignatures are not supported for {ks.scheme} keys (they sign with SignSchnorr)",
                "sign.key_id",
            )
        return ks

    def _any_key(self, key_id: bytes) -> Any:
        """This node's active share of ``key_id``: a KeyShare or (issue 16) a FrostKeyShare, by the record's magic."""
        with self._keys_lock:
            ks = self._keys.get(key_id)
            gen = self._key_gen
        if ks is not None:
            return ks
        record = self.store.get_key_share(key_id, require_active=True)
        if record is None:
            if self.store.get_key_share(key_id, require_active=False) is not None:
                raise RpcError(
                    Code.FAILED_PRECONDITION,
                    f"sign.key_id: key {key_id.hex()} is pending on {self.cfg.name}: not activated by CommitKey",
                )
            restored = self.store.restored_key(key_id)
            if restored is not None:
                raise RpcError(
                    Code.FAILED_PRECONDITION,
                    f"sign.key_id: {self.cfg.name} holds key {key_id.hex()} only as a restored share (epoch {restored.epoch}):"
                    " it deals in the recovery order's follow-up refresh/reshare and never signs",
                )
            raise RpcError(Code.NOT_FOUND, f"sign.key_id: {self.cfg.name} holds no key {key_id.hex()}")
        if is_frost_record(record):  # issue 16
            from crypto_core.frost.keyshare import FrostKeyShare

            ks = FrostKeyShare.from_bytes(record)
        else:
            ks = KeyShare.from_bytes(record)
        with self._keys_lock:
            if self._key_gen == gen:  # no epoch change since the read: the share is current
                self._keys[key_id] = ks
        return ks

    def _session(self, sid: bytes) -> Session:
        check_len(sid, "session_id", SESSION_ID_LEN)
        with self._lock:
            s = self._sessions.get(sid)
        if s is None:
            raise RpcError(
                Code.NOT_FOUND, f"session_id: {self.cfg.name} has no session {sid.hex()[:12]} (unknown, expired or node restarted)"
            )
        return s

    def Step(self, req: node_pb2.StepRequest, ctx: Any) -> node_pb2.StepResponse:
        # a resource bound only (a round has one broadcast and one direct message from each other
        # node): a duplicate within it is the session's to detect (and abort on, naming the replay)
        n = len(self.peers())
        at_most(req.envelopes, "envelopes", MAX_ENVELOPES_PER_PARTY * n, "envelopes")
        at_most(req.reservation_receipts, "reservation_receipts", n, "receipts (one per roster node)")
        for k, r in enumerate(req.reservation_receipts):
            governance_blob(r, f"reservation_receipts[{k}]")
        s = self._session(req.session_id)
        with s.lock:
            s.touched = time.monotonic()
            if s.failed is not None:
                s.party = None
                raise s.failed
            digest = _inbox_digest(req)
            if s.last is not None and req.round == s.last[0]:
                if digest == s.last[1]:
                    return s.last[2]  # the relay retried the same call
                self._fail(s, None, f"round-{req.round} messages delivered again with different content (relay replay or equivocation)")
            if s.done:
                raise RpcError(Code.FAILED_PRECONDITION, f"session {s.short}: already finished on {self.cfg.name}")
            if req.round != s.expect_round:
                raise RpcError(
                    Code.FAILED_PRECONDITION,
                    f"round: session {s.short} on {self.cfg.name} expects round-{s.expect_round} messages, got round {req.round}",
                )
            if (req.attempt or req.reservation_receipts) and not (
                s.kind == "sign" and s.presign is None and req.round == SIGN_RELEASE_ROUND
            ):
                raise invalid(
                    "reservation_receipts",
                    f"only the round-{SIGN_RELEASE_ROUND} delivery of a signing session carries a reserved attempt and its receipts",
                )
            if s.kind == "sign":
                s.attempt, s.receipts = req.attempt, tuple(req.reservation_receipts)
            try:
                with self._store_guard(), timed_round(self.metrics, s.kind, req.round):
                    inbox = self._open_inbox(s, req.round, req.envelopes)
                    resp = self._advance(s, inbox)
            except RpcError as e:
                self._kill(s, e)
                raise
            except Exception as e:
                raise self._crashed(s, e, req.round) from None
            if s.failed is not None:  # aborted while this step ran (a ban, a fail-closed key)
                if not s.done:
                    s.party = None
                    raise s.failed
                s.failed = None  # it finished first: its answer stands
            s.last = (req.round, digest, resp)
            return resp

    def AbortSession(self, req: node_pb2.AbortSessionRequest, ctx: Any) -> node_pb2.AbortSessionResponse:
        check_len(req.session_id, "session_id", SESSION_ID_LEN)
        text_field(req.reason, "reason", MAX_ABORT_REASON)  # caller text: no control, format or separator character
        with self._lock:
            s = self._sessions.pop(req.session_id, None)
        if s is not None:
            if not s.done and s.failed is None:
                count_abort(self.metrics, s.kind, "coordinator")
            log.info("session %s (%s): aborted by the coordinator: %r", s.short, s.kind, req.reason[:200],
                     extra={"event": "session-aborted", "session_id": s.id.hex()})
        return node_pb2.AbortSessionResponse(existed=s is not None)

    # --- protocol steps ----------------------------------------------------------------------
    def _fail(self, s: Session, culprit: int | None, reason: str, *, ban: bool = False) -> None:
        err = self._abort_error(s, culprit, reason, ban=ban)
        s.failed = err
        log.warning("%s", err.message)
        raise err

    def _abort_error(self, s: Session, culprit: int | None, reason: str, *, ban: bool = False, cls: str = "protocol") -> RpcError:
        count_abort(self.metrics, s.kind, "ban" if ban else cls)
        who = self.node_name(culprit)
        msg = f"{self.cfg.name} aborted {s.kind} session {s.short}: {who}: {reason}"
        md = [("mpc-culprit", str(culprit or 0)), ("mpc-reporter", str(self.me))]
        if ban:
            md.append(("mpc-ban", "1"))
        return RpcError(Code.ABORTED, msg, metadata=md)

    @staticmethod
    def _kill(s: Session, err: RpcError) -> None:
        """The session is dead: every later Step raises ``err``; its party (and secrets) are
        dropped. Call holding ``s.lock``."""
        s.failed = err
        s.party = None

    def _crashed(self, s: Session, e: Exception, rnd: int) -> RpcError:
        """An unexpected exception while a session stepped: log where (type and place only, never
        the message, which might quote data), kill the session, return a clean ABORTED."""
        frames = traceback.extract_tb(e.__traceback__)
        where = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"
        log.error("session %s (%s): unexpected %s at %s (round %d); session aborted", s.short, s.kind, type(e).__name__, where, rnd,
                  extra={"event": "session-crashed", "session_id": s.id.hex()})
        when = f"processing round-{rnd} messages" if rnd else "starting"
        err = self._abort_error(s, None, f"internal error ({type(e).__name__}) while {when}; the session is dropped", cls="internal")
        self._kill(s, err)
        return err

    def _closed_error(self, key_id: bytes) -> RpcError:
        return RpcError(
            Code.UNAVAILABLE,
            f"sign.key_id: {self.cfg.name} refuses every session of key {key_id.hex()[:16]}: a ban could not be recorded "
            "(store and ban journal writes failed); it retries in the background and accepts the key again once the ban is durable",
        )

    # --- bans --------------------------------------------------------------------------------
    def _refuse_if_banned(self, s: Session) -> None:
        """Abort ``s`` without running its step if a peer is banned (or ban-pending) for its key,
        or the key is fail-closed. Call holding the check locks of ``s`` for a checked round."""
        r: Refusal | None = self.bans.refusal(s.key_id, s.peers)
        if r is None:
            return
        if r.peer is not None:
            self._fail(s, r.peer, self._ban_text(s.key_id, r.reason), ban=True)
        err = self._closed_error(s.key_id)
        self._kill(s, err)
        raise err

    def _ban_text(self, key_id: bytes, reason: str) -> str:
        return f"banned by {self.cfg.name} for key {key_id.hex()[:16]} ({reason}); no check of this session ran"

    def _ban(self, s: Session, peer: int, reason: str) -> None:
        """A check of ``s`` failed with ``peer``: record the ban (durable, or fail the key
        closed), then abort every other live session of the key that it affects. Call holding
        the check lock of ``(s.key_id, peer)``; only then may the abort of ``s`` leave."""
        stored = f"{reason} in session {s.short}"
        outcome = self.bans.record(s.key_id, peer, stored)
        self.metrics.bans_total.inc()
        durable = outcome != NOT_RECORDED
        closed = None if durable else self._closed_error(s.key_id)

        def reason_for(o: Session) -> RpcError:
            if closed is not None and peer not in o.peers:
                return closed
            return self._abort_error(o, peer, self._ban_text(s.key_id, stored), ban=True)

        if outcome == RECORDED:  # the ban and its entry committed (one store transaction)
            self.faults.at("ban-recorded")
            self.outbox.notify()
        n = self._abort_sessions(s.key_id, peer if durable else None, s, reason_for)
        log.warning(
            "key %s: %s banned%s: %s; %d other live session(s) aborted", s.key_id.hex()[:16], self.node_name(peer),
            {NOT_RECORDED: " (NOT recorded: the key is refused until the ban is written)",
             JOURNALED: " (in the ban journal: the store refused it)"}.get(outcome, ""), stored, n,
        )
        if outcome != RECORDED:  # not in the store: no transaction to queue it in, appended directly
            self._audit_ban(s.key_id, peer, stored, outcome, aborted=n)

    def _abort_sessions(
        self, key_id: bytes, peer: int | None, exclude: Session | None, make: Callable[[Session], RpcError]
    ) -> int:
        """Fail every live signing session of ``key_id`` (with ``peer``, or all if ``None``)
        except ``exclude``. One that is stepping right now (never a checked step: the caller
        holds the check lock) fails when its step returns. Returns how many were failed."""
        with self._lock:
            victims = [
                o for o in self._sessions.values()
                if o is not exclude and o.kind == "sign" and o.key_id == key_id
                and (peer is None or peer in o.peers) and not o.done and o.failed is None
            ]
        for o in victims:
            err = make(o)
            if o.lock.acquire(blocking=False):
                try:
                    if not o.done and o.failed is None:
                        self._kill(o, err)
                finally:
                    o.lock.release()
            else:
                o.failed = err
        return len(victims)

    def retry_bans(self) -> int:
        """Write the bans that could not be written (the sweeper calls this every second);
        a fail-closed key opens again once all of its bans are durable. Returns how many."""
        written = self.bans.retry()  # each with its recorded-late entry, in the store write's transaction
        for b in written:
            log.warning("key %s: ban of %s recorded on retry", b.key_id.hex()[:16], self.node_name(b.peer))
        if written:
            self.outbox.notify()
        return len(written)

    def _ban_entry(self, ban: Ban, outcome: str) -> OutboxEntry:
        """The ``ban`` audit entry queued with a ban's store write (:class:`BanRegistry`)."""
        details: dict[str, str | int | bool] = {"key_id": ban.key_id.hex(), "peer": ban.peer, **detail_text("reason", ban.reason)}
        return OutboxEntry(self.cfg.name, "ban", "", outcome, details)

    def _audit_ban(self, key_id: bytes, peer: int, reason: str, outcome: str, **extra: int) -> None:
        details: dict[str, str | int | bool] = {"key_id": key_id.hex(), "peer": peer, **detail_text("reason", reason), **extra}
        try:
            self.audit.append(self.cfg.name, "ban", outcome=outcome, details=details)
        except Exception as e:  # the ban itself stands (or the key stays closed); only the entry is missing
            log.error("cannot write the audit log entry for the ban of %s: %s", self.node_name(peer), type(e).__name__)

    def _open_inbox(self, s: Session, rnd: int, envelopes: Any) -> dict[int, Delivery]:
        parts: dict[int, dict[str, bytes]] = {}
        peers = self.peers()
        for k, pe in enumerate(envelopes):
            try:
                env = Envelope(pe.session_id, pe.round, pe.sender, pe.receiver, pe.payload, pe.ephemeral_key, pe.signature)
            except EnvelopeError as e:
                self._fail(s, None, f"round-{rnd} envelopes[{k}]: malformed: {e}")
            sender = env.sender
            if sender not in s.peers:
                self._fail(s, None, f"round-{rnd} envelopes[{k}]: sender {sender} is not a peer in this session")
            kind = "broadcast" if env.receiver == 0 else "direct"
            what = f"round-{rnd} {kind} message from {self.node_name(sender)}"
            if sender not in peers:
                self._fail(s, None, f"{what}: not an active node of the roster in force (revoked)")
            if env.receiver not in (0, self.me):
                self._fail(s, None, f"{what}: addressed to party {env.receiver}, not to this node (misrouted)")
            if kind in parts.setdefault(sender, {}):
                self._fail(s, None, f"{what}: delivered twice (replay)")
            try:
                payload = open_envelope(
                    env,
                    sender_identity_public=peers[sender].identity_public,
                    my_encryption=self.keys.encryption,
                    expected_session_id=s.id,
                    expected_round=rnd,
                    expected_sender=sender,
                    me=self.me,
                )
            except EnvelopeError as e:
                self._fail(s, None, f"{what}: {e.field}: {e.reason} (altered, replayed or forged in transit)")
            parts[sender][kind] = payload
        return {s.to_party(j): Delivery(p.get("broadcast"), p.get("direct")) for j, p in parts.items()}

    def _advance(self, s: Session, inbox: dict[int, Delivery]) -> node_pb2.StepResponse:
        """Run one step. A signing step that runs a ban-able check does so holding the check
        locks of (key, every peer), after making sure no peer is banned and the key is not
        fail-closed; its answer (or abort) is produced under the same locks."""
        t0 = time.perf_counter()
        if s.kind != "sign":
            resp = self._step(s, inbox, checked=False)
        elif s.expect_round in CHECKED_SIGN_ROUNDS:
            with self.bans.hold(s.key_id, s.peers):
                self._refuse_if_banned(s)
                resp = self._step(s, inbox, checked=True)
        else:
            self._refuse_if_banned(s)
            resp = self._step(s, inbox, checked=False)
        log.debug("session %s (%s): round %d processed in %.1f ms", s.short, s.kind, s.expect_round - 1, (time.perf_counter() - t0) * 1e3)
        return resp

    def _step(self, s: Session, inbox: dict[int, Delivery], *, checked: bool) -> node_pb2.StepResponse:
        try:
            out = s.party.receive(inbox)
        except ProtocolAbort as e:
            culprit = None if e.party is None else s.to_roster(e.party)
            if e.ban and culprit is not None and s.kind == "sign":
                if checked:
                    self._ban(s, culprit, e.reason)
                else:  # not expected (every ban-able check is in a checked round): lock anyway
                    with self.bans.hold(s.key_id, (culprit,)):
                        self._ban(s, culprit, e.reason)
            self._fail(s, culprit, e.reason, ban=e.ban)
        except ProtocolError as e:
            self._fail(s, None, f"protocol error: {e}")
        if out is not None:
            resp = self._emit(s, lambda: out)
        elif s.kind == "dkg":
            resp = self._finish_dkg(s)
        elif s.kind == "reshare":
            resp = self.epochs.finish_reshare(s)
        elif s.presign is not None:
            resp = self.pools.finish(s)
        else:
            resp = self._finish_sign(s)
        return resp

    def _emit(self, s: Session, produce: Callable[[], RoundOutput]) -> node_pb2.StepResponse:
        out = produce()
        fault = self.faults.check("presign" if s.presign is not None else s.kind, out.round)  # a refill is not a signing
        envs = self._seal(
            s, out.round, out.broadcast, out.direct, fault.action if fault else None, fault.receiver if fault else 0
        )
        s.expect_round = out.round
        return node_pb2.StepResponse(session_id=s.id, round=out.round, envelopes=envs)

    def _seal(
        self, s: Session, rnd: int, broadcast: bytes | None, direct: Any, fault: str | None, target: int = 0
    ) -> list[common_pb2.Envelope]:
        envs = []
        ident = self.keys.identity
        peers = self.peers()
        if broadcast is not None:
            if fault == "tamper-payload":
                broadcast = flip(broadcast)
            envs.append(seal_broadcast(broadcast, identity=ident, session_id=s.id, round=rnd, sender=self.me))
        for pj in sorted(direct):
            payload = direct[pj]
            j = s.to_roster(pj)
            if fault == "tamper-payload" or (fault == "tamper-ote" and target in (0, j)):
                payload = flip(payload)
            envs.append(
                seal_direct(
                    payload,
                    identity=ident,
                    recipient_encryption_public=peers[j].encryption_public,
                    session_id=s.id,
                    round=rnd,
                    sender=self.me,
                    receiver=j,
                )
            )
        out = []
        for e in envs:
            payload = flip(e.payload) if fault == "tamper-signature" else e.payload
            out.append(
                common_pb2.Envelope(
                    session_id=e.session_id, round=e.round, sender=e.sender, receiver=e.receiver,
                    payload=payload, ephemeral_key=e.ephemeral_key, signature=e.signature,
                )
            )
        return out

    def _finish_dkg(self, s: Session) -> node_pb2.StepResponse:
        ks = s.party.result  # a KeyShare, or a FrostKeyShare (issue 16: public_key is its encoding, no chain code)
        frost = not isinstance(ks, KeyShare)
        pk = bytes(ks.public_key) if frost else ks.public_key.encode()
        scheme = ks.scheme if frost else "ecdsa-secp256k1"
        details: dict[str, str | int | bool] = {
            "key_id": ks.key_id.hex(), "public_key": pk.hex(), "threshold": ks.threshold, "parties": ks.parties, "session": s.id.hex()[:16],
        } | ({"scheme": scheme} if frost else {})
        details |= detail_text("label", s.label)  # whole (at most MAX_LABEL), as the coordinator keeps it
        try:  # the pending share and its keygen entry: one transaction (the audit outbox)
            self.store.put_key_share(
                ks.key_id, ks.to_bytes(), label=s.label, public_key=pk, threshold=ks.threshold, parties=ks.parties,
                committee=s.participants, scheme=scheme, audit=OutboxEntry("coordinator", "keygen", "", "stored-pending", details),
            )
        except StoreError:
            raise  # UNAVAILABLE naming the store problem (_store_guard): this node's fault, not a protocol abort
        s.done = True
        self.faults.at("keygen-stored")
        self.audit_queued("keygen", "stored-pending")
        log.info("session %s (dkg): finished, key %s stored as pending", s.short, ks.key_id.hex()[:16],
                 extra={"event": "session-finished", "session_id": s.id.hex()})
        return node_pb2.StepResponse(
            session_id=s.id,
            round=0,
            finished=True,
            dkg_result=node_pb2.DkgResult(
                key_id=ks.key_id, public_key=pk, chain_code=b"" if frost else ks.chain_code, threshold=ks.threshold,
                parties=ks.parties, scheme=scheme,
                public_shares=list(ks.public_shares) if frost else [],
            ),
        )

    def _finish_sign(self, s: Session) -> node_pb2.StepResponse:
        presig = s.party.result
        key = s.key
        assert key is not None
        rnd = 4
        fault = self.faults.check("sign", rnd)
        approved = s.approved
        assert approved is not None
        req = approved.bundle.request
        try:
            served = self.gov.recheck(approved, s.key_id, roster_version=s.roster_version)
            served = dataclasses.replace(served, reservation=self._reserved(s, req))
            if served.in_force is not None:  # a ban pending since the session's checks stops the share too
                peers = s.participants
                served = dataclasses.replace(served, in_force=dataclasses.replace(
                    served.in_force, still=lambda: check_bans(self, s.key_id, peers),
                ))
        except RpcError as e:
            self._audit_sign("sign-share", s.request_id, "refused", e.message, actor=req.requester, key_id=s.key_id)
            s.failed = e
            raise
        try:
            tomb = presig.mark_used()
            # only the tombstone is ever written (never the secrets), durable before the share
            # leaves, together with the request's served record and its sign-share audit entry
            released = OutboxEntry(
                req.requester, "sign-share", req.request_id, "released",
                {
                    "key_id": s.key_id.hex(), "digest": s.digest.hex(), "path": _path_text(s.path),
                    "session": s.id.hex()[:16], "signers": ",".join(map(str, s.participants)), "attempt": s.attempt,
                    "policy_version": approved.policy.version, "approved_by": ",".join(sorted(approved.result.approved)),
                    "request_sha256": req.request_digest().hex(),
                },
            )
            self.store.put_used_presignature(presig.sigid, s.key_id, tomb, request=served, audit=released, epoch=key.epoch)
            self.outbox.notify()
        except ReservationConflict as e:
            err = refusal(Code.FAILED_PRECONDITION, "attempt-taken", f"{e} ({self.cfg.name})")
            self._audit_sign("sign-share", s.request_id, "refused", err.message, actor=req.requester, key_id=s.key_id)
            s.failed = err
            raise err from None
        except Banned as e:  # a ban (or the key fail-closed) since the session's checks: in_force.still
            err = ban_refusal(self, s.key_id, e, "sign.signers")
            self._audit_sign("sign-share", s.request_id, "refused", err.message, actor=req.requester, key_id=s.key_id)
            s.failed = err
            raise err from None
        except PoolError as e:  # the key's epoch changed (a refresh or reshare committed, the key retired) meanwhile
            err = refusal(Code.FAILED_PRECONDITION, "epoch", f"sign.{e} ({self.cfg.name})")
            self._audit_sign("sign-share", s.request_id, "refused", err.message, actor=req.requester, key_id=s.key_id)
            s.failed = err
            raise err from None
        except InForceChanged as e:  # the policy, its attestation or the roster
            err = changed_refusal(e, self.cfg.name, "sign.")
            self._audit_sign("sign-share", s.request_id, "refused", err.message, actor=req.requester, key_id=s.key_id)
            s.failed = err
            raise err from None
        except (RequestAlreadyServed, RateLimited) as e:
            kind = "served" if isinstance(e, RequestAlreadyServed) else "rate-limited"
            msg = f"sign.approval_bundle.request.{e}" if kind == "served" else str(e)
            err = refusal(Code.FAILED_PRECONDITION, kind, f"{msg} ({self.cfg.name})")
            self._audit_sign("sign-share", s.request_id, "refused", err.message, actor=req.requester, key_id=s.key_id)
            s.failed = err
            raise err from None
        except StoreError:
            raise  # UNAVAILABLE naming the store problem (_store_guard); nothing was released
        share = presig.signature_share(s.digest, key_id=s.key_id, epoch=key.epoch, derivation_path=s.path)
        payload = share.to_bytes(s.id)
        envs = self._seal(s, rnd, payload, {}, fault.action if fault else None)
        s.done = True
        s.expect_round = rnd
        log.info("session %s (sign): signing contribution released for key %s (request %s)", s.short, s.key_id.hex()[:16], req.request_id,
                 extra={"event": "session-finished", "session_id": s.id.hex(), "request_id": req.request_id})
        return node_pb2.StepResponse(session_id=s.id, round=rnd, envelopes=envs, finished=True)

    def _reserved(self, s: Session, req: SigningRequest) -> StoredReservation:
        """The reserved attempt this session's share is for, established from the receipts that
        came with the releasing step: a majority of this node's own roster must have granted
        exactly (governance root, key, request, request digest, attempt, signers, session).
        Raises RpcError: PERMISSION_DENIED (kind ``unreserved``) or FAILED_PRECONDITION
        (``attempts-exhausted``)."""
        if s.attempt == 0:
            raise refusal(
                Code.PERMISSION_DENIED, "unreserved",
                "attempt: missing: a signature share is released only for an attempt reserved by a majority of the nodes",
            )
        if s.attempt > MAX_SIGN_ATTEMPTS:
            raise refusal(
                Code.FAILED_PRECONDITION, "attempts-exhausted",
                f"attempt: {s.attempt} exceeds the {MAX_SIGN_ATTEMPTS} signing attempts a request may take",
            )
        expected = Reservation(
            self.gov.governance_root, s.key_id, req.request_id, req.request_digest(), s.attempt, s.participants, s.id
        )
        roster = {i: p.identity_public for i, p in self.peers().items()}
        try:
            verify_receipts(s.receipts, expected, roster, reservation_quorum(len(roster)))
        except GovernanceError as e:
            raise refusal(Code.PERMISSION_DENIED, "unreserved", f"{e.field}: {e.reason} ({self.cfg.name})") from None
        return StoredReservation(
            req.request_id, s.attempt, s.key_id, expected.request_digest, s.participants, s.id, self.clock.now_ms()
        )

    # --- reservations ------------------------------------------------------------------------
    def ReserveSigning(self, req: node_pb2.ReserveSigningRequest, ctx: Any) -> node_pb2.ReserveSigningResponse:
        """Grant one signing attempt of an approved request to one signer set and session."""
        try:
            return self._reserve(req, _caller(ctx))
        except RpcError as e:
            if e.message.startswith("sign."):  # the shared checks name SignParams fields: these are top-level here
                e = RpcError(e.code, e.message[len("sign."):], metadata=e.metadata)
            self._audit_sign("sign-reserve", req.request_id, "refused", e.message, actor=_caller(ctx), key_id=req.key_id)
            raise e from None

    def _reserve(self, req: node_pb2.ReserveSigningRequest, actor: str) -> node_pb2.ReserveSigningResponse:
        key_id = check_len(req.key_id, "key_id", 32)
        digest = check_len(req.digest, "digest", 32)
        sid = check_len(req.session_id, "session_id", SESSION_ID_LEN)
        if not REQUEST_ID_RE.fullmatch(req.request_id):
            raise invalid("request_id", REQUEST_ID_RULE)
        try:
            path = check_path(tuple(req.derivation_path))
        except UsageError as e:
            raise invalid("derivation_path", str(e).split(": ", 1)[-1]) from None
        governance_blob(req.approval_bundle, "approval_bundle")
        if req.attempt == 0:
            raise invalid("attempt", f"missing: must be 1..{MAX_SIGN_ATTEMPTS}")
        roster_version = self.roster_state.version  # before the peers: the grant refuses if it changed since
        peers = self.peers()
        at_most(req.signers, "signers", len(peers), "party indices")
        signers = tuple(req.signers)
        if len(set(signers)) != len(signers):
            raise invalid("signers", "duplicate party index")
        for j in signers:
            if j not in peers:
                raise invalid("signers", f"party {j} is not an active node of this node's roster ({_indices(peers)})")
        key = self._any_key(key_id)  # issue 16: a FROST key's attempts are reserved alike (SignSchnorr's receipts)
        scheme = key.scheme if not isinstance(key, KeyShare) else "ecdsa-secp256k1"
        if len(signers) != key.threshold:
            raise invalid("signers", f"key needs exactly {key.threshold} signers, got {len(signers)}")
        if path and scheme != "ecdsa-secp256k1":
            raise invalid("derivation_path", f"a {scheme} key has no derivation path: must be empty")
        approved = self.gov.check_sign(
            req.approval_bundle, key_id=key_id, digest=digest, path=path, request_id=req.request_id, scheme=scheme,
            taproot_root=None if scheme != "ecdsa-secp256k1" else b"",
        )
        try:  # no attempt for a signer set the release would refuse (re-checked inside the grant's transaction)
            check_bans(self, key_id, signers)
        except Banned as e:
            raise self._grant_ban_refusal(key_id, e) from None
        rid = approved.bundle.request.request_id
        if req.attempt > MAX_SIGN_ATTEMPTS:
            raise refusal(
                Code.FAILED_PRECONDITION, "attempts-exhausted",
                f"attempt: request {rid} may take at most {MAX_SIGN_ATTEMPTS} signing attempts, got attempt {req.attempt}; "
                "it needs new approvals (submit a new request)",
            )
        grant = Reservation(
            self.gov.governance_root, key_id, rid, approved.bundle.request.request_digest(), req.attempt,
            tuple(sorted(signers)), sid,
        )
        details: dict[str, str | int | bool] = {
            "key_id": key_id.hex(), "attempt": grant.attempt, "signers": ",".join(map(str, grant.signers)),
            "session": sid.hex()[:16], "request_digest": grant.request_digest.hex(), "by": actor[:64],
            "request_sha256": grant.request_digest.hex(),  # the name every other entry of a request uses
        }
        requester = approved.bundle.request.requester
        entry = {  # checked before the transaction: which one is queued depends on the grant
            new: OutboxEntry(requester, "sign-reserve", rid, "granted" if new else "granted-again", details) for new in (True, False)
        }
        try:  # the grant and its sign-reserve entry: one transaction (the audit outbox)
            created = self.store.reserve_attempt(
                StoredReservation(rid, grant.attempt, key_id, grant.request_digest, grant.signers, sid, self.clock.now_ms()),
                audit=entry.__getitem__,
                # a revocation or attestation kept since the checks stops the grant too (mpc_node/in_force.py)
                # a ban counted since the checks (pending before its store write) stops it too
                in_force=InForce(
                    approved.scope, approved.policy.version, roster_version, still=lambda: check_bans(self, key_id, signers),
                    attestation=approved.attestation,
                ),
            )
        except ReservationConflict as e:
            raise refusal(Code.FAILED_PRECONDITION, "attempt-taken", f"{e} ({self.cfg.name})") from None
        except InForceChanged as e:  # nothing granted; audited by ReserveSigning as every refusal
            raise changed_refusal(e, self.cfg.name) from None
        except Banned as e:  # nothing granted; audited by ReserveSigning as every refusal
            raise self._grant_ban_refusal(key_id, e) from None
        self.outbox.notify()
        receipt = sign_reservation(grant, self.me, self.keys.identity)
        log.info("request %s: attempt %d reserved for nodes %s (session %s)", rid, grant.attempt, list(grant.signers), sid.hex()[:12],
                 extra={"event": "sign-reserved", "request_id": rid, "session_id": sid.hex()})
        return node_pb2.ReserveSigningResponse(receipt=receipt.to_bytes(), reserver=self.me, created=created)

    def _grant_ban_refusal(self, key_id: bytes, e: Banned) -> RpcError:
        """The refusal of a grant whose signer set holds a peer banned here for ``key_id`` (or
        whose key is fail-closed): FAILED_PRECONDITION naming ``signers`` (``key_id``), the banned
        signers in ``mpc-banned``. No ``mpc-governance`` kind: to the coordinator it is one node's
        missing receipt (a node's ban claim must not fail a request the others would grant)."""
        if not e.bad:
            return RpcError(
                Code.FAILED_PRECONDITION,
                f"key_id: {self.cfg.name} refuses every session of key {key_id.hex()[:16]}: a ban could not be recorded; "
                "no attempt is granted until the ban is durable",
            )
        return RpcError(
            Code.FAILED_PRECONDITION,
            f"signers: {self.node_name(e.bad[0])} is banned by {self.cfg.name} for key {key_id.hex()[:16]}; no attempt is granted to it",
            metadata=[("mpc-banned", ",".join(map(str, e.bad)))],
        )

    # --- presignature pools (issue 14): mpc_node.presign --------------------------------------
    def SignPresigned(self, req: node_pb2.SignPresignedRequest, ctx: Any) -> node_pb2.SignPresignedResponse:
        with self._store_guard():
            return self.pools.sign_presigned(req, ctx)

    def ListPresignatures(self, req: node_pb2.ListPresignaturesRequest, ctx: Any) -> node_pb2.ListPresignaturesResponse:
        with self._store_guard():
            return self.pools.list(req)

    def DiscardPresignatures(self, req: node_pb2.DiscardPresignaturesRequest, ctx: Any) -> node_pb2.DiscardPresignaturesResponse:
        with self._store_guard():
            return self.pools.discard(req, ctx)

    # --- FROST signing (issue 16): mpc_node.frost_sign ---------------------------------------
    def MakeNonces(self, req: node_pb2.MakeNoncesRequest, ctx: Any) -> node_pb2.MakeNoncesResponse:
        with self._store_guard():
            return self.nonces.make_nonces(req, ctx)

    def SignSchnorr(self, req: node_pb2.SignSchnorrRequest, ctx: Any) -> node_pb2.SignSchnorrResponse:
        with self._store_guard():
            return self.nonces.sign_schnorr(req, ctx)

    def DiscardNonces(self, req: node_pb2.DiscardNoncesRequest, ctx: Any) -> node_pb2.DiscardNoncesResponse:
        with self._store_guard():
            return self.nonces.discard(req, ctx)

    # --- keys --------------------------------------------------------------------------------
    def _row(self, key_id: bytes) -> Any:
        for r in self.store.list_keys():
            if r.key_id == key_id:
                return r
        return None

    def CommitKey(self, req: node_pb2.CommitKeyRequest, ctx: Any) -> node_pb2.CommitKeyResponse:
        key_id = check_len(req.key_id, "key_id", 32)
        if len(req.public_key) not in (32, 33):  # issue 16: 32 bytes for an ed25519 key
            raise invalid("public_key", f"must be 32 (ed25519) or 33 bytes, got {len(req.public_key)}")
        row = self._row(key_id)
        if row is None:
            raise RpcError(Code.NOT_FOUND, f"key_id: {self.cfg.name} holds no key {key_id.hex()}")
        if row.public_key != req.public_key:
            raise RpcError(Code.FAILED_PRECONDITION, f"public_key: differs from the key {self.cfg.name} generated")
        entry = OutboxEntry(_caller(ctx), "key-activate", "", "active", {"key_id": key_id.hex()})
        try:  # the activation and its key-activate entry: one transaction (the audit outbox)
            changed = self.store.activate_key(key_id, audit=entry)
        except KeyStateError:  # a DiscardKey won the race: the key is gone
            raise RpcError(
                Code.FAILED_PRECONDITION, f"key_id: key {key_id.hex()} was discarded on {self.cfg.name}; it cannot be activated"
            ) from None
        if changed:
            self.faults.at("key-activated")
            self.audit_queued("key-activate", "active")
            log.info("key %s: activated", key_id.hex()[:16])
            threading.Thread(target=self._any_key, args=(key_id,), name="load-key", daemon=True).start()
        return node_pb2.CommitKeyResponse(status=common_pb2.KEY_STATUS_ACTIVE)

    def DiscardKey(self, req: node_pb2.DiscardKeyRequest, ctx: Any) -> node_pb2.DiscardKeyResponse:
        key_id = check_len(req.key_id, "key_id", 32)
        row = self._row(key_id)
        if row is None:
            return node_pb2.DiscardKeyResponse(discarded=False)
        refused = f"key_id: key {key_id.hex()} is active on {self.cfg.name}; refusing to discard it"
        if row.status == "active":
            raise RpcError(Code.FAILED_PRECONDITION, refused)
        entry = OutboxEntry(_caller(ctx), "key-discard", "", "discarded", {"key_id": key_id.hex()})
        try:  # the deletion and its key-discard entry: one transaction (the audit outbox)
            done = self.store.discard_pending_key(key_id, audit=entry)
        except KeyStateError:  # a CommitKey won the race: the key is active now
            raise RpcError(Code.FAILED_PRECONDITION, refused) from None
        if done:
            self.faults.at("key-discarded")
            self.audit_queued("key-discard", "discarded")
            log.info("key %s: pending key discarded", key_id.hex()[:16])
        return node_pb2.DiscardKeyResponse(discarded=done)

    def ListKeys(self, req: node_pb2.NodeListKeysRequest, ctx: Any) -> node_pb2.NodeListKeysResponse:
        out = []
        epochs = self.store.key_epochs()
        for r in self.store.list_keys():
            status = common_pb2.KEY_STATUS_ACTIVE if r.status == "active" else common_pb2.KEY_STATUS_PENDING
            ep = epochs.get(r.key_id)
            if ep is not None and ep.status == "left":
                status = common_pb2.KEY_STATUS_DISCARDED  # this node left the committee and erased its share
            out.append(
                common_pb2.KeyInfo(
                    key_id=r.key_id, label=r.label, public_key=r.public_key, threshold=r.threshold,
                    parties=r.parties, status=status, created_unix_ms=r.created_at * 1000,
                    epoch=ep.epoch if ep is not None else 0, committee=ep.committee if ep is not None else range(1, r.parties + 1),
                    scheme=r.scheme,
                )
            )
        return node_pb2.NodeListKeysResponse(keys=out)


    # --- governance --------------------------------------------------------------------------
    def InstallPolicy(self, req: node_pb2.InstallPolicyRequest, ctx: Any) -> node_pb2.InstallPolicyResponse:
        installed, signed = self.gov.install(bytes(req.signed_change), actor=_caller(ctx))
        return node_pb2.InstallPolicyResponse(installed=installed, policy=policy_state(signed))

    def GetPolicies(self, req: node_pb2.GetPoliciesRequest, ctx: Any) -> node_pb2.GetPoliciesResponse:
        att = self.gov.attestation()
        return node_pb2.GetPoliciesResponse(
            governance_root=self.gov.governance_root, policies=[policy_state(p) for p in self.gov.policies()],
            policy_attestation=b"" if att is None else att.to_bytes(),
        )

    def InstallPolicyAttestation(
        self, req: node_pb2.InstallPolicyAttestationRequest, ctx: Any
    ) -> node_pb2.InstallPolicyAttestationResponse:
        stored, held_ms, status = self.gov.install_attestation(bytes(req.attestation), actor=_caller(ctx))
        return node_pb2.InstallPolicyAttestationResponse(stored=stored, held_issued_at_ms=held_ms, status=status)

    def GetAuditLog(self, req: governance_pb2.AuditLogRequest, ctx: Any) -> governance_pb2.AuditPage:
        return audit_page(self.audit, req.after_seq, req.limit)

    # --- key lifecycle (issue 11): epochs (mpc_node.epochs), roster, operational key rotation ------

    def CommitEpoch(self, req: node_pb2.CommitEpochRequest, ctx: Any) -> node_pb2.CommitEpochResponse:
        with self._store_guard():
            return self.epochs.commit(req, _caller(ctx), self._abort_key_sessions)

    def DiscardEpoch(self, req: node_pb2.DiscardEpochRequest, ctx: Any) -> node_pb2.DiscardEpochResponse:
        with self._store_guard():
            resp = self.epochs.discard(req, _caller(ctx))
        self._end_reshare_session(bytes(req.key_id), bytes(req.session_id))
        return resp

    def _end_reshare_session(self, key_id: bytes, sid: bytes) -> None:
        """A discarded session is over here: drop it if it is still live (a coordinator that
        restarted mid-session never aborts it, and it would refuse the retry of the operation
        as a second live session of the key until it timed out)."""
        with self._lock:
            s = self._sessions.get(sid)
            if s is None or s.kind != "reshare" or s.key_id != key_id:
                return
            del self._sessions[sid]
        log.info("session %s (reshare): discarded by the coordinator", s.short)

    def GetPendingEpoch(self, req: node_pb2.GetPendingEpochRequest, ctx: Any) -> node_pb2.PendingEpochInfo:
        with self._store_guard():
            return self.epochs.pending(req)

    def _abort_key_sessions(self, key_id: bytes, reason: str) -> int:
        """Abort every live signing session of ``key_id`` (its epoch changed)."""
        return self._abort_sessions(key_id, None, None, lambda o: self._abort_error(o, None, reason))

    def InstallRosterChange(self, req: node_pb2.InstallRosterChangeRequest, ctx: Any) -> node_pb2.InstallRosterChangeResponse:
        governance_blob(req.signed_change, "signed_change")
        with self._store_guard():
            installed, roster = self.roster_state.install(bytes(req.signed_change), actor=_caller(ctx))
        return node_pb2.InstallRosterChangeResponse(
            installed=installed, version=roster.version, keys_switched=roster.version in self.rotation.switched_versions
        )

    def GetRoster(self, req: node_pb2.GetRosterRequest, ctx: Any) -> node_pb2.RosterHistory:
        return node_pb2.RosterHistory(signed_changes=list(self.roster_state.history()), governance_root=self.gov.governance_root)

    def PrepareKeyRotation(self, req: node_pb2.PrepareKeyRotationRequest, ctx: Any) -> node_pb2.PrepareKeyRotationResponse:
        with self._store_guard():
            p = self.rotation.prepare(_caller(ctx), admin=_caller_role(ctx) == "admin")
        return node_pb2.PrepareKeyRotationResponse(
            identity_public=p.identity_public, encryption_public=p.encryption_public, tls_csr_pem=p.tls_csr_pem, proof=p.proof
        )

    def InstallStagedCertificate(
        self, req: node_pb2.InstallStagedCertificateRequest, ctx: Any
    ) -> node_pb2.InstallStagedCertificateResponse:
        with self._store_guard():
            fingerprint = self.rotation.install_certificate(bytes(req.certificate_pem), _caller(ctx))
        return node_pb2.InstallStagedCertificateResponse(tls_fingerprint=fingerprint)

    # --- backup and recovery (issue 12): mpc_node.backups ----------------------------------------

    def InstallRecoveryConfig(
        self, req: node_pb2.InstallRecoveryConfigRequest, ctx: Any
    ) -> node_pb2.InstallRecoveryConfigResponse:
        with self._store_guard():
            return self.backups.install_config(req, _caller(ctx))

    def GetBackupPart(self, req: node_pb2.GetBackupPartRequest, ctx: Any) -> node_pb2.GetBackupPartResponse:
        with self._store_guard():
            return self.backups.backup_part(req, _caller(ctx))

    def InstallRecoveryOrder(self, req: node_pb2.InstallRecoveryOrderRequest, ctx: Any) -> node_pb2.InstallRecoveryOrderResponse:
        with self._store_guard():
            return self.backups.install_order(req, _caller(ctx))

    def RestoreShare(self, req: node_pb2.RestoreShareRequest, ctx: Any) -> node_pb2.RestoreShareResponse:
        with self._store_guard():
            return self.backups.restore(req, _caller(ctx))

    def DrillShare(self, req: node_pb2.DrillShareRequest, ctx: Any) -> node_pb2.DrillShareResponse:
        with self._store_guard():
            return self.backups.drill(req, _caller(ctx))

    def AttestEpoch(self, req: node_pb2.AttestEpochRequest, ctx: Any) -> node_pb2.AttestEpochResponse:
        with self._store_guard():
            return self.backups.attest_epoch(req, _caller(ctx))


def _short(e: BaseException) -> str:
    """An exception's text on one line, at most 300 characters (for errors, logs and audit)."""
    return " ".join(str(e).split())[:300]


def _caller(ctx: Any) -> str:
    ident = caller_identity(ctx) if ctx is not None else None
    return ident.name if ident is not None else "unknown"


def _caller_role(ctx: Any) -> str:
    """The caller certificate's role ("" without one)."""
    ident = caller_identity(ctx) if ctx is not None else None
    return ident.role if ident is not None else ""


def _indices(peers: dict[int, Any]) -> str:
    return ",".join(map(str, sorted(peers)))


def _path_text(path: tuple[int, ...]) -> str:
    return "m" + "".join(f"/{i}" for i in path)


def _inbox_digest(req: node_pb2.StepRequest) -> bytes:
    h = hashlib.sha256()
    for e in sorted(req.envelopes, key=lambda e: (e.sender, e.receiver, e.signature)):
        h.update(e.SerializeToString(deterministic=True))
    return h.digest()


def new_session_id() -> bytes:
    return os.urandom(SESSION_ID_LEN)
