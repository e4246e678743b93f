"""Signing an approved request of a FROST key (issue 16; RFC 9591 section 5, ROAST-like retries).

The coordinator holds only public data: the group key, each committee member's public share
(from the DKG every node agreed on), and the nodes' round-1 nonce commitments
(:mod:`coordinator.nonce_store`). One request runs at most MAX_SIGN_ATTEMPTS attempts:

1. **Resume or choose.** An attempt of this request whose commitments are assigned but not
   settled (the coordinator was killed in between) is sent again as it was: the same (request,
   attempt, nonce_id) makes a signer that already consumed its nonce answer its stored share
   (``replayed``), and no commitment is ever offered in another package. Otherwise t signers
   of the key's committee at its epoch: healthy ones first, never one that sent an invalid
   share in an earlier attempt of this request, nor one down in this run.
2. **Commitments.** Each signer needs a fresh commitment; one that has none is asked for a
   batch (``MakeNonces``, on demand; the background :meth:`FrostSigning.refill` keeps
   :data:`REFILL_TARGET` per node). One fresh commitment per signer is marked assigned to
   (request, next attempt) in ONE transaction with the attempt number
   (:meth:`coordinator.nonce_store.NonceStore.assign_nonces_in`), before anything is sent:
   assigned == spent, even after a crash.
3. **Round 2.** Reservation receipts when ``t < reservation_quorum(n)`` (as the DKLs paths),
   then ``SignSchnorr`` to the t signers in parallel with a deadline.
4. **Shares.** Each answer is checked on its own with ``verify_share`` against the signer's
   public share (identifiable abort): a bad share names its sender (audited ``frost-bad-share``,
   recorded as its commitment's outcome, excluded from the next attempts). Every share valid:
   ``aggregate`` (which verifies again) and ``verify_signature`` under the key from our own
   record; the caller records DONE with its audit entry in one transaction
   (:meth:`coordinator.requests.SignRequests._run_signing`).

A signer that stalls (deadline), fails or refuses (``nonce-used``/``nonce-unknown``, ...) ends
the attempt; the next one uses another subset and fresh commitments. A governance refusal
about the request itself (expired, served) ends the request, unless a co-signer gave a valid
share in the same attempt (then the refusal is that node's own: it is left out). A
``stale-policy`` refusal (at SignSchnorr or at the reservation: the node missed a policy change,
or its policy in force changed before its release, :mod:`mpc_node.in_force`) first has that
node's policies resynced (``FrostDeps.resync``, once per node and request, as the DKLs23 path)
and the request retried with the next attempt and fresh commitments; a second one from the same
node ends the request.
A node at its nonce cap holding nonces the coordinator never learned (answers lost) has them
discarded and is asked again; an answer naming a nonce id already stored stores nothing.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from coordinator.db import CoordinatorDb, KeyRecord, now_ms
from coordinator.nonce_store import NONCE_ID_LEN, NonceRow
from coordinator.relay import NodeHandle, NodesUnavailable, Refused, fanout
from crypto_core.errors import DecodeError, ProtocolAbort, UsageError
from crypto_core.frost.combiner import (
    SigningCommitment,
    SigningPackage,
    aggregate,
    ciphersuite_for,
    signing_key,
    verify_share,
    verify_signature,
)
from crypto_core.frost.public import FrostPublic
from governance.approval import SCHEME_ED25519
from governance.reservation import MAX_SIGN_ATTEMPTS, reservation_quorum
from mpcnet.common.rpc import RpcError, status_of, trailing
from mpcnet.wire.mpc.v1 import common_pb2, node_pb2

log = logging.getLogger("coordinator.frost_sign")

Code = grpc.StatusCode
NONCE_BATCH = 16  # commitments asked of a node per MakeNonces (1..64 on the wire)
REFILL_TARGET = 8  # fresh commitments per (key, epoch, node) the background refill keeps
SIGN_SCHNORR_TIMEOUT_S = 5.0  # one SignSchnorr: a commit and a few scalar multiplications
SHARE_LEN = 32
DISCARD_TIMEOUT_S = 1.0  # a best-effort DiscardNonces of a failed attempt's unused nonce
# a node's governance refusal about the request itself: no other subset can sign it
REQUEST_FATAL = frozenset({"expired", "served", "stale-policy", "approvals", "policy", "rate-limit", "attempts-exhausted"})
_SESSION_TAG = b"mpcnet/frost-sign-attempt/v1"
# reserve(rid, key, digest, path, bundle, attempt, signers, session) -> receipts (CoordinatorService._reserve)
Reserve = Callable[[str, KeyRecord, bytes, tuple[int, ...], bytes, int, tuple[int, ...], bytes], list[bytes]]
Signed = tuple[common_pb2.Signature, tuple[int, ...], int]
Audit = Callable[[str, str, str, str, dict[str, str | int | bool]], object]  # actor, action, request_id, outcome, details


class FrostCrypto(Protocol):
    """What the coordinator needs of RFC 9591 (piece A1, ``crypto_core.frost``); narrow so the
    orchestration is tested with the real crypto or a stand-in."""

    def public(self, scheme: str, threshold: int, parties: int, public_key: bytes, public_shares: tuple[bytes, ...]) -> Any: ...
    def package(self, scheme: str, message: bytes, commitments: Sequence[tuple[int, bytes, bytes]], taproot_root: bytes) -> Any: ...
    def check_element(self, scheme: str, data: bytes, field: str) -> None: ...
    def verify_share(self, public: Any, package: Any, identifier: int, share: bytes) -> None: ...
    def aggregate(self, public: Any, package: Any, shares: Mapping[int, bytes]) -> bytes: ...
    def verify_signature(self, scheme: str, public_key: bytes, message: bytes, signature: bytes, taproot_root: bytes) -> bool: ...
    def signing_key(self, scheme: str, public_key: bytes, taproot_root: bytes) -> bytes: ...


class Rfc9591:
    """:class:`FrostCrypto` from ``crypto_core.frost`` (signing.py; public.py: no secret type)."""

    def public(self, scheme: str, threshold: int, parties: int, public_key: bytes, public_shares: tuple[bytes, ...]) -> Any:
        return FrostPublic(scheme, threshold, parties, public_key, public_shares)

    def package(self, scheme: str, message: bytes, commitments: Sequence[tuple[int, bytes, bytes]], taproot_root: bytes) -> Any:
        return SigningPackage(scheme, message, tuple(SigningCommitment(i, h, b) for i, h, b in commitments), taproot_root)

    def check_element(self, scheme: str, data: bytes, field: str) -> None:
        ciphersuite_for(scheme).group.decode(data, field)

    def verify_share(self, public: Any, package: Any, identifier: int, share: bytes) -> None:
        verify_share(public, package, identifier, share)

    def aggregate(self, public: Any, package: Any, shares: Mapping[int, bytes]) -> bytes:
        return aggregate(public, package, shares)

    def verify_signature(self, scheme: str, public_key: bytes, message: bytes, signature: bytes, taproot_root: bytes) -> bool:
        return verify_signature(scheme, public_key, message, signature, taproot_root)

    def signing_key(self, scheme: str, public_key: bytes, taproot_root: bytes) -> bytes:
        return signing_key(scheme, public_key, taproot_root)


@dataclass(frozen=True)
class FrostDeps:
    """What FROST signing needs of the service: the database, the nodes (roster index ->
    handle, read at each use), ``signing(k) -> (epoch, committee, outside)`` (the key's epoch,
    its committee in share-index order and the nodes that may not sign now), the reservation
    fan-out, the policy attestation, the audit append, the crypto, the stop event, and what
    foreground operations hold (``stand_aside``)."""

    db: CoordinatorDb
    nodes: Callable[[], Mapping[int, NodeHandle]]
    signing: Callable[[KeyRecord], tuple[int, tuple[int, ...], set[int]]]
    reserve: Reserve
    attestation: Callable[[], bytes]
    audit: Audit
    crypto: Callable[[], FrostCrypto] = Rfc9591
    stop: threading.Event | None = None
    timeout_s: float = SIGN_SCHNORR_TIMEOUT_S
    # (keys, nodes) that foreground operations hold (coordinator.foreground): the nonce refill makes none for them
    stand_aside: Callable[[], tuple[frozenset[bytes], frozenset[int]]] = lambda: (frozenset(), frozenset())
    # a node the nonce refill found unreachable (UNAVAILABLE): have it probed now (coordinator/probe_now.py)
    unreachable: Callable[[int], object] = lambda i: None
    # a node refused with ``stale-policy``: push the policies it missed (coordinator/policies.py)
    resync: Callable[[int], object] = lambda i: None


class _AttemptFailed(Exception):
    """This attempt cannot produce a signature; the next one may (another subset). ``blame``:
    its failed signers are left out of this request's next attempts (False when the attempt
    failed before any signer was asked, e.g. its reservation). ``lost``: signers that answered
    ``nonce-unknown`` (they lost their fresh nonces, e.g. restarted: the next attempt may ask them
    for new ones, once per request). ``stale``: signers that refused ``stale-policy`` and are to
    be resynced and asked again (never blamed for it)."""

    def __init__(
        self, message: str, *, blame: bool = True, lost: frozenset[int] = frozenset(), stale: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(message)
        self.blame = blame
        self.lost = lost
        self.stale = stale  # signers that refused ``stale-policy`` for the first time in this request: resync, retry


def session_of(rid: str, attempt: int, nonce_ids: Sequence[bytes]) -> bytes:
    """The attempt's 32-byte session id (reservations and node grants name it): SHA-256 over a
    versioned tag, the request id, the attempt and the assigned nonce ids, length-prefixed.
    Recomputed identically after a restart (a resumed attempt keeps its session)."""
    h = hashlib.sha256()
    for part in (_SESSION_TAG, rid.encode(), attempt.to_bytes(4, "big"), *nonce_ids):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def _err(code: grpc.StatusCode, message: str, attempts: int, governance: str = "") -> RpcError:
    e = RpcError(code, message)
    e.attempts = attempts  # type: ignore[attr-defined]
    e.governance = governance  # type: ignore[attr-defined]
    return e


class FrostSigning:
    """FROST signing of approved requests and the background nonce refill (module docstring).
    Thread-safe: requests sign concurrently; the database's write lock serialises assignments."""

    def __init__(self, deps: FrostDeps) -> None:
        self.deps = deps
        self.db = deps.db
        self._crypto: FrostCrypto | None = None
        self._refill_lock = threading.Lock()
        self.fault: Callable[[str], None] | None = None  # test mode only: coordinator/faults.py point frost-assigned

    @property
    def crypto(self) -> FrostCrypto:
        if self._crypto is None:
            self._crypto = self.deps.crypto()
        return self._crypto

    # --- nonce commitments -----------------------------------------------------------------------
    def make_nonces(self, k: KeyRecord, epoch: int, node: int, count: int = NONCE_BATCH) -> int:
        """Ask ``node`` for ``count`` commitments of (key, epoch) and store the valid ones as
        fresh; how many were stored. A malformed answer (another signer, epoch, wrong lengths,
        a repeated nonce_id) stores nothing of it."""
        h = self.deps.nodes().get(node)
        if h is None:
            return 0
        req = node_pb2.MakeNoncesRequest(key_id=k.key_id, epoch=epoch, count=count)
        try:
            resp = h.stub.MakeNonces(req, timeout=self.deps.timeout_s)
        except grpc.RpcError as e:
            if status_of(e)[0] != Code.RESOURCE_EXHAUSTED:
                raise
            # at its cap with nonces we never learned (answers lost after its commit): free them
            # all there (ours of that node too, never offered again), then ask once more
            self.db.discard_fresh_nonces(k.key_id, node=node, reason="node-at-cap", now=now_ms())
            h.stub.DiscardNonces(node_pb2.DiscardNoncesRequest(key_id=k.key_id, reason="node-at-cap"), timeout=self.deps.timeout_s)
            log.info("key %s: node %d was at its nonce cap with nonces unknown here; discarded them", k.key_id.hex()[:16], node)
            resp = h.stub.MakeNonces(req, timeout=self.deps.timeout_s)
        elen = 32 if k.scheme == SCHEME_ED25519 else 33
        rows: list[NonceRow] = []
        seen: set[bytes] = set()
        for c in resp.commitments:
            nid = bytes(c.nonce_id)
            try:  # each commitment a valid element of the key's group, not the identity (RFC 9591 DeserializeElement)
                self.crypto.check_element(k.scheme, bytes(c.hiding), "hiding")
                self.crypto.check_element(k.scheme, bytes(c.binding), "binding")
                valid = True
            except DecodeError:
                valid = False
            if (
                not valid or c.signer != node or resp.epoch != epoch or len(nid) != NONCE_ID_LEN or nid in seen
                or len(c.hiding) != elen or len(c.binding) != elen or len(resp.commitments) > count
            ):
                log.warning("key %s: node %d answered malformed nonce commitments; none stored", k.key_id.hex()[:16], node)
                return 0
            seen.add(nid)
            rows.append(NonceRow(nid, k.key_id, epoch, node, bytes(c.hiding), bytes(c.binding)))
        if rows:
            try:
                self.db.add_fresh_nonces(rows, now_ms())
            except sqlite3.IntegrityError:  # an id stored before (a replayed answer, another node's id): never offered again
                log.warning("key %s: node %d answered nonce ids the coordinator knows; none stored", k.key_id.hex()[:16], node)
                return 0
        return len(rows)

    def refill(self) -> int:
        """Background pass: keep :data:`REFILL_TARGET` fresh commitments per healthy committee
        node of every active FROST key at its epoch; how many were stored. Never raises for a
        node's failure. Stands aside (makes none) for a key or on a node a foreground operation
        holds (``FrostDeps.stand_aside``): the next pass after it ended refills."""
        stored = 0
        with self._refill_lock:
            nodes = self.deps.nodes()
            held_keys, held_nodes = self.deps.stand_aside()
            for k in self.db.list_keys("active"):
                if k.scheme == "ecdsa-secp256k1" or k.key_id in held_keys:
                    continue
                epoch, committee, outside = self.deps.signing(k)
                have = self.db.fresh_nonce_counts(k.key_id, epoch)
                for i in committee:
                    if i in outside or i in held_nodes or i not in nodes or nodes[i].healthy is False or have.get(i, 0) >= REFILL_TARGET:
                        continue
                    try:
                        stored += self.make_nonces(k, epoch, i, min(NONCE_BATCH, max(1, 2 * REFILL_TARGET - have.get(i, 0))))
                    except grpc.RpcError as e:
                        code = status_of(e)[0]
                        log.info("key %s: node %d made no nonces (%s)", k.key_id.hex()[:16], i, code.name)
                        if code == Code.UNAVAILABLE:  # gone, not merely slow: the probe judges it now
                            self.deps.unreachable(i)
        return stored

    # --- signing -----------------------------------------------------------------------------------
    def sign(
        self, rid: str, k: KeyRecord, digest: bytes, message: bytes, taproot_root: bytes, bundle: bytes,
    ) -> Signed:
        """The request's Schnorr signature (``Signature.schnorr``, ``public_key`` =
        ``signing_key``), its signers (roster indices) and the attempts run. ``message`` is
        the ed25519 message (SHA-256 = ``digest``); for bip340 the digest is the message.
        Raises RpcError (with ``attempts`` and ``governance`` attributes)."""
        epoch, committee, outside = self.deps.signing(k)
        shares = self.db.frost_public_shares(k.key_id, epoch)
        if len(shares) != len(committee) or len(committee) < k.threshold:
            raise _err(Code.FAILED_PRECONDITION, f"key_id: the public shares of key {k.key_id.hex()[:16]} at epoch {epoch} "
                       "are not known to the coordinator; it cannot check signature shares", 0)
        public = self.crypto.public(k.scheme, k.threshold, len(committee), k.public_key, shares)
        msg = message if k.scheme == SCHEME_ED25519 else digest
        expected = self.crypto.signing_key(k.scheme, k.public_key, taproot_root)
        down: set[int] = set()
        lost: set[int] = set()  # signers that answered nonce-unknown in this request (spared once)
        resynced: set[int] = set()  # signers resynced after a stale-policy refusal in this request (once each)
        runs = 0
        while True:
            if self.deps.stop is not None and self.deps.stop.is_set():
                raise _err(Code.UNAVAILABLE, "sign: the coordinator is stopping", runs)
            assigned = self._in_flight(rid)
            if assigned is None:
                assigned = self._assign(rid, k, epoch, committee, outside, down, runs)
                if self.fault is not None:
                    self.fault("frost-assigned")
            attempt, rows = assigned
            runs += 1
            try:
                sig = self._attempt(rid, k, digest, msg, taproot_root, bundle, committee, attempt, rows, public, expected,
                                    frozenset(resynced))
            except _AttemptFailed as e:
                log.warning("request %s: FROST attempt %d with nodes %s failed: %s", rid, attempt, sorted(rows), e)
                for i in sorted(e.stale - resynced):  # it missed a policy change: bring it up to date, retry
                    resynced.add(i)
                    self.deps.resync(i)
                if e.blame:
                    spared = (e.lost - lost) | e.stale  # a first nonce-unknown: restarted, not stalled; a fresh batch will do
                    lost |= e.lost
                    down |= {i for i, r in self._outcomes(rid, attempt).items() if r in ("failed", "bad-share")} - spared
                continue
            out = common_pb2.Signature(schnorr=sig, public_key=expected)
            return out, tuple(sorted(rows)), attempt

    def _in_flight(self, rid: str) -> tuple[int, dict[int, NonceRow]] | None:
        """The request's latest attempt if none of its commitments has an outcome yet (the
        coordinator stopped during it): resumed with the same package."""
        rows = self.db.nonces_of(rid)
        if not rows:
            return None
        last = max(r.attempt for r in rows)
        mine = [r for r in rows if r.attempt == last]
        if any(r.outcome for r in mine):
            return None
        return last, {r.node: r for r in mine}

    def _outcomes(self, rid: str, attempt: int) -> dict[int, str]:
        return {r.node: r.outcome for r in self.db.nonces_of(rid) if r.attempt == attempt}

    def _assign(
        self, rid: str, k: KeyRecord, epoch: int, committee: tuple[int, ...], outside: set[int], down: set[int], runs: int,
    ) -> tuple[int, dict[int, NonceRow]]:
        """t signers with one fresh commitment each, assigned with the next attempt number."""
        t = k.threshold
        bad = {r.node for r in self.db.nonces_of(rid) if r.outcome == "bad-share"}
        nodes = self.deps.nodes()
        while True:
            if self.db.sign_attempts_taken(rid) >= MAX_SIGN_ATTEMPTS:
                raise _err(Code.FAILED_PRECONDITION, f"sign: request {rid} used all {MAX_SIGN_ATTEMPTS} signing attempts"
                           f"{self._blame(bad)}", runs, "attempts-exhausted")
            usable = [i for i in committee if i not in outside and i not in bad and i not in down and i in nodes]
            usable.sort(key=lambda i: (nodes[i].healthy is False, nodes[i].inflight, i))  # healthy first, then least busy
            if len(usable) < t:
                raise _err(Code.UNAVAILABLE, f"sign: needs {t} signers of key {k.key_id.hex()[:16]} but only {len(usable)} "
                           f"are usable{self._blame(bad)}", runs)
            signers = tuple(sorted(usable[:t]))
            have = self.db.fresh_nonce_counts(k.key_id, epoch)
            for i in signers:
                if have.get(i, 0) == 0:  # on demand: this signer's batch now
                    try:
                        if self.make_nonces(k, epoch, i) == 0:
                            down.add(i)
                    except grpc.RpcError as e:
                        code, details = status_of(e)
                        nodes[i].mark_down(f"{code.name}: {details}") if code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED) else None
                        down.add(i)
            if any(i in down for i in signers):
                continue
            got = self.db.assign_nonces(rid, k.key_id, epoch, signers, MAX_SIGN_ATTEMPTS, now_ms())
            if got is not None:
                return got
            # another request took the last ones meanwhile: refill and choose again

    @staticmethod
    def _blame(bad: set[int]) -> str:
        return f"; nodes that sent invalid signature shares: {', '.join(map(str, sorted(bad)))}" if bad else ""

    def _attempt(
        self, rid: str, k: KeyRecord, digest: bytes, msg: bytes, root: bytes, bundle: bytes, committee: tuple[int, ...],
        attempt: int, rows: Mapping[int, NonceRow], public: Any, expected: bytes, resynced: frozenset[int] = frozenset(),
    ) -> bytes:
        """One attempt's signature; raises _AttemptFailed (the next attempt may sign: a
        ``stale-policy`` refusal of a node not in ``resynced`` is one) or RpcError (the request ends)."""
        signers = tuple(sorted(rows))
        nodes = self.deps.nodes()
        sid = session_of(rid, attempt, [rows[i].nonce_id for i in signers])
        ident = {i: committee.index(i) + 1 for i in signers}  # share index = committee position (as DKLs)
        try:  # stored commitments were checked when made: this refusal is not expected
            package = self.crypto.package(k.scheme, msg, [(ident[i], rows[i].hiding, rows[i].binding) for i in signers], root)
        except (DecodeError, UsageError) as e:
            self._settle(rid, attempt, {i: "failed" for i in signers})
            raise _AttemptFailed(f"signing package: {e}") from None
        if any(i not in nodes for i in signers):
            self._settle(rid, attempt, {i: "failed" for i in signers if i not in nodes})
            raise _AttemptFailed("a signer is no longer in the roster")
        receipts: list[bytes] = []
        if len(signers) < reservation_quorum(len(nodes)):
            try:
                receipts = self.deps.reserve(rid, k, digest, (), bundle, attempt, signers, sid)
            except NodesUnavailable as e:
                self._settle(rid, attempt, {})
                raise _AttemptFailed(f"reservation: {e}", blame=False) from None
            except Refused as e:
                self._settle(rid, attempt, {})
                if e.governance == "stale-policy" and e.node is not None and e.node not in resynced:
                    raise _AttemptFailed(f"reservation: {e.message}", blame=False, stale=frozenset({e.node})) from None
                raise _err(e.code, f"sign: a node refused to reserve the attempt: {e.message}", attempt, e.governance) from None
        wire = [node_pb2.NonceCommitment(nonce_id=rows[i].nonce_id, signer=i, hiding=rows[i].hiding, binding=rows[i].binding)
                for i in signers]
        attest = self.deps.attestation()
        calls = {
            i: (nodes[i].stub.SignSchnorr, node_pb2.SignSchnorrRequest(
                key_id=k.key_id, epoch=rows[i].epoch, request_id=rid, approval_bundle=bundle, policy_attestation=attest,
                message=msg, taproot_merkle_root=root, commitments=wire, nonce_id=rows[i].nonce_id, attempt=attempt,
                session_id=sid, reservation_receipts=receipts,
            ))
            for i in signers
        }
        ok, errs = fanout(calls, self.deps.timeout_s)
        outcome: dict[int, str] = {}
        unknown: set[int] = set()
        stale: set[int] = set()
        fatal: RpcError | None = None
        for i, err in sorted(errs.items()):
            code, details = status_of(err)
            kind = trailing(err, "mpc-governance") or ""
            outcome[i] = "failed"
            if kind == "stale-policy" and i not in resynced:
                stale.add(i)  # not the request's fault yet: resynced and asked again (sign)
            elif kind in REQUEST_FATAL and fatal is None:
                fatal = _err(code, f"sign: node {i} refused: {details}"[:400], attempt, kind)
            elif code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED):
                nodes[i].mark_down(f"{code.name}: {details}")
            if kind == "nonce-unknown":  # it lost its fresh nonces (restarted?): ours of it are useless
                self.db.discard_fresh_nonces(k.key_id, node=i, reason="nonce-unknown", now=now_ms())
                unknown.add(i)
        got: dict[int, bytes] = {}
        for i, r in sorted(ok.items()):
            share = bytes(r.share)
            why = ""
            if r.signer != i:
                why = f"answered as signer {r.signer}"
            elif len(share) != SHARE_LEN:
                why = f"share of {len(share)} bytes"
            else:
                try:
                    self.crypto.verify_share(public, package, ident[i], share)
                except (ProtocolAbort, UsageError) as e:
                    why = str(e)[:200]
            if why:
                outcome[i] = "bad-share"
                self._bad_share(rid, k, attempt, i, why)
            else:
                got[ident[i]] = share
        if fatal is not None and got:  # a co-signer released a valid share for this very request and attempt:
            # the refusal is the refuser's own (its rate limit or clock, or made up by a corrupted
            # node), not the request's: leave it out and let another subset sign (ROAST)
            log.warning("request %s: %s, while a co-signer signed the same attempt; trying another subset", rid, fatal.message)
            fatal = None
        if fatal is not None:
            self._settle(rid, attempt, outcome | {i: "failed" for i in signers if i not in outcome})
            raise fatal
        if outcome:
            self._settle(rid, attempt, outcome | {i: "signed" for i in signers if i not in outcome})
            raise _AttemptFailed(", ".join(f"node {i}: {o}{' (nonce-unknown)' if i in unknown else ''}"
                                           for i, o in sorted(outcome.items())), lost=frozenset(unknown),
                                 stale=frozenset(stale))
        try:
            sig = self.crypto.aggregate(public, package, got)
        except ProtocolAbort as e:  # every share verified, so this names nobody: never return it
            self._settle(rid, attempt, {i: "failed" for i in signers})
            raise _AttemptFailed(f"aggregate: {e}") from None
        if not self.crypto.verify_signature(k.scheme, k.public_key, msg, sig, root):
            self._settle(rid, attempt, {i: "failed" for i in signers})
            raise _AttemptFailed("the aggregated signature does not verify")
        self._settle(rid, attempt, {i: "signed" for i in signers})
        return sig

    def _settle(self, rid: str, attempt: int, outcome: Mapping[int, str]) -> None:
        """Record the attempt's outcome per signer (an attempt with any outcome is never resumed).
        An empty mapping marks every signer ``failed``. The nonces of the signers that gave no
        share are then discarded on those nodes (best effort: a node that consumed one keeps
        its tombstone; one that never heard of the attempt frees it)."""
        if not outcome:
            outcome = {n: "failed" for n in self._outcomes(rid, attempt)}
        self.db.set_nonce_outcomes(rid, attempt, outcome, now_ms())
        failed = {r.node: r for r in self.db.nonces_of(rid) if r.attempt == attempt and outcome.get(r.node) == "failed"}
        nodes = self.deps.nodes()
        calls = {
            i: (nodes[i].stub.DiscardNonces,
                node_pb2.DiscardNoncesRequest(key_id=r.key_id, nonce_ids=[r.nonce_id], reason="attempt-failed"))
            for i, r in failed.items() if i in nodes and nodes[i].healthy is not False
        }
        if calls:
            _, errs = fanout(calls, DISCARD_TIMEOUT_S)
            for i, err in errs.items():
                log.info("request %s: node %d did not discard its nonce of attempt %d (%s)", rid, i, attempt, status_of(err)[0].name)

    def _bad_share(self, rid: str, k: KeyRecord, attempt: int, node: int, why: str) -> None:
        log.warning("request %s: node %d sent an invalid FROST signature share (attempt %d): %s", rid, node, attempt,
                    why.encode("ascii", "backslashreplace").decode())
        self.deps.audit("coordinator", "frost-bad-share", rid, "refused", {
            "key_id": k.key_id.hex(), "node": node, "attempt": attempt, "reason": why.encode("ascii", "backslashreplace").decode()[:200],
        })
