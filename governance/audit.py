"""An append-only, hash-chained, signed audit log in SQLite, and its independent verifier.

Each entry's hash covers its sequence number, timestamp, actor, action, request id, outcome,
details and the previous entry's hash; the component signs each entry hash with its Ed25519
identity key. Entries are numbered 1, 2, 3, ... without gaps. So an edited field, a deleted,
inserted or reordered entry, or a forged signature breaks the chain at a definite entry, which
:func:`verify_audit` reports (it reads the file itself, read-only, and trusts nothing in it but
the public key it is given).

**Genesis.** Entry 1's ``prev_hash`` is ``SHA-256(encode("MPCNET/v1/gov/audit-genesis",
component, public_key))``, not zeros: a log is bound to the component and key that started it,
so the beginning of another component's log cannot be passed off as this one's.

**Truncation.** Dropping the *last* entries leaves a valid, shorter chain; no chain can detect
that by itself. Publish :meth:`AuditLog.head` (seq and hash of the last entry) somewhere the
log's host cannot rewrite, e.g. periodically to the coordinator or an operator, and pass it as
``expected_head``: :func:`verify_audit` then reports a log that ends before it, or that holds
a different entry at that seq.

Details are small ``str -> str | int | bool`` maps and must never hold secrets (keys whose name
suggests one are refused as a tripwire). The database refuses UPDATE and DELETE (triggers) and
out-of-sequence INSERTs, but the chain does not depend on that: it is what detects an attacker
who drops the triggers. Writes are committed with ``synchronous=FULL`` before :meth:`append`
returns; one connection is shared by all threads behind a lock, and other processes are kept
consistent by SQLite's locking (the head is read inside each write transaction).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import sqlite3
import threading
import time
import types
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._checks import (
    SIGNATURE_LEN,
    check_bytes,
    check_int,
    check_name,
    check_private_key,
    check_public_key,
    ed25519_verify,
    raw_public_key,
)
from .approval import REQUEST_ID_RE, rate_limit_ok
from .encoding import I64_MAX, I64_MIN, Encoder, domain_tag, sha256
from .errors import GovernanceError
from .policy import RateLimit

AUDIT_ENTRY_TAG = domain_tag("audit-entry")
AUDIT_DETAILS_TAG = domain_tag("audit-details")
AUDIT_GENESIS_TAG = domain_tag("audit-genesis")
AUDIT_SIGNATURE_TAG = domain_tag("audit-signature")

SCHEMA_VERSION = 1
HASH_LEN = 32
MAX_DETAILS = 64
MAX_DETAIL_TEXT = 1024
MAX_TIME_MS = 2**63 - 1
BUSY_TIMEOUT_S = 30.0
SUBJECT_KEY = "subject"  # the details key that append_rate_limited counts by
EVENT_KEY = "event"  # the details key that append_once deduplicates by

TOKEN_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # actions, outcomes and detail keys
_SECRET_HINTS = ("secret", "private", "passphrase", "password", "seed", "mnemonic")

DetailValue = str | int | bool

_REQUEST_INDEX = "CREATE INDEX IF NOT EXISTS audit_by_request ON audit (request_id)"  # not part of the chain
_SCHEMA = (
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
    _REQUEST_INDEX,
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
)
_COLUMNS = "seq, timestamp_ms, actor, action, request_id, outcome, details, prev_hash, entry_hash, signature"


# --- entries ---------------------------------------------------------------------------------


def _check_token(value: object, field: str, *, allow_empty: bool = False) -> str:
    if allow_empty and value == "":
        return ""
    if not isinstance(value, str) or not TOKEN_RE.fullmatch(value):
        raise GovernanceError(field, "must be 1-64 characters of [a-z0-9._-] starting with a letter or digit")
    return value


def _check_request_id(value: object, field: str = "request_id") -> str:
    if not isinstance(value, str) or not (value == "" or REQUEST_ID_RE.fullmatch(value)):
        raise GovernanceError(field, "must be empty or 1-64 characters of [A-Za-z0-9_-]")
    return value


def _check_details(value: object, field: str = "details") -> Mapping[str, DetailValue]:
    """A read-only, key-sorted copy of ``value``: small, typed, and nothing named like a secret."""
    if not isinstance(value, Mapping):
        raise GovernanceError(field, "must be a mapping of str to str, int or bool")
    if len(value) > MAX_DETAILS:
        raise GovernanceError(field, f"more than {MAX_DETAILS} items")
    out: dict[str, DetailValue] = {}
    for key in sorted(value, key=lambda k: k if isinstance(k, str) else ""):
        _check_token(key, f"{field}[{key!r}]")
        if any(hint in key for hint in _SECRET_HINTS):
            raise GovernanceError(f"{field}[{key!r}]", "audit details must never hold secrets")
        item = value[key]
        if isinstance(item, bool):
            pass
        elif isinstance(item, int):
            check_int(item, f"{field}[{key!r}]", I64_MIN, I64_MAX)
        elif isinstance(item, str):
            if len(item) > MAX_DETAIL_TEXT or "\x00" in item:
                raise GovernanceError(f"{field}[{key!r}]", f"must be at most {MAX_DETAIL_TEXT} characters, no NUL")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise GovernanceError(f"{field}[{key!r}]", "is not encodable as UTF-8") from None
        else:
            raise GovernanceError(f"{field}[{key!r}]", "must be a str, int or bool")
        out[key] = item
    return types.MappingProxyType(out)


def _encode_details(details: Mapping[str, DetailValue]) -> bytes:
    enc = Encoder(AUDIT_DETAILS_TAG).count(len(details))
    for key in sorted(details):
        item = details[key]
        enc.text(key)
        if isinstance(item, bool):
            enc.uint(3).flag(item)
        elif isinstance(item, int):
            enc.uint(2).sint(item)
        else:
            enc.uint(1).text(item)
    return enc.finish()


def _details_json(details: Mapping[str, DetailValue]) -> str:
    return json.dumps(dict(details), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _entry_hash(
    seq: int,
    timestamp_ms: int,
    actor: str,
    action: str,
    request_id: str,
    outcome: str,
    details: Mapping[str, DetailValue],
    prev_hash: bytes,
) -> bytes:
    return sha256(
        Encoder(AUDIT_ENTRY_TAG)
        .uint(seq)
        .uint(timestamp_ms)
        .text(actor)
        .text(action)
        .text(request_id)
        .text(outcome)
        .raw(_encode_details(details))
        .raw(prev_hash)
        .finish()
    )


def _signed_message(entry_hash: bytes) -> bytes:
    return Encoder(AUDIT_SIGNATURE_TAG).raw(entry_hash).finish()


def genesis_hash(component: str, public_key: bytes) -> bytes:
    """The ``prev_hash`` of entry 1 of ``component``'s log signed by ``public_key``."""
    return sha256(Encoder(AUDIT_GENESIS_TAG).text(component).raw(public_key).finish())


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the log; ``details`` never holds secrets."""

    seq: int
    timestamp_ms: int
    actor: str
    action: str
    request_id: str
    outcome: str
    details: Mapping[str, DetailValue]
    prev_hash: bytes
    entry_hash: bytes
    signature: bytes

    def __hash__(self) -> int:
        return hash(self.entry_hash)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly: bytes as hex."""
        return {
            "seq": self.seq,
            "timestamp_ms": self.timestamp_ms,
            "actor": self.actor,
            "action": self.action,
            "request_id": self.request_id,
            "outcome": self.outcome,
            "details": dict(self.details),
            "prev_hash": self.prev_hash.hex(),
            "entry_hash": self.entry_hash.hex(),
            "signature": self.signature.hex(),
        }


