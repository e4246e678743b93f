"""The coordinator's durable record of keys, requests and governance (SQLite, WAL, synchronous=FULL).

Only public information is stored: key ids, public keys, chain codes, labels, digests,
finished signatures and error messages; signing requests, the approvers' signed decisions,
admin-signed policy changes and pending proposals. Never a share, a presignature or a protocol
payload. Signing-request state changes are compare-and-set, so concurrent approvals, the expiry
sweep and the signer can never move a request along two paths; each is one transaction with the
audit entry it causes, queued in ``audit_outbox`` (the audit log is another file; see
``coordinator.requests`` for how the queue is flushed).

The file is opened like every store by :mod:`mpcnet.common.stores.sqlite`: created 0600 (a wider
existing one is narrowed) with its directory fsynced, WAL, ``synchronous=FULL``, and the tables
created and upgraded by versioned migrations (``PRAGMA user_version``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from coordinator.backup_store import BACKUP_MIGRATION, BackupStore
from coordinator.keyop_store import ABANDONMENT_MIGRATION, KEYOP_MIGRATION, KeyOpStore
from coordinator.live_rows import LIVE_INDEX_MIGRATION
from coordinator.nonce_store import NONCE_MIGRATION, NonceStore
from coordinator.pool_store import POOL_MIGRATION, PoolStore
from coordinator.store_health import STORE_PROBE_MIGRATION, StoreHealth
from governance.audit import EVENT_KEY, MAX_DETAILS, check_entry_fields
from governance.errors import GovernanceError
from mpcnet.common.steadyclock import ANCHOR_TABLE, WALL_NOW_MS_SQL, ExpiryClock, SteadyClockError, SteadySource, anchor
from mpcnet.common.stores.sqlite import BUSY_TIMEOUT_S, DatabaseError, Migration, migrate, open_database, write_transaction

# Step 11 (issue 14 red team: wall-clock steps): each signing request's steady creation time,
# which the rate limit counts (a wall step a day forward emptied its window, back blocked the
# key). Older rows get their wall time, capped at the wall clock of the upgrade (the timeline of
# an upgraded database starts at its newest row: one from a clock that was ahead made every row of
# the last window look old, review 2); a row inserted without it (by hand, a tool) too, by the
# trigger: it then counts at least a whole window (the timeline trails the wall clock only by the downtime across reboots).
STEADY_MIGRATION: Migration = (
    ANCHOR_TABLE,
    "ALTER TABLE sign_requests ADD COLUMN created_steady_ms INTEGER",
    f"UPDATE sign_requests SET created_steady_ms = MIN(created_ms, {WALL_NOW_MS_SQL})",
    "CREATE INDEX sign_requests_by_key_steady ON sign_requests (key_id, created_steady_ms)",
    "CREATE INDEX sign_requests_by_steady ON sign_requests (created_steady_ms)",
    "CREATE TRIGGER sign_requests_steady_default AFTER INSERT ON sign_requests WHEN NEW.created_steady_ms IS NULL"
    " BEGIN UPDATE sign_requests SET created_steady_ms = NEW.created_ms WHERE rowid = NEW.rowid; END",
)

# Step 12 (p16 review, newuser): the steady time of each key's last share change (creation, or its
# last refresh/reshare done), so the refresh scheduler's due judgement is not delayed by a wall
# clock stepped back across a restart (the expiry clock adopts the wall clock again at each open).
# Keys from before have no row: judged by their wall stamps alone, as before.
# Also each recovery ceremony's steady creation time: an order's expiry and a drill's age are
# judged on it too, so a ceremony that expired while the coordinator was stopped is not revived.
KEY_CHANGE_STEADY_MIGRATION: Migration = (
    "CREATE TABLE key_change_steady (key_id BLOB PRIMARY KEY CHECK (length(key_id) = 32), steady_ms INTEGER NOT NULL)",
    "CREATE TABLE ceremony_steady (ceremony_id BLOB PRIMARY KEY, created_steady_ms INTEGER NOT NULL)",
)

# The schema, as versioned migration steps (see mpcnet.common.stores.sqlite). Databases created before
# versioning have user_version 0 and either layout, so both steps are idempotent (IF NOT EXISTS).
_MIGRATIONS: tuple[Migration, ...] = (
    # 1: the layout up to commit 4b7440a
    (
        """CREATE TABLE IF NOT EXISTS keys (
    key_id      BLOB PRIMARY KEY CHECK (length(key_id) = 32),
    label       TEXT NOT NULL,
    public_key  BLOB NOT NULL,
    chain_code  BLOB NOT NULL,
    threshold   INTEGER NOT NULL,
    parties     INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'active', 'discarded')),
    created_ms  INTEGER NOT NULL,
    request_id  TEXT NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS requests (
    request_id    TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('keygen', 'sign')),
    state         TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    key_id        BLOB,
    digest        BLOB,
    path          TEXT NOT NULL DEFAULT '',
    label         TEXT NOT NULL DEFAULT '',
    signature     BLOB,
    signers       TEXT NOT NULL DEFAULT '',
    error_code    INTEGER NOT NULL DEFAULT 0,
    error_message TEXT NOT NULL DEFAULT '',
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS sign_requests (
    request_id    TEXT PRIMARY KEY,
    key_id        BLOB NOT NULL,
    digest        BLOB NOT NULL,
    requester     TEXT NOT NULL,
    request       BLOB NOT NULL,
    scope         BLOB NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending_approval', 'signing', 'done', 'rejected', 'expired', 'failed')),
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    signature     BLOB,
    signers       TEXT NOT NULL DEFAULT '',
    error_code    INTEGER NOT NULL DEFAULT 0,
    error_message TEXT NOT NULL DEFAULT '',
    attempts      INTEGER NOT NULL DEFAULT 0,
    updated_ms    INTEGER NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS sign_requests_by_key ON sign_requests (key_id, created_ms)",
        "CREATE INDEX IF NOT EXISTS sign_requests_by_state ON sign_requests (state, expires_ms)",
        """CREATE TABLE IF NOT EXISTS approvals (
    request_id TEXT NOT NULL,
    approver   TEXT NOT NULL,
    decision   TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    signature  BLOB NOT NULL,
    decided_ms INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver)
)""",
        """CREATE TABLE IF NOT EXISTS policy_changes (
    scope         BLOB NOT NULL,
    version       INTEGER NOT NULL,
    signed_change BLOB NOT NULL,
    applied_ms    INTEGER NOT NULL,
    PRIMARY KEY (scope, version)
)""",
        """CREATE TABLE IF NOT EXISTS proposals (
    proposal_id   TEXT PRIMARY KEY,
    scope         BLOB NOT NULL,
    signed_change BLOB NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'applied', 'superseded')),
    proposer      TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
)""",
    ),
    # 2: the audit outbox, reserved signing attempts and the newest attestation, added after 4b7440a
    (
        """CREATE TABLE IF NOT EXISTS audit_outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event      TEXT NOT NULL UNIQUE,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    details    TEXT NOT NULL,
    created_ms INTEGER NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS sign_attempts (
    request_id TEXT PRIMARY KEY,
    reserved   INTEGER NOT NULL CHECK (reserved >= 1),
    updated_ms INTEGER NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS policy_attestation (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    issued_ms     INTEGER NOT NULL,
    attestation   BLOB NOT NULL
)""",
    ),
    # 3: the admin-signed roster chain (issue 11), append-only
    (
        "CREATE TABLE IF NOT EXISTS roster_changes (version INTEGER PRIMARY KEY CHECK (version >= 1), signed_change BLOB NOT NULL,"
        " applied_ms INTEGER NOT NULL)",
        "CREATE TRIGGER IF NOT EXISTS roster_change_is_final BEFORE UPDATE ON roster_changes"
        " BEGIN SELECT RAISE(ABORT, 'a roster change is final'); END",
        "CREATE TRIGGER IF NOT EXISTS roster_change_is_kept BEFORE DELETE ON roster_changes"
        " BEGIN SELECT RAISE(ABORT, 'a roster change is final'); END",
    ),
    # 4: key epochs and committees, key operations, lifecycle proposals (issue 11)
    KEYOP_MIGRATION,
    # 5: the nodes' signed abandonments of failed refresh/reshare sessions (issue 11)
    ABANDONMENT_MIGRATION,
    # 6: recovery configuration chain, backup bundles, recovery ceremonies and drills (issue 12)
    BACKUP_MIGRATION,
    # 7: presignature pools (issue 14)
    POOL_MIGRATION,
    # 8: FROST keys (issue 16): a key's scheme, an ed25519 request's message, the nonce commitments
    NONCE_MIGRATION,
    # 9: partial indexes over the live presignatures and nonce commitments only (issue 14: the
    # periodic and per-signature queries no longer visit the rows kept as history)
    LIVE_INDEX_MIGRATION,
    # 10: one row rewritten by the store probe (coordinator/store_health.py): a failed write's
    # "database failing" clears once a probe write commits again, even with no other write
    STORE_PROBE_MIGRATION,
    # 11: the rate limit counts steady time (mpcnet/common/steadyclock.py), not the wall clock
    STEADY_MIGRATION,
    # 12: the steady time of each key's last share change (the refresh scheduler)
    KEY_CHANGE_STEADY_MIGRATION,
)
# the highest steady time held, from the sign_requests_by_steady index (no table scan at open)
STEADY_FLOOR_SQL = "SELECT MAX(created_steady_ms) FROM sign_requests"

