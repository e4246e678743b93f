"""The node's durable, encrypted store: key shares, presignatures, bans, served requests, policies.

SQLite in WAL mode with ``synchronous=FULL``, opened like every store by
:mod:`mpcnet.common.stores.sqlite` (file 0600, directory fsynced on creation, tables created and upgraded
by versioned migrations): every method that writes commits (and fsyncs) before it returns, so a
killed process never loses a write it acknowledged. Secret blobs are
sealed with AES-256-GCM under a key-encryption key derived with scrypt from the node passphrase
and a random per-store salt; the associated data binds each blob to its kind, row id and node,
so a blob copied to another row, table or node does not decrypt. A presignature is one-time:
:meth:`NodeStore.consume_presignature` swaps it for a tombstone in one transaction, and triggers
in the schema refuse to "un-use" or delete a used one. A presignature used as soon as it is made
is never written at all: :meth:`NodeStore.put_used_presignature` stores only its tombstone.

Served signing requests are the node's own record for replay protection and rate limiting:
:meth:`NodeStore.consume_presignature` (and :meth:`NodeStore.put_used_presignature`) can record the request (refusing a request id already
served, or one more signature for the key than its rate limit allows) in the *same*
transaction that marks the presignature used, so a share is released only if both hold.

Signing attempts (:mod:`governance.reservation`): :meth:`NodeStore.reserve_attempt` grants
attempt ``k`` of a request to one signer set and session, once and for good (a different one is
refused with :class:`ReservationConflict`); a signer records its own reservation and the served
``(request, attempt)`` in the transaction that consumes the presignature, so it releases at most
one share per attempt. The request itself counts once towards the rate limit, however many
attempts it takes. Reservations and served attempts cannot be updated or deleted (triggers).

Installed governance policy changes (admin-signed, public) are kept in full, per scope and
version, so the node can re-verify each scope's whole history against its admin set whenever it
loads them; their integrity does not rest on this file.

One connection is shared by all threads behind a lock (SQLite serializes writers anyway); other
processes opening the same file are kept consistent by SQLite's own locking.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from governance.reservation import MAX_SIGN_ATTEMPTS
from mpc_node import audit_outbox
from mpc_node.backup_store import BACKUP_MIGRATION, RESTORED_FROST_MIGRATION, BackupStore
from mpc_node.epoch_store import ABANDONED_MIGRATION, EPOCH_MIGRATION, KEY_ROSTER_MIGRATION, EpochStore, _key_epoch
from mpc_node.in_force import InForce, check_in_force
from mpc_node.key_epoch_cache import KeyEpochCache
from mpc_node.nonce_store import NONCE_MIGRATION, NonceStore
from mpc_node.presig_store import PRESIG_MIGRATION, PoolError, PresigStore, delete_fresh_with_peer
from mpc_node.served_window import ServedWindows, sql_count
from mpcnet.common.pkcs11token import WRAPPED_LEN, StorageKey, TokenError
from mpcnet.common.sqlite_errors import Fault, classify
from mpcnet.common.steadyclock import (
    ANCHOR_TABLE,
    WALL_NOW_MS_SQL,
    SteadyClock,
    SteadyClockError,
    SteadySource,
    anchor,
    mark_wall_floor,
    read_wall_floor,
)
from mpcnet.common.stores.sqlite import AddColumn, DatabaseError, Migration, migrate, open_database, write_transaction

SCHEMA_VERSION = 1  # the meta row: format of meta and of the sealed records (not the table layout)
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
MIN_SCRYPT_N = 2**10  # lower than the default only for tests
MAX_SCRYPT_N = 2**20
SALT_LEN = 16
NONCE_LEN = 12
ID_LEN = 32  # key_id, sigid and digest are 32-byte hashes
POINT_LEN = 33  # compressed secp256k1 public key
SCHEME_KEY_LENS = {"ecdsa-secp256k1": 33, "schnorr-secp256k1-bip340": 33, "ed25519": 32}  # issue 16: group key encodings
MAX_RECORD = 2**26
MAX_LABEL = 256
MAX_REASON = 1024
MAX_REQUEST_ID = 256
MAX_PARTIES = 1024

AAD_PREFIX = b"MPCNET/v1/store/"
KIND_KEYSHARE = b"keyshare"
KIND_PRESIGNATURE = b"presignature"
KIND_TOMBSTONE = b"presignature-tombstone"
CHECK_CONSTANT = b"MPCNET/v1/store/passphrase-check"
DATA_KEY_AAD = b"MPCNET/v1/store/data-key"  # a pkcs11 store: the token wraps its data key under this

# Step 12 (issue 14 red team: wall-clock steps): each served request's steady time
# (mpcnet/common/steadyclock.py), which the rate limit counts. Rows served before it get their
# wall time: the steady timeline of an upgraded store starts at its newest row, so they age
# from there; capped at the wall clock of the upgrade (review 2: a row served while the clock was
# ahead became the timeline's start and every row served in the last window looked old). A row
# inserted without it (by hand, a tool) gets its wall time too: the timeline starts at the wall
# clock or the newest row and falls behind the wall clock only by the time the host was down
# across reboots, so such a row counts for a whole window, never less.
STEADY_DEFAULT_TRIGGER = "requests_steady_default"
STEADY_MIGRATION: Migration = (
    ANCHOR_TABLE,
    AddColumn("requests", "steady_ms", "INTEGER"),
    f"UPDATE requests SET steady_ms = MIN(served_ms, {WALL_NOW_MS_SQL}) WHERE steady_ms IS NULL",
    "CREATE INDEX IF NOT EXISTS requests_by_key_steady ON requests (key_id, steady_ms)",
    "CREATE INDEX IF NOT EXISTS requests_by_steady ON requests (steady_ms)",
    f"CREATE TRIGGER IF NOT EXISTS {STEADY_DEFAULT_TRIGGER} AFTER INSERT ON requests WHEN NEW.steady_ms IS NULL"
    " BEGIN UPDATE requests SET steady_ms = NEW.served_ms WHERE rowid = NEW.rowid; END",
)

# The schema, as versioned migration steps (see mpcnet.common.stores.sqlite; PRAGMA user_version counts
# the steps applied). Stores created before versioning have user_version 0 and any of the layouts
# these two steps describe, so both are idempotent (IF NOT EXISTS, AddColumn); a later step runs
# only on a store whose version says what it holds. The meta row ``schema_version`` (SCHEMA_VERSION)
# is the format of the meta table and the sealed records, and does not change with a step.
_MIGRATIONS: tuple[Migration, ...] = (
    # 1: the layout up to commit 4b7440a (served_ms, policy_changes and its index came in c29f526)
    (
        "CREATE TABLE IF NOT EXISTS meta (\n    name  TEXT PRIMARY KEY,\n    value BLOB NOT NULL\n)",
        """CREATE TABLE IF NOT EXISTS keys (
    key_id     BLOB PRIMARY KEY CHECK (length(key_id) = 32),
    label      TEXT NOT NULL,
    public_key BLOB NOT NULL,
    threshold  INTEGER NOT NULL,
    parties    INTEGER NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'active')),
    created_at INTEGER NOT NULL,
    record     BLOB NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS presignatures (
    sigid      BLOB PRIMARY KEY CHECK (length(sigid) = 32),
    key_id     BLOB NOT NULL REFERENCES keys (key_id),
    record     BLOB NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1)),
    created_at INTEGER NOT NULL,
    used_at    INTEGER
)""",
        "CREATE INDEX IF NOT EXISTS presignatures_by_key ON presignatures (key_id)",
        """CREATE TRIGGER IF NOT EXISTS presignature_used_is_final
    BEFORE UPDATE ON presignatures WHEN OLD.used = 1
    BEGIN SELECT RAISE(ABORT, 'presignature already used'); END""",
        """CREATE TRIGGER IF NOT EXISTS presignature_used_is_kept
    BEFORE DELETE ON presignatures WHEN OLD.used = 1
    BEGIN SELECT RAISE(ABORT, 'presignature already used'); END""",
        """CREATE TABLE IF NOT EXISTS bans (
    key_id     BLOB NOT NULL,
    peer       INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, peer)
)""",
        """CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    key_id     BLOB NOT NULL,
    digest     BLOB NOT NULL,
    served_at  INTEGER NOT NULL
)""",
        AddColumn("requests", "served_ms", "INTEGER NOT NULL DEFAULT 0"),
        "CREATE TABLE IF NOT EXISTS policy_changes (scope BLOB NOT NULL, version INTEGER NOT NULL CHECK (version >= 1),"
        " signed_change BLOB NOT NULL, installed_ms INTEGER NOT NULL, PRIMARY KEY (scope, version))",
        "CREATE INDEX IF NOT EXISTS requests_by_key_time ON requests (key_id, served_ms)",
    ),
    # 2: signing attempts (e62c1f4) and the health probe, added after 4b7440a but before versioning
    (
        "CREATE TABLE IF NOT EXISTS reservations (request_id TEXT NOT NULL, attempt INTEGER NOT NULL CHECK (attempt >= 1),"
        " key_id BLOB NOT NULL, request_digest BLOB NOT NULL, signers TEXT NOT NULL, session_id BLOB NOT NULL,"
        " created_ms INTEGER NOT NULL, PRIMARY KEY (request_id, attempt))",
        "CREATE TABLE IF NOT EXISTS served_attempts (request_id TEXT NOT NULL, attempt INTEGER NOT NULL,"
        " session_id BLOB NOT NULL, served_ms INTEGER NOT NULL, PRIMARY KEY (request_id, attempt))",
        "CREATE TRIGGER IF NOT EXISTS reservation_is_final BEFORE UPDATE ON reservations"
        " BEGIN SELECT RAISE(ABORT, 'a reservation is final'); END",
        "CREATE TRIGGER IF NOT EXISTS reservation_is_kept BEFORE DELETE ON reservations"
        " BEGIN SELECT RAISE(ABORT, 'a reservation is final'); END",
        "CREATE TRIGGER IF NOT EXISTS served_attempt_is_final BEFORE UPDATE ON served_attempts"
        " BEGIN SELECT RAISE(ABORT, 'a served attempt is final'); END",
        "CREATE TRIGGER IF NOT EXISTS served_attempt_is_kept BEFORE DELETE ON served_attempts"
        " BEGIN SELECT RAISE(ABORT, 'a served attempt is final'); END",
        # one row, rewritten by NodeStore.probe_write: proves the store can still be written
        "CREATE TABLE IF NOT EXISTS health_probe (id INTEGER PRIMARY KEY CHECK (id = 1), written_ms INTEGER NOT NULL)",
    ),
    # 3: the admin-signed roster chain (issue 11), one row per version, append-only
    (
        "CREATE TABLE IF NOT EXISTS roster_changes (version INTEGER PRIMARY KEY CHECK (version >= 1), signed_change BLOB NOT NULL,"
        " installed_ms INTEGER NOT NULL)",
        "CREATE TRIGGER IF NOT EXISTS roster_change_is_final BEFORE UPDATE ON roster_changes"
        " BEGIN SELECT RAISE(ABORT, 'a roster change is final'); END",
        "CREATE TRIGGER IF NOT EXISTS roster_change_is_kept BEFORE DELETE ON roster_changes"
        " BEGIN SELECT RAISE(ABORT, 'a roster change is final'); END",
    ),
    # 4: key epochs, committees and pending shares of refresh/reshare sessions (issue 11)
    EPOCH_MIGRATION,
    # 5: the roster version that set each key's committee (issue 11, roster-implied reshares)
    KEY_ROSTER_MIGRATION,
    # 6: sessions this node abandoned (issue 11: DiscardEpoch; never confirmed afterwards)
    ABANDONED_MIGRATION,
    # 7: recovery configuration chain, backup parts, recovery orders, restored shares (issue 12)
    BACKUP_MIGRATION,
    # 8: the audit outbox (issue 14, mpc_node/audit_outbox.py): entries committed with their state change
    (audit_outbox.OUTBOX_TABLE,),
    # 9: presignature pools (issue 14, mpc_node/presig_store.py): public columns, the released share
    PRESIG_MIGRATION,
    # 10: FROST keys (issue 16): each key's signature scheme, the node's FROST nonces (mpc_node/nonce_store.py)
    NONCE_MIGRATION,
    # 11: restored shares of ed25519 keys (issue 16: a 32-byte public key; mpc_node/backup_store.py)
    RESTORED_FROST_MIGRATION,
    # 12: the rate limit counts steady time (mpcnet/common/steadyclock.py), not the wall clock
    STEADY_MIGRATION,
    # 13 (p16 review): the steady time of each key's last share change, so the refresh schedule's
    # age is not shortened by a wall clock stepped back across a restart (mpc_node/epochs.py);
    # shares from before have no row and are judged by their wall stamp alone, as before
    ("CREATE TABLE IF NOT EXISTS key_epoch_steady (key_id BLOB PRIMARY KEY, steady_ms INTEGER NOT NULL)",),
)
MAX_SCOPE = 32
MAX_CHANGE = 1 << 20
# the highest steady time the store holds, from the requests_by_steady index (no table scan)
STEADY_FLOOR_SQL = "SELECT MAX(steady_ms) FROM requests"


class StoreError(Exception):
    """The store cannot be opened, an argument is invalid, or a row is missing or corrupted.

    ``storage_fault``: what a failed write's SQLite error was (disk full, read-only, I/O error ...:
    :func:`mpcnet.common.sqlite_errors.classify` reads it), None when the error is not the disk's."""

    storage_fault: Fault | None = None

    @classmethod
    def of_database(cls, e: sqlite3.Error, template: str = "database: {}") -> StoreError:
        """``template`` filled with ``e``'s text, carrying ``e``'s classification (its SQLite
        result code: disk full, read-only, ...)."""
        err = cls(template.format(e))
        err.storage_fault = classify(e)
        return err


