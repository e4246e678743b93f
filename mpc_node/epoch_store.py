"""Key epochs in the node's store (issue 11): each key's epoch, threshold and committee, the
pending shares of refresh/reshare sessions and their commit (design section 3).

Tables (schema step :data:`EPOCH_MIGRATION`, additive):

* ``key_epochs(key_id, epoch, committee, state, changed_ms)``: the key's active epoch and
  committee (roster indices, comma-separated, increasing; position k = share index k). A key
  without a row is a legacy key: epoch 0, committee ``1..parties``. ``state`` is ``holding`` or
  ``left`` (this node left the committee at a commit and erased its share; the ``keys`` row
  stays, its record emptied, so the node can still say what happened).
* ``pending_epochs(key_id, session_id, ...)``: what a refresh/reshare session left here: a
  receiver's new share (sealed like an active share, under its own AAD kind) with its signed
  :class:`governance.keyop.EpochReceipt`, or a retiring dealer's marker (no share, no receipt).
  ``released`` says the receipt may have left the node (set in the same transaction that stores
  it, since the answer carrying it follows). ``committed`` marks the row of the session whose
  epoch became active (its share moved to ``keys``; the row keeps the receipt). Committed rows
  are never deleted (a few hundred bytes per epoch): they are this node's memory that it
  confirmed those sessions, so :meth:`EpochStore.discard_epoch` refuses to abandon them even
  after later epochs (an abandonment says the node never confirmed the session).

:meth:`EpochStore.commit_epoch` is one transaction: pending share -> active (epoch, threshold,
committee), old share overwritten (the database runs with ``secure_delete``), every other
uncommitted pending row and every unused presignature of the key deleted; a retiring node empties its
record and marks the key ``left``. Errors: :class:`EpochStateError` (a state conflict the
caller reports as FAILED_PRECONDITION); database failures are the store's ``StoreError``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mpc_node.backup_store import erase_restored

if TYPE_CHECKING:
    from mpc_node.audit_outbox import OutboxEntry
    from mpc_node.key_epoch_cache import KeyEpochCache
    from mpcnet.common.steadyclock import SteadyClock

KIND_PENDING_SHARE = b"keyshare-pending"
HOLDING = "holding"
LEFT = "left"

EPOCH_MIGRATION: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS key_epochs (key_id BLOB PRIMARY KEY CHECK (length(key_id) = 32),"
    " epoch INTEGER NOT NULL CHECK (epoch >= 0), committee TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('holding', 'left')), changed_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pending_epochs (key_id BLOB NOT NULL CHECK (length(key_id) = 32),"
    " session_id BLOB NOT NULL CHECK (length(session_id) = 32), epoch INTEGER NOT NULL CHECK (epoch >= 1),"
    " threshold INTEGER NOT NULL, committee TEXT NOT NULL, op_digest BLOB NOT NULL, record BLOB, receipt BLOB,"
    " retiring INTEGER NOT NULL CHECK (retiring IN (0, 1)), released INTEGER NOT NULL CHECK (released IN (0, 1)),"
    " committed INTEGER NOT NULL DEFAULT 0 CHECK (committed IN (0, 1)), created_ms INTEGER NOT NULL,"
    " PRIMARY KEY (key_id, session_id))",
)


# 5: the roster version of the operation that made each pending outcome and each key's active
# epoch (an unsigned roster-implied reshare may add only nodes that joined the roster after it)
KEY_ROSTER_MIGRATION: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS pending_rosters (key_id BLOB NOT NULL, session_id BLOB NOT NULL,"
    " roster_version INTEGER NOT NULL CHECK (roster_version >= 1), PRIMARY KEY (key_id, session_id))",
    "CREATE TABLE IF NOT EXISTS key_rosters (key_id BLOB PRIMARY KEY CHECK (length(key_id) = 32),"
    " epoch INTEGER NOT NULL, roster_version INTEGER NOT NULL CHECK (roster_version >= 1))",
)

# sessions this node abandoned (DiscardEpoch): it never confirms them (put_pending_epoch refuses)
ABANDONED_MIGRATION: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS abandoned_sessions (key_id BLOB NOT NULL CHECK (length(key_id) = 32),"
    " session_id BLOB NOT NULL CHECK (length(session_id) = 32), created_ms INTEGER NOT NULL,"
    " PRIMARY KEY (key_id, session_id))",
    "CREATE TRIGGER IF NOT EXISTS abandoned_session_is_final BEFORE DELETE ON abandoned_sessions"
    " BEGIN SELECT RAISE(ABORT, 'an abandoned session stays abandoned'); END",
)


class EpochStateError(Exception):
    """The store's key state does not allow the change (reported as FAILED_PRECONDITION)."""


