"""Backup and recovery state in the node's store (issue 12, design section 4).

Tables (schema step :data:`BACKUP_MIGRATION`, additive):

* ``recovery_config_changes(version, signed_change, installed_ms)``: the admin-signed recovery
  officer configuration chain (canonical :class:`governance.recovery.SignedRecoveryConfigChange`,
  version 1 first), append-only like ``roster_changes`` (triggers refuse update and delete). Its
  integrity does not rest on this file: the node re-verifies the whole chain against its own
  admin set whenever it loads it.
* ``backup_parts(key_id, epoch, config_version, signed_part, created_ms)``: this node's signed
  backup part of a key at an epoch for a configuration version (public: commitments and age
  ciphertexts). Made once: the first one stored is the one every later call answers.
* ``recovery_orders(order_id, kind, key_id, follow_up, signed_order, installed_ms)``: verified
  admin-signed recovery orders (``follow_up``: the canonical encoding of a RESTORE order's
  follow-up :class:`governance.keyop.KeyOperation`, b"" for EXPORT), append-only.
* ``restored_shares(key_id, epoch, threshold, committee, public_key, label, order_id, record,
  receipt, created_ms)``: a share rebuilt by a restore ceremony (a sealed
  ``crypto_core.backup.RecoveredShare``, AAD kind :data:`KIND_RESTORED_SHARE`) with the key's
  epoch state the order and bundle named, and the signed recovery receipt this node answered.
  It deals in the order's follow-up refresh/reshare and never signs; the commit of a later
  epoch of the key erases it (:meth:`mpc_node.epoch_store.EpochStore.commit_epoch`).

Errors: :class:`BackupStateError` (a state conflict the caller reports as FAILED_PRECONDITION);
database failures are the store's ``StoreError``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpc_node.audit_outbox import OutboxEntry

KIND_RESTORED_SHARE = b"keyshare-restored"
MAX_BLOB = 1 << 24  # a signed part or order (a bundle is never stored here)

BACKUP_MIGRATION: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS recovery_config_changes (version INTEGER PRIMARY KEY CHECK (version >= 1),"
    " signed_change BLOB NOT NULL, installed_ms INTEGER NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS recovery_config_change_is_final BEFORE UPDATE ON recovery_config_changes"
    " BEGIN SELECT RAISE(ABORT, 'a recovery configuration change is final'); END",
    "CREATE TRIGGER IF NOT EXISTS recovery_config_change_is_kept BEFORE DELETE ON recovery_config_changes"
    " BEGIN SELECT RAISE(ABORT, 'a recovery configuration change is final'); END",
    "CREATE TABLE IF NOT EXISTS backup_parts (key_id BLOB NOT NULL CHECK (length(key_id) = 32),"
    " epoch INTEGER NOT NULL CHECK (epoch >= 0), config_version INTEGER NOT NULL CHECK (config_version >= 1),"
    " signed_part BLOB NOT NULL, created_ms INTEGER NOT NULL, PRIMARY KEY (key_id, epoch, config_version))",
    "CREATE TABLE IF NOT EXISTS recovery_orders (order_id BLOB PRIMARY KEY CHECK (length(order_id) = 16),"
    " kind TEXT NOT NULL CHECK (kind IN ('restore', 'export')), key_id BLOB NOT NULL CHECK (length(key_id) = 32),"
    " follow_up BLOB NOT NULL, signed_order BLOB NOT NULL, installed_ms INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS recovery_orders_by_key ON recovery_orders (key_id)",
    "CREATE TRIGGER IF NOT EXISTS recovery_order_is_final BEFORE UPDATE ON recovery_orders"
    " BEGIN SELECT RAISE(ABORT, 'a recovery order is final'); END",
    "CREATE TRIGGER IF NOT EXISTS recovery_order_is_kept BEFORE DELETE ON recovery_orders"
    " BEGIN SELECT RAISE(ABORT, 'a recovery order is final'); END",
    "CREATE TABLE IF NOT EXISTS restored_shares (key_id BLOB PRIMARY KEY CHECK (length(key_id) = 32),"
    " epoch INTEGER NOT NULL CHECK (epoch >= 0), threshold INTEGER NOT NULL, committee TEXT NOT NULL,"
    " public_key BLOB NOT NULL CHECK (length(public_key) = 33), label TEXT NOT NULL,"
    " order_id BLOB NOT NULL CHECK (length(order_id) = 16), record BLOB NOT NULL, receipt BLOB NOT NULL,"
    " created_ms INTEGER NOT NULL)",
)

_RESTORED_COLUMNS = "key_id, epoch, threshold, committee, public_key, label, order_id, record, receipt, created_ms"
RESTORED_FROST_MIGRATION: tuple[str, ...] = (
    # issue 16: a restored share of an ed25519 key has a 32-byte public key (SQLite cannot relax a
    # CHECK in place: the table is rebuilt, rows copied as they are, in the step's one transaction)
    "CREATE TABLE restored_shares_v2 (key_id BLOB PRIMARY KEY CHECK (length(key_id) = 32),"
    " epoch INTEGER NOT NULL CHECK (epoch >= 0), threshold INTEGER NOT NULL, committee TEXT NOT NULL,"
    " public_key BLOB NOT NULL CHECK (length(public_key) IN (32, 33)), label TEXT NOT NULL,"
    " order_id BLOB NOT NULL CHECK (length(order_id) = 16), record BLOB NOT NULL, receipt BLOB NOT NULL,"
    " created_ms INTEGER NOT NULL)",
    f"INSERT INTO restored_shares_v2 ({_RESTORED_COLUMNS}) SELECT {_RESTORED_COLUMNS} FROM restored_shares",
    "DROP TABLE restored_shares",
    "ALTER TABLE restored_shares_v2 RENAME TO restored_shares",
)


class BackupStateError(Exception):
    """The store's state does not allow the change (reported as FAILED_PRECONDITION)."""