class KeyStateError(StoreError):
    """A key's state here does not allow the change (absent, or active when a pending key was
    expected: a CommitKey racing a DiscardKey); the message names ``key_id``. The node reports
    it as FAILED_PRECONDITION (a StoreError for older callers)."""


class PresignatureAlreadyUsed(StoreError):
    """The presignature was already consumed (or never existed): it must not be used to sign."""


class RequestAlreadyServed(StoreError):
    """This signing request id was already served once."""


class RateLimited(StoreError):
    """One more signature with this key would exceed its rate limit."""


class ReservationConflict(StoreError):
    """This node already granted the request's attempt to another signer set or session."""


class PolicyConflict(StoreError):
    """The scope's stored policy version is not the one the caller expected (a concurrent install)."""


@dataclass(frozen=True)
class Reservation:
    """Attempt ``attempt`` (1..MAX_SIGN_ATTEMPTS) of ``request_id`` granted to ``signers`` (sorted
    roster indices) in ``session_id`` (32 bytes); ``request_digest`` (32 bytes) names the exact
    approved request, ``created_ms`` is when this node granted it (Unix ms)."""

    request_id: str
    attempt: int
    key_id: bytes
    request_digest: bytes
    signers: tuple[int, ...]
    session_id: bytes
    created_ms: int


@dataclass(frozen=True)
class ServedRequest:
    """A signing request to record as served, atomically with the presignature it uses.

    ``rate_limit`` is ``(max_signatures, window_ms)``: refused if ``max_signatures`` requests
    with the same key were already served in the last ``window_ms`` of the store's steady clock
    (:attr:`NodeStore.steady`, read in the transaction; later-than-now ones included). ``now_ms``
    (the wall clock, Unix ms) is only recorded (``served_ms``): a wall step changes no count.

    With ``reservation`` (its request id must be ``request_id``) the request may be served once
    per reserved attempt: the same transaction records this node's own reservation of the
    attempt (:class:`ReservationConflict` if it granted another) and the served attempt
    (:class:`RequestAlreadyServed` on a repeat); the request counts towards the rate limit only
    the first time. Without it, a request is served at most once.

    With ``in_force`` (the policy and roster the share's checks used) the same transaction first
    refuses if either (or, when pinned, the policy attestation) changed since (:class:`mpc_node.in_force.PolicyChanged` /
    :class:`~mpc_node.in_force.RosterChanged`): a revocation holds for every release at once.
    """

    request_id: str
    key_id: bytes
    digest: bytes
    now_ms: int
    rate_limit: tuple[int, int] | None = None
    reservation: Reservation | None = None
    in_force: InForce | None = None