def _row_to_entry(row: tuple[object, ...]) -> AuditEntry:
    """Parse one stored row strictly (types, sizes, canonical details); no chain or signature check."""
    seq, ts, actor, action, request_id, outcome, details_text, prev, ehash, sig = row
    seq = check_int(seq, "seq", 1, MAX_TIME_MS)
    ts = check_int(ts, "timestamp_ms", 0, MAX_TIME_MS)
    actor = check_name(actor, "actor")
    action = _check_token(action, "action")
    request_id = _check_request_id(request_id)
    outcome = _check_token(outcome, "outcome", allow_empty=True)
    if not isinstance(details_text, str):
        raise GovernanceError("details", "is not text")
    try:
        parsed = json.loads(details_text)
    except ValueError:
        raise GovernanceError("details", "is not valid JSON") from None
    details = _check_details(parsed)
    if _details_json(details) != details_text:
        raise GovernanceError("details", "is not canonical JSON")
    return AuditEntry(
        seq=seq,
        timestamp_ms=ts,
        actor=actor,
        action=action,
        request_id=request_id,
        outcome=outcome,
        details=details,
        prev_hash=check_bytes(prev, "prev_hash", length=HASH_LEN),
        entry_hash=check_bytes(ehash, "entry_hash", length=HASH_LEN),
        signature=check_bytes(sig, "signature", length=SIGNATURE_LEN),
    )


