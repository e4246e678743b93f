"""The coordinator's durable record of FROST nonce commitments (issue 16; a mixin of
:class:`coordinator.db.CoordinatorDb`, schema step 8). Public data only: a commitment's id and
its two encoded points (RFC 9591 section 5.1, ``commit``), never a nonce.

``frost_nonces``: one row per commitment a node answered to ``MakeNonces``, for one (key,
epoch, node), with its state::

    fresh --assign (request, attempt)--> assigned        (assigned == spent: never offered again)
      \\------------------------------------------------> discarded

* ``assign`` (:meth:`NonceStore.assign_nonces_in`) takes one fresh commitment per signer in
  ONE transaction with the request's next attempt number (the ``sign_attempts`` counter the
  DKLs paths also use), so two concurrent assigners never get the same commitment and an
  assignment always has its attempt; it is durable before anything is sent.
* A nonce_id is assigned at most once, ever: triggers refuse ``assigned`` from any state but
  ``fresh``, ``fresh`` again, a changed (request, attempt), and every DELETE.
* ``outcome`` of an assigned row ('' | 'signed' | 'bad-share' | 'failed') records what its
  signer answered, so a signer whose share was invalid stays excluded from the request's later
  attempts after a restart too.

``frost_public_shares``: per (key, epoch), every committee member's public share (encoded
group elements, in share-index order), as all nodes agreed at the end of the DKG; the
coordinator checks each signature share against its sender's.

The same step adds ``keys.scheme`` and ``sign_requests.message`` (issue 16).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coordinator.by_request import by_request
from coordinator.live_rows import NONCE_LIVE
from mpcnet.common.stores.sqlite import AddColumn, Migration

NONCE_STATES = ("fresh", "assigned", "discarded")
OUTCOMES = ("", "signed", "bad-share", "failed")
NONCE_ID_LEN = 32

NONCE_MIGRATION: Migration = (
    AddColumn("keys", "scheme", "TEXT NOT NULL DEFAULT 'ecdsa-secp256k1'"),
    AddColumn("sign_requests", "message", "BLOB NOT NULL DEFAULT x''"),
    "CREATE TABLE IF NOT EXISTS frost_nonces (nonce_id BLOB PRIMARY KEY CHECK (length(nonce_id) = 32),"
    " key_id BLOB NOT NULL CHECK (length(key_id) = 32), epoch INTEGER NOT NULL CHECK (epoch >= 0),"
    " node INTEGER NOT NULL CHECK (node >= 1), hiding BLOB NOT NULL CHECK (length(hiding) IN (32, 33)),"
    " binding BLOB NOT NULL CHECK (length(binding) IN (32, 33)),"
    " state TEXT NOT NULL CHECK (state IN ('fresh', 'assigned', 'discarded')),"
    " request_id TEXT NOT NULL DEFAULT '', attempt INTEGER NOT NULL DEFAULT 0,"
    " outcome TEXT NOT NULL DEFAULT '' CHECK (outcome IN ('', 'signed', 'bad-share', 'failed')),"
    " reason TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS frost_public_shares (key_id BLOB NOT NULL CHECK (length(key_id) = 32),"
    " epoch INTEGER NOT NULL CHECK (epoch >= 0), element_len INTEGER NOT NULL CHECK (element_len IN (32, 33)),"
    " shares BLOB NOT NULL CHECK (length(shares) > 0 AND length(shares) % element_len = 0), PRIMARY KEY (key_id, epoch))",
    "CREATE INDEX IF NOT EXISTS frost_nonces_fresh ON frost_nonces (key_id, epoch, node, state)",
    "CREATE INDEX IF NOT EXISTS frost_nonces_by_request ON frost_nonces (request_id) WHERE request_id != ''",
    "CREATE TRIGGER IF NOT EXISTS frost_nonce_assigned_once BEFORE UPDATE ON frost_nonces"
    " WHEN NEW.state = 'assigned' AND OLD.state != 'fresh' AND OLD.state != 'assigned'"
    " BEGIN SELECT RAISE(ABORT, 'a nonce commitment is assigned at most once'); END",
    "CREATE TRIGGER IF NOT EXISTS frost_nonce_never_fresh_again BEFORE UPDATE ON frost_nonces"
    " WHEN NEW.state = 'fresh' AND OLD.state != 'fresh'"
    " BEGIN SELECT RAISE(ABORT, 'a nonce commitment never becomes fresh again'); END",
    "CREATE TRIGGER IF NOT EXISTS frost_nonce_spent BEFORE UPDATE ON frost_nonces"
    " WHEN OLD.state = 'assigned' AND NEW.state != 'assigned'"
    " BEGIN SELECT RAISE(ABORT, 'an assigned nonce commitment is spent'); END",
    "CREATE TRIGGER IF NOT EXISTS frost_nonce_request_fixed BEFORE UPDATE ON frost_nonces"
    " WHEN OLD.request_id != '' AND (NEW.request_id != OLD.request_id OR NEW.attempt != OLD.attempt)"
    " BEGIN SELECT RAISE(ABORT, 'a nonce commitment keeps its assignment'); END",
    "CREATE TRIGGER IF NOT EXISTS frost_nonce_kept BEFORE DELETE ON frost_nonces"
    " BEGIN SELECT RAISE(ABORT, 'nonce commitment rows are kept (a nonce_id is never offered again)'); END",
)


@dataclass(frozen=True)
class NonceRow:
    """One node's nonce commitment: ``nonce_id`` (32 bytes, the node's handle of its secret
    nonce pair), the key (32-byte id), ``epoch``, ``node`` (roster index), ``hiding`` and
    ``binding`` (encoded elements: 32 bytes ed25519, 33 SEC1 secp256k1), ``state`` (one of
    :data:`NONCE_STATES`), the ``request_id``/``attempt`` it is assigned to ('' / 0: none),
    ``outcome`` (:data:`OUTCOMES`), times in Unix ms."""

    nonce_id: bytes
    key_id: bytes
    epoch: int
    node: int
    hiding: bytes
    binding: bytes
    state: str = "fresh"
    request_id: str = ""
    attempt: int = 0
    outcome: str = ""
    created_ms: int = 0


_COLS = "nonce_id, key_id, epoch, node, hiding, binding, state, request_id, attempt, outcome, created_ms"


def _row(r: Any) -> NonceRow:
    return NonceRow(bytes(r[0]), bytes(r[1]), int(r[2]), int(r[3]), bytes(r[4]), bytes(r[5]), r[6], r[7], int(r[8]), r[9], int(r[10]))


class NonceStore:
    """Nonce commitment operations of :class:`coordinator.db.CoordinatorDb` (which provides
    ``_tx`` and ``_query``)."""

    if TYPE_CHECKING:  # provided by CoordinatorDb

        def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]: ...

    def add_fresh_nonces(self, rows: Sequence[NonceRow], now: int) -> None:
        """Store ``rows`` as ``fresh`` in one transaction; sqlite3.IntegrityError (and nothing
        stored) if any nonce_id was ever stored before (it is never offered again)."""
        with self._tx() as c:
            c.executemany(
                f"INSERT INTO frost_nonces ({_COLS}, updated_ms) VALUES (?, ?, ?, ?, ?, ?, 'fresh', '', 0, '', ?, ?)",
                [(r.nonce_id, r.key_id, r.epoch, r.node, r.hiding, r.binding, now, now) for r in rows],
            )

    def fresh_nonce_counts(self, key_id: bytes, epoch: int) -> dict[int, int]:
        """node -> how many fresh commitments of (key, epoch) the coordinator holds."""
        rows = self._query(
            f"SELECT node, COUNT(*) FROM frost_nonces WHERE key_id = ? AND epoch = ? AND {NONCE_LIVE} GROUP BY node",
            (key_id, epoch),
        )
        return {int(n): int(c) for n, c in rows}

    @staticmethod
    def assign_nonces_in(
        c: sqlite3.Connection, request_id: str, key_id: bytes, epoch: int, signers: Sequence[int], max_attempts: int, now: int,
    ) -> tuple[int, dict[int, NonceRow]] | None:
        """Inside the caller's transaction ``c``: the oldest fresh commitment of each of
        ``signers`` for (key, epoch), assigned to (``request_id``, its next attempt number),
        which is taken in ``sign_attempts`` too. None (nothing changed) when a signer has none
        or the request's ``max_attempts`` attempt numbers are all taken."""
        row = c.execute("SELECT reserved FROM sign_attempts WHERE request_id = ?", (request_id,)).fetchone()
        taken = int(row[0]) if row else 0
        if taken >= max_attempts:
            return None
        found: dict[int, NonceRow] = {}
        for node in signers:
            r = c.execute(
                f"SELECT {_COLS} FROM frost_nonces WHERE key_id = ? AND epoch = ? AND node = ? AND {NONCE_LIVE}"
                " ORDER BY created_ms, nonce_id LIMIT 1",
                (key_id, epoch, node),
            ).fetchone()
            if r is None:
                return None
            found[node] = _row(r)
        attempt = taken + 1
        c.execute(
            "INSERT INTO sign_attempts (request_id, reserved, updated_ms) VALUES (?, 1, ?)"
            " ON CONFLICT (request_id) DO UPDATE SET reserved = reserved + 1, updated_ms = excluded.updated_ms",
            (request_id, now),
        )
        out: dict[int, NonceRow] = {}
        for node, n in found.items():
            cur = c.execute(
                "UPDATE frost_nonces SET state = 'assigned', request_id = ?, attempt = ?, updated_ms = ?"
                " WHERE nonce_id = ? AND state = 'fresh'",
                (request_id, attempt, now, n.nonce_id),
            )
            if cur.rowcount != 1:  # cannot happen under the write lock; never assign twice
                raise sqlite3.IntegrityError("nonce assignment lost its compare-and-set")
            out[node] = NonceRow(n.nonce_id, n.key_id, n.epoch, n.node, n.hiding, n.binding, "assigned", request_id, attempt, "",
                                 n.created_ms)
        return attempt, out

    def assign_nonces(
        self, request_id: str, key_id: bytes, epoch: int, signers: Sequence[int], max_attempts: int, now: int,
    ) -> tuple[int, dict[int, NonceRow]] | None:
        """:meth:`assign_nonces_in` in its own transaction."""
        with self._tx() as c:
            return self.assign_nonces_in(c, request_id, key_id, epoch, signers, max_attempts, now)

    def nonces_of(self, request_id: str) -> list[NonceRow]:
        """Every commitment assigned to ``request_id``, by attempt then node."""
        rows = self._query(
            f"SELECT {_COLS} FROM frost_nonces WHERE {by_request(request_id)} ORDER BY attempt, node", (request_id,)
        )
        return [_row(r) for r in rows]

    def set_nonce_outcomes(self, request_id: str, attempt: int, outcomes: Mapping[int, str], now: int) -> None:
        """Record what each signer (roster index) of (``request_id``, ``attempt``) answered."""
        for o in outcomes.values():
            if o not in OUTCOMES:
                raise ValueError(f"outcome: must be one of {OUTCOMES}, got {o!r}")
        with self._tx() as c:
            c.executemany(
                f"UPDATE frost_nonces SET outcome = ?, updated_ms = ? WHERE {by_request(request_id)} AND attempt = ? AND node = ?",
                [(o, now, request_id, attempt, node) for node, o in outcomes.items()],
            )

    def set_frost_public_shares(self, key_id: bytes, epoch: int, shares: Sequence[bytes]) -> None:
        """Record the public shares of (key, epoch) (share-index order, one element length);
        ValueError for an empty list or mixed lengths; an existing record is kept unchanged
        when equal, else sqlite3.IntegrityError (an epoch's shares never change)."""
        with self._tx() as c:
            self.put_frost_public_shares_in(c, key_id, epoch, shares)

    @staticmethod
    def put_frost_public_shares_in(c: sqlite3.Connection, key_id: bytes, epoch: int, shares: Sequence[bytes]) -> None:
        """:meth:`set_frost_public_shares` inside the caller's transaction ``c``."""
        lens = {len(s) for s in shares}
        if not shares or len(lens) != 1 or not lens <= {32, 33}:
            raise ValueError("public_shares: one or more encoded elements of one length (32 or 33 bytes)")
        blob = b"".join(shares)
        old = c.execute("SELECT shares FROM frost_public_shares WHERE key_id = ? AND epoch = ?", (key_id, epoch)).fetchone()
        if old is not None:
            if bytes(old[0]) != blob:
                raise sqlite3.IntegrityError("the public shares of a key's epoch never change")
            return
        c.execute("INSERT INTO frost_public_shares VALUES (?, ?, ?, ?)", (key_id, epoch, lens.pop(), blob))

    def frost_public_shares(self, key_id: bytes, epoch: int) -> tuple[bytes, ...]:
        """The public shares of (key, epoch) in share-index order; () when unknown."""
        rows = self._query("SELECT element_len, shares FROM frost_public_shares WHERE key_id = ? AND epoch = ?", (key_id, epoch))
        if not rows:
            return ()
        n, blob = int(rows[0][0]), bytes(rows[0][1])
        return tuple(blob[i:i + n] for i in range(0, len(blob), n))

    def discard_fresh_nonces(self, key_id: bytes, *, epoch: int | None = None, node: int | None = None, reason: str = "",
                             now: int = 0) -> int:
        """Mark the fresh commitments of ``key_id`` (of one ``epoch`` / ``node`` if given)
        discarded (never offered); how many."""
        sql, args = f"UPDATE frost_nonces SET state = 'discarded', reason = ?, updated_ms = ? WHERE key_id = ? AND {NONCE_LIVE}", [
            reason[:200], now, key_id]
        if epoch is not None:
            sql += " AND epoch = ?"
            args.append(epoch)
        if node is not None:
            sql += " AND node = ?"
            args.append(node)
        with self._tx() as c:
            return int(c.execute(sql, tuple(args)).rowcount)
