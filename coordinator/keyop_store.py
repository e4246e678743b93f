"""The coordinator's durable record of key epochs, key operations and lifecycle proposals
(issue 11; a mixin of :class:`coordinator.db.CoordinatorDb`, tables of schema step 3).

* ``key_epochs(key_id, epoch, committee)``: a key's epoch and committee (roster indices,
  increasing; position k = share index k). A key without a row is a legacy key: epoch 0,
  committee ``1..parties``. Threshold and party count stay in ``keys``.
* ``key_operations``: one row per refresh/reshare (operation id = the operation's proposal
  id): the signed operation, how it is authorized, its state (``running`` -> ``committing`` ->
  ``done`` | ``failed``), the last session, its dealers and receipts, the nodes that have not
  switched yet, the error, the number of sessions run.
* ``lifecycle_proposals``: admin proposals (kind ``key-operation`` or ``roster``) with the
  signatures collected so far.

:meth:`KeyOpStore.decide` is the decision point of an operation: in one transaction the
certificate (receipts), state ``committing``, the key's new epoch/threshold/committee and the
audit entry (queued in the outbox like every state change of this database).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coordinator.nonce_store import NonceStore

if TYPE_CHECKING:
    from coordinator.db import AuditEvent
    from mpcnet.common.steadyclock import SteadyClock

KEYOP_MIGRATION: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS key_epochs (key_id BLOB PRIMARY KEY CHECK (length(key_id) = 32),"
    " epoch INTEGER NOT NULL CHECK (epoch >= 0), committee TEXT NOT NULL, updated_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS key_operations (op_id TEXT PRIMARY KEY, key_id BLOB NOT NULL, signed BLOB NOT NULL,"
    " authorized_by TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('running', 'committing', 'done', 'failed')),"
    " session_id BLOB, dealers TEXT NOT NULL DEFAULT '', receipts BLOB, pending_nodes TEXT NOT NULL DEFAULT '',"
    " error TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS key_operations_by_key ON key_operations (key_id, created_ms)",
    "CREATE TABLE IF NOT EXISTS lifecycle_proposals (proposal_id TEXT PRIMARY KEY, kind TEXT NOT NULL, signed BLOB NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('pending', 'applied', 'superseded')), proposer TEXT NOT NULL,"
    " operations TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL)",
)
LIVE = ("running", "committing")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _text(xs: Any) -> str:
    return ",".join(str(int(x)) for x in xs)


def _pack(items: tuple[bytes, ...]) -> bytes:
    """Length-prefixed concatenation (receipts)."""
    return b"".join(len(x).to_bytes(4, "big") + x for x in items)


def _unpack(blob: bytes | None) -> tuple[bytes, ...]:
    out, pos, data = [], 0, blob or b""
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        out.append(bytes(data[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return tuple(out)


@dataclass(frozen=True)
class KeyOpRecord:
    op_id: str
    key_id: bytes
    signed: bytes  # canonical SignedKeyOperation
    authorized_by: str  # "admin-quorum" | "roster" | "schedule"
    state: str
    session_id: bytes
    dealers: tuple[int, ...]
    receipts: tuple[bytes, ...]
    pending_nodes: tuple[int, ...]
    error: str
    attempts: int
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class LifecycleRecord:
    proposal_id: str
    kind: str
    signed: bytes
    state: str
    proposer: str
    operations: tuple[str, ...]
    error: str
    created_ms: int
    updated_ms: int


_OP_COLS = (
    "op_id, key_id, signed, authorized_by, state, session_id, dealers, receipts, pending_nodes, error, attempts, created_ms, updated_ms"
)


def _op(r: Any) -> KeyOpRecord:
    return KeyOpRecord(
        r[0], bytes(r[1]), bytes(r[2]), r[3], r[4], bytes(r[5] or b""), _ints(r[6]), _unpack(r[7]), _ints(r[8]), r[9], r[10],
        r[11], r[12],
    )


def _lc(r: Any) -> LifecycleRecord:
    return LifecycleRecord(r[0], r[1], bytes(r[2]), r[3], r[4], tuple(x for x in r[5].split(",") if x), r[6], r[7], r[8])


# the nodes' signed abandonments of failed sessions (ReshareParams.abandoned of later sessions)
ABANDONMENT_MIGRATION: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS key_abandonments (key_id BLOB NOT NULL, session_id BLOB NOT NULL,"
    " holder INTEGER NOT NULL, proof BLOB NOT NULL, created_ms INTEGER NOT NULL, PRIMARY KEY (key_id, session_id, holder))",
)
MAX_ABANDONMENTS = 255


class KeyOpStore:
    """Mixin of :class:`coordinator.db.CoordinatorDb` (the tables above)."""

    if TYPE_CHECKING:
        def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]: ...
        @staticmethod
        def _enqueue(c: sqlite3.Connection, ev: AuditEvent) -> None: ...
        steady: SteadyClock

    # --- key epochs --------------------------------------------------------------------------
    def key_epoch(self, key_id: bytes, parties: int) -> tuple[int, tuple[int, ...]]:
        """(epoch, committee) of a key; a key without a row: (0, 1..parties)."""
        rows = self._query("SELECT epoch, committee FROM key_epochs WHERE key_id = ?", (key_id,))
        if not rows:
            return 0, tuple(range(1, parties + 1))
        return int(rows[0][0]), _ints(rows[0][1])

    def set_key_epoch(self, key_id: bytes, epoch: int, committee: tuple[int, ...], now: int) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO key_epochs (key_id, epoch, committee, updated_ms) VALUES (?, ?, ?, ?)",
                (key_id, epoch, _text(committee), now),
            )

    # --- abandoned sessions ------------------------------------------------------------------
    def add_abandonments(self, key_id: bytes, session_id: bytes, proofs: dict[int, bytes], now: int) -> None:
        """Keep the nodes' signed abandonments of ``session_id`` (holder -> encoded proof)."""
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO key_abandonments (key_id, session_id, holder, proof, created_ms) VALUES (?, ?, ?, ?, ?)",
                [(key_id, session_id, h, p, now) for h, p in sorted(proofs.items())],
            )

    def abandoned_holders(self, key_id: bytes, session_id: bytes) -> set[int]:
        rows = self._query("SELECT holder FROM key_abandonments WHERE key_id = ? AND session_id = ?", (key_id, session_id))
        return {int(r[0]) for r in rows}

    def abandonments(self, key_id: bytes) -> list[bytes]:
        """The newest abandonments of the key's sessions (at most MAX_ABANDONMENTS), newest first
        in the order they were recorded: rowid, not ``created_ms`` (the wall clock: after it was
        stepped back a newer abandonment would sort below older ones dated ahead, and the LIMIT
        would drop it). Rows are only inserted; one recorded again (INSERT OR REPLACE) is a new
        row, the newest."""
        rows = self._query(
            "SELECT proof FROM key_abandonments WHERE key_id = ? ORDER BY rowid DESC LIMIT ?", (key_id, MAX_ABANDONMENTS)
        )
        return [bytes(r[0]) for r in rows]

    # --- key operations ----------------------------------------------------------------------
    def add_key_operation(self, rec: KeyOpRecord, audit: AuditEvent) -> bool:
        """Record a new operation (state running) with its audit entry; False if the id exists.
        ValueError if another operation of the key is still running or committing."""
        with self._tx() as c:
            if c.execute("SELECT 1 FROM key_operations WHERE op_id = ?", (rec.op_id,)).fetchone():
                return False
            live = c.execute(
                "SELECT op_id FROM key_operations WHERE key_id = ? AND state IN ('running', 'committing')", (rec.key_id,)
            ).fetchone()
            if live:
                raise ValueError(f"key operation {live[0]} of this key is not finished")
            c.execute(
                f"INSERT INTO key_operations ({_OP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.op_id, rec.key_id, rec.signed, rec.authorized_by, rec.state, rec.session_id or None, _text(rec.dealers),
                 _pack(rec.receipts), _text(rec.pending_nodes), rec.error, rec.attempts, rec.created_ms, rec.updated_ms),
            )
            self._enqueue(c, audit)
            return True

    def get_key_operation(self, op_id: str) -> KeyOpRecord | None:
        rows = self._query(f"SELECT {_OP_COLS} FROM key_operations WHERE op_id = ?", (op_id,))
        return _op(rows[0]) if rows else None

    def list_key_operations(self, key_id: bytes | None = None, states: tuple[str, ...] | None = None) -> list[KeyOpRecord]:
        sql, args = f"SELECT {_OP_COLS} FROM key_operations", list[object]()
        where = []
        if key_id is not None:
            where.append("key_id = ?")
            args.append(key_id)
        if states is not None:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args.extend(states)
        if where:
            sql += " WHERE " + " AND ".join(where)
        # oldest first in the order they were recorded (rows are only inserted, never replaced):
        # created_ms is the wall clock, and after it was stepped back a newer operation would sort
        # before an older one dated ahead, so "the newest" (the backoffs' last failure) would stay
        # the older one and each pass retry at once until the clock caught up
        return [_op(r) for r in self._query(sql + " ORDER BY rowid", tuple(args))]

    def key_operation_session(self, op_id: str, session_id: bytes, dealers: tuple[int, ...], now: int) -> None:
        """Record the session about to run (durable before any node hears of it)."""
        with self._tx() as c:
            c.execute(
                "UPDATE key_operations SET session_id = ?, dealers = ?, receipts = NULL, attempts = attempts + 1, updated_ms = ?"
                " WHERE op_id = ? AND state = 'running'",
                (session_id, _text(dealers), now, op_id),
            )

    def restart_key_operation(self, op_id: str, audit: AuditEvent, now: int) -> bool:
        """A failed operation runs again (its old epoch is still current): back to running."""
        with self._tx() as c:
            cur = c.execute("UPDATE key_operations SET state = 'running', error = '', updated_ms = ? WHERE op_id = ? AND state = 'failed'",
                            (now, op_id))
            if cur.rowcount != 1:
                return False
            self._enqueue(c, audit)
            return True

    def fail_key_operation(self, op_id: str, error: str, audit: AuditEvent, now: int) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE key_operations SET state = 'failed', error = ?, updated_ms = ? WHERE op_id = ? AND state = 'running'",
                (error, now, op_id),
            )
            self._enqueue(c, audit)

    def decide(
        self, op_id: str, receipts: tuple[bytes, ...], *, key_id: bytes, epoch: int, threshold: int, committee: tuple[int, ...],
        pending: tuple[int, ...], audit: AuditEvent, now: int, frost_public_shares: tuple[bytes, ...] = (),
    ) -> None:
        """The decision point (one transaction): certificate, state committing, the key's new
        epoch/threshold/committee, the audit entry; for a FROST key (issue 16) also the new
        epoch's ``frost_public_shares`` and the old epochs' fresh nonce commitments discarded.
        ValueError if the operation is not running or the key is no longer at ``epoch - 1``."""
        with self._tx() as c:
            row = c.execute("SELECT epoch FROM key_epochs WHERE key_id = ?", (key_id,)).fetchone()
            cur = 0 if row is None else int(row[0])
            if cur != epoch - 1:
                raise ValueError(f"the key is at epoch {cur}, not {epoch - 1}")
            u = c.execute(
                "UPDATE key_operations SET state = 'committing', receipts = ?, pending_nodes = ?, updated_ms = ?"
                " WHERE op_id = ? AND state = 'running'",
                (_pack(receipts), _text(pending), now, op_id),
            )
            if u.rowcount != 1:
                raise ValueError(f"operation {op_id} is not running")
            c.execute(
                "INSERT OR REPLACE INTO key_epochs (key_id, epoch, committee, updated_ms) VALUES (?, ?, ?, ?)",
                (key_id, epoch, _text(committee), now),
            )
            c.execute("UPDATE keys SET threshold = ?, parties = ? WHERE key_id = ?", (threshold, len(committee), key_id))
            if frost_public_shares:  # issue 16 (coordinator/nonce_store.py, coordinator/frost_keyops.py)
                NonceStore.put_frost_public_shares_in(c, key_id, epoch, frost_public_shares)
                c.execute(
                    "UPDATE frost_nonces SET state = 'discarded', reason = 'epoch changed', updated_ms = ?"
                    " WHERE key_id = ? AND state = 'fresh' AND epoch < ?", (now, key_id, epoch),
                )
            self._enqueue(c, audit)

    def switched(self, op_id: str, pending: tuple[int, ...], audit: AuditEvent | None, now: int) -> None:
        """Nodes ``pending`` have not switched yet; none left: state done (with ``audit``)."""
        with self._tx() as c:
            state = "committing" if pending else "done"
            u = c.execute(
                "UPDATE key_operations SET pending_nodes = ?, state = ?, updated_ms = ? WHERE op_id = ? AND state = 'committing'",
                (_text(pending), state, now, op_id),
            )
            if state == "done" and u.rowcount == 1:  # the shares changed: the refresh scheduler's age counts from now
                c.execute(
                    "INSERT OR REPLACE INTO key_change_steady (key_id, steady_ms)"
                    " SELECT key_id, ? FROM key_operations WHERE op_id = ?", (self.steady.now_ms(), op_id),
                )
            if audit is not None and not pending:
                self._enqueue(c, audit)

    # --- lifecycle proposals -----------------------------------------------------------------
    def put_lifecycle_proposal(self, p: LifecycleRecord, audits: tuple[AuditEvent, ...] = ()) -> None:
        """Store (insert or replace) a lifecycle proposal, with ``audits`` queued in the outbox
        (one transaction)."""
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO lifecycle_proposals (proposal_id, kind, signed, state, proposer, operations, error,"
                " created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (p.proposal_id, p.kind, p.signed, p.state, p.proposer, ",".join(p.operations), p.error, p.created_ms, p.updated_ms),
            )
            for ev in audits:
                self._enqueue(c, ev)

    def get_lifecycle_proposal(self, proposal_id: str) -> LifecycleRecord | None:
        rows = self._query(
            "SELECT proposal_id, kind, signed, state, proposer, operations, error, created_ms, updated_ms FROM lifecycle_proposals"
            " WHERE proposal_id = ?", (proposal_id,),
        )
        return _lc(rows[0]) if rows else None

    def list_lifecycle_proposals(self, state: str | None = None) -> list[LifecycleRecord]:
        sql = "SELECT proposal_id, kind, signed, state, proposer, operations, error, created_ms, updated_ms FROM lifecycle_proposals"
        rows = self._query(sql + " WHERE state = ? ORDER BY created_ms, rowid", (state,)) if state else self._query(
            sql + " ORDER BY created_ms, rowid"
        )
        return [_lc(r) for r in rows]