def committee_text(committee: tuple[int, ...]) -> str:
    return ",".join(str(i) for i in committee)


def committee_of(text: str, parties: int) -> tuple[int, ...]:
    """Parse a stored committee; ``""`` (legacy) is ``1..parties``."""
    return tuple(int(x) for x in text.split(",")) if text else tuple(range(1, parties + 1))


@dataclass(frozen=True)
class KeyEpoch:
    """A key's epoch state on this node. ``status``: ``pending`` (DKG not committed), ``active``
    or ``left`` (this node left the committee: it holds no share). ``changed_ms``: when this
    node's current share of the key was made active (Unix ms: ``key_epochs.changed_ms``; a key
    without a row, the key's creation, to the second); what a scheduled refresh measures."""

    key_id: bytes
    public_key: bytes
    label: str
    epoch: int
    threshold: int
    committee: tuple[int, ...]
    status: str
    changed_ms: int = 0


@dataclass(frozen=True)
class PendingEpoch:
    """A refresh/reshare session's outcome on this node (no secret: the share is not loaded)."""

    key_id: bytes
    session_id: bytes
    epoch: int
    threshold: int
    committee: tuple[int, ...]
    op_digest: bytes
    receipt: bytes  # b"" for a retiring dealer
    retiring: bool
    released: bool
    committed: bool


@dataclass(frozen=True)
class CommitOutcome:
    epoch: int
    holds_share: bool
    changed: bool


