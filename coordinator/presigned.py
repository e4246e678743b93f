"""One-round signing from a pool presignature (issue 14): the step the coordinator tries first
when a request reaches its quorum (:meth:`coordinator.service.CoordinatorService._sign`).

1. The request's assignment: after a restart, the presignature already assigned to it (the same
   (request, attempt, presig_id) is sent again: a signer that consumed it answers its stored
   share, ``replayed``); otherwise a ready one of the key's current epoch and the request's path,
   from the preferred signer set whose nodes are all usable (:meth:`coordinator.pool.PresignPools.signing_sets`),
   assigned together with the request's next attempt number in one transaction
   (:meth:`coordinator.pool_store.PoolStore.assign_presig`). None ready: while a presign session
   of such a pool runs, the request waits for its batch (at most :data:`FILL_WAIT_S`,
   :meth:`coordinator.pool.PresignPools.wait_for_fill`); else the full protocol.
2. When ``t < reservation_quorum(n)`` the attempt is first reserved on the nodes
   (``ReserveSigning``, session = presig_id) and the receipts go with the request.
3. ``SignPresigned`` to the t signers in parallel; a signer that failed transiently is asked
   once more with the same (request, attempt, presig_id) (it replays if it consumed).
4. Every share must be a re-randomised (version 2) share of this presignature (sigid, R) and
   digest; :func:`crypto_core.combiner.combine` with the request's derivation path under the
   coordinator's own PK' (never taken from the shares or the nodes) and verifies it.

Any refusal (``presig-*``, ``epoch``, a governance kind), a node still failing after the retry,
or a share that does not combine: the presignature is discarded (here and on its signers) and
the caller signs with the full protocol at the next attempt; MAX_SIGN_ATTEMPTS bounds both.
The request's DONE transaction marks the presignature used (:meth:`PresignedSigning.done`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc

from coordinator.db import KeyRecord, now_ms
from coordinator.pool import PresignPools
from coordinator.pool_store import PresigRow
from coordinator.relay import NodeHandle, NodesUnavailable, Refused, fanout
from crypto_core.bip32 import derive
from crypto_core.combiner import Signature, SignatureShare, combine
from crypto_core.errors import DecodeError, ProtocolAbort, UsageError
from crypto_core.group import Point
from governance.reservation import MAX_SIGN_ATTEMPTS, reservation_quorum
from mpcnet.common import sign_trace
from mpcnet.common.rpc import status_of, trailing
from mpcnet.wire.mpc.v1 import common_pb2, node_pb2

log = logging.getLogger("coordinator.presigned")

SHARE_ROUND = 4  # the envelope round of a released share (as the full protocol's last answer)
RETRY_PAUSE_S = 0.2  # before the one quick retry of a node that failed transiently
# the deadline of one SignPresigned (s; at most the step timeout): one RPC of a few ms (a commit,
# the approvals checked), so a hung or slow-walking signer costs a pool attempt little
SIGN_PRESIGNED_TIMEOUT_S = 5.0
# presig-unknown/presig-used answers by one signer while a co-signer consumed the same
# presignature, with no pool signature by it in between, before the pools stop pairing it with
# those co-signers (an honest node says so once after a restart, then it is reconciled; one
# that banned the co-signer deleted their presignatures: the pair, not the node, is at issue)
PRESIG_STRIKES = 3
_DISOWNED = ("presig-unknown", "presig-used")
FILL_WAIT_S = 1.0  # the longest a request with no ready presignature waits for a batch being made
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}
# reserve(rid, key, digest, path, bundle, attempt, signers, session) -> receipts (CoordinatorService._reserve)
Reserve = Callable[[str, KeyRecord, bytes, tuple[int, ...], bytes, int, tuple[int, ...], bytes], list[bytes]]
Signed = tuple[common_pb2.Signature, tuple[int, ...], int]


class _Fallback(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PresignedDeps:
    """What the one-round step needs of the service: the pools (and through them the database,
    nodes and key epochs), the reservation fan-out, the policy attestation the nodes are sent,
    the per-RPC timeout (s) and the stop event (the retry pause)."""

    pools: PresignPools
    reserve: Reserve
    attestation: Callable[[], bytes]
    step_timeout_s: float
    stop: threading.Event


class PresignedSigning:
    """The one-round step (module docstring). Thread-safe: one call per request at a time."""

    def __init__(self, deps: PresignedDeps) -> None:
        self.deps = deps
        self.pools = deps.pools
        self.db = deps.pools.deps.db
        self._lock = threading.Lock()
        self._signed: dict[str, PresigRow] = {}  # request -> the presignature it was signed with (until DONE)
        self.fault: Callable[[str], None] | None = None  # test mode only: coordinator/faults.py points presig-*

    def sign(self, rid: str, k: KeyRecord, digest: bytes, path: tuple[int, ...], bundle: bytes) -> Signed | None:
        """The request's signature from a pool presignature, or None: sign with the full
        protocol (nothing was left assigned). Never raises for a node's answer."""
        epoch, committee, outside = self.pools.deps.signing(k)
        a = self.db.presig_assigned_to(rid)
        if a is not None:
            if (a.key_id, a.epoch, a.path) != (k.key_id, epoch, path) or any(i not in committee or i in outside for i in a.signers):
                self.pools.discard([a], "epoch", "assigned")  # the key moved on since: never sent again
                self.pools.fallback("stale")
                return None
            log.info("request %s: presignature %s assigned (attempt %d, nodes %s)", rid, a.presig_id.hex()[:16], a.attempt,
                     list(a.signers))
        else:
            if not self.pools.cfg.enabled:
                return None
            sets = self.pools.signing_sets(k, committee, outside)
            a = self.db.assign_presig(rid, k.key_id, epoch, path, sets, MAX_SIGN_ATTEMPTS, now_ms()) if sets else None
            until = time.monotonic() + FILL_WAIT_S  # issue 14 (perf): a batch being made beats the full protocol
            while a is None and sets and self.pools.wait_for_fill(k.key_id, epoch, path, until - time.monotonic()):
                a = self.db.assign_presig(rid, k.key_id, epoch, path, sets, MAX_SIGN_ATTEMPTS, now_ms())
            if a is None:
                self.pools.fallback("empty")
                return None
        sign_trace.mark(rid, "assigned")
        if self.fault is not None:
            self.fault("presig-assigned")
        expected = derive(Point.decode(k.public_key), k.chain_code, path).public_key
        try:
            sig = self._run(a, rid, k, digest, path, bundle, committee, expected)
        except _Fallback as e:
            log.warning(
                "request %s: one-round signing with presignature %s (attempt %d, nodes %s) failed (%s); "
                "signing with the full protocol", rid, a.presig_id.hex()[:16], a.attempt, list(a.signers), e,
            )
            self.pools.discard([a], "failed", "assigned")
            self.pools.fallback(e.reason)
            return None
        sign_trace.mark(rid, "combined")
        self.pools.forgive(k.key_id, a.signers)
        with self._lock:
            self._signed[rid] = a
        out = common_pb2.Signature(
            r=sig.r.to_bytes(32, "big"), s=sig.s.to_bytes(32, "big"), recovery_id=sig.recovery_id, der=sig.der(),
            public_key=sig.public_key.encode(),
        )
        log.info("request %s: signed in one round from presignature %s by nodes %s (attempt %d)",
                 rid, a.presig_id.hex()[:16], list(a.signers), a.attempt)
        return out, a.signers, a.attempt

    def assignment_at_quorum(self, rid: str, key_id: bytes, path: tuple[int, ...]) -> Callable[[sqlite3.Connection], object] | None:
        """For an approval that may complete the quorum (R10): a callable that assigns a ready
        presignature and attempt 1 inside the transaction moving the request to SIGNING (so the
        signing thread only sends), or None (pools off, unknown key, no usable signer set). The
        key's epoch and the signer sets are read now, before that transaction; the signing
        thread checks the assignment against the key's epoch again before it sends."""
        if not self.pools.cfg.enabled:
            return None
        k = self.db.get_key(key_id)
        if k is None or k.status != "active" or k.scheme != "ecdsa-secp256k1":  # issue 16: no pools for FROST keys
            return None
        epoch, committee, outside = self.pools.deps.signing(k)
        sets = self.pools.signing_sets(k, committee, outside)
        if not sets:
            return None

        def assign(c: sqlite3.Connection) -> object:
            return self.db.assign_presig_in(c, rid, key_id, epoch, path, sets, MAX_SIGN_ATTEMPTS, now_ms())

        return assign

    def done(self, rid: str) -> tuple[bytes, Callable[[sqlite3.Connection], object]] | None:
        """For the request's DONE transaction: (presig_id, a callable marking it used inside that
        transaction's connection), or None when ``rid`` was not signed from a presignature here."""
        with self._lock:
            a = self._signed.pop(rid, None)
        if a is None:
            return None
        row = a

        def mark(c: sqlite3.Connection) -> object:
            used = self.db.mark_presig_used(c, row.presig_id, rid, now_ms())
            if used:
                self.pools.used(row)
            return used

        return a.presig_id, mark

    def _run(
        self, a: PresigRow, rid: str, k: KeyRecord, digest: bytes, path: tuple[int, ...], bundle: bytes,
        committee: tuple[int, ...], expected: Point,
    ) -> Signature:
        nodes = self.pools.deps.nodes()
        if any(i not in nodes for i in a.signers):
            raise _Fallback("unavailable", "a signer is no longer in the roster")
        signers = {i: nodes[i] for i in a.signers}
        receipts: list[bytes] = []
        if len(a.signers) < reservation_quorum(len(nodes)):
            try:
                receipts = self.deps.reserve(rid, k, digest, path, bundle, a.attempt, a.signers, a.presig_id)
            except (NodesUnavailable, Refused) as e:
                raise _Fallback("unreserved", f"reservation: {e}") from None
        req = node_pb2.SignPresignedRequest(
            presig_id=a.presig_id, key_id=k.key_id, epoch=a.epoch, signers=a.signers, derivation_path=path, digest=digest,
            request_id=rid, approval_bundle=bundle, policy_attestation=self.deps.attestation(), attempt=a.attempt,
            reservation_receipts=receipts,
        )
        sign_trace.mark(rid, "sending")
        answers = self._ask(signers, req)
        sign_trace.mark(rid, "answered")
        shares: dict[int, SignatureShare] = {}
        for i, r in answers.items():
            env = r.share
            if r.signer != i or env.sender != i or env.receiver != 0 or env.round != SHARE_ROUND or env.session_id != a.presig_id:
                raise self._bad_share(k.key_id, i, "answered a share envelope for another session, sender or round")
            index = committee.index(i) + 1  # the share index: the node's committee position
            try:
                share = SignatureShare.from_bytes(bytes(env.payload), a.presig_id, index)
            except (DecodeError, ProtocolAbort) as e:  # the decoder blames the sender (ProtocolAbort)
                raise self._bad_share(k.key_id, i, f"share: {e}") from None
            if not share.rerandomized or share.sigid != a.presig_id or share.R.encode() != a.big_r or share.digest != digest:
                raise self._bad_share(k.key_id, i, "share: not a re-randomised share of this presignature and digest")
            shares[index] = share
        try:
            sign_trace.mark(rid, "checked")
            return combine(shares, digest, signers=sorted(shares), public_key=expected, derivation_path=path)
        except ProtocolAbort as e:
            if e.party is not None and 1 <= e.party <= len(committee) and committee[e.party - 1] in a.signers:
                raise self._bad_share(k.key_id, committee[e.party - 1], f"combine: {e}") from None
            raise _Fallback("bad-share", f"combine: {e}") from None  # a sum that does not verify names nobody
        except UsageError as e:
            raise _Fallback("bad-share", f"combine: {e}") from None

    def _bad_share(self, key_id: bytes, node: int, why: str) -> _Fallback:
        """Node ``node``'s own answer (its channel) is provably not a share of this presignature:
        the pools never put it in a signer set of ``key_id`` again (as the full protocol leaves
        a node whose share fails the combiner's check out of the request's signer sets); the
        fallback to raise, naming it."""
        self.pools.dispute(key_id, {frozenset({node})})
        return _Fallback("bad-share", f"node {node}: {why}"[:300])

    def _ask(self, signers: Mapping[int, NodeHandle], req: node_pb2.SignPresignedRequest) -> dict[int, node_pb2.SignPresignedResponse]:
        """``req`` to every signer at once; a transient failure is retried once (the same
        request: a node that consumed replays). _Fallback on any refusal or a second failure."""
        got: dict[int, node_pb2.SignPresignedResponse] = {}
        pending = dict(signers)
        timeout = min(self.deps.step_timeout_s, SIGN_PRESIGNED_TIMEOUT_S)
        if self.fault is not None:  # test mode: the lowest signer alone first, then the crash point
            first = min(pending)
            try:
                got[first] = pending[first].stub.SignPresigned(req, timeout=timeout)
                del pending[first]
            except grpc.RpcError:
                pass
            self.fault("presig-partial")
        for tries in (1, 2):
            for h in pending.values():
                h.inflight += 1
            try:
                ok, errs = fanout({i: (h.stub.SignPresigned, req) for i, h in pending.items()}, timeout)
            finally:
                for h in pending.values():
                    h.inflight -= 1
            got.update(ok)
            for i, e in sorted(errs.items()):
                code, details = status_of(e)
                kind = trailing(e, "mpc-governance") or ""
                banned = {int(x) for x in (trailing(e, "mpc-banned") or "").split(",") if x.isascii() and x.isdigit() and len(x) <= 5}
                if banned:  # one node's word against its co-signers': never pool the pair again
                    self.pools.dispute(req.key_id, {frozenset({i, b}) for b in banned if b != i and b in signers})
                    kind = kind or "mpc-banned"
                if kind == "presig-unknown":  # it lost its fresh ones (restarted?): reconcile it at the next pass
                    self.pools.reconcile_soon(i)
                held = {j for j in signers if j != i and j in got}
                if kind in _DISOWNED and held:  # co-signers held and consumed it
                    self.pools.strike(req.key_id, i, held, PRESIG_STRIKES)
                if kind or code not in _TRANSIENT:
                    raise _Fallback(kind or "refused", f"node {i}: {code.name}: {details}"[:300])
                if tries == 2 or signers[i].healthy is False:  # a node already known down is not asked again
                    signers[i].mark_down(f"{code.name}: {details}")
                    raise _Fallback("unavailable", f"node {i}: {code.name}: {details}"[:300])
            pending = {i: signers[i] for i in errs}
            if not pending:
                return got
            self.deps.stop.wait(RETRY_PAUSE_S)
        return got  # pragma: no cover (the loop returns or raises)
