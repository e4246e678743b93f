"""The coordinator's durable record of presignature pools (issue 14; a mixin of
:class:`coordinator.db.CoordinatorDb`, the table of schema step 7). Public data only: a
presignature's id, its nonce point R and derived public key, never a secret part.

``presigs``: one row per presignature the coordinator ever accepted from a presign session,
with the key, epoch, derivation path and signer set (roster indices) it was made for, and its
state::

    ready --assign (request, attempt)--> assigned --DONE--> used
      \\-----------------------------------------\\--------> discarded

* ``assign`` is a compare-and-set (``state = 'ready'``) in ONE transaction with the request's
  next attempt number (the ``sign_attempts`` row the full protocol also counts), so two
  concurrent assigners never get the same presignature and an assignment always has its
  attempt.
* A presig_id is assigned at most once, ever: triggers refuse ``assigned`` from any state but
  ``ready``, ``ready`` again, a changed request id, leaving ``used``/``discarded``, and every DELETE (so a
  presig_id can never be inserted again as ``ready``).
* ``used`` is set inside the transaction that moves the request to DONE (:meth:`mark_presig_used`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coordinator.by_request import by_request
from coordinator.live_rows import PRESIG_LIVE

PRESIG_STATES = ("ready", "assigned", "used", "discarded")
PRESIG_ID_LEN = 32

POOL_MIGRATION: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS presigs (presig_id BLOB PRIMARY KEY CHECK (length(presig_id) = 32),"
    " key_id BLOB NOT NULL CHECK (length(key_id) = 32), epoch INTEGER NOT NULL CHECK (epoch >= 0),"
    " path TEXT NOT NULL, signers TEXT NOT NULL, big_r BLOB NOT NULL CHECK (length(big_r) = 33),"
    " public_key BLOB NOT NULL CHECK (length(public_key) = 33),"
    " state TEXT NOT NULL CHECK (state IN ('ready', 'assigned', 'used', 'discarded')),"
    " request_id TEXT NOT NULL DEFAULT '', attempt INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',"
    " created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS presigs_by_pool ON presigs (key_id, epoch, path, signers, state)",
    "CREATE INDEX IF NOT EXISTS presigs_by_request ON presigs (request_id) WHERE request_id != ''",
    "CREATE TRIGGER IF NOT EXISTS presig_assigned_once BEFORE UPDATE ON presigs"
    " WHEN NEW.state = 'assigned' AND OLD.state != 'ready'"
    " BEGIN SELECT RAISE(ABORT, 'a presignature is assigned at most once'); END",
    "CREATE TRIGGER IF NOT EXISTS presig_never_ready_again BEFORE UPDATE ON presigs"
    " WHEN NEW.state = 'ready' AND OLD.state != 'ready'"
    " BEGIN SELECT RAISE(ABORT, 'a presignature never becomes ready again'); END",
    "CREATE TRIGGER IF NOT EXISTS presig_request_fixed BEFORE UPDATE ON presigs"
    " WHEN OLD.request_id != '' AND (NEW.request_id != OLD.request_id OR NEW.attempt != OLD.attempt)"
    " BEGIN SELECT RAISE(ABORT, 'a presignature keeps its assignment'); END",
    "CREATE TRIGGER IF NOT EXISTS presig_final BEFORE UPDATE ON presigs"
    " WHEN OLD.state IN ('used', 'discarded') AND NEW.state != OLD.state"
    " BEGIN SELECT RAISE(ABORT, 'a used or discarded presignature is final'); END",
    "CREATE TRIGGER IF NOT EXISTS presig_used_when_assigned BEFORE UPDATE ON presigs"
    " WHEN NEW.state = 'used' AND OLD.state != 'assigned'"
    " BEGIN SELECT RAISE(ABORT, 'only an assigned presignature is used'); END",
    "CREATE TRIGGER IF NOT EXISTS presig_kept BEFORE DELETE ON presigs"
    " BEGIN SELECT RAISE(ABORT, 'presignature rows are kept (a presig_id is never offered again)'); END",
)


PoolKey = tuple[bytes, int, tuple[int, ...], tuple[int, ...]]  # key_id, epoch, path, signers


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _text(xs: Sequence[int]) -> str:
    return ",".join(str(int(x)) for x in xs)


@dataclass(frozen=True)
class PresigRow:
    """One pool presignature: ``presig_id`` (32 bytes, the sigid on every signer), the key
    (32-byte id), ``epoch``, ``path`` (BIP32 indices), ``signers`` (roster indices, increasing),
    ``big_r`` and ``public_key`` (33-byte SEC1: R and the derived PK'), ``state`` (one of
    :data:`PRESIG_STATES`), the ``request_id``/``attempt`` it is assigned to ('' / 0: none),
    times in Unix ms."""

    presig_id: bytes
    key_id: bytes
    epoch: int
    path: tuple[int, ...]
    signers: tuple[int, ...]
    big_r: bytes
    public_key: bytes
    state: str = "ready"
    request_id: str = ""
    attempt: int = 0
    created_ms: int = 0

    @property
    def pool(self) -> PoolKey:
        return (self.key_id, self.epoch, self.path, self.signers)


_COLS = "presig_id, key_id, epoch, path, signers, big_r, public_key, state, request_id, attempt, created_ms"


def _row(r: Any) -> PresigRow:
    return PresigRow(
        bytes(r[0]), bytes(r[1]), int(r[2]), _ints(r[3]), _ints(r[4]), bytes(r[5]), bytes(r[6]), r[7], r[8], int(r[9]), int(r[10])
    )


class PoolStore:
    """Presignature pool operations of :class:`coordinator.db.CoordinatorDb` (which provides
    ``_tx`` and ``_query``)."""

    if TYPE_CHECKING:  # provided by CoordinatorDb

        def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]: ...

    def add_ready_presigs(self, rows: Sequence[PresigRow], now: int) -> None:
        """Store ``rows`` as ``ready`` in one transaction; sqlite3.IntegrityError (and nothing
        stored) if any presig_id was ever stored before (it is never offered again)."""
        with self._tx() as c:
            c.executemany(
                "INSERT INTO presigs (presig_id, key_id, epoch, path, signers, big_r, public_key, state, created_ms, updated_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'ready', ?, ?)",
                [(r.presig_id, r.key_id, r.epoch, _text(r.path), _text(r.signers), r.big_r, r.public_key, now, now) for r in rows],
            )

    def assign_presig(
        self, request_id: str, key_id: bytes, epoch: int, path: Sequence[int], signer_sets: Sequence[Sequence[int]],
        max_attempts: int, now: int,
    ) -> PresigRow | None:
        """Take the oldest ``ready`` presignature of (key, epoch, path) for the first of
        ``signer_sets`` (in order of preference) that has one, and assign it to ``request_id``
        with the request's next attempt number, both in ONE transaction (compare-and-set on
        ``ready``). None (nothing written) if no set has one or the request already took
        ``max_attempts`` attempt numbers."""
        with self._tx() as c:
            return self.assign_presig_in(c, request_id, key_id, epoch, path, signer_sets, max_attempts, now)

    @staticmethod
    def assign_presig_in(
        c: sqlite3.Connection, request_id: str, key_id: bytes, epoch: int, path: Sequence[int],
        signer_sets: Sequence[Sequence[int]], max_attempts: int, now: int,
    ) -> PresigRow | None:
        """:meth:`assign_presig` inside the caller's transaction ``c`` (e.g. the one that moves
        the request to SIGNING: the assignment, its attempt and the quorum commit together)."""
        if request_id and c.execute(
            f"SELECT 1 FROM presigs WHERE {by_request(request_id)} AND state = 'assigned'", (request_id,)
        ).fetchone():
            return None  # one assignment at a time per request
        row = c.execute("SELECT reserved FROM sign_attempts WHERE request_id = ?", (request_id,)).fetchone()
        taken = int(row[0]) if row else 0
        if taken >= max_attempts:
            return None
        for s in signer_sets:
            found = c.execute(
                f"SELECT {_COLS} FROM presigs WHERE key_id = ? AND epoch = ? AND path = ? AND signers = ? AND state = 'ready'"
                f" AND {PRESIG_LIVE} ORDER BY created_ms, presig_id LIMIT 1",
                (key_id, epoch, _text(path), _text(s)),
            ).fetchone()
            if found is None:
                continue
            attempt = taken + 1
            c.execute(
                "INSERT INTO sign_attempts (request_id, reserved, updated_ms) VALUES (?, 1, ?)"
                " ON CONFLICT (request_id) DO UPDATE SET reserved = reserved + 1, updated_ms = excluded.updated_ms",
                (request_id, now),
            )
            cur = c.execute(
                "UPDATE presigs SET state = 'assigned', request_id = ?, attempt = ?, updated_ms = ?"
                " WHERE presig_id = ? AND state = 'ready'",
                (request_id, attempt, now, bytes(found[0])),
            )
            if cur.rowcount != 1:  # cannot happen under the write lock; never assign twice
                raise sqlite3.IntegrityError("presignature assignment lost its compare-and-set")
            r = _row(found)
            return PresigRow(r.presig_id, r.key_id, r.epoch, r.path, r.signers, r.big_r, r.public_key, "assigned",
                             request_id, attempt, r.created_ms)
        return None

    def presigs_of_ended_requests(self) -> list[PresigRow]:
        """``assigned`` presignatures whose signing request already ended (expired, rejected,
        failed, or done without it): never sent again, to be discarded."""
        rows = self._query(  # a probe per assigned row (EXISTS by primary key), not a list of every ended request
            f"SELECT {_COLS} FROM presigs WHERE state = 'assigned' AND {PRESIG_LIVE} AND EXISTS (SELECT 1 FROM sign_requests s"
            " WHERE s.request_id = presigs.request_id AND s.state IN ('done', 'rejected', 'expired', 'failed'))"
        )
        return [_row(r) for r in rows]

    def presig_assigned_to(self, request_id: str) -> PresigRow | None:
        """The presignature assigned to ``request_id`` and not yet used or discarded (None: none)."""
        rows = self._query(f"SELECT {_COLS} FROM presigs WHERE {by_request(request_id)} AND state = 'assigned'", (request_id,))
        return _row(rows[0]) if rows else None

    @staticmethod
    def mark_presig_used(c: sqlite3.Connection, presig_id: bytes, request_id: str, now: int) -> bool:
        """Inside the transaction ``c`` that moves ``request_id`` to DONE: its assigned
        presignature becomes ``used``; False if it was not assigned to it (nothing changed)."""
        cur = c.execute(
            "UPDATE presigs SET state = 'used', updated_ms = ? WHERE presig_id = ? AND request_id = ? AND state = 'assigned'",
            (now, presig_id, request_id),
        )
        return cur.rowcount == 1

    def discard_presigs(self, presig_ids: Sequence[bytes], reason: str, now: int) -> int:
        """Mark these ``ready`` or ``assigned`` presignatures ``discarded``; returns how many."""
        return len(self.discard_presigs_in(presig_ids, reason, now, ("ready", "assigned")))

    def discard_presigs_in(self, presig_ids: Sequence[bytes], reason: str, now: int, states: Sequence[str]) -> list[bytes]:
        """Mark those of ``presig_ids`` that are in one of ``states`` now ``discarded`` (a
        compare-and-set each: a ready one assigned meanwhile is left alone when ``states`` is
        ``("ready",)``); returns the ids discarded."""
        if not presig_ids or not states or any(s not in PRESIG_STATES for s in states):
            return []
        marks = ", ".join("?" for _ in states)
        out: list[bytes] = []
        with self._tx() as c:
            for p in presig_ids:
                if c.execute(
                    f"UPDATE presigs SET state = 'discarded', reason = ?, updated_ms = ? WHERE presig_id = ? AND state IN ({marks})",
                    (reason, now, bytes(p), *states),
                ).rowcount:
                    out.append(bytes(p))
        return out

    def ready_presigs(self, key_id: bytes | None = None) -> list[PresigRow]:
        """Every ``ready`` presignature (of ``key_id``; None: all keys), oldest first."""
        if key_id is None:
            rows = self._query(f"SELECT {_COLS} FROM presigs WHERE state = 'ready' AND {PRESIG_LIVE} ORDER BY created_ms, presig_id")
        else:
            rows = self._query(
                f"SELECT {_COLS} FROM presigs WHERE key_id = ? AND state = 'ready' AND {PRESIG_LIVE} ORDER BY created_ms, presig_id",
                (key_id,),
            )
        return [_row(r) for r in rows]

    def presigs_live(self, presig_ids: Sequence[bytes]) -> set[bytes]:
        """Which of ``presig_ids`` are ``ready`` or ``assigned`` here (a node's fresh copy of any
        other one, never accepted, discarded or used, is of no use)."""
        out: set[bytes] = set()
        for p in presig_ids:
            if self._query("SELECT 1 FROM presigs WHERE presig_id = ? AND state IN ('ready', 'assigned')", (bytes(p),)):
                out.add(bytes(p))
        return out

    def pool_counts(self) -> dict[PoolKey, dict[str, int]]:
        """Per pool (key, epoch, path, signers): how many are ``ready`` and ``assigned``."""
        out: dict[PoolKey, dict[str, int]] = {}
        for key_id, epoch, path, signers, state, n in self._query(
            f"SELECT key_id, epoch, path, signers, state, COUNT(*) FROM presigs WHERE {PRESIG_LIVE}"
            " GROUP BY key_id, epoch, path, signers, state"
        ):
            pool = (bytes(key_id), int(epoch), _ints(path), _ints(signers))
            out.setdefault(pool, {"ready": 0, "assigned": 0})[state] = int(n)
        return out

    def presigs_ready_of_key(self, key_id: bytes) -> int:
        """How many ``ready`` presignatures ``key_id`` has (all epochs, paths and signer sets)."""
        ((n,),) = self._query(f"SELECT COUNT(*) FROM presigs WHERE key_id = ? AND state = 'ready' AND {PRESIG_LIVE}", (key_id,))
        return int(n)

    def signed_presigned(self, request_id: str) -> bool:
        """Whether ``request_id`` was signed from a pool presignature (one is ``used`` for it)."""
        return bool(self._query(f"SELECT 1 FROM presigs WHERE {by_request(request_id)} AND state = 'used' LIMIT 1", (request_id,)))

    def iter_pools(self) -> Iterator[PoolKey]:
        """Every pool with a ready or assigned presignature."""
        yield from self.pool_counts()