TERMINAL = ("done", "rejected", "expired", "failed")

# A PENDING_APPROVAL request is expired (params: the expiry clock :meth:`CoordinatorDb.expiry_ms`,
# then the store's steady clock, both ms) by its wall deadline or by its lifetime
# (``expires_ms - created_ms``) elapsed on the steady clock since ``created_steady_ms``: the ONE
# judgement of the sweep (:meth:`CoordinatorDb.due_for_expiry`) and of a decision's transaction
# (:meth:`CoordinatorDb.record_decision`).
_EXPIRED_SQL = "(expires_ms < ? OR created_ms + (? - created_steady_ms) > expires_ms)"
EXPIRED_MESSAGE = "not approved before the request expired"


class StateConflict(Exception):
    """A compare-and-set on a signing request's state found another state."""

    def __init__(self, actual: str | None) -> None:
        super().__init__(f"request is {actual}")
        self.actual = actual


class RateLimitExceeded(Exception):
    def __init__(self, count: int) -> None:
        super().__init__(f"{count} requests in the window")
        self.count = count


def now_ms() -> int:
    """The wall clock (ms since the epoch): for what is shown, stamped or signed into protocol
    objects; a decision on a time span reads :meth:`CoordinatorDb.expiry_ms` or the steady clock."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class KeyRecord:
    key_id: bytes
    label: str
    public_key: bytes
    chain_code: bytes
    threshold: int
    parties: int
    status: str
    created_ms: int
    request_id: str
    scheme: str = "ecdsa-secp256k1"  # issue 16: governance.approval.SCHEMES


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    kind: str
    state: str
    key_id: bytes | None
    digest: bytes | None
    path: tuple[int, ...]
    label: str
    signature: bytes | None  # serialized mpc.v1.Signature
    signers: tuple[int, ...]
    error_code: int
    error_message: str
    attempts: int
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class SignRequestRecord:
    request_id: str
    key_id: bytes
    digest: bytes
    requester: str
    request: bytes  # canonical governance SigningRequest
    scope: bytes
    state: str
    created_ms: int
    expires_ms: int
    signature: bytes | None
    signers: tuple[int, ...]
    error_code: int
    error_message: str
    attempts: int
    updated_ms: int
    message: bytes = b""  # issue 16: an ed25519 request's message (digest = its SHA-256)


@dataclass(frozen=True)
class ApprovalRecord:
    approver: str
    decision: str  # "approve" | "reject"
    signature: bytes
    decided_ms: int


@dataclass(frozen=True)
class ProposalRecord:
    proposal_id: str
    scope: bytes
    signed_change: bytes
    state: str
    proposer: str
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class AuditEvent:
    """An audit entry that a state change causes; queued in the ``audit_outbox`` table by the
    same transaction as the change, appended to the audit log afterwards (see
    :meth:`CoordinatorDb.pending_audit`). Checked on construction (:class:`GovernanceError`),
    so a change never commits with an entry that could not be appended."""

    actor: str
    action: str
    request_id: str
    outcome: str
    details: Mapping[str, str | int | bool]

    def __post_init__(self) -> None:
        checked = check_entry_fields(self.actor, self.action, self.request_id, self.outcome, self.details)
        if EVENT_KEY in checked:
            raise GovernanceError(f"details[{EVENT_KEY!r}]", "is reserved for the outbox's event key")
        if len(checked) >= MAX_DETAILS:
            raise GovernanceError("details", f"more than {MAX_DETAILS - 1} items (the event key is added)")
        object.__setattr__(self, "details", checked)


@dataclass(frozen=True)
class OutboxEntry:
    """A queued :class:`AuditEvent` and its unique event key (``details["event"]`` in the log)."""

    seq: int
    event: str
    audit: AuditEvent
    queued_ms: int | None = None  # when the transaction that queued it committed (Unix ms)


@dataclass(frozen=True)
class Move:
    """A state change decided inside a transaction: the new state, extra columns, its audit entry."""

    to_state: str
    audit: AuditEvent
    fields: Mapping[str, Any] = field(default_factory=dict)


# settle(approvals stored so far, oldest first) -> the move they cause, or None
Settle = Callable[[list["ApprovalRecord"]], Move | None]


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _text(xs: Any) -> str:
    return ",".join(str(int(x)) for x in xs)


class CoordinatorDb(KeyOpStore, BackupStore, PoolStore, NonceStore):
    def __init__(self, path: Path, *, steady: SteadySource | None = None) -> None:
        """Open (creating it and its directory on first use) and upgrade the database at ``path``;
        :class:`RuntimeError` naming the file if it cannot be opened, made private or upgraded,
        or its steady clock (:attr:`steady`, what the rate limit counts) cannot be anchored for
        this boot (``steady``: where it reads; the host's boot-time clock and boot id by default)."""
        self.path = Path(path)
        self.health = StoreHealth()  # the coordinator's stores: set by a failed write, cleared by the next one
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = open_database(self.path)
        except DatabaseError as e:
            raise RuntimeError(f"db: {e}") from None
        self._lock = threading.Lock()
        try:
            migrate(self._conn, _MIGRATIONS)
            self.steady = anchor(self._conn, steady or SteadySource(), STEADY_FLOOR_SQL)
            # expiry judgements (README "Clock steps"): a wall clock stepped back revives nothing
            self.expiry = ExpiryClock.start(lambda: now_ms(), self.steady.now_ms)
        except (DatabaseError, SteadyClockError) as e:
            self._conn.close()
            raise RuntimeError(f"db: {e}") from None
        # issue 14 (lean path): reads use their own connection and lock, so a read never waits
        # behind a write's fsync (WAL: a read sees every transaction committed before it starts)
        try:
            self._rconn = _read_connection(self.path)
        except sqlite3.Error as e:
            self._conn.close()
            raise RuntimeError(f"db: cannot open {self.path} for reading ({e})") from None
        self._rlock = threading.Lock()

    def expiry_ms(self, wall_ms: int) -> int:
        """The coordinator's clock for expiry and due judgements (ms since the epoch): the later
        of ``wall_ms`` (the caller's wall-clock reading) and the wall clock when this store was
        opened + the steady time since. A step forward is followed at once (things expire early,
        never late); after a step back the clock counts on from where it was until a restart."""
        return self.expiry.at(wall_ms)

    def close(self) -> None:
        with self._rlock:
            self._rconn.close()
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error) under the lock;
        its outcome feeds :attr:`health` (a store failure sets it, a commit clears it)."""
        try:
            with self._lock, write_transaction(self._conn) as c:
                yield c
        except BaseException as e:
            self.health.saw(e)
            raise
        self.health.wrote("database")

    def probe_write(self, now_ms: int) -> None:
        """Rewrite the one-row ``store_probe`` table (a committed, fsynced write): clears the
        database's store-failing state when it succeeds (:meth:`_tx`); raises what the write
        raised (disk full, read-only, I/O error) and keeps it set."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO store_probe (id, written_ms) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET written_ms = excluded.written_ms",
                (int(now_ms),),
            )
            self.steady.mark(c)  # a reboot continues the steady timeline from here (mpcnet/common/steadyclock.py)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """One read statement (its own read transaction) on the read connection: it sees every
        write committed before it and never waits for a write in progress."""
        with self._rlock:
            return self._rconn.execute(sql, args).fetchall()

    # --- keys --------------------------------------------------------------------------------
    def add_key(self, k: KeyRecord, frost_shares: tuple[bytes, ...] = ()) -> None:
        """Record ``k`` (and, for a FROST key, its epoch-0 public shares) in one transaction."""
        with self._tx() as c:
            if frost_shares:
                self.put_frost_public_shares_in(c, k.key_id, 0, frost_shares)
            c.execute(
                "INSERT OR REPLACE INTO keys (key_id, label, public_key, chain_code, threshold, parties, status, created_ms,"
                " request_id, scheme) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (k.key_id, k.label, k.public_key, k.chain_code, k.threshold, k.parties, k.status, k.created_ms, k.request_id,
                 k.scheme),
            )
            # the creation's steady time, once (a key recorded again keeps it): the scheduler's age
            c.execute(
                "INSERT OR IGNORE INTO key_change_steady (key_id, steady_ms) VALUES (?, ?)", (k.key_id, self.steady.now_ms())
            )

    def set_key_status(self, key_id: bytes, status: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE keys SET status = ? WHERE key_id = ?", (status, key_id))

    def get_key(self, key_id: bytes) -> KeyRecord | None:
        rows = self._query("SELECT * FROM keys WHERE key_id = ?", (key_id,))
        return KeyRecord(*rows[0]) if rows else None

    def key_of_request(self, request_id: str) -> KeyRecord | None:
        """The key a keygen request created (recorded before the request is marked succeeded)."""
        rows = self._query("SELECT * FROM keys WHERE request_id = ? ORDER BY created_ms, rowid LIMIT 1", (request_id,))
        return KeyRecord(*rows[0]) if rows else None

    def list_keys(self, status: str | None = None) -> list[KeyRecord]:
        if status is None:
            rows = self._query("SELECT * FROM keys ORDER BY created_ms, rowid")
        else:
            rows = self._query("SELECT * FROM keys WHERE status = ? ORDER BY created_ms, rowid", (status,))
        return [KeyRecord(*r) for r in rows]

    # --- requests ----------------------------------------------------------------------------
    def create_request(
        self, request_id: str, kind: str, *, key_id: bytes | None = None, digest: bytes | None = None,
        path: tuple[int, ...] = (), label: str = "",
    ) -> None:
        t = now_ms()
        with self._tx() as c:
            c.execute(
                "INSERT INTO requests (request_id, kind, state, key_id, digest, path, label, created_ms, updated_ms)"
                " VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (request_id, kind, key_id, digest, _text(path), label, t, t),
            )

    def restart_request(self, request_id: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE requests SET state = 'running', error_code = 0, error_message = '', updated_ms = ? WHERE request_id = ?",
                (now_ms(), request_id),
            )

    def update_request(self, request_id: str, *, audit: AuditEvent | None = None, **fields: Any) -> None:
        """Set ``fields`` of request ``request_id``; ``audit`` (the entry the change causes) is
        queued in the audit outbox in the same transaction."""
        if "signers" in fields:
            fields["signers"] = _text(fields["signers"])
        fields["updated_ms"] = now_ms()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as c:
            c.execute(f"UPDATE requests SET {cols} WHERE request_id = ?", (*fields.values(), request_id))
            if audit is not None:
                self._enqueue(c, audit)

    def get_request(self, request_id: str) -> RequestRecord | None:
        rows = self._query("SELECT * FROM requests WHERE request_id = ?", (request_id,))
        return self._req(rows[0]) if rows else None

    def requests_in_state(self, state: str) -> list[RequestRecord]:
        return [self._req(r) for r in self._query("SELECT * FROM requests WHERE state = ?", (state,))]

    @staticmethod
    def _req(r: Any) -> RequestRecord:
        return RequestRecord(
            request_id=r[0], kind=r[1], state=r[2], key_id=r[3], digest=r[4], path=_ints(r[5]), label=r[6],
            signature=r[7], signers=_ints(r[8]), error_code=r[9], error_message=r[10], attempts=r[11],
            created_ms=r[12], updated_ms=r[13],
        )


    # --- signing requests --------------------------------------------------------------------
    _SR_COLS = (
        "request_id, key_id, digest, requester, request, scope, state, created_ms, expires_ms, signature, signers,"
        " error_code, error_message, attempts, updated_ms, message"
    )

    @staticmethod
    def _sr(r: Any) -> SignRequestRecord:
        return SignRequestRecord(
            request_id=r[0], key_id=bytes(r[1]), digest=bytes(r[2]), requester=r[3], request=bytes(r[4]),
            scope=bytes(r[5]), state=r[6], created_ms=r[7], expires_ms=r[8],
            signature=None if r[9] is None else bytes(r[9]), signers=_ints(r[10]), error_code=r[11],
            error_message=r[12], attempts=r[13], updated_ms=r[14], message=bytes(r[15]),
        )

    def add_sign_request(
        self, rec: SignRequestRecord, *, rate_limit: tuple[int, int] | None, audit: AuditEvent | None = None
    ) -> None:
        """Insert a new request; with ``rate_limit = (max, window_ms)`` refuse it
        (:class:`RateLimitExceeded`) if ``max`` live or signed requests for the key were created
        in the window: the last ``window_ms`` of steady time (:attr:`steady`, read inside the
        transaction; ``rec.created_ms``, the wall clock, is only recorded). Check, insert and
        queueing ``audit`` are one transaction; the count is one index range
        (``sign_requests_by_key_steady``)."""
        with self._tx() as c:
            if audit is not None:
                self._enqueue(c, audit)
            now_steady = self.steady.now_ms()
            if rate_limit is not None:
                limit, window_ms = rate_limit
                (count,) = c.execute(
                    "SELECT COUNT(*) FROM sign_requests WHERE key_id = ? AND created_steady_ms > ?"
                    " AND state IN ('pending_approval', 'signing', 'done')",
                    (rec.key_id, now_steady - window_ms),
                ).fetchone()
                if count >= limit:
                    raise RateLimitExceeded(int(count))
            c.execute(
                f"INSERT INTO sign_requests ({self._SR_COLS}, created_steady_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.request_id, rec.key_id, rec.digest, rec.requester, rec.request, rec.scope, rec.state,
                 rec.created_ms, rec.expires_ms, rec.signature, _text(rec.signers), rec.error_code,
                 rec.error_message, rec.attempts, rec.updated_ms, rec.message, now_steady),
            )

    def get_sign_request(self, request_id: str) -> SignRequestRecord | None:
        rows = self._query(f"SELECT {self._SR_COLS} FROM sign_requests WHERE request_id = ?", (request_id,))
        return self._sr(rows[0]) if rows else None

    def sign_request_state(self, request_id: str) -> str | None:
        """``request_id``'s state (``"signing"``, one of :data:`TERMINAL`, ...), or None
        for an unknown request: one column, for waits that only test whether it ended."""
        rows = self._query("SELECT state FROM sign_requests WHERE request_id = ?", (request_id,))
        return str(rows[0][0]) if rows else None

    def list_sign_requests(
        self, *, state: str | None = None, key_id: bytes | None = None, requester: str | None = None,
        scope: bytes | None = None, limit: int = 100,
    ) -> list[SignRequestRecord]:
        where, args = [], []
        for col, val in (("state", state), ("key_id", key_id), ("requester", requester), ("scope", scope)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = f"SELECT {self._SR_COLS} FROM sign_requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # newest first by created_ms: the by-key index gives that order without sorting a key's
        # whole history (ORDER BY rowid would; after a wall clock stepped back, a request dated
        # ahead lists before newer ones: a display order only, nothing decides on it)
        sql += " ORDER BY created_ms DESC, rowid DESC LIMIT ?"
        return [self._sr(r) for r in self._query(sql, (*args, limit))]

    def transition(
        self, request_id: str, from_states: tuple[str, ...], to_state: str, *, audit: AuditEvent | None = None,
        also: Callable[[sqlite3.Connection], object] | None = None, **fields: Any,
    ) -> SignRequestRecord:
        """Move a request from one of ``from_states`` to ``to_state`` (and set ``fields``)
        atomically, queueing ``audit`` (and running ``also``, e.g. marking its pool
        presignature used) in the same transaction; :class:`StateConflict` (and nothing
        changed or queued) if it is in another state."""
        if "signers" in fields:
            fields["signers"] = _text(fields["signers"])
        fields["state"] = to_state
        fields["updated_ms"] = now_ms()
        cols = ", ".join(f"{k} = ?" for k in fields)
        marks = ", ".join("?" for _ in from_states)
        with self._tx() as c:
            cur = c.execute(
                f"UPDATE sign_requests SET {cols} WHERE request_id = ? AND state IN ({marks})",
                (*fields.values(), request_id, *from_states),
            )
            if cur.rowcount != 1:
                row = c.execute("SELECT state FROM sign_requests WHERE request_id = ?", (request_id,)).fetchone()
                raise StateConflict(None if row is None else row[0])
            if audit is not None:
                self._enqueue(c, audit)
            if also is not None:
                also(c)
            row = c.execute(f"SELECT {self._SR_COLS} FROM sign_requests WHERE request_id = ?", (request_id,)).fetchone()
        return self._sr(row)

    def touch_sign_request(self, request_id: str, **fields: Any) -> None:
        fields["updated_ms"] = now_ms()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as c:
            c.execute(f"UPDATE sign_requests SET {cols} WHERE request_id = ?", (*fields.values(), request_id))

    def key_change_age_ms(self, key_id: bytes) -> int | None:
        """The steady time (ms) since key ``key_id``'s shares last changed (its creation, or its
        last refresh/reshare done), which a wall clock stepped back across a restart does not
        shorten; None for a key without that record (one from before schema step 12)."""
        rows = self._query("SELECT steady_ms FROM key_change_steady WHERE key_id = ?", (key_id,))
        return None if not rows else self.steady.now_ms() - int(rows[0][0])

    def ceremony_clock_ms(self, ceremony_id: bytes, created_ms: int, wall_ms: int) -> int:
        """The clock a recovery ceremony's order expiry and a drill's age are judged on (ms since
        the epoch): the later of :meth:`expiry_ms` (``wall_ms``: the caller's wall-clock reading)
        and ``created_ms`` (the ceremony's wall creation stamp) + the steady time since it was
        opened, which a restart with the wall clock stepped back does not rewind.
        :meth:`expiry_ms` alone for a ceremony without that record (opened before schema step 12)."""
        now = self.expiry_ms(wall_ms)
        rows = self._query("SELECT created_steady_ms FROM ceremony_steady WHERE ceremony_id = ?", (ceremony_id,))
        return now if not rows else max(now, created_ms + self.steady.now_ms() - int(rows[0][0]))

    def due_for_expiry(self, now: int) -> list[str]:
        """The PENDING_APPROVAL requests expired at ``now`` (ms, :meth:`expiry_ms`) or by the
        steady clock: their lifetime (``expires_ms - created_ms``) elapsed since
        ``created_steady_ms``. The steady clock continues across restarts, so a request that
        expired while the coordinator was stopped stays expired when it starts again with its
        wall clock stepped back (README "Clock steps")."""
        rows = self._query(
            f"SELECT request_id FROM sign_requests WHERE state = 'pending_approval' AND {_EXPIRED_SQL}",
            (now, self.steady.now_ms()),
        )
        return [r[0] for r in rows]

    def requests_created_since(self, steady_floor_ms: int, limit: int) -> list[tuple[str, int]]:
        """The newest ``limit`` sign requests created after ``steady_floor_ms`` (the store's steady
        clock, ms), as (requester, ``created_steady_ms``), oldest first: the anomaly monitor's
        ``requester_rate`` windows refilled at start (coordinator/anomaly_hook.py)."""
        rows = self._query(
            "SELECT requester, created_steady_ms FROM sign_requests WHERE created_steady_ms > ?"
            " ORDER BY created_steady_ms DESC LIMIT ?",
            (steady_floor_ms, limit),
        )
        return [(str(r[0]), int(r[1])) for r in reversed(rows)]

    def request_clock_ms(self, request_id: str, wall_ms: int) -> int:
        """The clock a request's expiry is judged on (ms since the epoch): the later of
        :meth:`expiry_ms` (``wall_ms``: the caller's wall-clock reading) and the request's
        ``created_ms`` + the steady time since it was submitted, which a restart with the wall
        clock stepped back does not rewind. :meth:`expiry_ms` alone for an unknown request."""
        now = self.expiry_ms(wall_ms)
        rows = self._query("SELECT created_ms, created_steady_ms FROM sign_requests WHERE request_id = ?", (request_id,))
        if not rows or rows[0][1] is None:
            return now
        created, created_steady = int(rows[0][0]), int(rows[0][1])
        return max(now, created + self.steady.now_ms() - created_steady)

    def record_decision(
        self, request_id: str, a: ApprovalRecord, audit: AuditEvent, settle: Settle,
        on_signing: Callable[[sqlite3.Connection], object] | None = None,
        expired: AuditEvent | None = None,
    ) -> Literal["recorded", "duplicate", "conflict", "expired"]:
        """Store ``a`` and the move it causes in ONE transaction: the decision, its ``audit``
        entry, and (if ``settle`` over all stored decisions returns a :class:`Move`) the
        request's transition out of PENDING_APPROVAL with the move's entry. A crash can leave
        neither a full quorum stored on a pending request nor a state without its entry.

        ``on_signing`` runs in the same transaction when the move is to SIGNING (issue 14: the
        pool assignment and attempt 1 commit with the quorum).

        "duplicate": this approver already made the same decision (nothing written);
        "conflict": it already made the other one; :class:`StateConflict` if the request is
        not PENDING_APPROVAL (nothing written).

        "expired": the request's lifetime had passed when this transaction began, judged as
        :meth:`due_for_expiry` judges it (:meth:`expiry_ms` or the steady clock since
        ``created_steady_ms``): the decision is NOT stored; the request moves to EXPIRED with
        the ``expired`` entry (the sweep's ``sign-expired``) in this transaction, as the sweep
        would have moved it. A sweep run before this transaction cannot close that window
        (issue 16 p16: an approval landing just after it was recorded for an expired request)."""
        with self._tx() as c:
            row = c.execute(
                "SELECT decision FROM approvals WHERE request_id = ? AND approver = ?", (request_id, a.approver)
            ).fetchone()
            if row is not None:
                return "duplicate" if row[0] == a.decision else "conflict"
            state = c.execute("SELECT state FROM sign_requests WHERE request_id = ?", (request_id,)).fetchone()
            if state is None or state[0] != "pending_approval":
                raise StateConflict(None if state is None else state[0])
            if c.execute(
                f"SELECT 1 FROM sign_requests WHERE request_id = ? AND {_EXPIRED_SQL}",
                (request_id, self.expiry_ms(now_ms()), self.steady.now_ms()),
            ).fetchone() is not None:
                c.execute(
                    "UPDATE sign_requests SET state = 'expired', error_message = ?, updated_ms = ?"
                    " WHERE request_id = ? AND state = 'pending_approval'",
                    (EXPIRED_MESSAGE, now_ms(), request_id),
                )
                if expired is not None:
                    self._enqueue(c, expired)
                return "expired"
            (n,) = c.execute("SELECT COUNT(*) FROM approvals WHERE request_id = ?", (request_id,)).fetchone()
            c.execute(
                "INSERT INTO approvals (request_id, approver, decision, signature, decided_ms, seq) VALUES (?, ?, ?, ?, ?, ?)",
                (request_id, a.approver, a.decision, a.signature, a.decided_ms, int(n)),
            )
            self._enqueue(c, audit)
            if self._settle(c, request_id, settle) and on_signing is not None:
                moved = c.execute("SELECT state FROM sign_requests WHERE request_id = ?", (request_id,)).fetchone()
                if moved is not None and moved[0] == "signing":
                    on_signing(c)
        return "recorded"

    def settle(self, request_id: str, settle: Settle) -> bool:
        """Re-evaluate a PENDING_APPROVAL request against its stored decisions (after a restart):
        apply the :class:`Move` ``settle`` returns, with its entry, in one transaction. False if
        nothing moved (not pending, or ``settle`` returned None)."""
        with self._tx() as c:
            state = c.execute("SELECT state FROM sign_requests WHERE request_id = ?", (request_id,)).fetchone()
            if state is None or state[0] != "pending_approval":
                return False
            return self._settle(c, request_id, settle)

    def _settle(self, c: sqlite3.Connection, request_id: str, settle: Settle) -> bool:
        rows = c.execute(
            "SELECT approver, decision, signature, decided_ms FROM approvals WHERE request_id = ? ORDER BY seq",
            (request_id,),
        ).fetchall()
        move = settle([ApprovalRecord(r[0], r[1], bytes(r[2]), r[3]) for r in rows])
        if move is None:
            return False
        fields = {**move.fields, "state": move.to_state, "updated_ms": now_ms()}
        cols = ", ".join(f"{k} = ?" for k in fields)
        cur = c.execute(
            f"UPDATE sign_requests SET {cols} WHERE request_id = ? AND state = 'pending_approval'",
            (*fields.values(), request_id),
        )
        if cur.rowcount != 1:
            raise StateConflict(None)
        self._enqueue(c, move.audit)
        return True

    # --- audit outbox ------------------------------------------------------------------------
    @staticmethod
    def _enqueue(c: sqlite3.Connection, ev: AuditEvent) -> None:
        c.execute(
            "INSERT INTO audit_outbox (event, actor, action, request_id, outcome, details, created_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("ev-" + os.urandom(16).hex(), ev.actor, ev.action, ev.request_id, ev.outcome,
             json.dumps(dict(ev.details), sort_keys=True), now_ms()),
        )

    def queue_audit(self, ev: AuditEvent) -> None:
        """Queue an audit entry that no state change goes with (e.g. a refusal)."""
        with self._tx() as c:
            self._enqueue(c, ev)

    def pending_audit(self, limit: int = 1000) -> list[OutboxEntry]:
        """Queued audit entries, oldest first: append each to the log (once: by its event key)
        and then :meth:`drop_audit` it."""
        rows = self._query(
            "SELECT seq, event, actor, action, request_id, outcome, details, created_ms FROM audit_outbox ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [OutboxEntry(r[0], r[1], AuditEvent(r[2], r[3], r[4], r[5], json.loads(r[6])), int(r[7])) for r in rows]

    def drop_audit(self, events: list[str]) -> None:
        """Forget the queued entries with these event keys (they are in the audit log now)."""
        with self._tx() as c:
            c.executemany("DELETE FROM audit_outbox WHERE event = ?", [(e,) for e in events])

    def approvals(self, request_id: str) -> list[ApprovalRecord]:
        rows = self._query(
            "SELECT approver, decision, signature, decided_ms FROM approvals WHERE request_id = ? ORDER BY seq",
            (request_id,),
        )
        return [ApprovalRecord(r[0], r[1], bytes(r[2]), r[3]) for r in rows]

    # --- policies ----------------------------------------------------------------------------
    def add_policy_change(self, scope: bytes, version: int, signed_change: bytes, audit: AuditEvent | None = None) -> None:
        """Store a verified policy change (one transaction, with ``audit`` queued in the outbox)."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO policy_changes (scope, version, signed_change, applied_ms) VALUES (?, ?, ?, ?)",
                (scope, version, signed_change, now_ms()),
            )
            if audit is not None:
                self._enqueue(c, audit)

    def apply_policy_proposal(
        self, applied: ProposalRecord, version: int, signed_change: bytes, audits: Sequence[AuditEvent]
    ) -> list[str]:
        """Apply a proposal at its quorum in ONE transaction: store the change as ``version`` of
        ``applied.scope``, store ``applied`` (state ``applied``), mark every other pending
        proposal of that scope superseded and queue ``audits``. Returns the superseded ids.
        :class:`sqlite3.IntegrityError` if that version is stored already (nothing changes)."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO policy_changes (scope, version, signed_change, applied_ms) VALUES (?, ?, ?, ?)",
                (applied.scope, version, signed_change, applied.updated_ms),
            )
            self._put_proposal(c, applied)
            rows = c.execute(
                "SELECT proposal_id FROM proposals WHERE state = 'pending' AND scope = ? AND proposal_id != ?",
                (applied.scope, applied.proposal_id),
            ).fetchall()
            superseded = [str(r[0]) for r in rows]
            c.executemany(
                "UPDATE proposals SET state = 'superseded', updated_ms = ? WHERE proposal_id = ?",
                [(applied.updated_ms, pid) for pid in superseded],
            )
            for ev in audits:
                self._enqueue(c, ev)
        return superseded

    def policy_changes(self) -> dict[bytes, list[bytes]]:
        rows = self._query("SELECT scope, signed_change FROM policy_changes ORDER BY scope, version")
        out: dict[bytes, list[bytes]] = {}
        for scope, change in rows:
            out.setdefault(bytes(scope), []).append(bytes(change))
        return out

    def put_proposal(self, p: ProposalRecord, audits: Sequence[AuditEvent] = ()) -> None:
        """Store (insert or replace) a policy proposal, with ``audits`` queued in the outbox (one
        transaction)."""
        with self._tx() as c:
            self._put_proposal(c, p)
            for ev in audits:
                self._enqueue(c, ev)

    @staticmethod
    def _put_proposal(c: sqlite3.Connection, p: ProposalRecord) -> None:
        c.execute(
            "INSERT OR REPLACE INTO proposals (proposal_id, scope, signed_change, state, proposer, created_ms, updated_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (p.proposal_id, p.scope, p.signed_change, p.state, p.proposer, p.created_ms, p.updated_ms),
        )

    def get_proposal(self, proposal_id: str) -> ProposalRecord | None:
        rows = self._query(
            "SELECT proposal_id, scope, signed_change, state, proposer, created_ms, updated_ms FROM proposals"
            " WHERE proposal_id = ?", (proposal_id,),
        )
        return ProposalRecord(rows[0][0], bytes(rows[0][1]), bytes(rows[0][2]), *rows[0][3:]) if rows else None

    def list_proposals(self, state: str | None = None) -> list[ProposalRecord]:
        sql = "SELECT proposal_id, scope, signed_change, state, proposer, created_ms, updated_ms FROM proposals"
        args: tuple[Any, ...] = ()
        if state is not None:
            sql += " WHERE state = ?"
            args = (state,)
        sql += " ORDER BY created_ms DESC, rowid DESC"
        return [ProposalRecord(r[0], bytes(r[1]), bytes(r[2]), *r[3:]) for r in self._query(sql, args)]

    # --- reserved signing attempts -------------------------------------------------------------
    def next_sign_attempt(self, request_id: str) -> int:
        """Durably take the next signing attempt number (1, 2, ...) of ``request_id`` before it
        is reserved on the nodes, so a restarted coordinator never reuses one."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO sign_attempts (request_id, reserved, updated_ms) VALUES (?, 1, ?)"
                " ON CONFLICT (request_id) DO UPDATE SET reserved = reserved + 1, updated_ms = excluded.updated_ms",
                (request_id, now_ms()),
            )
            (n,) = c.execute("SELECT reserved FROM sign_attempts WHERE request_id = ?", (request_id,)).fetchone()
        return int(n)

    def sign_attempts_taken(self, request_id: str) -> int:
        """How many signing attempt numbers of ``request_id`` were taken (0 if none)."""
        rows = self._query("SELECT reserved FROM sign_attempts WHERE request_id = ?", (request_id,))
        return int(rows[0][0]) if rows else 0

    # --- the roster chain ----------------------------------------------------------------------
    def put_roster_changes(self, first_version: int, signed_changes: list[bytes], audit: AuditEvent | None = None) -> None:
        """Append verified roster changes as versions ``first_version``, ``+1``, ... (one
        transaction, with ``audit`` queued in the outbox); ValueError unless the latest stored
        version is ``first_version - 1``."""
        with self._tx() as c:
            if audit is not None:
                self._enqueue(c, audit)
            row = c.execute("SELECT MAX(version) FROM roster_changes").fetchone()
            latest = 0 if row is None or row[0] is None else int(row[0])
            if latest != first_version - 1:
                raise ValueError(f"roster: stored version is {latest}, expected {first_version - 1}")
            c.executemany(
                "INSERT INTO roster_changes (version, signed_change, applied_ms) VALUES (?, ?, ?)",
                [(first_version + k, b, now_ms()) for k, b in enumerate(signed_changes)],
            )

    def roster_changes(self) -> list[bytes]:
        """Every stored roster change, version 1 first."""
        return [bytes(r[0]) for r in self._query("SELECT signed_change FROM roster_changes ORDER BY version")]

    # --- the newest policy attestation ---------------------------------------------------------
    def put_attestation(self, attestation: bytes, issued_ms: int, audit: AuditEvent | None = None) -> bool:
        """Keep the (verified) attestation if it was issued later than the stored one, with
        ``audit`` queued in the outbox in the same transaction (only then). False: an older one,
        nothing changed and nothing queued."""
        with self._tx() as c:
            row = c.execute("SELECT issued_ms FROM policy_attestation WHERE id = 1").fetchone()
            if row is not None and row[0] >= issued_ms:
                return False
            c.execute(
                "INSERT OR REPLACE INTO policy_attestation (id, issued_ms, attestation) VALUES (1, ?, ?)",
                (issued_ms, attestation),
            )
            if audit is not None:
                self._enqueue(c, audit)
        return True

    def attestation(self) -> bytes | None:
        rows = self._query("SELECT attestation FROM policy_attestation WHERE id = 1")
        return bytes(rows[0][0]) if rows else None


def _read_connection(path: Path) -> sqlite3.Connection:
    """A read-only (``mode=ro``) autocommit connection to the database at ``path``, usable from
    any thread (:meth:`CoordinatorDb._query` serializes it with its own lock). Raises
    :class:`sqlite3.Error`."""
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
