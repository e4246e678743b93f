"""The audit log's SQLite store: :class:`AuditLog` (append), and file verification and export.

The chain itself (entries, canonical encoding, hashing, signing, verification of a sequence of
rows) is pure and lives in :mod:`governance.audit`; this module only keeps it in a file. One
file per component (``audit.db`` next to its data), opened like every store by
:mod:`mpcnet.common.stores.sqlite`: created 0600 (and the directory fsynced), WAL journaling with
``synchronous=FULL``, the tables created and upgraded by versioned migrations (``PRAGMA
user_version``); every write is committed before :meth:`AuditLog.append` returns. Tables ``meta``
(``schema_version`` 1, ``component``, ``public_key``; immutable) and ``audit`` (one row per
entry, columns :data:`governance.audit.ROW_COLUMNS`), and ``audit_events`` (``(request_id,
event) -> seq`` of every entry whose details carry an event key: the index that
:meth:`AuditLog.append_once` deduplicates by; outside the chain). The database
refuses UPDATE and DELETE (triggers) and out-of-sequence INSERTs, but the chain does not depend
on that: it is what detects an attacker who drops the triggers. ``meta.public_key`` is the key
that started the log; :meth:`AuditLog.rotate_key` hands the log over to a new key with an
``audit-key-rotated`` entry (:mod:`governance.audit`), so :meth:`AuditLog.open` wants the key
named by the last such entry. One connection is shared by all
threads behind a lock, and other processes are kept consistent by SQLite's locking (the head is
read inside each write transaction).

:func:`verify_audit` re-reads a file read-only and trusts nothing in it but the public key it is
given; :func:`export_jsonl` dumps it. Every failure is a :class:`GovernanceError` naming the
field (``path``, ``database``, ...).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance._checks import check_int, check_name, check_public_key
from governance.approval import rate_limit_ok
from governance.audit import (
    EVENT_KEY,
    KEY_ROTATED_ACTION,
    MAX_DETAILS,
    MAX_TIME_MS,
    ROW_COLUMNS,
    SUBJECT_KEY,
    AuditEntry,
    AuditReport,
    DetailValue,
    check_details,
    check_entry_fields,
    check_expected_head,
    check_request_id,
    check_token,
    entry_from_row,
    entry_verifies,
    genesis_hash,
    next_signing_key,
    public_key_of,
    rotation_details,
    seal_entry,
    verify_row_stream,
)
from governance.errors import GovernanceError
from governance.policy import RateLimit
from mpcnet.common.stores.sqlite import DatabaseError, Migration, migrate, open_database, open_readonly, write_transaction


@dataclass(frozen=True)
class QueuedEntry:
    """An entry queued elsewhere (an outbox) for :meth:`AuditLog.append_many_once`; ``event``
    (a token) is its once-only key, recorded as ``details["event"]``."""

    event: str
    actor: str
    action: str
    request_id: str
    outcome: str
    details: Mapping[str, DetailValue]


SCHEMA_VERSION = 1  # the meta row: format of meta and of the entries (not the table layout)

# The schema, as versioned migration steps (see mpcnet.common.stores.sqlite). Logs created before
# versioning have user_version 0 and either layout, so both steps are idempotent (IF NOT EXISTS).
_MIGRATIONS: tuple[Migration, ...] = (
    # 1: the layout up to commit 4b7440a
    (
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
        """CREATE TABLE IF NOT EXISTS audit (
        seq          INTEGER PRIMARY KEY CHECK (seq >= 1),
        timestamp_ms INTEGER NOT NULL,
        actor        TEXT NOT NULL,
        action       TEXT NOT NULL,
        request_id   TEXT NOT NULL,
        outcome      TEXT NOT NULL,
        details      TEXT NOT NULL,
        prev_hash    BLOB NOT NULL,
        entry_hash   BLOB NOT NULL,
        signature    BLOB NOT NULL
    )""",
        "CREATE INDEX IF NOT EXISTS audit_by_action_time ON audit (action, timestamp_ms)",
        """CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
        """CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
        """CREATE TRIGGER IF NOT EXISTS audit_append_in_sequence BEFORE INSERT ON audit
        WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit)
        BEGIN SELECT RAISE(ABORT, 'audit entries are appended in sequence'); END""",
        """CREATE TRIGGER IF NOT EXISTS meta_immutable_update BEFORE UPDATE ON meta
        BEGIN SELECT RAISE(ABORT, 'audit meta is immutable'); END""",
        """CREATE TRIGGER IF NOT EXISTS meta_immutable_delete BEFORE DELETE ON meta
        BEGIN SELECT RAISE(ABORT, 'audit meta is immutable'); END""",
    ),
    # 2: the request index for append_once (not part of the chain), added after 4b7440a
    ("CREATE INDEX IF NOT EXISTS audit_by_request ON audit (request_id)",),
    # 3 (issue 14): the event keys (details["event"]) of the entries, unique per request, so
    # append_once / append_many_once look an event up by index instead of parsing every entry
    # of the request. Not part of the chain (derived from the signed details; verify_audit
    # ignores it). An older log is backfilled once here, the first entry of a key winning.
    (
        """CREATE TABLE IF NOT EXISTS audit_events (
        request_id TEXT NOT NULL,
        event      TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        PRIMARY KEY (request_id, event)
    ) WITHOUT ROWID""",
        """INSERT OR IGNORE INTO audit_events (request_id, event, seq)
        SELECT request_id, json_extract(details, '$.event'), seq FROM audit
        WHERE json_valid(details) AND json_type(details, '$.event') = 'text' ORDER BY seq""",
    ),
)
_COLUMNS = ", ".join(ROW_COLUMNS)


# --- SQLite ----------------------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating 0600 if new) in WAL mode with synchronous=FULL (see
    :func:`mpcnet.common.stores.sqlite.open_database`); every failure names ``path``."""
    try:
        return open_database(path)
    except DatabaseError as e:
        raise GovernanceError("path", e.reason) from None