def _recompute_hash(e: AuditEntry) -> bytes:
    return _entry_hash(e.seq, e.timestamp_ms, e.actor, e.action, e.request_id, e.outcome, e.details, e.prev_hash)


# --- SQLite ----------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating 0600 if new) in WAL mode with synchronous=FULL."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as e:
        raise GovernanceError("path", f"cannot create {path} ({e.strerror or type(e).__name__})") from None
    else:
        os.close(fd)
        _fsync_dir(path.parent)
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise GovernanceError("path", f"cannot open {path} ({e})") from None
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise GovernanceError("path", f"{path} cannot use WAL journaling (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        if conn.execute("PRAGMA synchronous").fetchone()[0] != 2:
            raise GovernanceError("path", "synchronous=FULL could not be set")
    except sqlite3.Error as e:
        conn.close()
        raise GovernanceError("path", f"{path} is not a usable SQLite database ({e})") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_readonly(path: Path) -> sqlite3.Connection:
    uri = "file:" + urllib.parse.quote(str(Path(path).resolve())) + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)


def _read_meta(conn: sqlite3.Connection) -> dict[str, object]:
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
        return {}
    return {str(k): v for k, v in conn.execute("SELECT name, value FROM meta").fetchall()}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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
        self._public_key = raw_public_key(signing_key)
        self._genesis = genesis_hash(component, self._public_key)
        self._clock = clock
        self._lock = threading.RLock()

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
        """The raw Ed25519 public key that verifies this log (give it to :func:`verify_audit`)."""
        return self._public_key

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
        key = check_private_key(signing_key, "signing_key")
        public_key = raw_public_key(key)
        path = Path(path)
        conn = _connect(path)
        try:
            _initialize(conn, component, public_key)
            log = AuditLog(path, conn, component, key, clock or _now_ms)
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

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._live()
            try:
                yield conn
            except sqlite3.Error as e:
                raise GovernanceError("database", str(e)) from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction, committed (and fsynced, synchronous=FULL) on success."""
        with self._lock:
            conn = self._live()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise GovernanceError("database", str(e)) from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise GovernanceError("database", str(exc)) from None
                raise

    def _check_head(self) -> None:
        with self._read() as c:
            row = c.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return
        try:
            entry = _row_to_entry(tuple(row))
        except GovernanceError as e:
            raise GovernanceError("path", f"last entry is malformed ({e}); run verify_audit") from None
        if not hmac.compare_digest(_recompute_hash(entry), entry.entry_hash) or not ed25519_verify(
            self._public_key, entry.signature, _signed_message(entry.entry_hash)
        ):
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
    ) -> AuditEntry:
        row = c.execute("SELECT seq, entry_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (1, self._genesis) if row is None else (int(row[0]) + 1, bytes(row[1]))
        ehash = _entry_hash(seq, timestamp_ms, actor, action, request_id, outcome, details, prev)
        signature = self._key.sign(_signed_message(ehash))
        entry = AuditEntry(seq, timestamp_ms, actor, action, request_id, outcome, details, prev, ehash, signature)
        c.execute(
            f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, timestamp_ms, actor, action, request_id, outcome, _details_json(details), prev, ehash, entry.signature),
        )
        return entry

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
        The lookup reads only the entries of ``request_id`` (indexed), so give one.
        """
        _check_token(event, "event")
        merged = dict(check_entry_fields(actor, action, request_id, outcome, details))
        if merged.setdefault(EVENT_KEY, event) != event:
            raise GovernanceError(f"details[{EVENT_KEY!r}]", "conflicts with event")
        checked = _check_details(merged)
        with self._write() as c:
            for (text,) in c.execute("SELECT details FROM audit WHERE request_id = ?", (request_id,)):
                try:
                    seen = json.loads(text).get(EVENT_KEY) == event
                except (ValueError, AttributeError):
                    seen = False  # unreadable details are verify_audit's business, not a duplicate
                if seen:
                    return None
            return self._insert(c, self._timestamp(), actor, action, request_id, outcome, checked)

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
        _check_token(action, "action")
        _check_request_id(request_id)
        _check_token(outcome, "outcome", allow_empty=True)
        if not isinstance(subject, str) or not subject:
            raise GovernanceError("subject", "must be a non-empty string")
        if details is not None and not isinstance(details, Mapping):
            raise GovernanceError("details", "must be a mapping of str to str, int or bool")
        merged = dict({} if details is None else details)
        if SUBJECT_KEY in merged and merged[SUBJECT_KEY] != subject:
            raise GovernanceError(f"details[{SUBJECT_KEY!r}]", "conflicts with subject")
        merged[SUBJECT_KEY] = subject
        checked = _check_details(merged)
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
        return [_row_to_entry(tuple(r)) for r in rows]

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

    def head(self) -> tuple[int, bytes] | None:
        """``(seq, entry_hash)`` of the last entry, to publish as ``expected_head``; None if empty."""
        with self._read() as c:
            row = c.execute("SELECT seq, entry_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))


def check_entry_fields(
    actor: str, action: str, request_id: str, outcome: str, details: Mapping[str, DetailValue] | None
) -> Mapping[str, DetailValue]:
    """Check what :meth:`AuditLog.append` would check, without a log: for callers that queue an
    entry (e.g. an outbox) and must not find out only later that it cannot be appended.
    Returns the checked, key-sorted details; :class:`GovernanceError` naming the field."""
    check_name(actor, "actor")
    _check_token(action, "action")
    _check_request_id(request_id)
    _check_token(outcome, "outcome", allow_empty=True)
    return _check_details({} if details is None else details)


def _initialize(conn: sqlite3.Connection, component: str, public_key: bytes) -> None:
    """Create schema and meta on first use, else check they belong to this component and key."""
    try:
        meta = _read_meta(conn)
        if not meta:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not _read_meta(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.executemany(
                        "INSERT INTO meta (name, value) VALUES (?, ?)",
                        [("schema_version", SCHEMA_VERSION), ("component", component), ("public_key", public_key)],
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            meta = _read_meta(conn)
    except sqlite3.Error as e:
        raise GovernanceError("path", f"cannot initialize the audit log ({e})") from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise GovernanceError("path", f"unsupported audit schema version {meta.get('schema_version')!r}")
    if meta.get("component") != component:
        raise GovernanceError("component", f"this log belongs to {meta.get('component')!r}, not {component!r}")
    if meta.get("public_key") != public_key:
        raise GovernanceError("signing_key", "this log was started with another signing key")
    try:
        conn.execute(_REQUEST_INDEX)  # logs created before the index existed
    except sqlite3.Error as e:
        raise GovernanceError("path", f"cannot index the audit log ({e})") from None


# --- verification and export -----------------------------------------------------------------


@dataclass(frozen=True)
class AuditReport:
    """The outcome of :func:`verify_audit`.

    ``entries`` is the number of entries in the file; ``first_broken`` the seq of the first
    entry that is missing, altered, misplaced or forged (``None`` if the chain is intact, or
    if the file itself is unusable: then ``reason`` says why).
    """

    ok: bool
    entries: int
    first_broken: int | None
    reason: str


def _check_entry(row: tuple[object, ...], expected_seq: int, prev_hash: bytes, public_key: bytes) -> tuple[int, str] | None:
    seq = row[0]
    if isinstance(seq, int) and not isinstance(seq, bool) and seq > expected_seq:
        return expected_seq, f"entry {expected_seq} is missing (the next entry is {seq})"
    if seq != expected_seq:
        return expected_seq, f"entry {expected_seq} has seq {seq!r}"
    try:
        entry = _row_to_entry(row)
    except GovernanceError as e:
        return expected_seq, f"malformed entry: {e}"
    if not hmac.compare_digest(_recompute_hash(entry), entry.entry_hash):
        return expected_seq, "entry_hash does not match the entry's fields (edited or moved)"
    if not hmac.compare_digest(entry.prev_hash, prev_hash):
        what = "the genesis hash" if expected_seq == 1 else f"entry {expected_seq - 1}"
        return expected_seq, f"prev_hash does not link to {what} (entry deleted, inserted or reordered)"
    if not ed25519_verify(public_key, entry.signature, _signed_message(entry.entry_hash)):
        return expected_seq, "signature does not verify (forged or inserted entry)"
    return None


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
    head = _check_head_arg(expected_head)
    path = Path(path)
    if not path.is_file():
        return AuditReport(False, 0, None, f"{path} is not a file")
    try:
        conn = _connect_readonly(path)
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
    return _verify_rows(component, key, rows, total, head)


def _check_head_arg(expected_head: object) -> tuple[int, bytes] | None:
    if expected_head is None:
        return None
    if not isinstance(expected_head, tuple) or len(expected_head) != 2:
        raise GovernanceError("expected_head", "must be a (seq, entry_hash) tuple")
    return (
        check_int(expected_head[0], "expected_head.seq", 1, MAX_TIME_MS),
        check_bytes(expected_head[1], "expected_head.entry_hash", length=HASH_LEN),
    )


def verify_entries(
    component: str,
    public_key: bytes,
    rows: Iterable[tuple[object, ...]],
    *,
    expected_head: tuple[int, bytes] | None = None,
) -> AuditReport:
    """:func:`verify_audit` for entries obtained some other way (e.g. over the network).

    ``rows`` are the stored columns of every entry in order (see :meth:`AuditLog.raw_rows`:
    seq, timestamp_ms, actor, action, request_id, outcome, details as canonical JSON text,
    prev_hash, entry_hash, signature); the chain must start at the genesis of ``component``
    under ``public_key``. Whoever relayed the rows cannot make a forged, altered, dropped,
    inserted or reordered entry pass; dropping entries at the *end* is only caught with
    ``expected_head``.
    """
    check_name(component, "component")
    key = check_public_key(public_key, "public_key")
    head = _check_head_arg(expected_head)
    materialized = []
    for i, r in enumerate(rows):
        if not isinstance(r, (tuple, list)) or len(r) != len(_COLUMNS.split(", ")):
            raise GovernanceError(f"rows[{i}]", f"must be a sequence of the {len(_COLUMNS.split(', '))} stored columns")
        materialized.append(tuple(r))
    return _verify_rows(component, key, iter(materialized), len(materialized), head)


def _verify_rows(
    component: str, key: bytes, rows: Iterator[tuple[object, ...]], total: int, head: tuple[int, bytes] | None
) -> AuditReport:
    prev = genesis_hash(component, key)
    expected = 1
    head_hash: bytes | None = None
    for row in rows:
        problem = _check_entry(row, expected, prev, key)
        if problem is not None:
            return AuditReport(False, total, problem[0], problem[1])
        prev = bytes(row[8])  # type: ignore[call-overload]  # checked by _check_entry
        if head is not None and expected == head[0]:
            head_hash = prev
        expected += 1
    if head is not None:
        if head_hash is None:
            return AuditReport(
                False, total, expected, f"truncated: the log ends at entry {expected - 1}, the published head is entry {head[0]}"
            )
        if not hmac.compare_digest(head_hash, head[1]):
            return AuditReport(False, total, head[0], f"entry {head[0]} differs from the published head (log rewritten)")
    return AuditReport(True, total, None, "")


def export_jsonl(path: Path, out: TextIO) -> int:
    """Write every entry of the log at ``path`` to ``out`` as one JSON object per line; return the count.

    Reads the file read-only and does not verify it (use :func:`verify_audit`); bytes are hex.
    """
    path = Path(path)
    if not path.is_file():
        raise GovernanceError("path", f"{path} is not a file")
    try:
        conn = _connect_readonly(path)
    except sqlite3.Error as e:
        raise GovernanceError("path", f"cannot open {path} ({e})") from None
    count = 0
    try:
        for row in conn.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq"):
            try:
                entry = _row_to_entry(tuple(row))
            except GovernanceError as e:
                raise GovernanceError(f"entry {row[0]!r}.{e.field}", e.reason) from None
            out.write(json.dumps(entry.to_dict(), sort_keys=True, ensure_ascii=False) + "\n")
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
    "check_entry_fields",
    "export_jsonl",
    "genesis_hash",
    "verify_audit",
    "verify_entries",
]
