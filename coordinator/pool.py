"""Presignature pools on the coordinator (issue 14): the refiller and the choice of a
presignature for a request.

A *pool* is the ready presignatures of one (key, epoch, derivation path, signer set); a
presignature is on all t signers of its set (fresh, sealed in their stores) and in the
coordinator's ``presigs`` table (:mod:`coordinator.pool_store`, public parts only).

* The refiller (a background thread) keeps, per active key at its current epoch, per path of
  the config and per preferred signer set (at most :data:`SETS_PER_KEY`: healthy, undisputed,
  clock-trusted, least loaded first), ``ready + filling`` between ``refill_at`` and ``target``
  and ``ready + assigned + filling`` at most ``cap``. It runs at most ``max_parallel`` presign
  sessions at once, in session slots kept for it (:mod:`coordinator.session_slots`: signing with
  the full protocol holds at most ``max_parallel_sessions - max_parallel`` slots), taking a slot
  without waiting. It yields while requests are being signed (a burst from full pools is not slowed
  by refilling) unless a request found its pools empty in the last :data:`WANTED_S` (then a
  sustained load keeps its pools filled, and such a request waits for the batch being made:
  :meth:`PresignPools.wait_for_fill`).
* A presign session is StartSession(presign = PresignParams) then the three rounds of a signing
  session (:func:`coordinator.relay.run_session`, no receipts). All t answers must list the same
  presignatures (id, R, PK', key, epoch, path, signers, in order), PK' must be the coordinator's
  own derivation of the key and path; otherwise the batch is discarded on every signer.
* Housekeeping, each pass: assigned presignatures of requests that ended without them (e.g.
  expired while the coordinator was down: they would hold a place under ``cap`` for ever); ready
  presignatures of a key that is no longer active, of another
  epoch than the key's current one (refresh/reshare), of a signer set holding a node that left
  the roster or the committee, or a disputed pair (a ban claim) are discarded. Each node is
  reconciled (ListPresignatures) when it is first seen serving and after it was down: a ready
  presignature it does not list is discarded (a node deletes its fresh ones at start), and a
  fresh one that is not ready or assigned here is discarded on the node (an interrupted session,
  a discard the node missed).
* The choice at signing (:meth:`PresignPools.signing_sets`): signer sets of usable nodes only
  (healthy, active, in the committee), preferring undisputed, clock-trusted, least loaded ones.

Nothing here decides what may be signed: every online signature needs the approved request,
re-checked by each signer (``SignPresigned``).
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc

from coordinator.db import CoordinatorDb, KeyRecord, now_ms
from coordinator.pool_config import PresignConfig
from coordinator.pool_store import PRESIG_ID_LEN, PoolKey, PresigRow
from coordinator.relay import Aborted, NodeHandle, NodesUnavailable, Refused, fanout, run_session
from coordinator.store_failure import log_failure
from crypto_core.bip32 import derive
from crypto_core.errors import DecodeError
from crypto_core.group import Point
from mpcnet.common.metrics import Metrics, NullMetrics
from mpcnet.common.rpc import status_of
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

log = logging.getLogger("coordinator.pool")

SETS_PER_KEY = 2  # signer sets kept filled per key and path (the preferred first)
MAX_SETS_CONSIDERED = 256  # t-subsets looked at per choice
PRESIGN_LAST_ROUND = 3
RECONCILE_EVERY_S = 60.0  # a serving node is reconciled at least this often
BACKOFF_S = 5.0  # a pool whose presign session failed waits this long before the next
FILL_GRACE_S = 0.1  # a request waiting for a batch gives the refiller this long to start its session
WANTED_S = 1.0  # after a request found its pools empty, the refiller runs this long even while requests sign
LOOP_S = 0.25  # the refiller's pace (a backstop: the end of a presign session and an empty pool wake it)
MAX_LISTED = 4096  # a node's listed presignatures looked up (and discarded as orphans) per reconcile
HOUSEKEEPING_S = 1.0  # housekeeping and the gauges, at most this often (the choice filters by epoch anyway)
# reasons (metric label values, audit-free): a fixed set
DISCARD_REASONS = ("mismatch", "duplicate", "epoch", "retired", "roster", "ban", "reconcile", "failed", "ended")
FALLBACK_REASONS = (
    "empty", "stale", "unreserved", "unavailable", "bad-share", "presig-unknown", "presig-used", "presig-mismatch",
    "epoch", "mpc-banned", "refused",
)


@dataclass(frozen=True)
class PoolDeps:
    """What the pools need of the service: the database, the nodes (a live mapping, read at each
    use), the key's (epoch, committee, excluded nodes) (:meth:`coordinator.keyops.KeyOperations.signing`),
    whether signing requests are running now, the session slots shared with signing, the
    per-RPC timeout (s), and what foreground operations hold (``stand_aside``)."""

    db: CoordinatorDb
    nodes: Callable[[], Mapping[int, NodeHandle]]
    signing: Callable[[KeyRecord], tuple[int, tuple[int, ...], set[int]]]
    busy: Callable[[], bool]
    sessions: threading.BoundedSemaphore
    step_timeout_s: float
    # (keys, nodes) that foreground operations hold or are about to (coordinator.foreground): no new
    # presign session for such a key or on such a node, no reconcile of such a node, until they end
    stand_aside: Callable[[], tuple[frozenset[bytes], frozenset[int]]] = lambda: (frozenset(), frozenset())
    # a node a background call found unreachable (UNAVAILABLE): have it probed now, not judged here (coordinator/probe_now.py)
    unreachable: Callable[[int], object] = lambda i: None


def usable(h: NodeHandle) -> bool:
    return h.healthy is True


class PresignPools:
    """The coordinator's presignature pools (module docstring). Thread-safe."""

    def __init__(self, cfg: PresignConfig, deps: PoolDeps, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.deps = deps
        self.metrics: Metrics = metrics or NullMetrics("coordinator")
        self._lock = threading.Lock()
        self._filling: dict[PoolKey, int] = {}  # presignatures in presign sessions now
        self._topping: set[PoolKey] = set()  # pools that fell to refill_at, filled until they reach target
        self._backoff: dict[PoolKey, float] = {}  # pool -> monotonic time before which it is not refilled
        self._disputes: dict[bytes, set[frozenset[int]]] = {}  # key -> pairs never put in one pool set
        self._strikes: dict[tuple[bytes, int], int] = {}  # (key, node) -> presignatures it disowned since its last pool signature
        self._used: dict[PoolKey, int] = {}
        self._discarded: dict[PoolKey, int] = {}
        self._reconciled: dict[int, float] = {}  # node -> monotonic time of its last reconcile
        self._slots = threading.BoundedSemaphore(cfg.max_parallel)
        self._inflight = 0
        self._stop = threading.Event()
        self._wake = threading.Event()  # a session ended or a request found its pools empty: a pass now
        self._sessions_changed = threading.Condition(self._lock)  # a presign session started or ended
        self._ended = 0  # presign sessions ended (their batch ready, or failed)
        self._wanted_until = 0.0  # monotonic: until then a request is short of presignatures (refill while signing)
        self._thread: threading.Thread | None = None
        self._kept = -1e18  # monotonic time of the last housekeeping

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the refiller thread; with pools off, reconcile every serving node once instead
        (the ready presignatures left from before that no node holds any more are discarded, so
        status and ``presignatures_ready`` do not show pools that no longer exist)."""
        if self._thread is not None:
            return
        if not self.cfg.enabled:
            self._set_gauges()  # exported with a sample (no never-set gauge), as the refiller's first pass does
            self._thread = threading.Thread(target=self._reconcile_once, name="presign-reconcile", daemon=True)
            self._thread.start()
            return
        self._thread = threading.Thread(target=self._run, name="presign-refill", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """A pass now (e.g. a foreground operation ended: the pools it stood aside for refill)."""
        self._wake.set()

    def _reconcile_once(self) -> None:
        if not self.deps.db.ready_presigs():
            return
        try:
            self.reconcile_due()
            self._set_gauges()
        except Exception as e:
            if not self._stop.is_set():
                log_failure(log, e, "reconciling the pools left from before failed", self.deps.db.health.saw)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as e:
                if self._stop.is_set():
                    return
                log_failure(log, e, "presignature refill failed", self.deps.db.health.saw)
            self._wake.wait(LOOP_S)
            self._wake.clear()

    def step(self) -> None:
        """One pass: housekeeping (every :data:`HOUSEKEEPING_S`), reconcile, then start the
        presign sessions that are due."""
        if time.monotonic() - self._kept >= HOUSEKEEPING_S:
            self.housekeeping()
            self._set_gauges()
            self._kept = time.monotonic()
        self.reconcile_due()
        if self.deps.busy() and time.monotonic() >= self._wanted_until:
            return
        for key, pool, count in self.due():
            if not self._slots.acquire(blocking=False):
                return
            if not self.deps.sessions.acquire(blocking=False):  # signing holds every slot: it wins
                self._slots.release()
                return
            with self._lock:
                self._filling[pool] = self._filling.get(pool, 0) + count
                self._inflight += 1
                self._sessions_changed.notify_all()
            threading.Thread(target=self._fill, args=(key, pool, count), name="presign-session", daemon=True).start()

    # --- choice --------------------------------------------------------------------------------
    def _ranked_sets(
        self, key_id: bytes, t: int, committee: Sequence[int], outside: set[int], by_load: bool = True
    ) -> list[tuple[int, ...]]:
        """t-subsets of the committee's usable nodes, the preferred first: undisputed, clock
        trusted, least loaded (the sum of in-flight sessions; not ``by_load``: ignored, so the
        refiller's choice does not move with every session), then by index."""
        nodes = self.deps.nodes()
        cands = sorted(i for i in committee if i in nodes and i not in outside and usable(nodes[i]))
        if len(cands) < t:
            return []
        disputes = self.disputes(key_id)
        scored = []
        for combo in itertools.islice(itertools.combinations(cands, t), MAX_SETS_CONSIDERED):
            chosen = frozenset(combo)
            scored.append((
                any(d <= chosen for d in disputes), sum(1 for i in combo if nodes[i].clock_suspect),
                sum(nodes[i].inflight for i in combo) if by_load else 0, combo,
            ))
        scored.sort()
        return [s[-1] for s in scored]

    def signing_sets(self, k: KeyRecord, committee: Sequence[int], outside: set[int]) -> list[tuple[int, ...]]:
        """Signer sets a request may take a presignature of, in order of preference (every node
        healthy, active, in the key's committee and not switching epochs)."""
        return self._ranked_sets(k.key_id, k.threshold, committee, outside)

    def wait_for_fill(self, key_id: bytes, epoch: int, path: tuple[int, ...], timeout_s: float) -> bool:
        """A request found no ready presignature of (key, epoch, path): wake the refiller and wait,
        at most ``timeout_s`` seconds, until a presign session of such a pool (any signer set)
        ends. True: one ended (its batch may be ready: try to assign again); False: none is
        filling (after :data:`FILL_GRACE_S` for the refiller to start one), the time is up, or the
        refiller is not running. Under a sustained load this turns requests that would fall back
        to the full protocol (about twice the CPU) into one-round signatures from the next batch."""
        if self._thread is None or self._stop.is_set():
            return False
        self._wanted()
        now = time.monotonic()
        deadline, grace = now + timeout_s, now + min(FILL_GRACE_S, timeout_s)
        with self._sessions_changed:
            ended = self._ended
            while self._ended == ended:
                filling = any(p[0] == key_id and p[1] == epoch and p[2] == path for p in self._filling)
                now = time.monotonic()
                if now >= (deadline if filling else grace):
                    return False
                self._sessions_changed.wait((deadline if filling else grace) - now)
            return True

    # --- refill --------------------------------------------------------------------------------
    def due(self) -> list[tuple[KeyRecord, PoolKey, int]]:
        """The presign sessions to start now: (key, pool, count), the emptiest pool first."""
        counts = self.deps.db.pool_counts()
        out: list[tuple[int, KeyRecord, PoolKey, int]] = []
        seen: set[PoolKey] = set()
        now = time.monotonic()
        held_keys, held_nodes = self.deps.stand_aside()
        for k in self.deps.db.list_keys("active"):
            if k.scheme != "ecdsa-secp256k1":  # issue 16: FROST keys have no presignatures (coordinator/frost_sign.py)
                continue
            if k.key_id in held_keys:  # a key operation of this key is recorded or running: its epoch may end
                continue
            epoch, committee, outside = self.deps.signing(k)
            if any(i in committee for i in outside):  # a refresh or reshare is committing: its epoch ends
                continue
            sets = [s for s in self._ranked_sets(k.key_id, k.threshold, committee, outside, by_load=False)
                    if not any(d <= frozenset(s) for d in self.disputes(k.key_id))][:SETS_PER_KEY]
            for path in self.cfg.paths:
                for s in sets:
                    pool = (k.key_id, epoch, path, s)
                    seen.add(pool)
                    if held_nodes.intersection(s):  # a foreground operation needs one of its nodes: later
                        continue
                    c = counts.get(pool, {})
                    ready, assigned = c.get("ready", 0), c.get("assigned", 0)
                    with self._lock:
                        filling = self._filling.get(pool, 0)
                        if self._backoff.get(pool, 0.0) > now:
                            continue
                        if ready + filling <= self.cfg.refill_at:  # fallen to refill_at: top up to target
                            self._topping.add(pool)
                        elif ready + filling >= self.cfg.target:
                            self._topping.discard(pool)
                        if pool not in self._topping:
                            continue
                    count = min(self.cfg.batch, self.cfg.target - ready - filling, self.cfg.cap - ready - assigned - filling)
                    if count > 0:
                        out.append((ready + filling, k, pool, count))
        with self._lock:  # a pool no longer kept (epoch, set, path) is forgotten; a held key's resume where they were
            self._topping = {p for p in self._topping if p in seen or p[0] in held_keys}
        out.sort(key=lambda x: x[0])
        return [(k, pool, count) for _, k, pool, count in out]

    def _fill(self, k: KeyRecord, pool: PoolKey, count: int) -> None:
        try:
            self.run_presign(k, pool, count)
        except Exception as e:
            if self._stop.is_set():  # the coordinator is stopping: its node channels close under the session
                log.info("presign session for key %s ended by the coordinator's stop (%s)", k.key_id.hex()[:16],
                         type(e).__name__)
            else:
                log_failure(log, e, f"presign session for key {k.key_id.hex()[:16]} failed unexpectedly", self.deps.db.health.saw)
        finally:
            with self._lock:
                self._filling[pool] = max(0, self._filling.get(pool, 0) - count)
                if not self._filling[pool]:
                    del self._filling[pool]
                self._inflight -= 1
                self._ended += 1
                self._sessions_changed.notify_all()
            self.deps.sessions.release()
            self._slots.release()
            self._wake.set()  # the next due pool starts now, not at the next LOOP_S tick

    def run_presign(self, k: KeyRecord, pool: PoolKey, count: int) -> int:
        """Run one presign session for ``pool`` making ``count`` presignatures; returns how many
        became ready (0 on any failure: the pool backs off :data:`BACKOFF_S`)."""
        key_id, epoch, path, signers = pool
        nodes = self.deps.nodes()
        if any(i not in nodes for i in signers):
            return 0
        sid = os.urandom(32)
        params = node_pb2.PresignParams(key_id=key_id, signers=signers, derivation_path=path, epoch=epoch, count=count)
        start = node_pb2.StartSessionRequest(session_id=sid, presign=params)
        subset = {i: nodes[i] for i in signers}
        try:
            # background work never judges a node's health (a busy node answering late is not down): the probe does
            final = run_session(subset, sid, {i: start for i in signers}, self.deps.step_timeout_s, last_round=PRESIGN_LAST_ROUND,
                                judge=False)
        except (Aborted, NodesUnavailable, Refused) as e:
            if isinstance(e, NodesUnavailable):
                for i in e.unreachable:  # gone, not merely slow: the probe judges it now, not at its next pass
                    self.deps.unreachable(i)
            self._failed(pool, e)
            return 0
        expected = derive(Point.decode(k.public_key), k.chain_code, path).public_key.encode()
        try:
            rows = agreed_batch(final, pool, count, expected)
        except ValueError as e:
            log.warning("presign session for key %s with nodes %s: %s; discarding the batch", key_id.hex()[:16], list(signers), e)
            if isinstance(e, BatchMismatch):  # never pool the culprit (or the pair that disagreed) again
                self.dispute(key_id, {e.blamed} if e.blamed else set())
            self._discard_on_nodes(subset, key_id, _reported_ids(final), "mismatch")
            self._count_discarded(pool, len(_reported_ids(final)) or count, "mismatch")
            self._back_off(pool)
            return 0
        try:
            self.deps.db.add_ready_presigs(rows, now_ms())
        except sqlite3.IntegrityError:  # a presig_id seen before: never offered again
            log.warning("presign session for key %s returned a presignature id seen before; discarding the batch", key_id.hex()[:16])
            self._discard_on_nodes(subset, key_id, [r.presig_id for r in rows], "duplicate")
            self._count_discarded(pool, len(rows), "duplicate")
            self._back_off(pool)
            return 0
        self._set_gauges()
        log.debug("pool %s/%s %s: %d presignatures ready", key_id.hex()[:16], list(path), list(signers), len(rows))
        return len(rows)

    def _failed(self, pool: PoolKey, e: Exception) -> None:
        key_id, _, _, signers = pool
        if isinstance(e, Refused) and e.banned and e.node is not None:
            self.dispute(key_id, {frozenset({e.node, b}) for b in e.banned})
        log.warning("presign session for key %s with nodes %s failed: %s", key_id.hex()[:16], list(signers), e)
        self._back_off(pool)

    def _back_off(self, pool: PoolKey) -> None:
        with self._lock:
            self._backoff[pool] = time.monotonic() + BACKOFF_S

    # --- discarding ----------------------------------------------------------------------------
    def dispute(self, key_id: bytes, pairs: set[frozenset[int]]) -> None:
        """Nodes that refused each other for ``key_id`` (a ban claim), answers of a presign
        session that disagree (the pair), or a node whose own answer or share is provably bad
        (a set of one): no pool's signer set holds such a set again (ready ones are discarded at
        the next housekeeping); the coordinator's memory, for as long as it runs."""
        if not pairs:
            return
        with self._lock:
            self._disputes.setdefault(key_id, set()).update(pairs)

    def strike(self, key_id: bytes, node: int, held: set[int], limit: int) -> None:
        """Node ``node`` disowned a presignature of ``key_id`` that its co-signers ``held``
        consumed; from the ``limit``-th time with no pool signature by it in between
        (:meth:`forgive`) it is disputed with each of them (:meth:`dispute`: its word against
        theirs, as a ban claim), so a node that keeps doing it ends up in no pool."""
        with self._lock:
            n = self._strikes[(key_id, node)] = self._strikes.get((key_id, node), 0) + 1
        if n >= limit:
            log.warning("node %d disowned %d presignatures of key %s that nodes %s held; no pool pairs them again",
                        node, n, key_id.hex()[:16], sorted(held))
            self.dispute(key_id, {frozenset({node, j}) for j in held})

    def forgive(self, key_id: bytes, nodes: Sequence[int]) -> None:
        """``nodes`` signed from a pool of ``key_id``: their strikes are cleared."""
        with self._lock:
            for i in nodes:
                self._strikes.pop((key_id, i), None)

    def disputes(self, key_id: bytes) -> frozenset[frozenset[int]]:
        """The pairs of nodes never put in one pool's signer set for ``key_id`` (a copy)."""
        with self._lock:
            return frozenset(self._disputes.get(key_id, ()))

    def discard(self, rows: Sequence[PresigRow], reason: str, state: str = "ready") -> int:
        """Discard those of ``rows`` still in ``state`` (``ready``: one a request took meanwhile
        is left to it; ``assigned``: a request's own) on the coordinator and then, best effort,
        on their signers; returns how many were discarded."""
        done = set(self.deps.db.discard_presigs_in([r.presig_id for r in rows], reason, now_ms(), (state,)))
        nodes = self.deps.nodes()
        by_key: dict[tuple[bytes, tuple[int, ...]], list[bytes]] = {}
        for r in rows:
            if r.presig_id not in done:
                continue
            by_key.setdefault((r.key_id, r.signers), []).append(r.presig_id)
            self._count_discarded(r.pool, 1, reason)
        for (key_id, signers), ids in by_key.items():  # a node known down is reconciled when it is back (no wait on it)
            self._discard_on_nodes({i: nodes[i] for i in signers if i in nodes and nodes[i].healthy is not False}, key_id, ids, reason)
        self._set_gauges()
        return len(done)

    def _discard_on_nodes(self, nodes: Mapping[int, NodeHandle], key_id: bytes, ids: Sequence[bytes], reason: str) -> None:
        ids = [p for p in ids if len(p) == PRESIG_ID_LEN]
        if not ids or not nodes:
            return
        req = node_pb2.DiscardPresignaturesRequest(key_id=key_id, presig_ids=ids, reason=reason)
        _, errs = fanout({i: (h.stub.DiscardPresignatures, req) for i, h in nodes.items()}, min(5.0, self.deps.step_timeout_s))
        for i, e in errs.items():  # the node deletes its fresh ones at its next start anyway
            code = e.code() if hasattr(e, "code") else None
            log.info("discarding %d presignature(s) on node %d failed (%s)", len(ids), i, getattr(code, "name", code))

    def housekeeping(self) -> int:
        """Discard the ready presignatures no request may take any more (module docstring);
        returns how many."""
        nodes = self.deps.nodes()
        keys = {k.key_id: k for k in self.deps.db.list_keys()}
        stale: dict[str, list[PresigRow]] = {}
        state: dict[bytes, tuple[int, tuple[int, ...], set[int]]] = {}
        for r in self.deps.db.ready_presigs():
            k = keys.get(r.key_id)
            if k is None or k.status != "active":
                stale.setdefault("retired", []).append(r)
                continue
            if r.key_id not in state:
                state[r.key_id] = self.deps.signing(k)
            epoch, committee, _ = state[r.key_id]
            if r.epoch != epoch:
                stale.setdefault("epoch", []).append(r)
            elif any(i not in nodes or i not in committee for i in r.signers):
                stale.setdefault("roster", []).append(r)
            elif any(d <= frozenset(r.signers) for d in self.disputes(r.key_id)):
                stale.setdefault("ban", []).append(r)
        ended = self.deps.db.presigs_of_ended_requests()  # e.g. expired while the coordinator was down
        if ended:
            stale["ended"] = ended
        n = 0
        for reason, rows in stale.items():
            n += self.discard(rows, reason, "assigned" if reason == "ended" else "ready")
        return n

    def reconcile_due(self) -> None:
        """Reconcile every serving node not reconciled since it (re)started serving or for
        :data:`RECONCILE_EVERY_S`; a node seen down is reconciled again when it is back."""
        now = time.monotonic()
        due = []
        for i, h in self.deps.nodes().items():
            if not usable(h):
                self._reconciled.pop(i, None)
            elif now - self._reconciled.get(i, -1e18) >= RECONCILE_EVERY_S:
                due.append(h)
        if due:  # a node a foreground operation holds is reconciled after it (read only when one is due)
            held = self.deps.stand_aside()[1]
            due = [h for h in due if h.index not in held]
        for h in due:
            if self.reconcile(h):
                self._reconciled[h.index] = now

    def reconcile_soon(self, index: int) -> None:
        """Reconcile node ``index`` at the next refill pass (it answered presig-unknown)."""
        self._reconciled.pop(index, None)

    def reconcile(self, h: NodeHandle) -> bool:
        """Compare node ``h``'s fresh presignatures with the coordinator's ready ones: a ready
        one of ``h``'s pools it does not hold is discarded; one it holds that is not ready or
        assigned here (never accepted, or discarded while the node was unreachable) is discarded
        on the node (only while no presign session runs, so a session finishing now is never
        taken for an orphan). False if ``h`` did not answer."""
        with self._lock:
            quiet = self._inflight == 0
        # read before the listing: a batch stored while the node answers is not taken for lost
        ready = [r for r in self.deps.db.ready_presigs() if h.index in r.signers]
        try:
            resp = h.stub.ListPresignatures(node_pb2.ListPresignaturesRequest(), timeout=min(5.0, self.deps.step_timeout_s))
        except grpc.RpcError as e:
            code, _ = status_of(e)
            log.info("%s: cannot list its presignatures (%s)", h.label, code.name)
            if code == grpc.StatusCode.UNAVAILABLE:
                self.deps.unreachable(h.index)
            return False
        held = {bytes(p.presig_id) for p in resp.presignatures}
        listed = list(resp.presignatures)[:MAX_LISTED]  # a corrupted node's flood costs no more (the rest: next time)
        if len(resp.presignatures) > MAX_LISTED:
            log.warning("%s listed %d presignatures; reconciling the first %d", h.label, len(resp.presignatures), MAX_LISTED)
        gone = [r for r in ready if r.presig_id not in held]
        if gone:
            log.info("%s no longer holds %d ready presignature(s) (restarted?): discarding them", h.label, len(gone))
            self.discard(gone, "reconcile")
        if quiet:
            with self._lock:
                quiet = self._inflight == 0
        if quiet:
            known = self.deps.db.presigs_live(list(dict.fromkeys(bytes(p.presig_id) for p in listed)))
            orphans: dict[bytes, list[bytes]] = {}
            for p in listed:
                if bytes(p.presig_id) not in known and len(p.key_id) == 32:
                    orphans.setdefault(bytes(p.key_id), []).append(bytes(p.presig_id))
            for key_id, ids in orphans.items():
                self._discard_on_nodes({h.index: h}, key_id, ids, "reconcile")
        return True

    # --- counting and status -------------------------------------------------------------------
    def used(self, row: PresigRow) -> None:
        """Count one presignature signed with (called inside the request's DONE transaction:
        memory only, never the database; the gauges follow at the next refill pass)."""
        with self._lock:
            self._used[row.pool] = self._used.get(row.pool, 0) + 1
        self.metrics.presigs_used_total.inc()

    def fallback(self, reason: str) -> None:
        """Count one request that signed with the full protocol instead (``reason`` from
        :data:`FALLBACK_REASONS`)."""
        self.metrics.presign_fallbacks_total.labels(reason=reason if reason in FALLBACK_REASONS else "refused").inc()
        if reason == "empty":
            self._wanted()

    def _wanted(self) -> None:
        """A request is short of presignatures: refill even while requests are signing, for
        :data:`WANTED_S` (the refiller has session slots of its own, :mod:`coordinator.session_slots`)."""
        self._wanted_until = time.monotonic() + WANTED_S
        self._wake.set()

    def _count_discarded(self, pool: PoolKey, n: int, reason: str) -> None:
        with self._lock:
            self._discarded[pool] = self._discarded.get(pool, 0) + n
        self.metrics.presigs_discarded_total.labels(reason=reason if reason in DISCARD_REASONS else "failed").inc(n)

    def _set_gauges(self) -> None:
        if not self.metrics.enabled:
            return
        totals = {"ready": 0, "assigned": 0}
        for c in self.deps.db.pool_counts().values():
            for s in totals:
                totals[s] += c.get(s, 0)
        for s, v in totals.items():
            self.metrics.presigs_pooled.labels(state=s).set(v)

    def status(self, resp: coordinator_pb2.ClusterStatusResponse) -> None:
        """Fill ``resp.presign_enabled`` and ``resp.pools`` (every pool with a ready, assigned or
        filling presignature, or counted since start; an empty pool of an epoch older than the
        newest listed for its key is left out: its key moved on, it is never refilled)."""
        resp.presign_enabled = self.cfg.enabled
        counts = self.deps.db.pool_counts()
        with self._lock:
            pools = set(counts) | set(self._filling) | set(self._used) | set(self._discarded)
            filling, used, discarded = dict(self._filling), dict(self._used), dict(self._discarded)
        newest: dict[bytes, int] = {}
        for key_id, epoch, _, _ in pools:
            newest[key_id] = max(newest.get(key_id, epoch), epoch)
        for pool in sorted(pools):
            key_id, epoch, path, signers = pool
            c = counts.get(pool, {})
            if epoch < newest[key_id] and not (c.get("ready") or c.get("assigned") or filling.get(pool)):
                continue
            resp.pools.append(coordinator_pb2.PoolStatus(
                key_id=key_id, epoch=epoch, derivation_path=path, signers=signers, ready=c.get("ready", 0),
                assigned=c.get("assigned", 0), filling=filling.get(pool, 0), target=self.cfg.target,
                refill_at=self.cfg.refill_at, cap=self.cfg.cap, used_total=used.get(pool, 0),
                discarded_total=discarded.get(pool, 0),
            ))


def _reported_ids(final: Mapping[int, node_pb2.StepResponse]) -> list[bytes]:
    ids: dict[bytes, None] = {}
    for r in final.values():
        for p in r.presign_result.presignatures:
            ids[bytes(p.presig_id)] = None
    return list(ids)


class BatchMismatch(ValueError):
    """A presign session's answers that cannot all be right. ``blamed``: one node whose own
    answer is wrong (it alone is at fault), the pair of two answers that disagree (one of the
    two lied), or empty (nobody can be named)."""

    def __init__(self, message: str, blamed: frozenset[int] = frozenset()) -> None:
        super().__init__(message)
        self.blamed = blamed


def agreed_batch(final: Mapping[int, node_pb2.StepResponse], pool: PoolKey, count: int, expected_pk: bytes) -> list[PresigRow]:
    """The presignatures every signer of ``pool`` reported for a presign session of ``count``:
    each answer must list exactly ``count`` of them, in the same order, with 32-byte distinct
    ids, a valid 33-byte R, PK' equal to ``expected_pk`` (the coordinator's own derivation) and
    the pool's key, epoch, path and signer set. :class:`BatchMismatch` (a ValueError) naming
    what differs and whom it blames."""
    key_id, epoch, path, signers = pool
    if set(final) != set(signers):
        raise BatchMismatch(f"answers from nodes {sorted(final)}, expected {list(signers)}")
    lists: dict[int, list[tuple[bytes, bytes, bytes]]] = {}
    for i in signers:
        r = final[i]
        own = frozenset({i})
        if not r.HasField("presign_result"):
            raise BatchMismatch(f"node {i} returned no presign result", own)
        items = []
        for p in r.presign_result.presignatures:
            if len(p.presig_id) != PRESIG_ID_LEN:
                raise BatchMismatch(f"node {i}: presig_id: must be {PRESIG_ID_LEN} bytes", own)
            if (bytes(p.key_id), p.epoch, tuple(p.derivation_path), tuple(p.signers)) != (key_id, epoch, path, signers):
                raise BatchMismatch(f"node {i}: a presignature names another key, epoch, path or signer set", own)
            if bytes(p.public_key) != expected_pk:
                raise BatchMismatch(f"node {i}: public_key: not the key's derived public key", own)
            try:
                if Point.decode(bytes(p.big_r)).is_infinity or len(p.big_r) != 33:
                    raise BatchMismatch(f"node {i}: big_r: the point at infinity", own)
            except DecodeError:
                raise BatchMismatch(f"node {i}: big_r: not a compressed point", own) from None
            items.append((bytes(p.presig_id), bytes(p.big_r), bytes(p.public_key)))
        if len(items) != count:
            raise BatchMismatch(f"node {i} returned {len(items)} presignatures, expected {count}", own)
        lists[i] = items
    first = lists[signers[0]]
    for i in signers[1:]:
        if lists[i] != first:
            raise BatchMismatch(f"nodes {signers[0]} and {i} disagree on the presignatures", frozenset({signers[0], i}))
    if len({p for p, _, _ in first}) != len(first):
        raise ValueError("a presignature id is repeated")
    return [PresigRow(p, key_id, epoch, path, signers, big_r, pk) for p, big_r, pk in first]