def _read_meta(conn: sqlite3.Connection) -> dict[str, object]:
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
        return {}
    return {str(k): v for k, v in conn.execute("SELECT name, value FROM meta").fetchall()}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


MAX_BATCH = 1000  # entries per AuditLog.append_many_once (one transaction)


@dataclass(frozen=True)
class OnceEntry:
    """One entry for :meth:`AuditLog.append_many_once`: the arguments of
    :meth:`AuditLog.append_once` (``event`` a token, recorded as ``details["event"]``)."""

    actor: str
    action: str
    event: str
    request_id: str = ""
    outcome: str = ""
    details: Mapping[str, DetailValue] | None = None


def _once_fields(item: OnceEntry) -> Mapping[str, DetailValue]:
    """The checked details of ``item`` with its event key merged in; :class:`GovernanceError`
    naming the field (``event``, ``details['event']`` when it names another event, ...)."""
    check_token(item.event, "event")
    check_entry_fields(item.actor, item.action, item.request_id, item.outcome, None)  # the details: once, below
    details = {} if item.details is None else item.details
    if not isinstance(details, Mapping) or len(details) >= MAX_DETAILS:
        check_details(details)  # alone first: a bad item is named before the merged size (as main did)
    merged = dict(details)
    conflict = merged.setdefault(EVENT_KEY, item.event) != item.event
    # issue 14: one check of the merged details (the event key is a checked token), where the
    # details were checked alone first; a bad item is still named before a conflicting event key
    checked = check_details(merged)
    if conflict:
        raise GovernanceError(f"details[{EVENT_KEY!r}]", "conflicts with event")
    return checked


