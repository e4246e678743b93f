"""Recovery ceremonies on the coordinator (issue 12): drills, restores and break-glass exports.

The coordinator only relays ciphertexts: every officer decrypts her pieces of a bundle on her
own machine and re-encrypts each, with age, to the ceremony's target for that share (a node's
roster X25519 encryption key, or an export order's off-line recipient), binding ceremony id,
purpose, key, epoch, share index, officer and bundle digest inside. It never holds a plaintext
piece or share.

* **drill** (:meth:`Ceremonies.start_drill`, no order): the key's newest bundle of its current
  epoch; targets = every committee member for its own share. A drill needs no admin order, so
  before opening one the coordinator asks every committee member for a signed
  ``EpochAttestation`` of its live epoch of the key, bound to the new ceremony id (``AttestEpoch``),
  and opens the drill only when at least the key's threshold of them (signatures checked with
  the roster identity keys) name the bundle's epoch: a superseded bundle would hand a holder its
  refreshed-away share. The attestations are kept with the targets and shown in the ceremony,
  so each officer checks them too before decrypting anything. Once m officers gave pieces, each
  node gets its share's pieces (``DrillShare``), checks and reconstructs it in memory, compares
  it with its public and live share and answers a signed ``DrillReport`` (verified here against
  the node's roster identity key). The drill's outcome (per node and per officer) is recorded
  with the key's drill record (last success) and its ``drill-recorded`` audit entry.
* **restore** (:meth:`Ceremonies.open_order`, from an applied RESTORE order): each target node
  gets the order, the bundle and its pieces (``RestoreShare``) and answers a signed
  ``RecoveryReceipt`` naming its public share (checked against the bundle). Once every target
  restored, the order's follow-up key operation is started, authorized ``recovery-order``; the
  ceremony is ``done`` when that operation is.
* **export** (from an applied EXPORT order; loud ``break-glass-export`` audit entries): the
  officers' pieces of the order's share indices, encrypted to the off-line recipient, are kept
  for ``mpc recovery export-key``; no node takes part.

Restore and export ceremonies carry their admin order, which expires (``expires_ms``, against
the coordinator's clock): an expired order's ceremony takes no more pieces and is ``failed``
("the recovery order expired ...") unless its follow-up operation already started.

States: ``collecting`` (officers submit, one submission each, checked: the caller is the
officer, an officer of the bundle's configuration, exactly the ceremony's share indices, each an
age file to one X25519 recipient) -> ``running`` -> [``follow-up``] -> ``done`` | ``failed``. A
target node that is unavailable is retried by the background pass; a restore refused by a
target (e.g. too few good pieces) goes back to ``collecting`` while other officers may still
give pieces. Every state change is one transaction with its audit entry.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from coordinator.backup_store import AlreadySubmitted, CeremonyRecord, Outcome, PieceRecord, Target
from coordinator.backups import Backups
from coordinator.db import AuditEvent, CoordinatorDb, now_ms
from coordinator.keyops import KeyOperations
from coordinator.recovery_config import RecoveryConfigBook
from coordinator.relay import NodeHandle, fanout
from coordinator.store_failure import log_failure
from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.keyop import SignedKeyOperation
from governance.recovery import (
    BackupBundle,
    DrillReport,
    EpochAttestation,
    RecoveryConfig,
    RecoveryOrder,
    RecoveryOrderKind,
    RecoveryReceipt,
    SignedRecoveryOrder,
)
from governance.roster import Roster
from governance.text import escape, quote
from mpcnet.common.agekeys import AgeKeyError, check_age_file
from mpcnet.common.rpc import RpcError, status_of
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

log = logging.getLogger("coordinator.ceremonies")
MAX_LISTED = 200  # ceremonies in one ListCeremonies answer (the newest)
DRILL_LIFETIME_MS = 20 * 3600 * 1000  # an open drill is failed this long after it opened: officers count only
# epoch attestations at most 24 h old (mpcnet.client.backup.ATTESTATION_MAX_AGE_MS), so a new drill attests afresh
Code = grpc.StatusCode
CEREMONY_ID_LEN = 16
MAX_AGE_FILE = 4096  # one officer's piece to one target (coordinator.inputs.MAX_PIECE_CIPHERTEXT)
OPEN = ("collecting", "running", "follow-up")
DRILL_MAX_MS = DRILL_LIFETIME_MS  # a drill still open after this fails, recorded (the key's next drill opens afresh)
RETRY_MS = 10_000  # a running ceremony waiting for an unavailable node, or a failed follow-up, is retried this often
UNAVAILABLE = (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED)


def _officer_index(config: RecoveryConfig, name: str) -> int | None:
    for j, o in enumerate(config.officers, start=1):
        if o.name == name:
            return j
    return None


class Ceremonies:
    """Drill, restore and export ceremonies. ``roster()`` is the roster in force."""

    def __init__(
        self, db: CoordinatorDb, audit: AuditLog, nodes: Mapping[int, NodeHandle], book: RecoveryConfigBook, backups: Backups,
        keyops: KeyOperations, roster: Callable[[], Roster | None], flush: Callable[[], None], *, name: str = "coordinator",
        timeout_s: float = 60.0,
    ) -> None:
        self.db = db
        self.audit = audit
        self.nodes = nodes
        self.book = book
        self.backups = backups
        self.keyops = keyops
        self.roster = roster
        self.flush = flush
        self.name = name
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()  # one open drill per key, even for concurrent StartDrill calls
        self._running: set[bytes] = set()
        self._retry_at: dict[bytes, float] = {}  # ceremony id -> time.monotonic() of its next try
        self.spawn: Callable[[bytes], None] = self._spawn  # tests run ceremonies inline

    # --- opening -------------------------------------------------------------------------------
    def start_drill(self, key_id: bytes, caller: str) -> CeremonyRecord:
        """``StartDrill``: a drill of the key's newest bundle (the key's open drill if there is
        one). NOT_FOUND / FAILED_PRECONDITION naming ``key_id``."""
        with self._open_lock:
            return self._start_drill(key_id, caller)

    def _start_drill(self, key_id: bytes, caller: str) -> CeremonyRecord:
        k = self.db.get_key(key_id)
        if k is None:
            raise RpcError(Code.NOT_FOUND, f"key_id: unknown key {key_id.hex()}")
        if k.status != "active":
            raise RpcError(Code.FAILED_PRECONDITION, f"key_id: key {key_id.hex()[:16]} is {k.status}, not active")
        epoch, committee = self.keyops.epoch_of(k)
        bundle = self.db.newest_bundle(key_id)
        for c in self.db.list_ceremonies(key_id, ("collecting", "running")):
            if c.kind != "drill" or self._expire(c) or self._superseded(c):
                continue
            return c
        if self.book.version == 0:
            raise RpcError(Code.FAILED_PRECONDITION, "key_id: no recovery officers are configured (mpc recovery officers set)")
        if bundle is None or bundle.epoch != epoch:
            raise RpcError(
                Code.FAILED_PRECONDITION, f"key_id: key {key_id.hex()[:16]} has no backup bundle of its epoch {epoch} yet; try again later"
            )
        config = self.book.config(bundle.config_version)
        assert config is not None
        full = self.db.get_bundle(bundle.digest)
        try:
            threshold = BackupBundle.from_file(full.bundle).key.threshold if full is not None else 0
        except GovernanceError:
            threshold = 0
        if threshold < 1:
            raise RpcError(Code.FAILED_PRECONDITION, f"key_id: the bundle {bundle.digest.hex()[:16]} stored here is unreadable")
        cid = os.urandom(CEREMONY_ID_LEN)
        attestations = self._epoch_attestations(key_id, cid, committee, epoch, threshold, caller)
        targets = tuple(
            Target(pos, i, self._recipient(i, "key_id"), attestation=attestations.get(i, b""))
            for pos, i in enumerate(committee, start=1)
        )
        rec = CeremonyRecord(
            cid, "drill", key_id, epoch, bundle.digest, bundle.config_version, config.quorum, "collecting",
            b"", "", targets, "", caller, now_ms(), now_ms(),
        )
        self.db.add_ceremony(rec, self._event(caller, "ceremony-opened", rec, attested=",".join(str(i) for i in sorted(attestations))))
        self.flush()
        log.info("key %s: drill %s opened (bundle %s, %d targets, quorum %d)", key_id.hex()[:16], rec.ceremony_id.hex(),
                 bundle.digest.hex()[:16], len(targets), config.quorum)
        return rec

    def _epoch_attestations(
        self, key_id: bytes, cid: bytes, committee: tuple[int, ...], epoch: int, threshold: int, caller: str
    ) -> dict[int, bytes]:
        """``AttestEpoch`` on every committee member for drill ``cid``: node -> its verified
        attestation of ``epoch``. FAILED_PRECONDITION naming ``key_id`` and each node that did not
        attest ``epoch`` (another epoch, a bad signature, unreachable) when fewer than
        ``threshold`` did; audited ``drill-refused``."""
        roster = self.roster()
        req = node_pb2.AttestEpochRequest(key_id=key_id, ceremony_id=cid)
        calls: dict[int, tuple[Callable[..., object], object]] = {
            i: (self.nodes[i].stub.AttestEpoch, req) for i in committee if i in self.nodes
        }
        ok, errs = fanout(calls, self.timeout_s) if calls else ({}, {})
        good: dict[int, bytes] = {}
        why: list[str] = []
        for i in committee:
            if i in errs:
                code, details = status_of(errs[i])
                why.append(f"node {i}: {code.name}: {escape(details[:200])}")
                continue
            if i not in ok:
                why.append(f"node {i}: not reachable")
                continue
            raw = bytes(getattr(ok[i], "attestation", b""))
            entry = None if roster is None else roster.entry(i)
            try:
                att = EpochAttestation.from_bytes(raw)
            except GovernanceError as e:
                why.append(f"node {i}: malformed attestation ({e.field}: {escape(e.reason[:100])})")
                continue
            if entry is None or not att.verify(entry.identity_key):
                why.append(f"node {i}: the attestation's signature does not verify with its roster identity key")
            elif (att.ceremony_id, att.key_id, att.node) != (cid, key_id, i):
                why.append(f"node {i}: the attestation is for another drill, key or node")
            elif att.epoch != epoch:
                why.append(f"node {i}: holds the key at epoch {att.epoch}, the bundle is of epoch {epoch}")
            else:
                good[i] = raw
        if len(good) < threshold:
            err = RpcError(
                Code.FAILED_PRECONDITION,
                f"key_id: only {len(good)} of the committee attest epoch {epoch} of key {key_id.hex()[:16]} for this drill, the"
                f" threshold {threshold} must ({'; '.join(why)})",
            )
            facts: dict[str, str | int | bool] = {
                "key_id": key_id.hex(), "ceremony": cid.hex(), "epoch": epoch, "attested": ",".join(str(i) for i in sorted(good)),
            }
            self.audit.append(caller, "drill-refused", outcome="refused", details=facts | detail_text("reason", err.message[:500]))
            self.flush()
            raise err
        return good

    def open_order(self, signed: SignedRecoveryOrder, actor: str) -> CeremonyRecord:
        """The ceremony of an applied (verified, installed) order; its id is the order id.
        Idempotent."""
        order = signed.order
        got = self.db.get_ceremony(order.order_id)
        if got is not None:
            return got
        config = self.book.config(order.config_version)
        if config is None:
            raise RpcError(Code.FAILED_PRECONDITION, f"signed_order.order.config_version: unknown configuration {order.config_version}")
        export = order.kind == RecoveryOrderKind.EXPORT
        targets = tuple(
            Target(t.share_index, 0, order.export_recipient) if export else
            Target(t.share_index, t.node, self._recipient(t.node, "signed_order.order.targets"))
            for t in order.targets
        )
        kind = "export" if export else "restore"
        rec = CeremonyRecord(
            order.order_id, kind, order.key_id, order.epoch, order.bundle_digest, order.config_version, config.quorum,
            "collecting", signed.to_bytes(), order.follow_up.proposal_id if order.follow_up is not None else "", targets, "",
            actor, now_ms(), now_ms(),
        )
        action = "break-glass-export" if export else "ceremony-opened"
        self.db.add_ceremony(rec, self._event(actor, action, rec, reason=order.reason))
        self.flush()
        if export:
            log.warning("BREAK-GLASS: export order %s of key %s applied: officers may now export the whole private key",
                        order.order_id.hex(), order.key_id.hex()[:16])
        else:
            log.info("key %s: restore %s opened for share(s) %s", order.key_id.hex()[:16], order.order_id.hex(),
                     [t.share_index for t in targets])
        return rec

    def _recipient(self, node: int, field: str) -> bytes:
        roster = self.roster()
        entry = None if roster is None else roster.entry(node)
        if entry is None or not entry.active:
            raise RpcError(Code.FAILED_PRECONDITION, f"{field}: node {node} is not active in the roster in force")
        return bytes(entry.encryption_key)

    # --- officers' pieces ----------------------------------------------------------------------
    def submit(self, req: coordinator_pb2.SubmitRecoveryPiecesRequest, caller: str) -> CeremonyRecord:
        """``SubmitRecoveryPieces`` (the request's sizes were checked by coordinator.inputs).
        Audited, refusals too."""
        try:
            rec, n = self._submit(req, caller)
        except RpcError as e:
            self.audit.append(caller, "ceremony-pieces", outcome="refused", details={
                "ceremony": bytes(req.ceremony_id).hex()[:32],
            } | detail_text("reason", e.message))
            raise
        self.flush()
        if n >= rec.quorum:
            self.spawn(rec.ceremony_id)
        return self.db.get_ceremony(rec.ceremony_id) or rec

    def _submit(self, req: coordinator_pb2.SubmitRecoveryPiecesRequest, caller: str) -> tuple[CeremonyRecord, int]:
        officer = req.officer
        if officer != caller:
            raise RpcError(
                Code.PERMISSION_DENIED, f"officer: certificate name {quote(caller)} differs from the officer {quote(officer)}"
            )
        cid = bytes(req.ceremony_id)
        rec = self.db.get_ceremony(cid)
        if rec is None:
            raise RpcError(Code.NOT_FOUND, f"ceremony_id: unknown ceremony {cid.hex()}")
        if rec.state != "collecting":
            raise RpcError(Code.FAILED_PRECONDITION, f"ceremony_id: ceremony {cid.hex()} is {rec.state}, not collecting pieces")
        if self._expire(rec):
            why = (self.db.get_ceremony(cid) or rec).error
            raise RpcError(Code.FAILED_PRECONDITION, f"ceremony_id: ceremony {cid.hex()} failed: {why}")
        if self._superseded(rec):
            now = self.db.get_ceremony(cid)
            raise RpcError(Code.FAILED_PRECONDITION, f"ceremony_id: ceremony {cid.hex()} failed: {now.error if now else 'superseded'}")
        config = self.book.config(rec.config_version)
        j = None if config is None else _officer_index(config, officer)
        if config is None or j is None:
            raise RpcError(
                Code.PERMISSION_DENIED, f"officer: {quote(officer)} is not an officer of recovery configuration {rec.config_version}"
            )
        wanted = {t.share_index for t in rec.targets}
        seen: set[int] = set()
        pieces: list[tuple[int, bytes]] = []
        for i, p in enumerate(req.pieces):
            s = int(p.share_index)
            if s not in wanted:
                raise RpcError(Code.INVALID_ARGUMENT, f"pieces[{i}].share_index: ceremony {cid.hex()} has no target for share {s}")
            if s in seen:
                raise RpcError(Code.INVALID_ARGUMENT, f"pieces[{i}].share_index: share {s} given twice")
            try:  # structure only: an age file to exactly one X25519 recipient
                check_age_file(bytes(p.ciphertext), MAX_AGE_FILE)
            except AgeKeyError as e:
                raise RpcError(Code.INVALID_ARGUMENT, f"pieces[{i}].ciphertext: {e}") from None
            seen.add(s)
            pieces.append((s, bytes(p.ciphertext)))
        if seen != wanted:
            raise RpcError(Code.INVALID_ARGUMENT, f"pieces: missing the piece(s) of share(s) {sorted(wanted - seen)}")
        ev = self._event(caller, "ceremony-pieces", rec, outcome="accepted", officer=officer, officer_index=j)
        try:
            n = self.db.add_pieces(cid, officer, j, pieces, ev, now_ms())
        except AlreadySubmitted:
            raise RpcError(Code.ALREADY_EXISTS, f"officer: {quote(officer)} already gave pieces for ceremony {cid.hex()}") from None
        except ValueError as e:
            raise RpcError(Code.FAILED_PRECONDITION, f"ceremony_id: {e}") from None
        log.info("ceremony %s (%s): pieces from officer %d (%d of %d needed)", cid.hex(), rec.kind, j, n, rec.quorum)
        return rec, n

    # --- running -------------------------------------------------------------------------------
    def _spawn(self, cid: bytes) -> None:
        threading.Thread(target=self.run, args=(cid,), name="ceremony", daemon=True).start()

    def check(self) -> None:
        """The background pass: run the ceremonies that have their pieces but were interrupted
        (a restart, an unavailable node) and follow the follow-up operations of restores."""
        now = time.monotonic()  # the retry's clock: a wall clock stepped back must not stretch it
        for rec in self.db.list_ceremonies(states=OPEN):
            if self._expire(rec) or self._superseded(rec):
                continue
            with self._lock:
                if now < self._retry_at.get(rec.ceremony_id, 0.0):
                    continue
            if rec.state == "follow-up":
                self._follow_up(rec)
            elif rec.state == "running" or len({p.officer for p in self.db.ceremony_pieces(rec.ceremony_id)}) >= rec.quorum:
                self.run(rec.ceremony_id)

    def run(self, cid: bytes) -> None:
        """Run ceremony ``cid`` as far as it goes now (one run at a time per ceremony)."""
        with self._lock:
            if cid in self._running:
                return
            self._running.add(cid)
        try:
            self._run(cid)
        except Exception as e:
            log_failure(log, e, f"ceremony {cid.hex()}: run failed; retried by the background pass", self.db.health.saw)
            self._later(cid)
        finally:
            with self._lock:
                self._running.discard(cid)

    def _clock(self, rec: CeremonyRecord) -> int:
        """Now (ms since the epoch) for ``rec``'s expiry judgements: the store's expiry clock, or
        later by the steady time since the ceremony opened (:meth:`CoordinatorDb.ceremony_clock_ms`:
        one that expired while the coordinator was stopped is not revived by a step back)."""
        return self.db.ceremony_clock_ms(rec.ceremony_id, rec.created_ms, now_ms())

    def _expire(self, rec: CeremonyRecord) -> bool:
        """True (and the ceremony marked ``failed``, audited ``ceremony-failed``) when ``rec`` is a
        restore or export whose order expired by the coordinator's clock before its follow-up
        started (a started follow-up is not stopped), or a drill open for more than
        :data:`DRILL_MAX_MS` (officers who never came, a node down for good: the key's next drill
        must not wait for it for ever)."""
        if rec.state not in ("collecting", "running"):
            return False
        if rec.kind == "drill":
            if self._clock(rec) - rec.created_ms < DRILL_MAX_MS:  # expiry and steady clocks: a step back keeps none open
                return False
            waiting = "; ".join(f"share {t.share_index} (node {t.node}): {t.error}" for t in rec.targets if t.state == "waiting")
            why = (f"the drill did not complete within {DRILL_MAX_MS // 3_600_000} h"
                   + (f" ({waiting})" if waiting else f" ({rec.state}: too few officers gave pieces)")
                   + "; start a new one (mpc backup drill)")
            self._finish(rec, "failed", None, why, self._event(self.name, "drill-recorded", rec, outcome="failed", reason=why),
                         from_states=(rec.state,), drill=(False, "failed: " + why))
            log.warning("drill %s of key %s: %s", rec.ceremony_id.hex(), rec.key_id.hex()[:16], why)
            return True
        if not rec.signed_order:
            return False
        expires = _expires_ms(rec)
        if expires is not None and self._clock(rec) < expires:
            return False
        why = _expired_text(rec)
        self._finish(rec, "failed", None, why, self._event(self.name, "ceremony-failed", rec, reason=why), from_states=(rec.state,))
        log.warning("ceremony %s (%s): %s", rec.ceremony_id.hex(), rec.kind, why)
        return True

    def _superseded(self, rec: CeremonyRecord) -> bool:
        """True (and the drill marked ``failed``, audited ``ceremony-failed`` outcome
        ``superseded``) when ``rec`` is an open drill whose key left its epoch (a refresh or
        reshare committed, or the key is no longer active), whose bundle is no longer the key's
        newest: such a drill would hand a holder its refreshed-away share, and while open it would
        be the key's drill for ever (StartDrill answers the open one). A drill open too long is
        :meth:`_expire`'s (:data:`DRILL_MAX_MS`: officers refuse attestations older than 24 h)."""
        if rec.kind == "restore" and rec.state in ("collecting", "running"):
            return self._restore_superseded(rec)
        if rec.kind != "drill" or rec.state not in ("collecting", "running"):
            return False
        k = self.db.get_key(rec.key_id)
        newest = self.db.newest_bundle(rec.key_id)
        epoch = self.keyops.epoch_of(k)[0] if k is not None else None
        if k is not None and k.status == "active" and epoch == rec.epoch and newest is not None and (
            newest.digest == rec.bundle_digest
        ):
            return False  # (a drill open too long is failed by _expire: DRILL_MAX_MS)
        if k is None or k.status != "active":
            why = f"the key is {'gone' if k is None else k.status}"
        elif epoch != rec.epoch:
            why = f"the key moved on to epoch {epoch}"
        else:
            why = "a newer bundle of the key superseded this drill's"
        why = f"superseded: {why} (drill of epoch {rec.epoch}; start a new drill)"
        self._finish(rec, "failed", None, why, self._event(self.name, "ceremony-failed", rec, outcome="superseded", reason=why),
                     from_states=(rec.state,))
        log.info("ceremony %s (drill): %s", rec.ceremony_id.hex(), why)
        return True

    def _restore_superseded(self, rec: CeremonyRecord) -> bool:
        """True (and the restore marked ``failed``, audited ``ceremony-failed`` outcome
        ``superseded``) when the key left the order's epoch before the restore's follow-up
        started: the follow-up starts from that epoch and can never run, and officers' pieces
        would only rebuild refreshed-away shares (an export may use any epoch's bundle: the
        shares of every epoch interpolate to the same key)."""
        k = self.db.get_key(rec.key_id)
        epoch = self.keyops.epoch_of(k)[0] if k is not None else None
        if k is not None and k.status == "active" and epoch == rec.epoch:
            return False
        if rec.follow_up and self.keyops.db.get_key_operation(rec.follow_up) is not None:
            return False  # its own follow-up started (and may have moved the key on) before the state said so
        why = (f"superseded: the key is {'gone' if k is None else k.status}" if k is None or k.status != "active"
               else f"superseded: the key moved on to epoch {epoch}")
        why += f" (restore of epoch {rec.epoch}; a new order is needed)"
        self._finish(rec, "failed", None, why, self._event(self.name, "ceremony-failed", rec, outcome="superseded", reason=why),
                     from_states=(rec.state,))
        log.warning("ceremony %s (restore): %s", rec.ceremony_id.hex(), why)
        return True

    def _later(self, cid: bytes) -> None:
        with self._lock:
            self._retry_at[cid] = time.monotonic() + RETRY_MS / 1000

    def _run(self, cid: bytes) -> None:
        rec = self.db.get_ceremony(cid)
        if rec is None or self._expire(rec) or self._superseded(rec):
            return
        pieces = self.db.ceremony_pieces(cid)
        officers = {p.officer for p in pieces}
        if rec.state == "collecting":
            if len(officers) < rec.quorum:
                return
            if not self.db.update_ceremony(cid, from_states=("collecting",), state="running", now=now_ms(),
                                           audit=self._event(self.name, "ceremony-running", rec, officers=len(officers))):
                return
            self.flush()
            rec = self.db.get_ceremony(cid) or rec
        if rec.state == "follow-up":
            self._follow_up(rec)
            return
        if rec.state != "running":
            return
        if rec.kind == "export":
            self._finish(rec, "done", rec.targets, "", self._event(self.name, "break-glass-export", rec, outcome="pieces-collected",
                                                                     officers=",".join(sorted(officers))[:300]))
            log.warning("BREAK-GLASS: export %s of key %s: %d officers' pieces collected for the off-line recipient", cid.hex(),
                        rec.key_id.hex()[:16], len(officers))
            return
        bundle_rec = self.db.get_bundle(rec.bundle_digest)
        if bundle_rec is None:
            self._finish(rec, "failed", rec.targets, f"bundle {rec.bundle_digest.hex()} is not stored here",
                         self._event(self.name, "ceremony-failed", rec, reason="bundle missing"))
            return
        try:
            bundle = BackupBundle.from_file(bundle_rec.bundle)
        except GovernanceError as e:
            self._finish(rec, "failed", rec.targets, f"stored bundle unreadable: {e.field}: {e.reason}",
                         self._event(self.name, "ceremony-failed", rec, reason="bundle unreadable"))
            return
        # the targets reconstruct shares from the pieces: background refills start nothing on them meanwhile
        with self.keyops.foreground.hold(f"{rec.kind} ceremony {cid.hex()}",
                                         nodes={t.node for t in rec.targets if t.state != "ok"}):
            targets = self._call_targets(rec, bundle, bundle_rec.bundle, pieces)
        waiting = [t for t in targets if t.state == "waiting"]
        failed = [t for t in targets if t.state == "failed"]
        if waiting:  # a node did not answer: keep what we learnt, retry later
            self.db.update_ceremony(cid, from_states=("running",), state="running", now=now_ms(), targets=targets,
                                    error=("waiting for " + "; ".join(f"share {t.share_index} (node {t.node}): {t.error}" for t in waiting)
                                           + f"; retried every {RETRY_MS // 1000} s")[:1000])
            self._later(cid)
            return
        if rec.kind == "drill":
            self._drill_done(rec, targets)
            return
        if failed:
            config = self.book.config(rec.config_version)
            # only a refusal about the pieces themselves (too few verify) can be fixed by more officers;
            # any other (the target still holds the key, another order or bundle) fails the ceremony now
            more = config is not None and len(officers) < len(config.officers) and all(_pieces_fault(t) for t in failed)
            why = "; ".join(f"share {t.share_index} (node {t.node}): {t.error}" for t in failed)
            if more:
                self._finish(rec, "collecting", targets, f"{why}; more officers may give pieces",
                             self._event(self.name, "ceremony-collecting", rec, reason=why), from_states=("running",))
            else:
                self._finish(rec, "failed", targets, why, self._event(self.name, "ceremony-failed", rec, reason=why))
            return
        self.db.update_ceremony(cid, from_states=("running",), state="running", now=now_ms(), targets=targets, error="")
        self._start_follow_up(rec)

    def _call_targets(self, rec: CeremonyRecord, bundle: BackupBundle, data: bytes, pieces: list[PieceRecord]) -> tuple[Target, ...]:
        """Send every target that has not succeeded yet its pieces; the targets as judged."""
        by_share: dict[int, list[bytes]] = {}
        for p in pieces:
            by_share.setdefault(p.share_index, []).append(p.ciphertext)
        calls: dict[int, tuple[Callable[..., object], object]] = {}
        for t in rec.targets:
            if t.state == "ok" or t.node not in self.nodes:
                continue
            h = self.nodes[t.node]
            if rec.kind == "drill":
                calls[t.node] = (h.stub.DrillShare, node_pb2.DrillShareRequest(
                    ceremony_id=rec.ceremony_id, bundle=data, pieces=by_share.get(t.share_index, [])))
            else:
                calls[t.node] = (h.stub.RestoreShare, node_pb2.RestoreShareRequest(
                    signed_order=rec.signed_order, bundle=data, pieces=by_share.get(t.share_index, [])))
        ok, errs = fanout(calls, self.timeout_s) if calls else ({}, {})
        roster = self.roster()
        out = []
        for t in rec.targets:
            if t.state == "ok":
                out.append(t)
            elif t.node not in calls:
                out.append(Target(t.share_index, t.node, t.recipient, "waiting", f"node {t.node} is not reachable", t.outcomes))
            elif t.node in errs:
                code, details = status_of(errs[t.node])
                state = "waiting" if code in UNAVAILABLE else "failed"
                out.append(Target(t.share_index, t.node, t.recipient, state, f"{code.name}: {escape(details[:300])}", t.outcomes))
            else:
                out.append(self._judge(rec, t, ok[t.node], bundle, roster))
        # a target's epoch attestation (drill) stays with it whatever the node answered
        return tuple(dataclasses.replace(new, attestation=old.attestation) for new, old in zip(out, rec.targets, strict=True))

    def _judge(self, rec: CeremonyRecord, t: Target, resp: Any, bundle: BackupBundle, roster: Roster | None) -> Target:
        """A target node's answer: its signed report/receipt, verified against its roster
        identity key and checked against the ceremony and the bundle."""
        outcomes = tuple(
            Outcome(int(o.officer), escape(o.name[:64]), escape(o.outcome[:32])) for o in getattr(resp, "outcomes", ())
        ) or t.outcomes  # a node answering a retry with its stored receipt judges nothing again
        entry = None if roster is None else roster.entry(t.node)
        if entry is None:
            return Target(t.share_index, t.node, t.recipient, "failed", "the node is not in the roster", outcomes)
        try:
            if rec.kind == "drill":
                report = DrillReport.from_bytes(bytes(resp.report))
                fields = (report.ceremony_id, report.key_id, report.epoch, report.share_index, report.node, report.bundle_digest)
                if not report.verify(entry.identity_key):
                    return Target(t.share_index, t.node, t.recipient, "failed", "the drill report's signature does not verify", outcomes)
                if fields != (rec.ceremony_id, rec.key_id, rec.epoch, t.share_index, t.node, rec.bundle_digest):
                    return Target(t.share_index, t.node, t.recipient, "failed", "the drill report is for another drill or share", outcomes)
                if not report.ok:
                    bad = ", ".join(f"officer {j}: {o}" for j, o in report.outcomes if o != "ok")
                    return Target(t.share_index, t.node, t.recipient, "failed", f"the share was not restored ({escape(bad)})", outcomes)
                return Target(t.share_index, t.node, t.recipient, "ok", "", outcomes)
            receipt = RecoveryReceipt.from_bytes(bytes(resp.receipt))
            if not receipt.verify(entry.identity_key):
                return Target(t.share_index, t.node, t.recipient, "failed", "the recovery receipt's signature does not verify", outcomes)
            fields2 = (receipt.order_id, receipt.key_id, receipt.epoch, receipt.share_index, receipt.node)
            if fields2 != (rec.ceremony_id, rec.key_id, rec.epoch, t.share_index, t.node):
                return Target(t.share_index, t.node, t.recipient, "failed", "the recovery receipt is for another order or share", outcomes)
            if not hmac.compare_digest(receipt.public_share, bundle.key.public_shares[t.share_index - 1]):
                return Target(t.share_index, t.node, t.recipient, "failed", "the restored share is not the bundle's public share", outcomes)
            return Target(t.share_index, t.node, t.recipient, "ok", "", outcomes)
        except GovernanceError as e:
            return Target(t.share_index, t.node, t.recipient, "failed", f"malformed answer: {e.field}: {e.reason}", outcomes)

    def _drill_done(self, rec: CeremonyRecord, targets: tuple[Target, ...]) -> None:
        failed = [t for t in targets if t.state != "ok"]
        ok = not failed
        outcome = "ok" if ok else "failed: " + "; ".join(f"share {t.share_index} (node {t.node}): {t.error}" for t in failed)
        by_officer: dict[str, set[str]] = {}
        for t in targets:
            for o in t.outcomes:
                by_officer.setdefault(f"{o.officer}", set()).add(o.outcome)
        ev = self._event(self.name, "drill-recorded", rec, outcome="ok" if ok else "failed",
                         officers=";".join(f"{j}={','.join(sorted(v))}" for j, v in sorted(by_officer.items()))[:500],
                         reason=outcome)
        self._finish(rec, "done" if ok else "failed", targets, "" if ok else outcome, ev, drill=(ok, outcome))
        log.info("key %s: drill %s %s", rec.key_id.hex()[:16], rec.ceremony_id.hex(), outcome[:300])

    def _start_follow_up(self, rec: CeremonyRecord) -> None:
        order = SignedRecoveryOrder.from_bytes(rec.signed_order).order
        assert order.follow_up is not None
        try:
            op_id = self.keyops.start(SignedKeyOperation(order.follow_up, ()), "recovery-order", self.name)
        except RpcError as e:
            if e.code != Code.ALREADY_EXISTS:
                self.db.update_ceremony(rec.ceremony_id, from_states=("running",), state="running", now=now_ms(),
                                        error=f"follow-up not started: {e.message}")
                self._later(rec.ceremony_id)
                return
            op_id = order.follow_up.proposal_id  # started before a restart
        self._finish(rec, "follow-up", None, "", self._event(self.name, "ceremony-follow-up", rec, operation=op_id),
                     follow_up=op_id)
        log.info("restore %s: every target restored; follow-up operation %s started", rec.ceremony_id.hex(), op_id)

    def _follow_up(self, rec: CeremonyRecord) -> None:
        op = self.keyops.db.get_key_operation(rec.follow_up)
        if op is None or op.state == "failed":
            expires = _expires_ms(rec)
            if expires is None or self._clock(rec) >= expires:  # the nodes no longer start it: say so, stop retrying
                why = f"follow-up operation {rec.follow_up} did not complete and {_expired_text(rec)}"
                self._finish(rec, "failed", None, why, self._event(self.name, "ceremony-failed", rec, reason=why),
                             from_states=("follow-up",))
                log.warning("restore %s: %s", rec.ceremony_id.hex(), why)
                return
            try:  # a failed follow-up runs again (its old epoch is still current)
                order = SignedRecoveryOrder.from_bytes(rec.signed_order).order
                assert order.follow_up is not None
                self.keyops.start(SignedKeyOperation(order.follow_up, ()), "recovery-order", self.name)
            except RpcError as e:
                self.db.update_ceremony(rec.ceremony_id, from_states=("follow-up",), state="follow-up", now=now_ms(),
                                        error=f"follow-up operation: {e.message}")
            self._later(rec.ceremony_id)
            return
        if op.state == "done":
            self._finish(rec, "done", None, "", self._event(self.name, "ceremony-done", rec, operation=op.op_id),
                         from_states=("follow-up",))
            self.backups.soon(rec.key_id)
            log.info("restore %s done: operation %s committed", rec.ceremony_id.hex(), op.op_id)

    def _finish(
        self, rec: CeremonyRecord, state: str, targets: tuple[Target, ...] | None, error: str, ev: AuditEvent, *,
        from_states: tuple[str, ...] = ("running",), follow_up: str | None = None, drill: tuple[bool, str] | None = None,
    ) -> None:
        if self.db.update_ceremony(rec.ceremony_id, from_states=from_states, state=state, now=now_ms(), targets=targets,
                                   error=error, follow_up=follow_up, audit=ev, drill=drill):
            self.flush()

    def _event(self, actor: str, action: str, rec: CeremonyRecord, *, outcome: str = "", **extra: str | int | bool) -> AuditEvent:
        details: dict[str, str | int | bool] = {
            "ceremony": rec.ceremony_id.hex(), "kind": rec.kind, "key_id": rec.key_id.hex(), "epoch": rec.epoch,
            "bundle_digest": rec.bundle_digest.hex(), "shares": ",".join(str(t.share_index) for t in rec.targets),
            "nodes": ",".join(str(t.node) for t in rec.targets),
        }
        for k, v in extra.items():
            if isinstance(v, str):
                details.update(detail_text(k, v[:500]))
            else:
                details[k] = v
        return AuditEvent(actor, action, "", outcome or rec.kind, details)

    # --- reading -------------------------------------------------------------------------------
    def get(self, cid: bytes) -> CeremonyRecord:
        rec = self.db.get_ceremony(cid)
        if rec is None:
            raise RpcError(Code.NOT_FOUND, f"ceremony_id: unknown ceremony {cid.hex()}")
        return rec

    def message(self, rec: CeremonyRecord) -> coordinator_pb2.Ceremony:
        pieces = self.db.ceremony_pieces(rec.ceremony_id)
        officers: list[str] = []
        for p in pieces:
            if p.officer not in officers:
                officers.append(p.officer)
        out = coordinator_pb2.Ceremony(
            ceremony_id=rec.ceremony_id, kind=rec.kind, key_id=rec.key_id, epoch=rec.epoch, bundle_digest=rec.bundle_digest,
            state=rec.state, officers=officers, quorum=rec.quorum, signed_order=rec.signed_order,
            follow_up_operation=rec.follow_up, error=rec.error, created_unix_ms=rec.created_ms, updated_unix_ms=rec.updated_ms,
            started_by=rec.started_by,
            targets=[
                coordinator_pb2.CeremonyTarget(
                    share_index=t.share_index, node=t.node, recipient=t.recipient, state=t.state, error=t.error,
                    outcomes=[node_pb2.OfficerOutcome(officer=o.officer, name=o.name, outcome=o.outcome) for o in t.outcomes],
                )
                for t in rec.targets
            ],
        )
        if rec.kind == "drill":
            out.epoch_attestations.extend(t.attestation for t in rec.targets if t.attestation)
        if rec.kind == "export":
            out.export_pieces.extend(coordinator_pb2.TargetPiece(share_index=p.share_index, ciphertext=p.ciphertext) for p in pieces)
        return out

    def listing(self, key_id: bytes | None) -> list[coordinator_pb2.Ceremony]:
        """``ListCeremonies``: the newest :data:`MAX_LISTED` ceremonies (of ``key_id``; None: of
        every key), newest first: drills accumulate for ever, and one answer must stay far below
        the gRPC message limit (a ceremony carries its order, attestations and export pieces)."""
        return [self.message(r) for r in self.db.list_ceremonies(key_id, limit=MAX_LISTED)]


def _expires_ms(rec: CeremonyRecord) -> int | None:
    """When the order of a restore/export ceremony expires (None: no readable order)."""
    try:
        return SignedRecoveryOrder.from_bytes(rec.signed_order).order.expires_ms
    except GovernanceError:
        return None


def _pieces_fault(t: Target) -> bool:
    """Whether target ``t`` was refused because of the officers' pieces (its error, ``CODE:
    field: reason``, names the ``pieces`` field): more officers may still fix it."""
    return t.error.partition(": ")[2].startswith("pieces")


def _expired_text(rec: CeremonyRecord) -> str:
    expires = _expires_ms(rec)
    if expires is None:
        return "the recovery order stored with the ceremony is unreadable"
    return f"the recovery order expired at {expires} ms (a new admin order is needed)"


def order_kind(order: RecoveryOrder) -> str:
    return "export" if order.kind == RecoveryOrderKind.EXPORT else "restore"
