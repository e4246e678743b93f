"""Backup bundles on the coordinator (issue 12): collecting them, superseding old ones, serving
them (``ExportBackup``, ``ListBackups``) and the per-key backup/drill status of ``ClusterStatus``.

A bundle of key K at epoch e for recovery configuration v holds one signed part from every
committee member (``GetBackupPart``: the node's share split m-of-k among the officers, Feldman
commitments, one age file per officer), the key's public record, the signed configuration
change and the roster history the node signatures are checked against. The coordinator builds
the key's public record from its own key record and the parts' first commitments (each node's
public share, ``C_0 = x_i*G``; :func:`mpcnet.common.bundle.verify_bundle` then checks that they
interpolate to the public key, and each part's ``key_digest`` binds the node's own record), and
verifies the whole bundle publicly before storing it; a bundle that does not verify is never
stored (logged and audited, naming the node at fault). Storing a bundle marks the key's older
bundles superseded, in the same transaction as its ``backup-created`` audit entry.

Bundles are made after a keygen's activation, after a key operation's commit and after a
configuration change (:meth:`Backups.soon`, in a thread), and by the background pass
(:meth:`Backups.check`) for every active key without a bundle of its current epoch and
configuration, with a per-key backoff after failures (doubling, at most
:data:`BACKOFF_MAX_MS`). The coordinator never decrypts anything: it only handles public data
and ciphertexts (this module imports no secret crypto).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping

import grpc

from coordinator.backup_store import BundleRecord
from coordinator.db import AuditEvent, CoordinatorDb, KeyRecord, now_ms
from coordinator.recovery_config import RecoveryConfigBook
from coordinator.relay import NodeHandle, fanout
from coordinator.store_failure import one_line, store_failure
from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.policy import AdminSet
from governance.recovery import BackupBundle, BackupKey, SignedBackupPart
from governance.roster import SignedRosterChange
from governance.text import escape
from mpcnet.common.bundle import BundleError, assemble_bundle, verify_bundle
from mpcnet.common.rpc import RpcError, status_of
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

log = logging.getLogger("coordinator.backups")
Code = grpc.StatusCode
BACKOFF_MS = 30_000
BACKOFF_MAX_MS = 3_600_000
PART_TIMEOUT_S = 30.0
MAX_LISTED = 1000  # bundles in one ListBackups answer (the newest: a scheduled refresh adds one per epoch, for ever)


class CollectFailed(Exception):
    """A bundle could not be made now (a node down, a refusal, a part that does not verify)."""


class Backups:
    """Bundle collection and reading. ``epoch_of(key)`` is the key's (epoch, committee);
    ``roster_history()`` the coordinator's signed roster chain, version 1 first."""

    def __init__(
        self, admins: AdminSet, db: CoordinatorDb, audit: AuditLog, nodes: Mapping[int, NodeHandle], book: RecoveryConfigBook,
        epoch_of: Callable[[KeyRecord], tuple[int, tuple[int, ...]]],
        roster_history: Callable[[], tuple[SignedRosterChange, ...]], flush: Callable[[], None], *, name: str = "coordinator",
    ) -> None:
        self.admins = admins
        self.db = db
        self.audit = audit
        self.nodes = nodes
        self.book = book
        self.epoch_of = epoch_of
        self.roster_history = roster_history
        self.flush = flush
        self.name = name
        self._lock = threading.Lock()
        self._busy: set[bytes] = set()
        self._backoff: dict[bytes, tuple[int, int]] = {}  # key -> (failures in a row, next try unix ms)
        self._reported: dict[bytes, str] = {}

    # --- collecting ----------------------------------------------------------------------------
    def needs_bundle(self, k: KeyRecord) -> bool:
        """True if active key ``k`` has no bundle of its current epoch and the configuration in force."""
        version = self.book.version
        if version == 0 or k.status != "active":
            return False
        newest = self.db.newest_bundle(k.key_id)
        epoch, _ = self.epoch_of(k)
        return newest is None or (newest.epoch, newest.config_version) != (epoch, version)

    def soon(self, key_id: bytes | None = None) -> None:
        """Collect the bundle of ``key_id`` (every active key: None) now, in a thread, whatever
        the backoff (a keygen, a commit or a configuration change just happened)."""
        with self._lock:
            if key_id is None:
                self._backoff.clear()
            else:
                self._backoff.pop(key_id, None)
        threading.Thread(target=self.check, args=(key_id,), name="backup", daemon=True).start()

    def node_back(self, i: int) -> None:
        """Node ``i`` answers again after being down: every key that is backing off (its
        collection failed, perhaps because that node was down, for up to
        :data:`BACKOFF_MAX_MS`) is tried again at the next background pass, not an hour later."""
        with self._lock:
            waiting = len(self._backoff)
            self._backoff.clear()
        if waiting:
            log.info("node %d is back: the %d key(s) without a bundle are tried again now", i, waiting)

    def waiting(self, key_id: bytes, now: int | None = None) -> str:
        """Why key ``key_id`` has no bundle yet (its last collection failure, escaped, and when it is
        tried next), or "" if no collection of it failed since this coordinator started."""
        now = monotonic_ms() if now is None else now
        with self._lock:
            why = self._reported.get(key_id, "")
            failures, at = self._backoff.get(key_id, (0, 0))
        if not why:
            return ""
        when = "at the next pass" if at <= now else f"in {(at - now + 999) // 1000} s"
        return f"{escape(why[:400])} (failed {failures} time(s) in a row; next try {when})"

    def check(self, only: bytes | None = None) -> list[bytes]:
        """The background pass: collect the bundle of every active key that needs one and is
        not backing off (``only``: that key alone). Returns the digests stored."""
        if self.book.version == 0:
            return []
        stored = []
        now = monotonic_ms()  # the backoff's clock: a wall clock stepped back must not stretch it
        for k in self.db.list_keys("active"):
            if only is not None and k.key_id != only:
                continue
            with self._lock:
                if k.key_id in self._busy or now < self._backoff.get(k.key_id, (0, 0))[1]:
                    continue
                self._busy.add(k.key_id)
            try:
                if not self.needs_bundle(k):
                    continue
                digest = self.collect(k)
                stored.append(digest)
                with self._lock:
                    self._backoff.pop(k.key_id, None)
                    self._reported.pop(k.key_id, None)
            except CollectFailed as e:
                self._failed(k.key_id, str(e))
            except Exception as e:  # never let one key stop the pass
                store = store_failure(e)
                if store is None:
                    log.exception("key %s: backup collection failed unexpectedly", k.key_id.hex()[:16])
                    self._failed(k.key_id, f"internal error ({type(e).__name__})")
                else:  # the host's condition (disk full): named, and tried again at the first delay, not an hour later
                    self._failed(k.key_id, f"the coordinator cannot use its {store} ({one_line(e)})", grow=False)
            finally:
                with self._lock:
                    self._busy.discard(k.key_id)
        return stored

    def _failed(self, key_id: bytes, why: str, *, grow: bool = True) -> None:
        """Record that ``key_id``'s collection failed for ``why``: its next try waits
        :data:`BACKOFF_MS` doubling per failure in a row up to :data:`BACKOFF_MAX_MS` (``grow``
        False: :data:`BACKOFF_MS`, a store failure of the coordinator's own, not the nodes');
        audited when the reason is new (a store failure that also refuses the audit entry is logged)."""
        with self._lock:
            failures = self._backoff.get(key_id, (0, 0))[0] + 1
            delay = min(BACKOFF_MS << min(failures - 1, 20), BACKOFF_MAX_MS) if grow else BACKOFF_MS
            self._backoff[key_id] = (failures, monotonic_ms() + delay)
            again = self._reported.get(key_id) == why
            self._reported[key_id] = why
        log.warning("key %s: no backup bundle yet (%s); retrying in %d s", key_id.hex()[:16], why, delay // 1000)
        if not again:
            try:
                self.audit.append(self.name, "backup-created", outcome="failed",
                                  details={"key_id": key_id.hex()} | detail_text("reason", why))
            except Exception as e:
                if store_failure(e) is None:
                    raise
                log.error("key %s: cannot audit the failed backup collection (%s)", key_id.hex()[:16], one_line(e))

    def collect(self, k: KeyRecord) -> bytes:
        """Make, verify and store the bundle of ``k`` at its current epoch for the configuration
        in force; returns its digest. :class:`CollectFailed` naming the node at fault."""
        signed_config = self.book.signed()
        if signed_config is None:
            raise CollectFailed("no recovery configuration")
        config = signed_config.change.config
        epoch, committee = self.epoch_of(k)
        missing = [i for i in committee if i not in self.nodes]
        if missing:
            raise CollectFailed(f"committee node(s) {missing} are not reachable from this coordinator")
        for i in committee:  # a node that missed the configuration (it was down) gets it first
            if not self.book.synced(i):
                self.book.sync_node(i)
        req = node_pb2.GetBackupPartRequest(key_id=k.key_id, epoch=epoch)
        ok, errs = fanout({i: (self.nodes[i].stub.GetBackupPart, req) for i in committee}, PART_TIMEOUT_S)
        if errs:
            for i in errs:  # it may have lost its store meanwhile: send it the configuration again next time
                self.book.mark_unsynced(i)
            why = "; ".join(f"{self.nodes[i].label}: {'{}: {}'.format(*_status(e))}" for i, e in sorted(errs.items()))
            raise CollectFailed(f"no backup part from {why}")
        parts: list[SignedBackupPart] = []
        for pos, i in enumerate(committee, start=1):
            label = self.nodes[i].label
            try:
                sp = SignedBackupPart.from_bytes(bytes(ok[i].signed_part))
            except GovernanceError as e:
                raise CollectFailed(f"{label} returned a malformed backup part ({e.field}: {e.reason})") from None
            p = sp.part
            if (p.key_id, p.epoch, p.share_index, p.node, p.config_version) != (k.key_id, epoch, pos, i, config.version):
                raise CollectFailed(
                    f"{label} returned a part for key {p.key_id.hex()[:16]} epoch {p.epoch} share {p.share_index} node {p.node} "
                    f"configuration {p.config_version}, not key {k.key_id.hex()[:16]} epoch {epoch} share {pos} node {i} "
                    f"configuration {config.version}"
                )
            if not p.commitments:
                raise CollectFailed(f"{label} returned a part without commitments")
            parts.append(sp)
        try:
            key = BackupKey(
                key_id=k.key_id, public_key=k.public_key, chain_code=k.chain_code, label=k.label, threshold=k.threshold,
                epoch=epoch, committee=committee, public_shares=tuple(sp.part.commitments[0] for sp in parts),
                scheme=k.scheme,  # issue 16: a FROST key's record names its scheme (verify_bundle checks in its group)
            )
        except GovernanceError as e:
            raise CollectFailed(f"the key's public record is invalid ({e.field}: {e.reason})") from None
        needed = max(sp.part.roster_version for sp in parts)
        history = self.roster_history()[:needed]
        try:
            bundle = assemble_bundle(key, signed_config, history, parts, now_ms())
            verify_bundle(bundle, self.admins)
        except BundleError as e:
            raise CollectFailed(f"the bundle does not verify: {e}") from None
        except GovernanceError as e:
            raise CollectFailed(f"the bundle does not verify: {e.field}: {e.reason}") from None
        return self.store(bundle)

    def store(self, bundle: BackupBundle) -> bytes:
        """Store a verified bundle (superseding the key's older ones) with its audit entry."""
        data = bundle.to_file()
        digest = bundle.digest()
        key = bundle.key
        rec = BundleRecord(digest, key.key_id, key.epoch, bundle.config.change.config.version, bundle.created_ms, False, len(data), data)
        ev = AuditEvent(self.name, "backup-created", "", "created", {
            "key_id": key.key_id.hex(), "epoch": key.epoch, "bundle_digest": digest.hex(), "config_version": rec.config_version,
            "committee": ",".join(map(str, key.committee)), "size": len(data),
        })
        if self.db.add_bundle(rec, ev):
            self.flush()
            log.info("key %s: backup bundle %s stored (epoch %d, configuration %d)", key.key_id.hex()[:16], digest.hex()[:16],
                     key.epoch, rec.config_version)
        return digest

    # --- reading -------------------------------------------------------------------------------
    def info(self, rec: BundleRecord) -> coordinator_pb2.BackupInfo:
        return coordinator_pb2.BackupInfo(
            key_id=rec.key_id, epoch=rec.epoch, bundle_digest=rec.digest, bundle=rec.bundle, recovery_config_version=rec.config_version,
            created_unix_ms=rec.created_ms, superseded=rec.superseded, size_bytes=rec.size,
        )

    def export(self, key_id: bytes, digest: bytes, caller: str) -> coordinator_pb2.BackupInfo:
        """``ExportBackup``: the newest bundle of the key, or the one named; NOT_FOUND naming
        ``key_id`` / ``bundle_digest``. Audited (``backup-export``)."""
        k = self.db.get_key(key_id)
        if k is None:
            raise RpcError(Code.NOT_FOUND, f"key_id: unknown key {key_id.hex()}")
        if digest:
            rec = self.db.get_bundle(digest)
            if rec is None or not hmac.compare_digest(rec.key_id, key_id):
                raise RpcError(Code.NOT_FOUND, f"bundle_digest: no bundle {digest.hex()} of key {key_id.hex()[:16]}")
        else:
            rec = self.db.newest_bundle(key_id)
            if rec is None:
                waiting = self.waiting(key_id)
                why = "no recovery officers are configured" if self.book.version == 0 else (
                    "its bundle is not collected yet" + (f": {waiting}" if waiting else ""))
                raise RpcError(Code.NOT_FOUND, f"key_id: no backup bundle of key {key_id.hex()[:16]} ({why})")
        self.audit.append(caller, "backup-export", outcome="exported", details={
            "key_id": key_id.hex(), "bundle_digest": rec.digest.hex(), "epoch": rec.epoch, "superseded": rec.superseded,
        })
        return self.info(rec)

    def listing(self, key_id: bytes | None) -> list[coordinator_pb2.BackupInfo]:
        """``ListBackups``: the newest :data:`MAX_LISTED` bundles (of ``key_id``; None: of every
        key), newest first, without their bytes. NOT_FOUND naming ``key_id`` for an unknown key."""
        if key_id is not None and self.db.get_key(key_id) is None:
            raise RpcError(Code.NOT_FOUND, f"key_id: unknown key {key_id.hex()}")
        return [self.info(r) for r in self.db.list_bundles(key_id, limit=MAX_LISTED)]

    def status(self, now: int | None = None) -> list[coordinator_pb2.KeyBackupStatus]:
        """Per active key: backed up (a bundle of its epoch and the configuration in force), the
        newest bundle, the last successful drill and whether one is overdue at ``now`` (ms; by
        default the store's expiry clock, :meth:`CoordinatorDb.expiry_ms`); empty before a
        recovery configuration exists."""
        config = self.book.current()
        if config is None:
            return []
        now = self.db.expiry_ms(now_ms()) if now is None else now  # a wall clock stepped back hides no overdue drill
        out = []
        for k in self.db.list_keys("active"):
            epoch, _ = self.epoch_of(k)
            newest = self.db.newest_bundle(k.key_id)
            drill = self.db.drill_record(k.key_id)
            last_ok = drill.last_ok_ms if drill is not None else 0
            period_ms = config.drill_period_s * 1000
            backed_up = newest is not None and (newest.epoch, newest.config_version) == (epoch, config.version)
            out.append(coordinator_pb2.KeyBackupStatus(
                key_id=k.key_id, epoch=epoch, backed_up=backed_up, backup_error="" if backed_up else self.waiting(k.key_id),
                bundle_digest=newest.digest if newest else b"", backup_unix_ms=newest.created_ms if newest else 0,
                last_drill_unix_ms=last_ok, drill_overdue=period_ms > 0 and (last_ok == 0 or now - last_ok > period_ms),
                last_drill_outcome=drill.last_outcome if drill is not None else "",
            ))
        return out


def _status(e: grpc.RpcError) -> tuple[str, str]:
    code, details = status_of(e)
    return code.name, details


def monotonic_ms() -> int:
    """The clock of the collection backoff (ms, monotonic: a coordinator whose wall clock is
    stepped back an hour must not wait an extra hour before its next try)."""
    return time.monotonic_ns() // 1_000_000