class EpochStore:
    """Mixin of :class:`mpc_node.storage.NodeStore`: the epoch tables above."""

    if TYPE_CHECKING:
        _epoch_cache: KeyEpochCache

        def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _write(self, *, tracked: bool = False) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _seal(self, kind: bytes, ident: bytes, plaintext: bytes) -> bytes: ...
        def _unseal(self, kind: bytes, ident: bytes, blob: bytes) -> bytes: ...
        def _queue_audit(self, c: sqlite3.Connection, entry: OutboxEntry) -> str: ...
        steady: SteadyClock

    # --- reading -----------------------------------------------------------------------------
    def key_epoch(self, key_id: bytes) -> KeyEpoch | None:
        """The key's epoch state, or None if this node has no row for it (a joining node); from
        the store's memo when it holds the key (:mod:`mpc_node.key_epoch_cache`)."""
        with self._read() as c:
            return self._epoch_cache.get(c, key_id, _key_epoch)

    def key_change_age_ms(self, key_id: bytes) -> int | None:
        """The steady time (ms) since this node's share of ``key_id`` last changed (keygen, a
        committed epoch, leaving), which a wall clock stepped back across a restart does not
        shorten; None without that record (a share from before schema step 13)."""
        with self._read() as c:
            row = c.execute("SELECT steady_ms FROM key_epoch_steady WHERE key_id = ?", (key_id,)).fetchone()
        return None if row is None else self.steady.now_ms() - int(row[0])

    def key_epochs(self) -> dict[bytes, KeyEpoch]:
        """Every key's epoch state (ListKeys)."""
        with self._read() as c:
            ids = [bytes(r[0]) for r in c.execute("SELECT key_id FROM keys").fetchall()]
            out = {}
            for k in ids:
                e = _key_epoch(c, k)
                if e is not None:
                    out[k] = e
            return out

    def pending_epoch(self, key_id: bytes, session_id: bytes) -> PendingEpoch | None:
        with self._read() as c:
            return _pending(c, key_id, session_id)

    def confirmed_session(self, key_id: bytes, epoch: int) -> bytes | None:
        """The session whose receipt for ``epoch`` of the key this node released and which is not
        committed (None if none): a node confirms at most one session per (key, epoch), so that
        two commit certificates for one epoch cannot exist (a coordinator committing one on some
        nodes and the other on the rest would leave no threshold of one polynomial)."""
        with self._read() as c:
            return _confirmed(c, key_id, epoch)

    def pending_share(self, key_id: bytes, session_id: bytes) -> bytes | None:
        """The decrypted pending share record of (key, session), None if absent or retiring."""
        with self._read() as c:
            row = c.execute(
                "SELECT record FROM pending_epochs WHERE key_id = ? AND session_id = ?", (key_id, session_id)
            ).fetchone()
        if row is None or row[0] is None:
            return None
        return self._unseal(KIND_PENDING_SHARE, key_id + session_id, bytes(row[0]))

    # --- writing -----------------------------------------------------------------------------
    def committee_roster_version(self, key_id: bytes, epoch: int) -> int | None:
        """The roster version of the operation that set the key's committee at ``epoch`` (None:
        unknown, e.g. a DKG key at epoch 0 whose committee is the active roster of its DKG)."""
        with self._read() as c:
            row = c.execute("SELECT epoch, roster_version FROM key_rosters WHERE key_id = ?", (key_id,)).fetchone()
        return None if row is None or int(row[0]) != epoch else int(row[1])

    def put_pending_epoch(
        self, p: PendingEpoch, record: bytes | None, *, roster_version: int = 0, audit: OutboxEntry | None = None
    ) -> None:
        """Store a session's outcome (``record``: the new share, None for a retiring dealer),
        durably, with ``released`` set: the receipt leaves in the answer that follows.
        EpochStateError if the key's active epoch here is not ``p.epoch - 1``, the session
        already left a row, or (a receiver) another session's receipt for ``p.epoch`` already
        left this node (:meth:`confirmed_session`). ``roster_version`` (>= 1; 0: unknown) is the
        operation's, recorded for :meth:`committee_roster_version` once committed. ``audit`` (the
        ``key-reshare`` entry) is queued in the audit outbox in the same transaction."""
        if (record is None) != p.retiring:
            raise ValueError("record: a receiver stores a share, a retiring dealer none")
        blob = None if record is None else self._seal(KIND_PENDING_SHARE, p.key_id + p.session_id, record)
        with self._write() as c:
            cur = _key_epoch(c, p.key_id)
            if cur is not None and cur.status == "left" and not p.retiring:
                pass  # it left the committee earlier and joins again (its epoch here is the one it left at)
            elif cur is not None and (cur.status != "active" or cur.epoch != p.epoch - 1):
                raise EpochStateError(f"key {p.key_id.hex()[:16]} is {cur.status} at epoch {cur.epoch} here, not {p.epoch - 1}")
            if _pending(c, p.key_id, p.session_id) is not None:
                raise EpochStateError(f"session {p.session_id.hex()[:12]} already stored its outcome")
            if _abandoned(c, p.key_id, p.session_id):
                raise EpochStateError(f"session {p.session_id.hex()[:12]} was abandoned here: it is never confirmed")
            other = None if p.retiring else _confirmed(c, p.key_id, p.epoch)
            if other is not None:
                raise EpochStateError(
                    f"this node already confirmed epoch {p.epoch} of key {p.key_id.hex()[:16]} in session {other.hex()[:12]}"
                )
            c.execute(
                "INSERT INTO pending_epochs (key_id, session_id, epoch, threshold, committee, op_digest, record, receipt,"
                " retiring, released, committed, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, ?)",
                (p.key_id, p.session_id, p.epoch, p.threshold, committee_text(p.committee), p.op_digest, blob,
                 p.receipt or None, int(p.retiring), _now_ms()),
            )
            if roster_version > 0:
                c.execute(
                    "INSERT OR REPLACE INTO pending_rosters (key_id, session_id, roster_version) VALUES (?, ?, ?)",
                    (p.key_id, p.session_id, roster_version),
                )
            if audit is not None:
                self._queue_audit(c, audit)

    def set_key_committee(self, c: sqlite3.Connection, key_id: bytes, committee: tuple[int, ...]) -> None:
        """Inside a write transaction of the caller: record a new key's committee at epoch 0."""
        c.execute(
            "INSERT OR REPLACE INTO key_epochs (key_id, epoch, committee, state, changed_ms) VALUES (?, 0, ?, 'holding', ?)",
            (key_id, committee_text(committee), _now_ms()),
        )
        _mark_change(c, key_id, self.steady.now_ms())

    def commit_epoch(
        self, key_id: bytes, session_id: bytes, *, label: str, public_key: bytes, epoch: int, scheme: str = "ecdsa-secp256k1",
        audit: Callable[[CommitOutcome], OutboxEntry] | None = None,
    ) -> CommitOutcome:
        """Make the pending outcome of (key, session) the key's active epoch (see the module).

        ``epoch`` is the certificate's; ``label``/``public_key``/``scheme`` (issue 16) are used
        when this node held no row for the key (a joining node). Idempotent: ``changed=False`` once committed.
        ``audit(outcome)`` is queued in the audit outbox in the switching transaction (only when
        it changes something).
        EpochStateError: no pending outcome of the session, or the key is past that epoch."""
        with self._write() as c:
            p = _pending(c, key_id, session_id)
            cur = _key_epoch(c, key_id)
            if p is None:
                at = f"at epoch {cur.epoch}" if cur is not None else "no share"
                raise EpochStateError(f"session {session_id.hex()[:12]} left no pending share of key {key_id.hex()[:16]} here ({at})")
            if p.epoch != epoch:
                raise EpochStateError(f"the certificate is for epoch {epoch}, the session's pending share for epoch {p.epoch}")
            if p.committed:
                if cur is not None and cur.epoch > p.epoch:  # an earlier epoch's row (kept: see discard_epoch)
                    raise EpochStateError(
                        f"the certificate is for epoch {p.epoch}, older than the key's active epoch {cur.epoch} here"
                    )
                return CommitOutcome(p.epoch, cur is not None and cur.status == "active", False)
            if cur is not None and cur.epoch >= p.epoch:
                raise EpochStateError(
                    f"the certificate is for epoch {p.epoch}, older than the key's active epoch {cur.epoch} here"
                )
            if cur is not None and cur.status != "active" and not (cur.status == "left" and not p.retiring):
                raise EpochStateError(f"key {key_id.hex()[:16]} is {cur.status} here")
            now = _now_ms()
            # the old epoch's presignatures and FROST nonces (used ones are tombstones and stay)
            c.execute("DELETE FROM presignatures WHERE key_id = ? AND used = 0", (key_id,))
            c.execute("DELETE FROM frost_nonces WHERE key_id = ? AND used = 0", (key_id,))  # issue 16 (mpc_node/nonce_store.py)
            if p.retiring:
                c.execute("UPDATE keys SET record = X'' WHERE key_id = ?", (key_id,))
                state = LEFT
            else:
                row = c.execute("SELECT record FROM pending_epochs WHERE key_id = ? AND session_id = ?", (key_id, session_id)).fetchone()
                share = self._unseal(KIND_PENDING_SHARE, key_id + session_id, bytes(row[0]))
                from mpc_node.storage import KIND_KEYSHARE  # the active share's AAD kind (no import cycle at load)

                blob = self._seal(KIND_KEYSHARE, key_id, share)
                n = len(p.committee)
                if cur is None:
                    c.execute(
                        "INSERT INTO keys (key_id, label, public_key, threshold, parties, status, created_at, record, scheme)"
                        " VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?)",
                        (key_id, label, public_key, p.threshold, n, now // 1000, blob, scheme),
                    )
                else:
                    c.execute(
                        "UPDATE keys SET record = ?, threshold = ?, parties = ? WHERE key_id = ?", (blob, p.threshold, n, key_id)
                    )
                state = HOLDING
            c.execute(
                "INSERT OR REPLACE INTO key_epochs (key_id, epoch, committee, state, changed_ms) VALUES (?, ?, ?, ?, ?)",
                (key_id, p.epoch, committee_text(p.committee), state, now),
            )
            _mark_change(c, key_id, self.steady.now_ms())
            rv = c.execute(
                "SELECT roster_version FROM pending_rosters WHERE key_id = ? AND session_id = ?", (key_id, session_id)
            ).fetchone()
            if rv is None:
                c.execute("DELETE FROM key_rosters WHERE key_id = ?", (key_id,))
            else:
                c.execute(
                    "INSERT OR REPLACE INTO key_rosters (key_id, epoch, roster_version) VALUES (?, ?, ?)", (key_id, p.epoch, int(rv[0]))
                )
            c.execute("DELETE FROM pending_rosters WHERE key_id = ?", (key_id,))
            # committed rows of earlier epochs stay (no share): this node confirmed those sessions,
            # so it must never sign an abandonment of them (discard_epoch)
            c.execute("DELETE FROM pending_epochs WHERE key_id = ? AND session_id != ? AND committed = 0", (key_id, session_id))
            c.execute(
                "UPDATE pending_epochs SET record = NULL, committed = 1 WHERE key_id = ? AND session_id = ?", (key_id, session_id)
            )
            erase_restored(c, key_id, p.epoch)  # a restored share deals once: the new epoch replaces it
            out = CommitOutcome(p.epoch, state == HOLDING, True)
            if audit is not None:
                self._queue_audit(c, audit(out))
            return out

    def leave_key(
        self, key_id: bytes, *, epoch: int, threshold: int, committee: tuple[int, ...], audit: OutboxEntry | None = None
    ) -> bool:
        """This node is not in the new committee of ``epoch`` and took no part in its session (a
        dropped node that was not a dealer): erase its share, as a retiring dealer does at the
        commit. False if the key already is at ``epoch`` or later here, or this node already left
        (nothing changes);
        EpochStateError if it is not active at ``epoch - 1``. ``audit`` is queued in the audit
        outbox in the erasing transaction (only when it returns True)."""
        with self._write() as c:
            cur = _key_epoch(c, key_id)
            if cur is None:
                raise EpochStateError(f"this node holds no key {key_id.hex()[:16]}")
            if cur.epoch >= epoch or cur.status == "left":
                erase_restored(c, key_id, epoch)  # a restored share of an older epoch never deals again
                return False  # already past it, or holds no share to erase
            if cur.status != "active" or cur.epoch != epoch - 1:
                raise EpochStateError(f"key {key_id.hex()[:16]} is {cur.status} at epoch {cur.epoch} here, not {epoch - 1}")
            c.execute("DELETE FROM presignatures WHERE key_id = ? AND used = 0", (key_id,))
            c.execute("DELETE FROM frost_nonces WHERE key_id = ? AND used = 0", (key_id,))  # issue 16 (mpc_node/nonce_store.py)
            c.execute("UPDATE keys SET record = X'', threshold = ?, parties = ? WHERE key_id = ?", (threshold, len(committee), key_id))
            c.execute(
                "INSERT OR REPLACE INTO key_epochs (key_id, epoch, committee, state, changed_ms) VALUES (?, ?, ?, 'left', ?)",
                (key_id, epoch, committee_text(committee), _now_ms()),
            )
            _mark_change(c, key_id, self.steady.now_ms())
            c.execute("DELETE FROM pending_epochs WHERE key_id = ? AND committed = 0", (key_id,))  # committed ones stay
            c.execute("DELETE FROM pending_rosters WHERE key_id = ?", (key_id,))
            c.execute("DELETE FROM key_rosters WHERE key_id = ?", (key_id,))
            erase_restored(c, key_id, epoch)
            if audit is not None:
                self._queue_audit(c, audit)
            return True

    def discard_epoch(self, key_id: bytes, session_id: bytes, *, audit: Callable[[bool], OutboxEntry] | None = None) -> bool:
        """Abandon (key, session) here, in one transaction: drop its outcome if its receipt never
        left the node (a retiring marker never carries one) and record durably that this node
        never confirms the session (:meth:`put_pending_epoch` refuses it from now on). True if an
        outcome was dropped. EpochStateError if its receipt was released or it is committed
        (nothing changes). ``audit(dropped)`` is queued in the audit outbox in the same transaction."""
        with self._write() as c:
            p = _pending(c, key_id, session_id)
            if p is None:
                _abandon(c, key_id, session_id)
                if audit is not None:
                    self._queue_audit(c, audit(False))
                return False
            if p.committed:
                raise EpochStateError(f"session {session_id.hex()[:12]} is the key's committed epoch {p.epoch} here")
            if p.released and not p.retiring:
                raise EpochStateError(
                    f"the receipt of session {session_id.hex()[:12]} left this node: its pending share is erased by the next commit"
                )
            _abandon(c, key_id, session_id)
            if audit is not None:
                self._queue_audit(c, audit(True))
            return True

    def release_confirmation(
        self, key_id: bytes, session_id: bytes, *, audit: Callable[[PendingEpoch], OutboxEntry] | None = None
    ) -> bool:
        """Erase this node's confirmed (released, uncommitted) outcome of (key, session): a member
        of its new committee proved it abandoned the session, so its certificate can never
        complete. True if a row was erased (then ``audit(the erased outcome)`` is queued in the
        audit outbox in the same transaction)."""
        with self._write() as c:
            p = _pending(c, key_id, session_id)
            if p is None or p.committed:
                return False
            _abandon(c, key_id, session_id)
            if audit is not None:
                self._queue_audit(c, audit(p))
            return True


def _abandon(c: sqlite3.Connection, key_id: bytes, session_id: bytes) -> None:
    """Drop (key, session)'s outcome here, if any, and record that this node never confirms it."""
    c.execute("DELETE FROM pending_epochs WHERE key_id = ? AND session_id = ?", (key_id, session_id))
    c.execute("DELETE FROM pending_rosters WHERE key_id = ? AND session_id = ?", (key_id, session_id))
    c.execute(
        "INSERT OR IGNORE INTO abandoned_sessions (key_id, session_id, created_ms) VALUES (?, ?, ?)",
        (key_id, session_id, _now_ms()),
    )


def _abandoned(c: sqlite3.Connection, key_id: bytes, session_id: bytes) -> bool:
    row = c.execute("SELECT 1 FROM abandoned_sessions WHERE key_id = ? AND session_id = ?", (key_id, session_id)).fetchone()
    return row is not None


def _mark_change(c: sqlite3.Connection, key_id: bytes, steady_ms: int) -> None:
    """Inside a write transaction: key ``key_id``'s share changed at ``steady_ms`` (the store's
    steady clock, ms): the refresh schedule's age counts from it too (``key_epoch_steady``)."""
    c.execute("INSERT OR REPLACE INTO key_epoch_steady (key_id, steady_ms) VALUES (?, ?)", (key_id, steady_ms))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _key_epoch(c: sqlite3.Connection, key_id: bytes) -> KeyEpoch | None:
    row = c.execute(
        "SELECT public_key, label, threshold, parties, status, created_at FROM keys WHERE key_id = ?", (key_id,)
    ).fetchone()
    if row is None:
        return None
    ep = c.execute("SELECT epoch, committee, state, changed_ms FROM key_epochs WHERE key_id = ?", (key_id,)).fetchone()
    if ep is None:
        epoch, committee, state, changed = 0, "", HOLDING, int(row[5]) * 1000
    else:
        epoch, committee, state, changed = int(ep[0]), str(ep[1]), str(ep[2]), int(ep[3])
    status = "left" if state == LEFT else str(row[4])
    return KeyEpoch(key_id, bytes(row[0]), str(row[1]), epoch, int(row[2]), committee_of(committee, int(row[3])), status, changed)


def _confirmed(c: sqlite3.Connection, key_id: bytes, epoch: int) -> bytes | None:
    row = c.execute(
        "SELECT session_id FROM pending_epochs WHERE key_id = ? AND epoch = ? AND retiring = 0 AND released = 1"
        " AND committed = 0 AND receipt IS NOT NULL ORDER BY created_ms LIMIT 1",
        (key_id, epoch),
    ).fetchone()
    return None if row is None else bytes(row[0])


def _pending(c: sqlite3.Connection, key_id: bytes, session_id: bytes) -> PendingEpoch | None:
    row = c.execute(
        "SELECT epoch, threshold, committee, op_digest, receipt, retiring, released, committed FROM pending_epochs"
        " WHERE key_id = ? AND session_id = ?",
        (key_id, session_id),
    ).fetchone()
    if row is None:
        return None
    return PendingEpoch(
        key_id, session_id, int(row[0]), int(row[1]), committee_of(str(row[2]), 0), bytes(row[3]),
        b"" if row[4] is None else bytes(row[4]), bool(row[5]), bool(row[6]), bool(row[7]),
    )