@dataclass(frozen=True)
class RestoredKey:
    """A restored share's public record on this node (the share itself is not loaded).

    ``committee``: roster indices by share index (position k = share index k); ``order_id``:
    the 16-byte recovery order that restored it; ``receipt``: the signed
    :class:`governance.recovery.RecoveryReceipt` this node answered."""

    key_id: bytes
    epoch: int
    threshold: int
    committee: tuple[int, ...]
    public_key: bytes
    label: str
    order_id: bytes
    receipt: bytes


@dataclass(frozen=True)
class StoredOrder:
    """An installed recovery order: ``kind`` ``restore``/``export``, ``follow_up`` the canonical
    follow-up KeyOperation (b"" for an export), ``signed_order`` its canonical signed form."""

    order_id: bytes
    kind: str
    key_id: bytes
    follow_up: bytes
    signed_order: bytes


class BackupStore:
    """Mixin of :class:`mpc_node.storage.NodeStore`: the backup tables above."""

    if TYPE_CHECKING:
        def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _seal(self, kind: bytes, ident: bytes, plaintext: bytes) -> bytes: ...
        def _unseal(self, kind: bytes, ident: bytes, blob: bytes) -> bytes: ...
        def _queue_audit(self, c: sqlite3.Connection, entry: OutboxEntry) -> str: ...

    # --- the recovery configuration chain --------------------------------------------------
    def recovery_config_changes(self) -> list[bytes]:
        """Every stored recovery configuration change, version 1 first."""
        with self._read() as c:
            rows = c.execute("SELECT signed_change FROM recovery_config_changes ORDER BY version").fetchall()
        return [bytes(r[0]) for r in rows]

    def put_recovery_config_changes(
        self, first_version: int, signed_changes: list[bytes], *, audit: OutboxEntry | None = None
    ) -> None:
        """Append already verified changes as versions ``first_version``, ``+1``, ... in one
        transaction (with ``audit`` queued in the audit outbox); BackupStateError unless the
        latest stored version is ``first_version - 1`` (a concurrent install)."""
        with self._write() as c:
            row = c.execute("SELECT MAX(version) FROM recovery_config_changes").fetchone()
            latest = 0 if row is None or row[0] is None else int(row[0])
            if latest != first_version - 1:
                raise BackupStateError(f"recovery configuration: stored version is {latest}, expected {first_version - 1}")
            now = _now_ms()
            c.executemany(
                "INSERT INTO recovery_config_changes (version, signed_change, installed_ms) VALUES (?, ?, ?)",
                [(first_version + k, _blob(b), now) for k, b in enumerate(signed_changes)],
            )
            if audit is not None:
                self._queue_audit(c, audit)

    # --- backup parts ------------------------------------------------------------------------
    def backup_part(self, key_id: bytes, epoch: int, config_version: int) -> bytes | None:
        """The stored signed part of (key, epoch, configuration version), None if none."""
        with self._read() as c:
            row = c.execute(
                "SELECT signed_part FROM backup_parts WHERE key_id = ? AND epoch = ? AND config_version = ?",
                (key_id, epoch, config_version),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def put_backup_part(
        self, key_id: bytes, epoch: int, config_version: int, signed_part: bytes, *, audit: OutboxEntry | None = None
    ) -> bytes:
        """Store ``signed_part`` unless a part of (key, epoch, version) is already stored;
        returns the stored one (the first made wins: every call answers the same part). ``audit``
        is queued in the audit outbox in the same transaction when this call stored the part."""
        with self._write() as c:
            made = c.execute(
                "INSERT OR IGNORE INTO backup_parts (key_id, epoch, config_version, signed_part, created_ms) VALUES (?, ?, ?, ?, ?)",
                (key_id, epoch, config_version, _blob(signed_part), _now_ms()),
            ).rowcount
            if made and audit is not None:
                self._queue_audit(c, audit)
            row = c.execute(
                "SELECT signed_part FROM backup_parts WHERE key_id = ? AND epoch = ? AND config_version = ?",
                (key_id, epoch, config_version),
            ).fetchone()
        return bytes(row[0])

    # --- recovery orders ---------------------------------------------------------------------
    def put_recovery_order(self, order: StoredOrder, *, audit: OutboxEntry | None = None) -> bool:
        """Record a verified order (with ``audit`` queued in the audit outbox in the same
        transaction); False if the very same order is already recorded (nothing written).
        BackupStateError if another order with its id is recorded."""
        with self._write() as c:
            row = c.execute("SELECT signed_order FROM recovery_orders WHERE order_id = ?", (order.order_id,)).fetchone()
            if row is not None:
                if bytes(row[0]) != order.signed_order:
                    raise BackupStateError(f"another recovery order with id {order.order_id.hex()} is installed here")
                return False
            c.execute(
                "INSERT INTO recovery_orders (order_id, kind, key_id, follow_up, signed_order, installed_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (order.order_id, order.kind, order.key_id, order.follow_up, _blob(order.signed_order), _now_ms()),
            )
            if audit is not None:
                self._queue_audit(c, audit)
            return True

    def recovery_order(self, order_id: bytes) -> StoredOrder | None:
        with self._read() as c:
            row = c.execute(
                "SELECT order_id, kind, key_id, follow_up, signed_order FROM recovery_orders WHERE order_id = ?", (order_id,)
            ).fetchone()
        return None if row is None else _order(row)

    def recovery_orders_for(self, key_id: bytes) -> list[StoredOrder]:
        """Every installed order of ``key_id``, oldest first."""
        with self._read() as c:
            rows = c.execute(
                "SELECT order_id, kind, key_id, follow_up, signed_order FROM recovery_orders WHERE key_id = ?"
                " ORDER BY rowid",
                (key_id,),
            ).fetchall()
        return [_order(r) for r in rows]

    # --- restored shares ---------------------------------------------------------------------
    def restored_key(self, key_id: bytes) -> RestoredKey | None:
        """The restored share's public record of ``key_id`` here (None: none)."""
        with self._read() as c:
            row = c.execute(
                "SELECT key_id, epoch, threshold, committee, public_key, label, order_id, receipt FROM restored_shares"
                " WHERE key_id = ?",
                (key_id,),
            ).fetchone()
        if row is None:
            return None
        return RestoredKey(
            bytes(row[0]), int(row[1]), int(row[2]), tuple(int(x) for x in str(row[3]).split(",")), bytes(row[4]), str(row[5]),
            bytes(row[6]), bytes(row[7]),
        )

    def restored_share(self, key_id: bytes) -> bytes | None:
        """The decrypted restored share record (``RecoveredShare.to_bytes()``), None if none."""
        with self._read() as c:
            row = c.execute("SELECT record FROM restored_shares WHERE key_id = ?", (key_id,)).fetchone()
        return None if row is None else self._unseal(KIND_RESTORED_SHARE, key_id, bytes(row[0]))

    def put_restored_share(self, rk: RestoredKey, record: bytes, *, audit: OutboxEntry | None = None) -> None:
        """Store a restored share with its key-epoch state (and ``audit`` queued in the audit
        outbox), durably, in one transaction. A
        restored share of the same key *and epoch* (an earlier order whose follow-up did not
        complete) is replaced by this one. BackupStateError if this node holds the key live (a
        key row it did not leave), left it at a later epoch than ``rk.epoch``, or holds a restored
        share of it at another epoch."""
        blob = self._seal(KIND_RESTORED_SHARE, rk.key_id, record)
        with self._write() as c:
            live = c.execute(
                "SELECT k.status, e.state, e.epoch FROM keys k LEFT JOIN key_epochs e ON e.key_id = k.key_id WHERE k.key_id = ?",
                (rk.key_id,),
            ).fetchone()
            if live is not None and live[1] != "left":
                raise BackupStateError(
                    f"this node holds key {rk.key_id.hex()[:16]} ({live[0]}): a live share is never replaced by a restore"
                )
            if live is not None and live[2] is not None and int(live[2]) > rk.epoch:
                raise BackupStateError(
                    f"this node left key {rk.key_id.hex()[:16]} at epoch {int(live[2])}: a share of epoch {rk.epoch} is never restored"
                )
            prior = c.execute("SELECT epoch FROM restored_shares WHERE key_id = ?", (rk.key_id,)).fetchone()
            if prior is not None and int(prior[0]) != rk.epoch:
                raise BackupStateError(
                    f"this node already holds a restored share of key {rk.key_id.hex()[:16]} at epoch {int(prior[0])}, not {rk.epoch}"
                )
            c.execute(
                "INSERT OR REPLACE INTO restored_shares (key_id, epoch, threshold, committee, public_key, label, order_id, record, receipt,"
                " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rk.key_id, rk.epoch, rk.threshold, ",".join(map(str, rk.committee)), rk.public_key, rk.label, rk.order_id, blob,
                 rk.receipt, _now_ms()),
            )
            if audit is not None:
                self._queue_audit(c, audit)


def erase_restored(c: sqlite3.Connection, key_id: bytes, before_epoch: int) -> int:
    """Inside the caller's write transaction: erase the restored share of ``key_id`` whose epoch
    is older than ``before_epoch`` (a later epoch was committed; the store runs with
    ``secure_delete``). The number of rows erased."""
    return c.execute("DELETE FROM restored_shares WHERE key_id = ? AND epoch < ?", (key_id, before_epoch)).rowcount


def _order(row: tuple[object, ...]) -> StoredOrder:
    return StoredOrder(bytes(row[0]), str(row[1]), bytes(row[2]), bytes(row[3]), bytes(row[4]))  # type: ignore[call-overload]


def _blob(b: bytes) -> bytes:
    if not isinstance(b, bytes) or not b or len(b) > MAX_BLOB:
        raise ValueError(f"a stored blob is 1..{MAX_BLOB} bytes")
    return b


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
