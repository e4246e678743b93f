"""The node's presignature pool (issue 14): fresh presignatures stored sealed, consumed once.

A mixin of :class:`mpc_node.storage.NodeStore` over the ``presignatures`` table, which migration
9 (:data:`PRESIG_MIGRATION`) extends with public columns, so pool queries need no decryption:
``epoch``, ``path`` and ``signers`` (text, comma-separated; signers are *roster* indices,
increasing), ``big_r`` and ``public_key`` (33-byte compressed points), ``created_ms``, and for a
consumed one the ``(request_id, attempt)`` it signed and the released ``share`` (the
``SignatureShare`` wire bytes, not a secret once released: kept to answer a replay, design D2).

Invariants (each enforced inside one write transaction):

* :meth:`PresigStore.put_presignatures` stores a whole batch or nothing: the key must be active at
  exactly the batch's epoch (so a session that finishes after an epoch commit stores nothing) and
  the key's fresh count plus the batch must stay within the cap.
* :meth:`PresigStore.consume_pool_presignature` is a compare-and-set ``fresh -> used`` together with
  the served request, the node's own reservation of the attempt, the rate limit
  (``storage._record_served``), the stored share and the ``sign-share`` audit entry; the
  schema triggers (migration 1) refuse to un-use or delete a used row.
* Deleting (at start, a ban, a discard, an epoch commit) touches fresh rows only (``used = 0``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mpc_node import audit_outbox
from mpc_node.epoch_store import _key_epoch
from mpcnet.common.stores.sqlite import AddColumn

if TYPE_CHECKING:
    from mpc_node.key_epoch_cache import KeyEpochCache
    from mpc_node.served_window import ServedWindows
    from mpc_node.storage import ServedRequest
    from mpcnet.common.steadyclock import SteadyClock

KIND_PRESIGNATURE = b"presignature"  # the same sealing kinds as mpc_node.storage
KIND_TOMBSTONE = b"presignature-tombstone"
ID_LEN = 32
POINT_LEN = 33
MAX_SHARE = 1024

PRESIG_MIGRATION: tuple[str | AddColumn, ...] = (
    AddColumn("presignatures", "epoch", "INTEGER"),
    AddColumn("presignatures", "path", "TEXT"),
    AddColumn("presignatures", "signers", "TEXT"),
    AddColumn("presignatures", "big_r", "BLOB"),
    AddColumn("presignatures", "public_key", "BLOB"),
    AddColumn("presignatures", "created_ms", "INTEGER NOT NULL DEFAULT 0"),
    AddColumn("presignatures", "request_id", "TEXT"),
    AddColumn("presignatures", "attempt", "INTEGER"),
    AddColumn("presignatures", "share", "BLOB"),
    "CREATE INDEX IF NOT EXISTS presignatures_fresh ON presignatures (used, key_id)",
)


class PoolError(Exception):
    """A pool write refused; ``kind`` is the refusal kind (``epoch``, ``cap``, ``presig-unknown``,
    ``presig-used``, ``presig-mismatch``), ``field`` the request field it names."""

    def __init__(self, kind: str, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.kind, self.field, self.reason = kind, field, reason


@dataclass(frozen=True)
class PoolPresignature:
    """The public part of a stored presignature (never its secret).

    ``presig_id`` (32 B, the sigid), ``key_id`` (32 B), ``epoch``, ``path`` (BIP32 non-hardened
    indices), ``signers`` (roster indices, increasing), ``big_r`` / ``public_key`` (33 B
    compressed R and derived PK'), ``created_ms`` (Unix ms); for a used one ``request_id`` and
    ``attempt`` it signed ("" / 0 while fresh or for a sign-at-once tombstone)."""

    presig_id: bytes
    key_id: bytes
    epoch: int
    path: tuple[int, ...]
    signers: tuple[int, ...]
    big_r: bytes
    public_key: bytes
    created_ms: int
    used: bool = False
    request_id: str = ""
    attempt: int = 0


@dataclass(frozen=True)
class FreshPresignature:
    """One presignature to store: its public part and its fresh record (with the secret; sealed
    before it is written)."""

    info: PoolPresignature
    record: bytes

    def __repr__(self) -> str:  # never the record
        return f"FreshPresignature(presig_id={self.info.presig_id.hex()[:16]}…)"


def _ints(text: object) -> tuple[int, ...]:
    return tuple(int(x) for x in str(text or "").split(",") if x)


def _text(values: tuple[int, ...]) -> str:
    return ",".join(map(str, values))


_COLUMNS = "sigid, key_id, epoch, path, signers, big_r, public_key, created_ms, used, request_id, attempt"


def _row(r: Any) -> PoolPresignature:
    return PoolPresignature(
        bytes(r[0]), bytes(r[1]), int(r[2] or 0), _ints(r[3]), _ints(r[4]), bytes(r[5] or b""), bytes(r[6] or b""),
        int(r[7] or 0), bool(r[8]), str(r[9] or ""), int(r[10] or 0),
    )


def _signer_clause() -> str:
    # the fresh rows of a key whose signer set (text "1,2,3") holds the peer
    return "instr(',' || signers || ',', ',' || ? || ',') > 0"


class PresigStore:
    """Mixin of :class:`mpc_node.storage.NodeStore`: the presignature pool (see the module)."""

    if TYPE_CHECKING:
        audit_appended_seq: int
        _epoch_cache: KeyEpochCache
        _served: ServedWindows
        steady: SteadyClock

        def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _write(self, *, tracked: bool = False) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _seal(self, kind: bytes, ident: bytes, plaintext: bytes) -> bytes: ...
        def _unseal(self, kind: bytes, ident: bytes, blob: bytes) -> bytes: ...

    def put_presignatures(
        self, key_id: bytes, epoch: int, batch: list[FreshPresignature], *, cap: int,
        audit: audit_outbox.OutboxEntry | None = None,
    ) -> None:
        """Store ``batch`` fresh (sealed), all or nothing, in one transaction with ``audit``.

        Raises :class:`PoolError`: ``epoch`` (field ``presign.epoch``) unless ``key_id`` is active
        here at exactly ``epoch``; ``cap`` (``presign.count``) if the key's fresh presignatures
        plus the batch would exceed ``cap``; ``presig-used`` (``presig_id``) if an id exists
        already (fresh or used: one-time)."""
        for p in batch:
            if p.info.key_id != key_id or p.info.epoch != epoch or len(p.info.presig_id) != ID_LEN:
                raise PoolError("presig-mismatch", "presign", "a presignature of the batch is for another key or epoch")
        sealed = [(p.info, self._seal(KIND_PRESIGNATURE, p.info.presig_id, p.record)) for p in batch]
        with self._write(tracked=True) as c:  # presignatures and audit outbox only
            held = self._epoch_cache.get(c, key_id, _key_epoch)
            if held is None or held.status != "active" or held.epoch != epoch:
                now = "not active here" if held is None or held.status != "active" else f"at epoch {held.epoch}"
                raise PoolError("epoch", "presign.epoch", f"key {key_id.hex()[:16]} is {now}, not at epoch {epoch}: nothing stored")
            (fresh,) = c.execute("SELECT COUNT(*) FROM presignatures WHERE used = 0 AND key_id = ?", (key_id,)).fetchone()
            if int(fresh) + len(batch) > cap:
                raise PoolError("cap", "presign.count", f"{fresh} fresh presignature(s) of the key + {len(batch)} exceed the cap {cap}")
            for info, blob in sealed:
                if c.execute("SELECT 1 FROM presignatures WHERE sigid = ?", (info.presig_id,)).fetchone():
                    raise PoolError("presig-used", "presig_id", f"presignature {info.presig_id.hex()[:16]} exists already")
                c.execute(
                    "INSERT INTO presignatures (sigid, key_id, record, used, created_at, epoch, path, signers, big_r, public_key,"
                    " created_ms) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)",
                    (info.presig_id, key_id, blob, info.created_ms // 1000, epoch, _text(info.path), _text(info.signers),
                     info.big_r, info.public_key, info.created_ms),
                )
            if audit is not None:
                audit_outbox.queue(c, audit, time.time_ns() // 1_000_000, self.audit_appended_seq)

    def pool_presignature(self, presig_id: bytes) -> tuple[PoolPresignature, bytes] | None:
        """``(public part, record)`` of ``presig_id``: the fresh record (with the secret) while
        unused, else its tombstone; None if unknown. The record may only be revived
        (:func:`crypto_core.hazmat.presignature.load_presignature`) to compute a share that is
        released after :meth:`consume_pool_presignature` commits."""
        with self._read() as c:
            r = c.execute(f"SELECT {_COLUMNS}, record FROM presignatures WHERE sigid = ?", (presig_id,)).fetchone()
        if r is None:
            return None
        info = _row(r)
        return info, self._unseal(KIND_TOMBSTONE if info.used else KIND_PRESIGNATURE, presig_id, bytes(r[11]))

    def stored_share(self, presig_id: bytes, request_id: str, attempt: int) -> bytes | None:
        """The share released from ``presig_id`` for exactly ``(request_id, attempt)``, or None."""
        with self._read() as c:
            r = c.execute(
                "SELECT share FROM presignatures WHERE sigid = ? AND used = 1 AND request_id = ? AND attempt = ?",
                (presig_id, request_id, attempt),
            ).fetchone()
        return None if r is None or r[0] is None else bytes(r[0])

    def consume_pool_presignature(
        self, presig_id: bytes, tombstone: bytes, share: bytes, *, epoch: int, served: ServedRequest,
        audit: Callable[[], audit_outbox.OutboxEntry],
    ) -> None:
        """Consume fresh ``presig_id`` for ``served`` (its ``reservation`` is the attempt): one
        transaction, all or nothing: the fresh record becomes the sealed ``tombstone`` with
        ``(request_id, attempt, share)``, the request is recorded served (with the node's own
        reservation and the rate limit: :class:`~mpc_node.storage.ReservationConflict`,
        :class:`~mpc_node.storage.RequestAlreadyServed`, :class:`~mpc_node.storage.RateLimited`),
        and ``audit()`` is queued. Raises :class:`PoolError` ``presig-used`` / ``presig-unknown``
        (a concurrent consumer won, or a discard; a ban of a signer committed after the caller's
        check deleted the row in its own transaction: ``NodeStore.add_ban``) or ``epoch`` (the key
        is no longer active at ``epoch``)."""
        from mpc_node.storage import _check_served, _record_served  # the one served-request rule

        served = _check_served(served)
        res = served.reservation
        if res is None or len(share) > MAX_SHARE:
            raise PoolError("presig-mismatch", "attempt", "a pool share is released only for a reserved attempt")
        blob = self._seal(KIND_TOMBSTONE, presig_id, tombstone)
        with self._write(tracked=True) as c:  # presignatures, requests, reservations, audit outbox only
            row = c.execute("SELECT used, key_id FROM presignatures WHERE sigid = ?", (presig_id,)).fetchone()
            if row is None:
                raise PoolError("presig-unknown", "presig_id", f"no presignature {presig_id.hex()[:16]} here")
            if row[0]:
                raise PoolError("presig-used", "presig_id", f"presignature {presig_id.hex()[:16]} is used")
            held = self._epoch_cache.get(c, bytes(row[1]), _key_epoch)
            if held is None or held.status != "active" or held.epoch != epoch:
                raise PoolError("epoch", "epoch", f"the key is no longer active at epoch {epoch} here")
            _record_served(c, served, self._served, self.steady.now_ms)
            cur = c.execute(
                "UPDATE presignatures SET record = ?, used = 1, used_at = ?, request_id = ?, attempt = ?, share = ?"
                " WHERE sigid = ? AND used = 0",
                (blob, int(time.time()), served.request_id, res.attempt, share, presig_id),
            )
            if cur.rowcount != 1:  # cannot happen inside the IMMEDIATE transaction
                raise PoolError("presig-used", "presig_id", f"presignature {presig_id.hex()[:16]} is used")
            audit_outbox.queue(c, audit(), time.time_ns() // 1_000_000, self.audit_appended_seq)

    def fresh_presignatures(self, key_id: bytes | None = None) -> list[PoolPresignature]:
        """The fresh presignatures (public parts), of ``key_id`` or of every key, oldest first."""
        where, args = ("AND key_id = ?", (key_id,)) if key_id is not None else ("", ())
        with self._read() as c:
            rows = c.execute(
                f"SELECT {_COLUMNS} FROM presignatures WHERE used = 0 {where} ORDER BY created_ms, rowid", args
            ).fetchall()
        return [_row(r) for r in rows]

    def count_fresh(self, key_id: bytes | None = None) -> int:
        """How many fresh presignatures are stored (of ``key_id``, or all keys)."""
        with self._read() as c:
            if key_id is None:
                (n,) = c.execute("SELECT COUNT(*) FROM presignatures WHERE used = 0").fetchone()
            else:
                (n,) = c.execute("SELECT COUNT(*) FROM presignatures WHERE used = 0 AND key_id = ?", (key_id,)).fetchone()
        return int(n)

    def discard_presignatures(
        self, key_id: bytes, presig_ids: tuple[bytes, ...] | None = None, *, peer: int | None = None,
        audit: Callable[[int], audit_outbox.OutboxEntry | None] | None = None,
    ) -> int:
        """Delete fresh presignatures of ``key_id`` (those in ``presig_ids``; with ``peer``, those
        whose signers include it; else all): never a used one. ``audit(n)`` is queued in the same
        transaction (when it returns an entry). Returns how many were deleted."""
        with self._write() as c:
            n = _delete_fresh(c, key_id, presig_ids, peer)
            entry = audit(n) if audit is not None else None
            if entry is not None:
                audit_outbox.queue(c, entry, time.time_ns() // 1_000_000, self.audit_appended_seq)
            return n

    def delete_all_fresh_presignatures(self, *, audit: Callable[[int], audit_outbox.OutboxEntry | None] | None = None) -> int:
        """At node start: delete every fresh presignature (a restored store, snapshot or copied file
        cannot revive one, design D5). Returns how many (no commit when there are none).
        ``audit(n)`` (None: no entry) is queued in the audit outbox in the deleting transaction."""
        with self._read() as c:
            if c.execute("SELECT 1 FROM presignatures WHERE used = 0 LIMIT 1").fetchone() is None:
                return 0
        with self._write() as c:
            n = int(c.execute("DELETE FROM presignatures WHERE used = 0").rowcount)
            entry = audit(n) if audit is not None else None
            if entry is not None:
                audit_outbox.queue(c, entry, time.time_ns() // 1_000_000, self.audit_appended_seq)
            return n


def _delete_fresh(c: sqlite3.Connection, key_id: bytes, presig_ids: tuple[bytes, ...] | None, peer: int | None) -> int:
    if presig_ids is not None:
        n = 0
        for pid in presig_ids:
            n += c.execute("DELETE FROM presignatures WHERE used = 0 AND key_id = ? AND sigid = ?", (key_id, pid)).rowcount
        return n
    if peer is not None:
        return int(c.execute(
            f"DELETE FROM presignatures WHERE used = 0 AND key_id = ? AND {_signer_clause()}", (key_id, str(peer))
        ).rowcount)
    return int(c.execute("DELETE FROM presignatures WHERE used = 0 AND key_id = ?", (key_id,)).rowcount)


def delete_fresh_with_peer(c: sqlite3.Connection, key_id: bytes, peer: int) -> int:
    """Inside the caller's write transaction (a ban of ``peer`` on ``key_id``): delete the key's
    fresh presignatures whose signer set includes ``peer``. Returns how many."""
    return _delete_fresh(c, key_id, None, peer)