@dataclass(frozen=True)
class KeyRow:
    """Public metadata of a stored key (never the share itself)."""

    key_id: bytes
    label: str
    public_key: bytes
    threshold: int
    parties: int
    status: str  # "pending" | "active"
    created_at: int  # unix seconds
    scheme: str = "ecdsa-secp256k1"  # issue 16: SCHEME_KEY_LENS


# --- argument checks -------------------------------------------------------------------------


def _check_bytes(value: object, field: str, *, length: int | None = None, max_len: int = MAX_RECORD) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise StoreError(f"{field}: must be bytes")
    if length is not None and len(value) != length:
        raise StoreError(f"{field}: must be {length} bytes, got {len(value)}")
    if not value or len(value) > max_len:
        raise StoreError(f"{field}: must be 1..{max_len} bytes")
    return bytes(value)


def _check_int(value: object, field: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise StoreError(f"{field}: must be an int in [{lo}, {hi}]")
    return value


def _check_text(value: object, field: str, max_len: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > max_len or (not value and not allow_empty):
        raise StoreError(f"{field}: must be a string of {0 if allow_empty else 1}..{max_len} characters")
    if "\x00" in value:
        raise StoreError(f"{field}: must not contain NUL")
    return value


def _aad(kind: bytes, ident: bytes, node_id: int) -> bytes:
    return AAD_PREFIX + kind + b"\x00" + struct.pack(">I", len(ident)) + ident + struct.pack(">I", node_id)




class NodeStore(EpochStore, BackupStore, PresigStore, NonceStore):
    """A node's encrypted SQLite store; create with :meth:`open`, release with :meth:`close`.
    Key epochs and pending shares: :class:`mpc_node.epoch_store.EpochStore`; backup and
    recovery state: :class:`mpc_node.backup_store.BackupStore`."""

    def __init__(self, path: Path, node_id: int, conn: sqlite3.Connection, aead: AESGCM, steady: SteadyClock) -> None:
        """Internal: use :meth:`open`."""
        self._path = path
        # the store's steady clock (ms; mpcnet/common/steadyclock.py): what the rate limit counts
        self.steady = steady
        self._node_id = node_id
        self._conn: sqlite3.Connection | None = conn
        self._aead: AESGCM | None = aead
        self._lock = threading.RLock()
        self.audit_appended_seq = 0  # audit outbox rows up to here are in the log (mpc_node/audit_outbox.py)
        self._epoch_cache = KeyEpochCache()  # key_id -> KeyEpoch, under self._lock (mpc_node/key_epoch_cache.py)
        self._served = ServedWindows()  # key_id -> served times, under self._lock (mpc_node/served_window.py)
        # test mode only: returns a reason to make every write fail (an injected disk fault)
        self.write_fault: Callable[[], str | None] | None = None
        # the node's expiry clock (ms since the epoch), set by the node (mpc_node/expiry_floor.py):
        # :meth:`probe_write` and :meth:`mark_expiry_floor` persist it as the floor a restart starts from
        self.expiry_now: Callable[[], int] | None = None

    def __repr__(self) -> str:
        return f"NodeStore(path={str(self._path)!r}, node_id={self._node_id}, open={self._conn is not None})"

    def __enter__(self) -> NodeStore:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def node_id(self) -> int:
        return self._node_id

    # --- opening -----------------------------------------------------------------------------

    @staticmethod
    def open(
        path: Path, passphrase: bytes | StorageKey, node_id: int, *, scrypt_n: int = SCRYPT_N,
        steady: SteadySource | None = None,
    ) -> NodeStore:
        """Open (creating on first use) the store at ``path`` for node ``node_id``.

        ``passphrase`` is the node passphrase, or a PKCS#11 token's storage key (a store of kind
        ``pkcs11``: see :func:`_unlock_wrapped`); a store opened with the other protection is
        refused with a :class:`StoreError` naming it.

        On creation a random salt, the scrypt parameters (``scrypt_n`` is used only then) and a
        passphrase check value are written to the ``meta`` table; later opens check the node id
        and the passphrase against them (:class:`StoreError` naming ``node_id`` / ``passphrase``).

        The store's steady clock (:attr:`steady`) is anchored for this boot (``steady``: where it
        reads, the host's boot-time clock and boot id by default; tests inject them);
        :class:`StoreError` naming ``steady_anchors`` / ``boot_id`` if it cannot be.
        """
        if not isinstance(passphrase, StorageKey) and (not isinstance(passphrase, (bytes, bytearray)) or not passphrase):
            raise StoreError("passphrase: must be non-empty bytes")
        _check_int(node_id, "node_id", 1, 65535)
        _check_scrypt_n(scrypt_n, "scrypt_n")
        path = Path(path)
        conn = _connect(path)
        try:
            if isinstance(passphrase, StorageKey):
                aead = _unlock_wrapped(conn, passphrase, node_id)
            else:
                aead = _unlock(conn, bytes(passphrase), node_id, scrypt_n)
            _migrate(conn)  # after the passphrase check: a wrong one changes nothing
            try:
                clock = anchor(conn, steady or SteadySource(), STEADY_FLOOR_SQL)
            except SteadyClockError as e:
                raise StoreError(str(e)) from None
        except BaseException:
            conn.close()
            raise
        return NodeStore(path, node_id, conn, aead, clock)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (the background audit flusher then stops quietly)."""
        return self._conn is None

    def close(self) -> None:
        """Close the database; later calls raise :class:`StoreError`. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            self._aead = None
            self._epoch_cache.clear()
            self._served.clear()

    # --- internals ---------------------------------------------------------------------------

    def _live(self) -> tuple[sqlite3.Connection, AESGCM]:
        if self._conn is None or self._aead is None:
            raise StoreError("store is closed")
        return self._conn, self._aead

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn, _ = self._live()
            try:
                yield conn
            except sqlite3.Error as e:
                raise StoreError.of_database(e) from None

    @contextlib.contextmanager
    def _write(self, *, tracked: bool = False) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction, committed (and fsynced, synchronous=FULL) on success.

        ``tracked``: the caller's statements touch neither ``keys`` nor ``key_epochs`` and insert
        into ``requests`` only through :func:`_record_served` given ``self._served``, so the
        store's memos stay valid (:mod:`mpc_node.key_epoch_cache`, :mod:`mpc_node.served_window`);
        by default both are suspended during the transaction and cleared when it ends."""
        with self._lock, contextlib.ExitStack() as memos:
            conn, _ = self._live()
            if not tracked:  # both memos answer from SQL while it runs and start over when it ends
                memos.enter_context(self._served.changing())
                memos.enter_context(self._epoch_cache.changing())
            try:
                fault = self.write_fault() if self.write_fault is not None else None
                if fault:
                    raise sqlite3.OperationalError(fault)
                guard = tracked and GUARD_TRACKED_WRITES
                if guard:
                    conn.set_authorizer(_tracked_guard)
                try:
                    with write_transaction(conn):
                        yield conn
                finally:
                    if guard:
                        conn.set_authorizer(None)
            except BaseException as e:
                self._served.rolled_back()
                if isinstance(e, sqlite3.Error):
                    raise StoreError.of_database(e) from None
                raise
            else:
                self._served.committed()

    def _seal(self, kind: bytes, ident: bytes, plaintext: bytes) -> bytes:
        _, aead = self._live()
        nonce = os.urandom(NONCE_LEN)
        return nonce + aead.encrypt(nonce, plaintext, _aad(kind, ident, self._node_id))

    def _unseal(self, kind: bytes, ident: bytes, blob: bytes) -> bytes:
        _, aead = self._live()
        what = f"{kind.decode()} {ident.hex()}"
        if not isinstance(blob, bytes) or len(blob) < NONCE_LEN + 16:
            raise StoreError(f"{what}: stored blob is malformed")
        try:
            return aead.decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], _aad(kind, ident, self._node_id))
        except InvalidTag:
            raise StoreError(f"{what}: stored blob does not decrypt (corrupted, or moved from another row, kind or node)") from None

    # --- key shares --------------------------------------------------------------------------

    def put_key_share(
        self, key_id: bytes, record: bytes, *, label: str, public_key: bytes, threshold: int, parties: int,
        committee: tuple[int, ...] | None = None, scheme: str = "ecdsa-secp256k1", audit: audit_outbox.OutboxEntry | None = None,
    ) -> None:
        """Store a freshly generated key share with status ``pending``; never overwrites.
        ``committee``: the roster indices holding the shares (None: ``1..parties``); ``scheme``
        one of :data:`SCHEME_KEY_LENS`, which fixes the length of ``public_key`` (32 or 33 bytes).
        ``audit`` (the ``keygen`` entry) is queued in the audit outbox in the same transaction."""
        key_id = _check_bytes(key_id, "key_id", length=ID_LEN)
        record = _check_bytes(record, "record")
        label = _check_text(label, "label", MAX_LABEL, allow_empty=True)
        if scheme not in SCHEME_KEY_LENS:
            raise StoreError(f"scheme: must be one of {', '.join(SCHEME_KEY_LENS)}")
        public_key = _check_bytes(public_key, "public_key", length=SCHEME_KEY_LENS[scheme])
        _check_int(threshold, "threshold", 2, MAX_PARTIES)
        _check_int(parties, "parties", threshold, MAX_PARTIES)
        blob = self._seal(KIND_KEYSHARE, key_id, record)
        with self._write() as c:
            if c.execute("SELECT 1 FROM keys WHERE key_id = ?", (key_id,)).fetchone():
                raise StoreError(f"key_id: {key_id.hex()} already exists, refusing to overwrite")
            c.execute(
                "INSERT INTO keys (key_id, label, public_key, threshold, parties, status, created_at, record, scheme)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                (key_id, label, public_key, threshold, parties, int(time.time()), blob, scheme),
            )
            if committee is not None:
                self.set_key_committee(c, key_id, committee)
            if audit is not None:
                self._queue_audit(c, audit)

    def activate_key(self, key_id: bytes, *, audit: audit_outbox.OutboxEntry | None = None) -> bool:
        """Mark a pending key active (every node finished DKG); True if it was pending (then
        ``audit`` is queued in the audit outbox in the same transaction), False if already active
        (idempotent, nothing written). :class:`KeyStateError` naming ``key_id`` if the key is
        absent (never generated here, or discarded meanwhile)."""
        key_id = _check_bytes(key_id, "key_id", length=ID_LEN)
        with self._write() as c:
            row = c.execute("SELECT status FROM keys WHERE key_id = ?", (key_id,)).fetchone()
            if row is None:
                raise KeyStateError(f"key_id: no key {key_id.hex()}")
            if row[0] != "pending":
                return False
            c.execute("UPDATE keys SET status = 'active' WHERE key_id = ?", (key_id,))
            if audit is not None:
                self._queue_audit(c, audit)
            return True

    def discard_pending_key(self, key_id: bytes, *, audit: audit_outbox.OutboxEntry | None = None) -> bool:
        """Delete a key that never became active (DKG failed elsewhere); True if one was deleted
        (then ``audit`` is queued in the audit outbox in the same transaction). Unknown key:
        False, nothing written. :class:`KeyStateError` naming ``key_id`` if the key is active
        (a CommitKey won the race), nothing changes."""
        key_id = _check_bytes(key_id, "key_id", length=ID_LEN)
        with self._write() as c:
            row = c.execute("SELECT status FROM keys WHERE key_id = ?", (key_id,)).fetchone()
            if row is None:
                return False
            if row[0] != "pending":
                raise KeyStateError(f"key_id: {key_id.hex()} is active, refusing to discard it")
            c.execute("DELETE FROM keys WHERE key_id = ? AND status = 'pending'", (key_id,))
            if audit is not None:
                self._queue_audit(c, audit)
            return True

    def get_key_share(self, key_id: bytes, *, require_active: bool = True) -> bytes | None:
        """The decrypted key-share record, or ``None`` if absent (or pending and ``require_active``)."""
        key_id = _check_bytes(key_id, "key_id", length=ID_LEN)
        with self._read() as c:
            row = c.execute("SELECT status, record FROM keys WHERE key_id = ?", (key_id,)).fetchone()
        if row is None or (require_active and row[0] != "active") or not row[1]:
            return None  # an empty record: this node left the key's committee (epoch_store)
        return self._unseal(KIND_KEYSHARE, key_id, row[1])

    def list_keys(self) -> list[KeyRow]:
        """Metadata of every key, oldest first; no secret material."""
        with self._read() as c:
            rows = c.execute(
                "SELECT key_id, label, public_key, threshold, parties, status, created_at, scheme FROM keys"
                " ORDER BY created_at, rowid"
            ).fetchall()
        return [KeyRow(bytes(r[0]), r[1], bytes(r[2]), r[3], r[4], r[5], r[6], str(r[7])) for r in rows]

    # --- presignatures -----------------------------------------------------------------------

    def put_presignature(self, sigid: bytes, key_id: bytes, record: bytes) -> None:
        """Store a fresh presignature for an active key; never overwrites (a used one included)."""
        sigid = _check_bytes(sigid, "sigid", length=ID_LEN)
        key_id = _check_bytes(key_id, "key_id", length=ID_LEN)
        record = _check_bytes(record, "record")
        blob = self._seal(KIND_PRESIGNATURE, sigid, record)
        with self._write() as c:
            row = c.execute("SELECT status FROM keys WHERE key_id = ?", (key_id,)).fetchone()
            if row is None or row[0] != "active":
                raise StoreError(f"key_id: no active key {key_id.hex()}")
            if c.execute("SELECT 1 FROM presignatures WHERE sigid = ?", (sigid,)).fetchone():
                raise StoreError(f"sigid: presignature {sigid.hex()} already exists, refusing to overwrite")
            c.execute(
                "INSERT INTO presignatures (sigid, key_id, record, used, created_at) VALUES (?, ?, ?, 0, ?)",
                (sigid, key_id, blob, int(time.time())),
            )

    def consume_presignature(self, sigid: bytes, tombstone: bytes, *, request: ServedRequest | None = None) -> None:
        """Replace the record by ``tombstone`` and mark it used, durably, in one transaction.

        Call this *before* releasing a signature share. Raises :class:`PresignatureAlreadyUsed`
        if it was already used or is unknown. With ``request``, the same transaction records
        it as served, or raises :class:`RequestAlreadyServed` / :class:`RateLimited` (and
        leaves the presignature unused).
        """
        sigid = _check_bytes(sigid, "sigid", length=ID_LEN)
        tombstone = _check_bytes(tombstone, "tombstone")
        served = None if request is None else _check_served(request)
        blob = self._seal(KIND_TOMBSTONE, sigid, tombstone)
        with self._write(tracked=True) as c:  # requests, presignatures only
            if served is not None:
                _record_served(c, served, self._served, self.steady.now_ms)
            row = c.execute("SELECT used FROM presignatures WHERE sigid = ?", (sigid,)).fetchone()
            if row is None:
                raise PresignatureAlreadyUsed(f"sigid: no presignature {sigid.hex()}")
            if row[0]:
                raise PresignatureAlreadyUsed(f"sigid: presignature {sigid.hex()} already used")
            cur = c.execute(
                "UPDATE presignatures SET record = ?, used = 1, used_at = ? WHERE sigid = ? AND used = 0",
                (blob, int(time.time()), sigid),
            )
            if cur.rowcount != 1:  # cannot happen inside the IMMEDIATE transaction
                raise PresignatureAlreadyUsed(f"sigid: presignature {sigid.hex()} already used")

    def put_used_presignature(
        self, sigid: bytes, key_id: bytes, tombstone: bytes, *, request: ServedRequest | None = None,
        audit: audit_outbox.OutboxEntry | None = None, epoch: int | None = None,
    ) -> None:
        """Record a presignature consumed as soon as it was made: only its tombstone is written.

        For the sign-at-once path: the fresh record (with its secrets) never reaches the file or
        the WAL, not even for the milliseconds between :meth:`put_presignature` and
        :meth:`consume_presignature`. In one transaction, durably: records ``request`` as served
        (or raises :class:`RequestAlreadyServed` / :class:`RateLimited`), checks that ``key_id``
        is an active key (:class:`StoreError`) and that ``sigid`` was never stored
        (:class:`PresignatureAlreadyUsed`), and inserts the tombstone marked used. On any error
        nothing is written. Call this *before* releasing the signature share. ``audit`` is
        queued in the audit outbox in the same transaction. With ``epoch`` (the epoch of the share
        the session signs with) the same transaction first raises :class:`PoolError` (kind
        ``epoch``) unless the key is active here at exactly that epoch: a refresh or reshare
        committed (or the key retired, or this node left its committee) while the session ran
        releases nothing, as for a pool presignature or a FROST nonce.
        """
        sigid = _check_bytes(sigid, "sigid", length=ID_LEN)
        key_id = _check_bytes(key_id, "key_id", length=ID_LEN)
        tombstone = _check_bytes(tombstone, "tombstone")
        served = None if request is None else _check_served(request)
        blob = self._seal(KIND_TOMBSTONE, sigid, tombstone)
        with self._write(tracked=True) as c:  # requests, presignatures, audit outbox only (keys read)
            if epoch is not None:
                held = self._epoch_cache.get(c, key_id, _key_epoch)
                if held is None or held.status != "active" or held.epoch != epoch:
                    state = "not active here" if held is None or held.status != "active" else f"at epoch {held.epoch}"
                    raise PoolError("epoch", "epoch", f"key {key_id.hex()[:16]} is {state}, not at epoch {epoch}: nothing released")
            if served is not None:
                _record_served(c, served, self._served, self.steady.now_ms)
            row = c.execute("SELECT status FROM keys WHERE key_id = ?", (key_id,)).fetchone()
            if row is None or row[0] != "active":
                raise StoreError(f"key_id: no active key {key_id.hex()}")
            if c.execute("SELECT 1 FROM presignatures WHERE sigid = ?", (sigid,)).fetchone():
                raise PresignatureAlreadyUsed(f"sigid: presignature {sigid.hex()} already exists (one-time)")
            now = int(time.time())
            c.execute(
                "INSERT INTO presignatures (sigid, key_id, record, used, created_at, used_at) VALUES (?, ?, ?, 1, ?, ?)",
                (sigid, key_id, blob, now, now),
            )
            if audit is not None:
                audit_outbox.queue(c, audit, time.time_ns() // 1_000_000, self.audit_appended_seq)

    def get_presignature(self, sigid: bytes) -> tuple[bytes, bool] | None:
        """``(record, used)``: the fresh record, or the tombstone once used; ``None`` if unknown."""
        sigid = _check_bytes(sigid, "sigid", length=ID_LEN)
        with self._read() as c:
            row = c.execute("SELECT record, used FROM presignatures WHERE sigid = ?", (sigid,)).fetchone()
        if row is None:
            return None
        used = bool(row[1])
        return self._unseal(KIND_TOMBSTONE if used else KIND_PRESIGNATURE, sigid, row[0]), used

    # --- bans --------------------------------------------------------------------------------

    def add_ban(self, key_id: bytes, peer: int, reason: str, *, audit: audit_outbox.OutboxEntry | None = None) -> None:
        """Refuse every later session with ``peer`` for ``key_id``; the first reason is kept. The
        key's fresh presignatures whose signers include ``peer`` are deleted, and ``audit`` (the
        ban's entry) is queued in the audit outbox, in the same transaction."""
        key_id = _check_bytes(key_id, "key_id", length=ID_LEN)
        _check_int(peer, "peer", 1, 65535)
        reason = _check_text(reason, "reason", MAX_REASON)
        with self._write() as c:
            c.execute(
                "INSERT OR IGNORE INTO bans (key_id, peer, reason, created_at) VALUES (?, ?, ?, ?)",
                (key_id, peer, reason, int(time.time())),
            )
            delete_fresh_with_peer(c, key_id, peer)  # issue 14: no pool presignature with a banned peer survives
            if audit is not None:
                audit_outbox.queue(c, audit, time.time_ns() // 1_000_000, self.audit_appended_seq)

    def banned(self, key_id: bytes) -> frozenset[int]:
        """Peers banned for ``key_id``."""
        key_id = _check_bytes(key_id, "key_id", length=ID_LEN)
        with self._read() as c:
            rows = c.execute("SELECT peer FROM bans WHERE key_id = ?", (key_id,)).fetchall()
        return frozenset(int(r[0]) for r in rows)

    def all_bans(self) -> dict[bytes, dict[int, str]]:
        """Every ban: ``{key_id: {peer: reason}}`` (loaded by the node's ban registry at start)."""
        with self._read() as c:
            rows = c.execute("SELECT key_id, peer, reason FROM bans").fetchall()
        out: dict[bytes, dict[int, str]] = {}
        for key_id, peer, reason in rows:
            out.setdefault(bytes(key_id), {})[int(peer)] = str(reason)
        return out

    # --- served requests ---------------------------------------------------------------------

    def record_request(self, request_id: str, key_id: bytes, digest: bytes) -> None:
        """Remember that ``request_id`` was served; :class:`RequestAlreadyServed` on a repeat."""
        req = _check_served(ServedRequest(request_id, key_id, digest, time.time_ns() // 1_000_000))
        with self._write(tracked=True) as c:  # requests (and reservations) only
            _record_served(c, req, self._served, self.steady.now_ms)

    def count_served_within(self, key_id: bytes, window_ms: int) -> int:
        """:meth:`count_served` over the last ``window_ms`` of steady time (a wall-clock step
        changes nothing)."""
        _check_int(window_ms, "window_ms", 1, 2**62)
        return self.count_served(key_id, self.steady.now_ms() - window_ms)

    def served_times(self, key_id: bytes, since_ms: int) -> list[int]:
        """When requests with ``key_id`` were served (Unix ms), for those after ``since_ms``."""
        key_id = _check_bytes(key_id, "key_id", length=ID_LEN)
        _check_int(since_ms, "since_ms", -(2**62), 2**62)
        with self._read() as c:
            rows = c.execute(
                "SELECT served_ms FROM requests WHERE key_id = ? AND served_ms > ?", (key_id, since_ms)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def count_served(self, key_id: bytes, since_ms: int) -> int:
        """How many requests with ``key_id`` were served after steady time ``since_ms`` (ms of
        :attr:`steady`, exclusive; later-than-now times count too): what one indexed ``COUNT(*)``
        on ``requests_by_key_steady`` answers, from the store's memo (:mod:`mpc_node.served_window`);
        the same count :func:`_record_served` enforces in its transaction."""
        key_id = _check_bytes(key_id, "key_id", length=ID_LEN)
        _check_int(since_ms, "since_ms", -(2**62), 2**62)
        with self._read() as c:
            return self._served.count(c, key_id, since_ms)

    # --- governance policies -----------------------------------------------------------------

    def put_policy_change(
        self, scope: bytes, version: int, signed_change: bytes, *, previous_version: int | None,
        audit: audit_outbox.OutboxEntry | None = None,
    ) -> None:
        """Store an installed (already verified) change as ``version`` of ``scope``, with
        ``audit`` queued in the audit outbox in the same transaction.

        Compare-and-set: the scope's latest stored version must be ``previous_version`` (``None``:
        nothing stored yet), else :class:`PolicyConflict` (nothing written, nothing queued).
        """
        scope = _check_bytes(scope, "scope", max_len=MAX_SCOPE)
        _check_int(version, "version", 1, 2**63 - 1)
        signed_change = _check_bytes(signed_change, "signed_change", max_len=MAX_CHANGE)
        with self._write() as c:
            row = c.execute("SELECT MAX(version) FROM policy_changes WHERE scope = ?", (scope,)).fetchone()
            latest = None if row is None or row[0] is None else int(row[0])
            if latest != previous_version:
                raise PolicyConflict(f"scope: stored version is {latest}, expected {previous_version}")
            c.execute(
                "INSERT INTO policy_changes (scope, version, signed_change, installed_ms) VALUES (?, ?, ?, ?)",
                (scope, version, signed_change, time.time_ns() // 1_000_000),
            )
            if audit is not None:
                audit_outbox.queue(c, audit, time.time_ns() // 1_000_000, self.audit_appended_seq)

    def policy_changes(self) -> dict[bytes, list[bytes]]:
        """Every stored change, per scope, oldest version first."""
        with self._read() as c:
            rows = c.execute("SELECT scope, version, signed_change FROM policy_changes ORDER BY scope, version").fetchall()
        out: dict[bytes, list[bytes]] = {}
        for scope, _version, change in rows:
            out.setdefault(bytes(scope), []).append(bytes(change))
        return out

    # --- the roster ----------------------------------------------------------------------------

    def put_roster_changes(
        self, first_version: int, signed_changes: list[bytes], *, audit: audit_outbox.OutboxEntry | None = None
    ) -> None:
        """Append already verified roster changes as versions ``first_version``, ``+1``, ...
        in one transaction, with ``audit`` queued in the audit outbox. Compare-and-set: the
        latest stored version must be ``first_version - 1`` (0: none stored), else
        :class:`PolicyConflict` (nothing written, nothing queued)."""
        _check_int(first_version, "first_version", 1, 2**63 - 1)
        blobs = [_check_bytes(b, "signed_change", max_len=MAX_CHANGE) for b in signed_changes]
        with self._write() as c:
            row = c.execute("SELECT MAX(version) FROM roster_changes").fetchone()
            latest = 0 if row is None or row[0] is None else int(row[0])
            if latest != first_version - 1:
                raise PolicyConflict(f"roster: stored version is {latest}, expected {first_version - 1}")
            now = time.time_ns() // 1_000_000
            c.executemany(
                "INSERT INTO roster_changes (version, signed_change, installed_ms) VALUES (?, ?, ?)",
                [(first_version + k, b, now) for k, b in enumerate(blobs)],
            )
            if audit is not None:
                audit_outbox.queue(c, audit, now, self.audit_appended_seq)

    def roster_changes(self) -> list[bytes]:
        """Every stored roster change, version 1 first."""
        with self._read() as c:
            rows = c.execute("SELECT signed_change FROM roster_changes ORDER BY version").fetchall()
        return [bytes(r[0]) for r in rows]

    def put_policy_attestation(
        self, attestation: bytes, issued_at_ms: int, *, audit: audit_outbox.OutboxEntry | None = None
    ) -> bool:
        """Keep ``attestation`` (an already verified SignedPolicyAttestation) if it was issued
        later than the one stored, with ``audit`` queued in the audit outbox; True if stored.
        Atomic and durable (one transaction); False: nothing written, nothing queued."""
        attestation = _check_bytes(attestation, "attestation", max_len=MAX_CHANGE)
        _check_int(issued_at_ms, "issued_at_ms", 0, 2**62)
        with self._write() as c:
            row = c.execute("SELECT value FROM meta WHERE name = 'policy_attestation_ms'").fetchone()
            if row is not None and isinstance(row[0], int) and row[0] >= issued_at_ms:
                return False
            c.executemany(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                [("policy_attestation_ms", issued_at_ms), ("policy_attestation", attestation)],
            )
            if audit is not None:
                audit_outbox.queue(c, audit, time.time_ns() // 1_000_000, self.audit_appended_seq)
        return True

    def policy_attestation(self) -> bytes | None:
        """The stored attestation (see :meth:`put_policy_attestation`), or None."""
        with self._read() as c:
            row = c.execute("SELECT value FROM meta WHERE name = 'policy_attestation'").fetchone()
        return None if row is None else bytes(row[0])
    def probe_write(self, now_ms: int) -> None:
        """Rewrite the one-row ``health_probe`` table (a durable, committed write); raises
        :class:`StoreError` if the store cannot be written (disk full, read-only, I/O error)."""
        _check_int(now_ms, "now_ms", 0, 2**63 - 1)
        with self._write(tracked=True) as c:
            c.execute(
                "INSERT INTO health_probe (id, written_ms) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET written_ms = excluded.written_ms",
                (now_ms,),
            )
            self.steady.mark(c)  # a reboot continues the steady timeline from here (mpcnet/common/steadyclock.py)
            if self.expiry_now is not None:  # a restart's expiry clock starts from here (mpc_node/expiry_floor.py)
                mark_wall_floor(c, self.expiry_now(), self.steady.now_ms())

    def expiry_floor(self) -> int | None:
        """The persisted expiry floor's offset (ms: floor wall time - steady time; see
        :func:`mpcnet.common.steadyclock.read_wall_floor`), or None. Raises :class:`StoreError`."""
        with self._read() as c:
            try:
                return read_wall_floor(c)
            except SteadyClockError as e:
                raise StoreError(str(e)) from None

    def mark_expiry_floor(self) -> None:
        """Persist :attr:`expiry_now` (when set) as the expiry floor, with this boot's steady mark
        (at start and clean stop; :meth:`probe_write` marks it periodically). Raises :class:`StoreError`."""
        if self.expiry_now is None:
            return
        with self._write(tracked=True) as c:
            self.steady.mark(c)
            mark_wall_floor(c, self.expiry_now(), self.steady.now_ms())

    def request_served(self, request_id: str) -> bool:
        request_id = _check_text(request_id, "request_id", MAX_REQUEST_ID)
        with self._read() as c:
            return c.execute("SELECT 1 FROM requests WHERE request_id = ?", (request_id,)).fetchone() is not None

    # --- signing attempts --------------------------------------------------------------------

    def reserve_attempt(
        self, r: Reservation, *, audit: Callable[[bool], audit_outbox.OutboxEntry] | None = None, in_force: InForce | None = None,
    ) -> bool:
        """Grant ``r`` durably: True if new, False if exactly this was already granted;
        :class:`ReservationConflict` if the attempt was granted to another signer set, session
        or request version (nothing is written then). ``audit(created)`` is queued in the
        audit outbox in the same transaction. With ``in_force`` (the policy, attestation and
        roster the grant's checks used) the same transaction first refuses if any changed since
        (:func:`mpc_node.in_force.check_in_force`: a subclass of
        :class:`~mpc_node.in_force.InForceChanged`; nothing is written)."""
        r = _check_reservation(r)
        if in_force is not None and not isinstance(in_force, InForce):
            raise StoreError("in_force: must be an InForce")
        with self._write(tracked=True) as c:
            if in_force is not None:
                check_in_force(c, r.key_id, in_force)
            created = _reserve(c, r)
            if audit is not None:
                audit_outbox.queue(c, audit(created), time.time_ns() // 1_000_000, self.audit_appended_seq)
            return created

    # --- audit outbox (mpc_node/audit_outbox.py) ---------------------------------------------

    def _queue_audit(self, c: sqlite3.Connection, entry: audit_outbox.OutboxEntry) -> str:
        """Inside the caller's write transaction: queue ``entry`` in the audit outbox (committed
        with the caller's state change, or rolled back with it); returns its event token."""
        return audit_outbox.queue(c, entry, time.time_ns() // 1_000_000, self.audit_appended_seq)

    def queue_audit(self, entry: audit_outbox.OutboxEntry) -> str:
        """Queue ``entry`` alone (a durable write); returns its event token."""
        with self._write(tracked=True) as c:
            return audit_outbox.queue(c, entry, time.time_ns() // 1_000_000, self.audit_appended_seq)

    def pending_audit(self, limit: int = audit_outbox.BATCH, after_seq: int = 0) -> list[audit_outbox.OutboxRow]:
        """The oldest ``limit`` (1..10,000) queued audit entries after ``after_seq``, in queue order."""
        _check_int(limit, "limit", 1, 10_000)
        _check_int(after_seq, "after_seq", 0, 2**63 - 1)
        with self._read() as c:
            return audit_outbox.pending(c, limit, after_seq)

    def drop_audit(self, upto_seq: int) -> int:
        """Delete the queued entries up to ``upto_seq`` (appended to the audit log); returns how
        many (no commit when there are none)."""
        _check_int(upto_seq, "upto_seq", 0, 2**63 - 1)
        with self._read() as c:
            if c.execute("SELECT 1 FROM audit_outbox WHERE seq <= ? LIMIT 1", (upto_seq,)).fetchone() is None:
                return 0
        with self._write(tracked=True) as c:
            return audit_outbox.drop(c, upto_seq)

    def reservation(self, request_id: str, attempt: int) -> Reservation | None:
        """What this node granted for ``attempt`` of ``request_id``, if anything."""
        request_id = _check_text(request_id, "request_id", MAX_REQUEST_ID)
        _check_int(attempt, "attempt", 1, MAX_SIGN_ATTEMPTS)
        with self._read() as c:
            row = c.execute(
                "SELECT key_id, request_digest, signers, session_id, created_ms FROM reservations"
                " WHERE request_id = ? AND attempt = ?", (request_id, attempt),
            ).fetchone()
        if row is None:
            return None
        return Reservation(request_id, attempt, bytes(row[0]), bytes(row[1]), _ints(row[2]), bytes(row[3]), int(row[4]))

    def served_attempts(self, request_id: str) -> list[int]:
        """The attempts of ``request_id`` this node released a share for, in increasing order."""
        request_id = _check_text(request_id, "request_id", MAX_REQUEST_ID)
        with self._read() as c:
            rows = c.execute(
                "SELECT attempt FROM served_attempts WHERE request_id = ? ORDER BY attempt", (request_id,)
            ).fetchall()
        return [int(r[0]) for r in rows]


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in str(text).split(",") if x)


def _check_reservation(r: object) -> Reservation:
    if not isinstance(r, Reservation):
        raise StoreError("reservation: must be a Reservation")
    _check_text(r.request_id, "reservation.request_id", MAX_REQUEST_ID)
    _check_int(r.attempt, "reservation.attempt", 1, MAX_SIGN_ATTEMPTS)
    _check_bytes(r.key_id, "reservation.key_id", length=ID_LEN)
    _check_bytes(r.request_digest, "reservation.request_digest", length=ID_LEN)
    _check_bytes(r.session_id, "reservation.session_id", length=ID_LEN)
    if (
        not isinstance(r.signers, tuple) or not 1 <= len(r.signers) <= MAX_PARTIES
        or list(r.signers) != sorted(set(r.signers))
    ):
        raise StoreError("reservation.signers: must be distinct roster indices in increasing order")
    for j in r.signers:
        _check_int(j, "reservation.signers", 1, 65535)
    _check_int(r.created_ms, "reservation.created_ms", 0, 2**62)
    return r


def _reserve(c: sqlite3.Connection, r: Reservation) -> bool:
    """Inside a write transaction: grant ``r`` (True), find it granted (False) or refuse."""
    row = c.execute(
        "SELECT key_id, request_digest, signers, session_id FROM reservations WHERE request_id = ? AND attempt = ?",
        (r.request_id, r.attempt),
    ).fetchone()
    if row is None:
        # a request id names one approved request: its attempts (and its one rate-limit slot) are
        # never shared with another request (another key, digest or version) reusing the id
        other = c.execute(
            "SELECT attempt FROM reservations WHERE request_id = ? AND (key_id != ? OR request_digest != ?) LIMIT 1",
            (r.request_id, r.key_id, r.request_digest),
        ).fetchone()
        if other is not None:
            raise ReservationConflict(
                f"request_id: request {r.request_id!r} is reserved for another request (another key, digest or "
                f"version; attempt {int(other[0])}); a request id names one approved request"
            )
        c.execute(
            "INSERT INTO reservations (request_id, attempt, key_id, request_digest, signers, session_id, created_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (r.request_id, r.attempt, r.key_id, r.request_digest, ",".join(map(str, r.signers)), r.session_id, r.created_ms),
        )
        return True
    same = (bytes(row[0]), bytes(row[1]), _ints(row[2]), bytes(row[3])) == (r.key_id, r.request_digest, r.signers, r.session_id)
    if not same:
        raise ReservationConflict(
            f"attempt: attempt {r.attempt} of request {r.request_id!r} is already reserved for signers "
            f"{list(_ints(row[2]))} in session {bytes(row[3]).hex()[:12]}"
        )
    return False


def _check_served(r: object) -> ServedRequest:
    if not isinstance(r, ServedRequest):
        raise StoreError("request: must be a ServedRequest")
    _check_text(r.request_id, "request_id", MAX_REQUEST_ID)
    _check_bytes(r.key_id, "key_id", length=ID_LEN)
    _check_bytes(r.digest, "digest", length=ID_LEN)
    _check_int(r.now_ms, "now_ms", 0, 2**62)
    if r.reservation is not None:
        _check_reservation(r.reservation)
        if r.reservation.request_id != r.request_id or r.reservation.key_id != r.key_id:
            raise StoreError("reservation: is for another request or key")
    if r.in_force is not None and not isinstance(r.in_force, InForce):
        raise StoreError("in_force: must be an InForce")
    if r.rate_limit is not None:
        if not isinstance(r.rate_limit, tuple) or len(r.rate_limit) != 2:
            raise StoreError("rate_limit: must be (max_signatures, window_ms)")
        _check_int(r.rate_limit[0], "rate_limit.max_signatures", 1, 2**62)
        _check_int(r.rate_limit[1], "rate_limit.window_ms", 1, 2**62)
    return r


def _record_served(
    c: sqlite3.Connection, r: ServedRequest, served: ServedWindows | None, steady_ms: Callable[[], int],
) -> None:
    """Inside a write transaction: refuse a repeat (of the attempt, with a reservation), a
    conflicting reservation or a rate-limit excess, else insert. ``served`` (required, so no
    writer can leave the memo out by accident): the store's memo of served times, which counts
    and is told the insert (pass it in every transaction of the store; in an untracked one it is
    suspended and counts in SQL); None: the count in SQL, for a connection without a memo.
    ``r.in_force`` is checked first (:func:`mpc_node.in_force.check_in_force`). ``steady_ms``: the
    store's steady clock (ms), read once inside the transaction; the rate limit counts the rows
    whose ``steady_ms`` is within the window of it (``r.now_ms``, the wall clock, is only recorded)."""
    if r.in_force is not None:
        check_in_force(c, r.key_id, r.in_force)
    seen = c.execute("SELECT 1 FROM requests WHERE request_id = ?", (r.request_id,)).fetchone() is not None
    res = r.reservation
    if res is not None:
        if seen and c.execute("SELECT 1 FROM served_attempts WHERE request_id = ? LIMIT 1", (r.request_id,)).fetchone() is None:
            # served without a reserved attempt (before attempts were counted): served once for good
            raise RequestAlreadyServed(f"request_id: {r.request_id!r} was already served (before signing attempts were counted)")
        _reserve(c, res)
        if c.execute(
            "SELECT 1 FROM served_attempts WHERE request_id = ? AND attempt = ?", (r.request_id, res.attempt)
        ).fetchone():
            raise RequestAlreadyServed(f"request_id: {r.request_id!r} attempt {res.attempt} was already served")
        c.execute(
            "INSERT INTO served_attempts (request_id, attempt, session_id, served_ms) VALUES (?, ?, ?, ?)",
            (r.request_id, res.attempt, res.session_id, r.now_ms),
        )
        if seen:
            return  # the request already counts towards the rate limit
    elif seen:
        raise RequestAlreadyServed(f"request_id: {r.request_id!r} was already served")
    now_steady = steady_ms()
    if r.rate_limit is not None:
        limit, window_ms = r.rate_limit
        since = now_steady - window_ms
        count = sql_count(c, r.key_id, since) if served is None else served.count(c, r.key_id, since)
        if count >= limit:
            raise RateLimited(
                f"rate_limit: {count} signature(s) with this key in the last {window_ms // 1000} s; the limit is {limit}"
            )
    _RECORDING.active = True  # the tracked-write guard (tests) lets this one insert into requests
    try:
        c.execute(
            "INSERT INTO requests (request_id, key_id, digest, served_at, served_ms, steady_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (r.request_id, r.key_id, r.digest, r.now_ms // 1000, r.now_ms, now_steady),
        )
    finally:
        _RECORDING.active = False
    if served is not None:
        served.noted(r.key_id, now_steady)


GUARD_TRACKED_WRITES = False
"""Tests turn this on (tests/conftest.py): a transaction opened ``tracked`` then runs under a
SQLite authorizer that refuses (``sqlite3.DatabaseError``, "not authorized") any write to
``keys`` or ``key_epochs`` and any write to ``requests`` other than :func:`_record_served`'s
insert, so a writer wrongly marked ``tracked`` fails the suite instead of leaving the memos stale
(:mod:`mpc_node.key_epoch_cache`, :mod:`mpc_node.served_window`). Off in production (an
authorizer re-prepares every statement)."""

_RECORDING = threading.local()
_MEMO_TABLES = frozenset({"keys", "key_epochs", "requests"})
_WRITES = frozenset({sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE})


def _tracked_guard(action: int, table: str | None, _a2: str | None, _db: str | None, trigger: str | None) -> int:
    if trigger == STEADY_DEFAULT_TRIGGER:  # fills a NULL steady_ms of the row being inserted (never fires here)
        return sqlite3.SQLITE_OK
    if action in _WRITES and table in _MEMO_TABLES:
        if not (table == "requests" and action == sqlite3.SQLITE_INSERT and getattr(_RECORDING, "active", False)):
            return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply the schema steps the store lacks (each once, in order, in its own transaction)."""
    try:
        migrate(conn, _MIGRATIONS)
    except DatabaseError as e:
        raise StoreError(str(e)) from None


# --- opening helpers -------------------------------------------------------------------------


def _check_scrypt_n(n: object, field: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not MIN_SCRYPT_N <= n <= MAX_SCRYPT_N or n & (n - 1):
        raise StoreError(f"{field}: must be a power of two in [2**10, 2**20]")
    return n


def _connect(path: Path) -> sqlite3.Connection:
    """Open the file (created 0600 if new, narrowed to 0600 if wider) in WAL mode with
    synchronous=FULL, foreign keys and secure_delete (see :func:`mpcnet.common.stores.sqlite.open_database`)."""
    try:
        return open_database(path, secure_delete=True)
    except DatabaseError as e:
        raise StoreError(str(e)) from None


def _read_meta(conn: sqlite3.Connection) -> dict[str, object]:
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
        return {}
    return {str(k): v for k, v in conn.execute("SELECT name, value FROM meta").fetchall()}


def _derive(passphrase: bytes, salt: bytes, n: int) -> AESGCM:
    return AESGCM(Scrypt(salt=salt, length=32, n=n, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase))


def _check_aad(node_id: int, salt: bytes) -> bytes:
    return CHECK_CONSTANT + struct.pack(">I", node_id) + salt


def _unlock(conn: sqlite3.Connection, passphrase: bytes, node_id: int, scrypt_n: int) -> AESGCM:
    """Initialize the schema and meta on first use, else verify node id and passphrase."""
    try:
        meta = _read_meta(conn)
    except sqlite3.Error as e:
        raise StoreError.of_database(e, "database: cannot initialize ({})") from None
    if not meta:
        _migrate(conn)  # a new store: create the tables (a no-op if another opener did)
        # derive outside the write lock (scrypt is slow); re-check inside it
        salt = os.urandom(SALT_LEN)
        aead = _derive(passphrase, salt, scrypt_n)
        nonce = os.urandom(NONCE_LEN)
        check = nonce + aead.encrypt(nonce, CHECK_CONSTANT, _check_aad(node_id, salt))
        try:
            with write_transaction(conn):
                if not _read_meta(conn):
                    conn.executemany(
                        "INSERT INTO meta (name, value) VALUES (?, ?)",
                        [
                            ("schema_version", SCHEMA_VERSION),
                            ("node_id", node_id),
                            ("kdf", "scrypt"),
                            ("scrypt_n", scrypt_n),
                            ("scrypt_r", SCRYPT_R),
                            ("scrypt_p", SCRYPT_P),
                            ("salt", salt),
                            ("check", check),
                        ],
                    )
                    return aead
                # another opener won the race: verify against its meta
            meta = _read_meta(conn)
        except sqlite3.Error as e:
            raise StoreError.of_database(e, "database: cannot initialize ({})") from None

    if meta.get("schema_version") != SCHEMA_VERSION:
        raise StoreError(f"database: unsupported schema version {meta.get('schema_version')!r}")
    if meta.get("node_id") != node_id:
        raise StoreError(f"node_id: this store belongs to node {meta.get('node_id')!r}, not {node_id}")
    if meta.get("kdf") == "pkcs11":
        raise StoreError("passphrase: this store is protected by a PKCS#11 token, not a passphrase "
                         "(config pkcs11; an interrupted mpc-node rekey-store: run it again)")
    if meta.get("kdf") != "scrypt" or meta.get("scrypt_r") != SCRYPT_R or meta.get("scrypt_p") != SCRYPT_P:
        raise StoreError("database: unsupported key-derivation parameters")
    n = _check_scrypt_n(meta.get("scrypt_n"), "database: stored scrypt_n")
    stored_salt, stored_check = meta.get("salt"), meta.get("check")
    if not isinstance(stored_salt, bytes) or len(stored_salt) != SALT_LEN:
        raise StoreError("database: stored salt is malformed")
    if not isinstance(stored_check, bytes) or len(stored_check) != NONCE_LEN + len(CHECK_CONSTANT) + 16:
        raise StoreError("database: stored passphrase check is malformed")
    aead = _derive(passphrase, stored_salt, n)
    try:
        plain = aead.decrypt(
            stored_check[:NONCE_LEN], stored_check[NONCE_LEN:], _check_aad(node_id, stored_salt)
        )
    except InvalidTag:
        raise StoreError("passphrase: does not unlock this store") from None
    if not hmac.compare_digest(plain, CHECK_CONSTANT):
        raise StoreError("passphrase: does not unlock this store")
    return aead


def wrap_aad(node_id: int) -> bytes:
    """The associated data the token binds to a store's wrapped data key."""
    return DATA_KEY_AAD + struct.pack(">I", node_id)


def pkcs11_meta(key: StorageKey, node_id: int, data_key: bytes) -> list[tuple[str, object]]:
    """The ``meta`` rows (besides ``schema_version``/``node_id``) of a store whose ``data_key``
    (32 bytes) is wrapped by the token's storage ``key``: kind ``pkcs11``, the key label, the
    mechanism, the wrapped key and the check value (AES-GCM of the constant under the data key)."""
    wrapped = key.wrap(data_key, wrap_aad(node_id))
    nonce = os.urandom(NONCE_LEN)
    check = nonce + AESGCM(data_key).encrypt(nonce, CHECK_CONSTANT, _check_aad(node_id, wrapped))
    return [("kdf", "pkcs11"), ("key_label", key.label), ("mechanism", key.mechanism), ("wrapped_key", wrapped), ("check", check)]


def _unlock_wrapped(conn: sqlite3.Connection, key: StorageKey, node_id: int) -> AESGCM:
    """Initialize a new store under a fresh random data key wrapped by the token's storage key,
    else unwrap the stored one (in the token) and verify it against the check value."""
    try:
        meta = _read_meta(conn)
    except sqlite3.Error as e:
        raise StoreError.of_database(e, "database: cannot initialize ({})") from None
    if not meta:
        _migrate(conn)
        data_key = os.urandom(32)
        rows = [("schema_version", SCHEMA_VERSION), ("node_id", node_id), *pkcs11_meta(key, node_id, data_key)]
        try:
            with write_transaction(conn):
                if not _read_meta(conn):
                    conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", rows)
                    return AESGCM(data_key)
            meta = _read_meta(conn)
        except sqlite3.Error as e:
            raise StoreError.of_database(e, "database: cannot initialize ({})") from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise StoreError(f"database: unsupported schema version {meta.get('schema_version')!r}")
    if meta.get("node_id") != node_id:
        raise StoreError(f"node_id: this store belongs to node {meta.get('node_id')!r}, not {node_id}")
    if meta.get("kdf") == "scrypt":
        raise StoreError("pkcs11: this store is protected by a passphrase, not a PKCS#11 token (move it with mpc-node rekey-store)")
    if meta.get("kdf") != "pkcs11" or meta.get("mechanism") != key.mechanism:
        raise StoreError("database: unsupported key protection")
    if meta.get("key_label") != key.label:
        raise StoreError(f"pkcs11.storage_key_label: this store's data key is wrapped by {meta.get('key_label')!r}, not {key.label!r}")
    wrapped, check = meta.get("wrapped_key"), meta.get("check")
    if not isinstance(wrapped, bytes) or len(wrapped) != WRAPPED_LEN:
        raise StoreError("database: stored wrapped key is malformed")
    if not isinstance(check, bytes) or len(check) != NONCE_LEN + len(CHECK_CONSTANT) + 16:
        raise StoreError("database: stored key check is malformed")
    try:
        data_key = key.unwrap(wrapped, wrap_aad(node_id))
    except TokenError as e:
        raise StoreError(str(e)) from None
    aead = AESGCM(data_key)
    try:
        plain = aead.decrypt(check[:NONCE_LEN], check[NONCE_LEN:], _check_aad(node_id, wrapped))
    except InvalidTag:
        raise StoreError("pkcs11: the token's data key does not unlock this store") from None
    if not hmac.compare_digest(plain, CHECK_CONSTANT):
        raise StoreError("pkcs11: the token's data key does not unlock this store")
    return aead