class AuditLog:
    """A component's audit log; create with :meth:`open`, release with :meth:`close`."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        component: str,
        signing_key: Ed25519PrivateKey,
        clock: Callable[[], int],
    ) -> None:
        """Internal: use :meth:`open`."""
        self._path = path
        self._conn: sqlite3.Connection | None = conn
        self._component = component
        self._key = signing_key
        self._signing_public = public_key_of(signing_key)
        self._public_key = self._signing_public  # replaced by open() with the log's first key
        self._genesis = genesis_hash(component, self._public_key)
        self._signers: list[tuple[int, bytes]] = [(1, self._signing_public)]  # (first seq, key), by seq
        self._clock = clock
        self._lock = threading.RLock()
        # called before every read and write (outside the lock): a node flushes its audit outbox
        # here, so a reader sees, and a direct append follows, every entry queued before it
        self.before_use: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"AuditLog(path={str(self._path)!r}, component={self._component!r}, open={self._conn is not None})"

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def component(self) -> str:
        return self._component

    @property
    def public_key(self) -> bytes:
        """The raw Ed25519 public key that started this log and verifies it (give it to
        :func:`verify_audit`; rotation entries in the log name the keys after it)."""
        return self._public_key

    @property
    def signing_public_key(self) -> bytes:
        """The raw Ed25519 public key of the key that signs the next entry."""
        return self._signing_public

    @staticmethod
    def open(
        path: Path,
        *,
        component: str,
        signing_key: Ed25519PrivateKey,
        clock: Callable[[], int] | None = None,
    ) -> AuditLog:
        """Open (creating on first use) ``component``'s log at ``path``.

        The first open records the component name and public key; later opens must give the
        same (else :class:`GovernanceError` naming ``component`` / ``signing_key``), and the
        last entry must still verify, so a damaged log is never extended. ``clock`` returns
        Unix milliseconds (tests inject one).
        """
        check_name(component, "component")
        public_key = public_key_of(signing_key)  # checks signing_key
        path = Path(path)
        conn = _connect(path)
        try:
            first_key = _initialize(conn, component, public_key)
            log = AuditLog(path, conn, component, signing_key, clock or _now_ms)
            log._load_signers(first_key)
            log._check_head()
        except BaseException:
            conn.close()
            raise
        return log

    def close(self) -> None:
        """Close the database; later calls raise :class:`GovernanceError`. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    # --- internals ---------------------------------------------------------------------------

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise GovernanceError("audit_log", "is closed")
        return self._conn

    def _before_use(self) -> None:
        hook = self.before_use
        if hook is not None:
            hook()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        self._before_use()
        with self._lock:
            conn = self._live()
            try:
                yield conn
            except sqlite3.Error as e:
                raise GovernanceError("database", str(e)) from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction, committed (and fsynced, synchronous=FULL) on success."""
        self._before_use()
        with self._lock:
            conn = self._live()
            try:
                with write_transaction(conn):
                    yield conn
            except sqlite3.Error as e:
                raise GovernanceError("database", str(e)) from None

    def _load_signers(self, first_key: bytes) -> None:
        """Follow the log's key rotation entries from ``first_key`` (each must verify under the
        key before it) and require that the signing key is the last one they name."""
        self._public_key = first_key
        self._genesis = genesis_hash(self._component, first_key)
        signers = [(1, first_key)]
        with self._read() as c:
            rows = c.execute(f"SELECT {_COLUMNS} FROM audit WHERE action = ? ORDER BY seq", (KEY_ROTATED_ACTION,)).fetchall()
        for row in rows:
            try:
                entry = entry_from_row(tuple(row))
                if not entry_verifies(entry, signers[-1][1]):
                    raise GovernanceError("signature", "does not verify under the key before it")
                signers.append((entry.seq + 1, next_signing_key(entry, signers[-1][1])))
            except GovernanceError as e:
                raise GovernanceError("path", f"key rotation entry {row[0]!r} is invalid ({e}); run verify_audit") from None
        if signers[-1][1] != self._signing_public:
            what = "was started with" if len(signers) == 1 else "was handed over (audit-key-rotated) to"
            raise GovernanceError("signing_key", f"this log {what} another signing key")
        self._signers = signers

    def _key_for(self, seq: int) -> bytes:
        """The public key that verifies entry ``seq``."""
        return [key for first, key in self._signers if first <= seq][-1]

    def rotate_key(self, actor: str, new_signing_key: Ed25519PrivateKey, *, outcome: str = "ok") -> AuditEntry:
        """Hand the log over to ``new_signing_key``: append an ``audit-key-rotated`` entry signed
        by the current key naming the new public key (durably), then sign every later entry with
        the new key. Thread-safe; :class:`GovernanceError` if the new key is the current one."""
        new_public = public_key_of(new_signing_key)
        details = check_entry_fields(actor, KEY_ROTATED_ACTION, "", outcome, rotation_details(new_public))
        with self._write() as c:
            if new_public == self._signing_public:
                raise GovernanceError("new_signing_key", "is the log's current signing key")
            entry = self._insert(c, self._timestamp(), actor, KEY_ROTATED_ACTION, "", outcome, details)
            self._signers.append((entry.seq + 1, new_public))
            self._key, self._signing_public = new_signing_key, new_public
        return entry

    def _check_head(self) -> None:
        with self._read() as c:
            row = c.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return
        try:
            entry = entry_from_row(tuple(row))
        except GovernanceError as e:
            raise GovernanceError("path", f"last entry is malformed ({e}); run verify_audit") from None
        if not entry_verifies(entry, self._key_for(entry.seq)):
            raise GovernanceError("path", f"last entry {entry.seq} does not verify; run verify_audit")

    def _insert(
        self,
        c: sqlite3.Connection,
        timestamp_ms: int,
        actor: str,
        action: str,
        request_id: str,
        outcome: str,
        details: Mapping[str, DetailValue],
        *,
        head: tuple[int, bytes] | None = None,
        unseen: bool = False,
    ) -> AuditEntry:
        """Seal and insert one entry after the log's head, in ``c``'s write transaction.
        ``head``: (seq, entry hash) of the last entry, when the caller knows it in this
        transaction (it inserted it: issue 14, one SELECT less per entry of a batch); ``unseen``:
        the caller found, in this transaction and since its last insert, no entry of
        ``request_id`` with this event key (:meth:`_seen`), so that probe is not run again."""
        if head is None:
            row = c.execute("SELECT seq, entry_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            head = None if row is None else (int(row[0]), bytes(row[1]))
        seq, prev = (1, self._genesis) if head is None else (head[0] + 1, head[1])
        entry = seal_entry(self._key, seq, timestamp_ms, actor, action, request_id, outcome, details, prev)
        c.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", entry.to_row())
        event = details.get(EVENT_KEY)
        if isinstance(event, str):  # the index append_once looks events up in
            # the first entry of a key wins; a row naming no such entry is replaced
            if unseen or not self._seen(c, request_id, event):
                c.execute("INSERT OR REPLACE INTO audit_events (request_id, event, seq) VALUES (?, ?, ?)", (request_id, event, seq))
        return entry

    @staticmethod
    def _seen(c: sqlite3.Connection, request_id: str, event: str) -> bool:
        """Whether an entry of ``request_id`` with event key ``event`` is in the log: the index
        names its seq, and the chained entry at that seq (the signed row, not the index, which
        is outside the chain) really is of ``request_id`` and carries ``event``; two indexed
        probes."""
        return c.execute(
            "SELECT 1 FROM audit_events e JOIN audit a ON a.seq = e.seq WHERE e.request_id = ? AND e.event = ?"
            " AND a.request_id = e.request_id AND json_valid(a.details) AND json_extract(a.details, '$.event') = e.event",
            (request_id, event),
        ).fetchone() is not None

    def _timestamp(self) -> int:
        return check_int(self._clock(), "clock", 0, MAX_TIME_MS)

    # --- API ---------------------------------------------------------------------------------

    def append(
        self,
        actor: str,
        action: str,
        *,
        request_id: str = "",
        outcome: str = "",
        details: Mapping[str, DetailValue] | None = None,
    ) -> AuditEntry:
        """Append one entry, durably, and return it. Thread-safe.

        ``actor`` is a name (``[A-Za-z0-9._-]``), ``action`` and ``outcome`` are lower-case
        tokens (``outcome`` may be empty), ``details`` at most 64 small values.
        """
        checked = check_entry_fields(actor, action, request_id, outcome, details)
        with self._write() as c:
            return self._insert(c, self._timestamp(), actor, action, request_id, outcome, checked)

    def append_once(
        self,
        actor: str,
        action: str,
        *,
        event: str,
        request_id: str = "",
        outcome: str = "",
        details: Mapping[str, DetailValue] | None = None,
    ) -> AuditEntry | None:
        """:meth:`append` unless an entry for ``event`` was appended already; ``None`` then.

        ``event`` (a token like ``action``) is recorded as ``details["event"]``; the check and
        the append are one write transaction, so delivering the same event twice (e.g. an outbox
        flushed again after a crash between the append and the outbox delete) appends it once.
        Event keys are unique per ``request_id``: the lookup is one probe of the
        ``audit_events`` index (every entry with a string ``details["event"]`` is recorded
        there in its append's transaction), not a parse of the request's entries.
        """
        checked = _once_fields(OnceEntry(actor, action, event, request_id, outcome, details))
        with self._write() as c:
            if self._seen(c, request_id, event):
                return None
            return self._insert(c, self._timestamp(), actor, action, request_id, outcome, checked)

    def append_many_once(self, entries: Sequence[OnceEntry]) -> list[AuditEntry | None]:
        """:meth:`append_once` for each of ``entries``, in order, in ONE write transaction (one
        fsync): all of them are appended (or found already appended) or, on any error, none.

        Returns, per entry, the appended :class:`AuditEntry` or ``None`` when its event key was
        already in the log for its request (a batch delivered again after a crash between this
        commit and the caller's outbox delete; a key repeated within ``entries`` is appended
        once). Every entry is checked before anything is written: :class:`GovernanceError`
        naming ``entries[i].<field>``; more than :data:`MAX_BATCH` entries is refused
        (``entries``)."""
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
            raise GovernanceError("entries", "must be a sequence of OnceEntry")
        if len(entries) > MAX_BATCH:
            raise GovernanceError("entries", f"at most {MAX_BATCH} per batch, got {len(entries)}")
        checked: list[tuple[OnceEntry, Mapping[str, DetailValue]]] = []
        for i, item in enumerate(entries):
            if not isinstance(item, OnceEntry):
                raise GovernanceError(f"entries[{i}]", "must be an OnceEntry")
            try:
                checked.append((item, _once_fields(item)))
            except GovernanceError as e:
                raise GovernanceError(f"entries[{i}].{e.field}", e.reason) from None
        out: list[AuditEntry | None] = []
        if not checked:
            return out
        with self._write() as c:
            now = self._timestamp()
            head: tuple[int, bytes] | None = None  # known once this transaction inserted an entry
            for item, details in checked:
                if self._seen(c, item.request_id, item.event):
                    out.append(None)
                    continue
                entry = self._insert(c, now, item.actor, item.action, item.request_id, item.outcome, details, head=head, unseen=True)
                head = (entry.seq, entry.entry_hash)
                out.append(entry)
        return out

    def append_queued(self, items: Sequence[QueuedEntry]) -> int:
        """:meth:`append_many_once` for entries queued in an outbox (:class:`QueuedEntry`), in
        order, in one write transaction; returns how many were appended (an ``event`` already in
        the log, or repeated in ``items``, is skipped). Errors as :meth:`append_many_once`."""
        once = [OnceEntry(it.actor, it.action, it.event, it.request_id, it.outcome, it.details) for it in items]
        return sum(1 for e in self.append_many_once(once) if e is not None)

    def append_rate_limited(
        self,
        actor: str,
        action: str,
        *,
        subject: str,
        limit: RateLimit,
        request_id: str = "",
        outcome: str = "",
        details: Mapping[str, DetailValue] | None = None,
    ) -> AuditEntry | None:
        """Atomically check ``limit`` and append; ``None`` (nothing appended) if over the limit.

        Counts the earlier entries with the same ``action`` and ``details["subject"] ==
        subject`` (e.g. a key id in hex) inside the window, with
        :func:`governance.approval.rate_limit_ok`; the new entry gets ``details["subject"]``.
        Check and append happen in one write transaction, so concurrent callers (threads or
        processes) can never exceed the limit together. Audit a refusal with :meth:`append`.
        """
        if not isinstance(limit, RateLimit):
            raise GovernanceError("limit", "must be a RateLimit")
        check_name(actor, "actor")
        check_token(action, "action")
        check_request_id(request_id)
        check_token(outcome, "outcome", allow_empty=True)
        if not isinstance(subject, str) or not subject:
            raise GovernanceError("subject", "must be a non-empty string")
        if details is not None and not isinstance(details, Mapping):
            raise GovernanceError("details", "must be a mapping of str to str, int or bool")
        merged = dict({} if details is None else details)
        if SUBJECT_KEY in merged and merged[SUBJECT_KEY] != subject:
            raise GovernanceError(f"details[{SUBJECT_KEY!r}]", "conflicts with subject")
        merged[SUBJECT_KEY] = subject
        checked = check_details(merged)
        with self._write() as c:
            now = self._timestamp()
            since = now - limit.window_seconds * 1000
            times: list[int] = []
            for ts, text in c.execute(
                "SELECT timestamp_ms, details FROM audit WHERE action = ? AND timestamp_ms > ?", (action, since)
            ):
                try:
                    counted = json.loads(text).get(SUBJECT_KEY) == subject
                except (ValueError, AttributeError):
                    counted = True  # unreadable details: count it rather than under-count
                if counted:
                    times.append(int(ts))
            if not rate_limit_ok(limit, times, now):
                return None
            return self._insert(c, now, actor, action, request_id, outcome, checked)

    def entries(self) -> list[AuditEntry]:
        """Every entry, in order (parsed strictly; the chain is *not* re-verified here)."""
        with self._read() as c:
            rows = c.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq").fetchall()
        return [entry_from_row(tuple(r)) for r in rows]

    def raw_rows(self, after_seq: int = 0, limit: int = 1000) -> list[tuple[object, ...]]:
        """Up to ``limit`` stored rows with ``seq > after_seq``, exactly as stored (not parsed or
        verified), in :func:`verify_entries` column order: for shipping to a remote verifier,
        which must see a damaged row as it is."""
        check_int(after_seq, "after_seq", 0, MAX_TIME_MS)
        check_int(limit, "limit", 1, 100_000)
        with self._read() as c:
            rows = c.execute(
                f"SELECT {_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()
        return [tuple(r) for r in rows]

    def head_stamp(self) -> tuple[int, int] | None:
        """``(seq, timestamp_ms)`` of the last entry (metrics: entries appended and the head's
        age); None if empty."""
        with self._read() as c:
            row = c.execute("SELECT seq, timestamp_ms FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def head(self) -> tuple[int, bytes] | None:
        """``(seq, entry_hash)`` of the last entry, to publish as ``expected_head``; None if empty."""
        with self._read() as c:
            row = c.execute("SELECT seq, entry_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))


def _migrate(conn: sqlite3.Connection) -> None:
    try:
        migrate(conn, _MIGRATIONS)
    except DatabaseError as e:
        raise GovernanceError("path", f"cannot upgrade the audit log ({e.reason})") from None


def _initialize(conn: sqlite3.Connection, component: str, public_key: bytes) -> bytes:
    """Create schema and meta on first use (``public_key`` starts the log), else check they
    belong to this component (before upgrading the schema: opening someone else's log changes
    nothing). Returns the key that started the log (the caller checks the signing key against
    the rotations after it)."""
    try:
        meta = _read_meta(conn)
    except sqlite3.Error as e:
        raise GovernanceError("path", f"cannot initialize the audit log ({e})") from None
    if not meta:
        _migrate(conn)
        try:
            with write_transaction(conn):
                if not _read_meta(conn):
                    conn.executemany(
                        "INSERT INTO meta (name, value) VALUES (?, ?)",
                        [("schema_version", SCHEMA_VERSION), ("component", component), ("public_key", public_key)],
                    )
            meta = _read_meta(conn)
        except sqlite3.Error as e:
            raise GovernanceError("path", f"cannot initialize the audit log ({e})") from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise GovernanceError("path", f"unsupported audit schema version {meta.get('schema_version')!r}")
    if meta.get("component") != component:
        raise GovernanceError("component", f"this log belongs to {meta.get('component')!r}, not {component!r}")
    first = meta.get("public_key")
    if not isinstance(first, bytes) or len(first) != 32:
        raise GovernanceError("path", "meta.public_key is not a 32-byte key")
    _migrate(conn)  # logs created by older versions
    return first


# --- verification and export -----------------------------------------------------------------


def verify_audit(
    path: Path, public_key: bytes, *, expected_head: tuple[int, bytes] | None = None
) -> AuditReport:
    """Re-verify the whole log at ``path`` (read-only) against ``public_key``.

    Recomputes every entry hash, the chain from the genesis hash and every signature, and
    reports the first broken entry. With ``expected_head`` (a ``(seq, entry_hash)`` published
    earlier, see :meth:`AuditLog.head`) it also reports a log truncated before that entry or
    holding a different entry there. Raises :class:`GovernanceError` only for bad arguments.
    """
    key = check_public_key(public_key, "public_key")
    head = check_expected_head(expected_head)
    path = Path(path)
    if not path.is_file():
        return AuditReport(False, 0, None, f"{path} is not a file")
    try:
        conn = open_readonly(path)
    except sqlite3.Error as e:
        return AuditReport(False, 0, None, f"cannot open {path} ({e})")
    try:
        conn.execute("BEGIN")  # one snapshot, even while the component keeps appending
        return _verify(conn, key, head)
    except sqlite3.Error as e:
        return AuditReport(False, 0, None, f"cannot read {path} ({e})")
    finally:
        conn.close()


def _verify(conn: sqlite3.Connection, key: bytes, head: tuple[int, bytes] | None) -> AuditReport:
    meta = _read_meta(conn)
    component = meta.get("component")
    if meta.get("schema_version") != SCHEMA_VERSION or not isinstance(component, str):
        return AuditReport(False, 0, None, "not an audit log (meta table missing or unsupported)")
    total = int(conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0])
    if meta.get("public_key") != key:
        return AuditReport(False, total, None, "the log names another public key")
    rows = (tuple(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq"))
    return verify_row_stream(component, key, rows, total, head)


def export_jsonl(path: Path, out: TextIO) -> int:
    """Write every entry of the log at ``path`` to ``out`` as one JSON object per line; return the count.

    Reads the file read-only and does not verify it (use :func:`verify_audit`); bytes are hex.
    """
    path = Path(path)
    if not path.is_file():
        raise GovernanceError("path", f"{path} is not a file")
    try:
        conn = open_readonly(path)
    except sqlite3.Error as e:
        raise GovernanceError("path", f"cannot open {path} ({e})") from None
    count = 0
    try:
        for row in conn.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq"):
            try:
                entry = entry_from_row(tuple(row))
            except GovernanceError as e:
                raise GovernanceError(f"entry {row[0]!r}.{e.field}", e.reason) from None
            # ASCII (as the cluster export): the file is not verified, and the output may go to a terminal
            out.write(json.dumps(entry.to_dict(), sort_keys=True) + "\n")
            count += 1
    except sqlite3.Error as e:
        raise GovernanceError("path", f"cannot read {path} ({e})") from None
    finally:
        conn.close()
    return count


__all__ = [
    "AuditEntry",
    "AuditLog",
    "AuditReport",
    "OnceEntry",
    "export_jsonl",
    "genesis_hash",
    "verify_audit",
]
