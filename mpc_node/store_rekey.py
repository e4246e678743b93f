"""Moving a node store from its passphrase to a PKCS#11 token: every sealed blob re-sealed.

:func:`reseal_store` opens the store with the passphrase (checked against the store's check
value), draws a fresh random 32-byte data key, has the token's storage key wrap it, and in ONE
write transaction re-seals every sealed blob under it (same kind, row id and node in the
associated data, a fresh nonce each) and replaces the scrypt meta rows (kind, salt, check) by the
``pkcs11`` ones (:func:`mpc_node.storage.pkcs11_meta`). A kill before the commit leaves the
passphrase store as it was; after it, the store is a token store. The append-only triggers of
the tables re-sealed are dropped and re-created, exactly as they were, inside that transaction.
Afterwards the WAL is checkpointed (``secure_delete`` has zeroed the old pages).

The sealed columns (every ``NodeStore._seal`` call): ``keys.record`` (keyshare, key id),
``presignatures.record`` (presignature or tombstone by ``used``, sigid), ``pending_epochs.record``
(pending share, key id || session id; may be NULL), ``restored_shares.record`` (restored share,
key id).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mpc_node import audit_outbox
from mpc_node.audit_outbox import OutboxEntry
from mpc_node.backup_store import KIND_RESTORED_SHARE
from mpc_node.epoch_store import KIND_PENDING_SHARE
from mpc_node.storage import (
    KIND_KEYSHARE,
    KIND_PRESIGNATURE,
    KIND_TOMBSTONE,
    NONCE_LEN,
    SCRYPT_N,
    StoreError,
    _aad,
    _connect,
    _migrate,
    _read_meta,
    _unlock,
    pkcs11_meta,
)
from mpcnet.common.pkcs11token import StorageKey
from mpcnet.common.stores.audit import AuditLog
from mpcnet.common.stores.sqlite import write_transaction

# table, the row-id columns (concatenated), the kind of a row (from the row), the sealed column
_SEALED: tuple[tuple[str, tuple[str, ...], Callable[[sqlite3.Row], bytes], str], ...] = (
    ("keys", ("key_id",), lambda r: KIND_KEYSHARE, "record"),
    ("presignatures", ("sigid",), lambda r: KIND_TOMBSTONE if r["used"] else KIND_PRESIGNATURE, "record"),
    ("pending_epochs", ("key_id", "session_id"), lambda r: KIND_PENDING_SHARE, "record"),
    ("restored_shares", ("key_id",), lambda r: KIND_RESTORED_SHARE, "record"),
)
_SCRYPT_ROWS = ("kdf", "scrypt_n", "scrypt_r", "scrypt_p", "salt", "check")


def store_kind(path: Path) -> str:
    """``"none"`` (no store file), ``"passphrase"`` or ``"pkcs11"``: how the store at ``path`` is
    protected, from its meta table. Raises :class:`StoreError`."""
    if not Path(path).exists():
        return "none"
    conn = _connect(Path(path))
    try:
        kdf = _read_meta(conn).get("kdf")
    except sqlite3.Error as e:
        raise StoreError.of_database(e) from None
    finally:
        conn.close()
    if kdf == "scrypt":
        return "passphrase"
    if kdf == "pkcs11":
        return "pkcs11"
    if kdf is None:
        return "none"
    raise StoreError("database: unsupported key protection")


def reseal_store(
    path: Path, passphrase: bytes, node_id: int, key: StorageKey, audit: Callable[[int], OutboxEntry] | None = None,
) -> int:
    """Re-seal the passphrase store at ``path`` under a fresh data key wrapped by ``key`` (one
    transaction); returns the number of blobs re-sealed. ``audit(count)`` (the entry recording
    the re-seal of ``count`` blobs) is queued in the store's audit outbox in that same
    transaction (:func:`deliver_outbox` appends it exactly once). Raises :class:`StoreError` (a
    wrong passphrase, a blob that does not decrypt: nothing is changed) or the token's error."""
    conn = _connect(Path(path))
    try:
        old = _unlock(conn, passphrase, node_id, SCRYPT_N)  # checks node id and passphrase
        _migrate(conn)
        data_key = os.urandom(32)
        new = AESGCM(data_key)
        rows = pkcs11_meta(key, node_id, data_key)
        conn.row_factory = sqlite3.Row
        count = 0
        try:
            with write_transaction(conn):
                tables = [t for t, *_ in _SEALED]
                marks = ",".join("?" * len(tables))
                triggers = conn.execute(
                    f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ({marks})", tables
                ).fetchall()
                for t in triggers:
                    conn.execute(f'DROP TRIGGER "{t["name"]}"')
                for table, ids, kind_of, column in _SEALED:
                    for r in conn.execute(f"SELECT rowid, * FROM {table}").fetchall():
                        blob = r[column]
                        if blob is None:
                            continue
                        ident = b"".join(bytes(r[c]) for c in ids)
                        aad = _aad(kind_of(r), ident, node_id)
                        blob = bytes(blob)
                        try:
                            plain = old.decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], aad)
                        except InvalidTag:
                            raise StoreError(f"{table} {ident.hex()}: stored blob does not decrypt; nothing changed") from None
                        nonce = os.urandom(NONCE_LEN)
                        conn.execute(
                            f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (nonce + new.encrypt(nonce, plain, aad), r["rowid"])
                        )
                        count += 1
                for t in triggers:
                    conn.execute(t["sql"])
                conn.executemany("DELETE FROM meta WHERE name = ?", [(n,) for n in _SCRYPT_ROWS])
                conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", rows)
                if audit is not None:
                    audit_outbox.queue(conn, audit(count), time.time_ns() // 1_000_000)
        except sqlite3.Error as e:
            raise StoreError.of_database(e, "database: {} (nothing changed)") from None
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # the next open checkpoints
        return count
    finally:
        conn.close()


def deliver_outbox(path: Path, audit: AuditLog) -> int:
    """Append every entry queued in the audit outbox of the (stopped) node store at ``path`` to
    ``audit`` (oldest first; an event already in the log is skipped, so delivering again after a
    kill appends nothing twice), then delete them from the outbox, as the node does at start
    (:class:`mpc_node.audit_outbox.AuditFlusher`). Returns how many were appended. Raises
    :class:`StoreError` (the store) or :class:`~governance.errors.GovernanceError` (the log)."""
    conn = _connect(Path(path))
    total, last = 0, 0
    try:
        while items := audit_outbox.pending(conn, audit_outbox.BATCH, last):
            total += audit.append_queued(items)
            last = max(it.seq for it in items)
        if last:
            with write_transaction(conn):
                audit_outbox.drop(conn, last)
    except sqlite3.Error as e:
        raise StoreError.of_database(e) from None
    finally:
        conn.close()
    return total
