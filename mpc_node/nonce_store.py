"""The node's FROST nonces (issue 16, RFC 9591 section 5.1): fresh nonce pairs stored sealed, used once.

A mixin of :class:`mpc_node.storage.NodeStore` over the ``frost_nonces`` table (schema step
:data:`NONCE_MIGRATION`, with the ``keys.scheme`` column). One row per nonce pair this node
made for one key at one epoch: ``nonce_id`` (32 random bytes), ``key_id``, ``epoch``, ``signer``
(this node's roster index), the public commitments ``hiding`` / ``binding`` (encoded group
elements), ``created_ms``; while fresh, ``record`` holds the secret nonces sealed at rest under
an AAD binding this node, the key and the nonce id (kind ``frost-nonce``, ident
``key_id || nonce_id``: a blob moved to another row, key or node does not decrypt). A used row is
a tombstone: its ``record`` is NULL (the secret is gone), it keeps ``(request_id, attempt)`` it
signed, the SHA-256 of the signing package and the released ``share`` (an encoded scalar z_i,
public once released: kept to answer a replay).

Invariants (each enforced inside one write transaction):

* :meth:`NonceStore.put_nonces` stores a whole batch or nothing: the key must be active here at
  exactly the batch's epoch, and the key's fresh nonces plus the batch must stay within the cap.
* :meth:`NonceStore.consume_nonce` is a compare-and-set ``fresh -> used`` together with the
  served request, this node's reservation of the attempt, the rate limit
  (``storage._record_served``), the stored share and the audit entry; schema triggers refuse to
  un-use or delete a used row, so a nonce signs at most once even against a buggy caller.
* Deleting (at start, an epoch commit or retirement of the key, a discard) touches fresh rows
  only (``used = 0``).
"""

from __future__ import annotations

import contextlib
import hmac
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mpc_node import audit_outbox
from mpc_node.epoch_store import _key_epoch
from mpcnet.common.stores.sqlite import AddColumn

if TYPE_CHECKING:
    from mpc_node.served_window import ServedWindows
    from mpc_node.storage import ServedRequest
    from mpcnet.common.steadyclock import SteadyClock

KIND_NONCE = b"frost-nonce"
ID_LEN = 32
MAX_ELEMENT = 33  # an encoded group element: 32 bytes ed25519, 33 secp256k1 (SEC1 compressed)
MAX_SHARE = 64

NONCE_MIGRATION: tuple[str | AddColumn, ...] = (
    AddColumn("keys", "scheme", "TEXT NOT NULL DEFAULT 'ecdsa-secp256k1'"),
    "CREATE TABLE IF NOT EXISTS frost_nonces ("
    " nonce_id BLOB PRIMARY KEY CHECK (length(nonce_id) = 32),"
    " key_id BLOB NOT NULL CHECK (length(key_id) = 32),"
    " epoch INTEGER NOT NULL CHECK (epoch >= 0),"
    " signer INTEGER NOT NULL CHECK (signer >= 1),"
    " hiding BLOB NOT NULL, binding BLOB NOT NULL,"
    " record BLOB,"
    " used INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1)),"
    " created_ms INTEGER NOT NULL,"
    " request_id TEXT, attempt INTEGER, package_sha256 BLOB, share BLOB, used_ms INTEGER)",
    "CREATE INDEX IF NOT EXISTS frost_nonces_fresh ON frost_nonces (used, key_id)",
    "CREATE TRIGGER IF NOT EXISTS frost_nonce_used_is_final BEFORE UPDATE ON frost_nonces WHEN OLD.used = 1"
    " BEGIN SELECT RAISE(ABORT, 'nonce already used'); END",
    "CREATE TRIGGER IF NOT EXISTS frost_nonce_used_is_kept BEFORE DELETE ON frost_nonces WHEN OLD.used = 1"
    " BEGIN SELECT RAISE(ABORT, 'nonce already used'); END",
)


class NonceError(Exception):
    """A nonce write refused; ``kind`` is the refusal kind (``epoch``, ``cap``, ``nonce-unknown``,
    ``nonce-used``, ``nonce-mismatch``), ``field`` the request field it names."""

    def __init__(self, kind: str, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.kind, self.field, self.reason = kind, field, reason


@dataclass(frozen=True)
class NonceInfo:
    """The public part of a stored nonce pair (never its secret): ``nonce_id`` (32 B),
    ``key_id`` (32 B), ``epoch``, ``signer`` (roster index), ``hiding`` / ``binding`` (encoded
    commitments D_i, E_i), ``created_ms`` (Unix ms); for a used one ``request_id`` and
    ``attempt`` it signed."""

    nonce_id: bytes
    key_id: bytes
    epoch: int
    signer: int
    hiding: bytes
    binding: bytes
    created_ms: int
    used: bool = False
    request_id: str = ""
    attempt: int = 0


@dataclass(frozen=True)
class FreshNonce:
    """One nonce pair to store: its public part and its secret record (sealed before it is written)."""

    info: NonceInfo
    record: bytes

    def __repr__(self) -> str:  # never the record
        return f"FreshNonce(nonce_id={self.info.nonce_id.hex()[:16]}…)"


_COLUMNS = "nonce_id, key_id, epoch, signer, hiding, binding, created_ms, used, request_id, attempt"


def _row(r: Any) -> NonceInfo:
    return NonceInfo(
        bytes(r[0]), bytes(r[1]), int(r[2]), int(r[3]), bytes(r[4]), bytes(r[5]), int(r[6]), bool(r[7]), str(r[8] or ""), int(r[9] or 0),
    )


class NonceStore:
    """Mixin of :class:`mpc_node.storage.NodeStore`: the FROST nonces (see the module)."""

    if TYPE_CHECKING:
        audit_appended_seq: int
        _served: ServedWindows
        steady: SteadyClock

        def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _write(self, *, tracked: bool = False) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _seal(self, kind: bytes, ident: bytes, plaintext: bytes) -> bytes: ...
        def _unseal(self, kind: bytes, ident: bytes, blob: bytes) -> bytes: ...

    def put_nonces(
        self, key_id: bytes, epoch: int, batch: list[FreshNonce], *, cap: int, audit: audit_outbox.OutboxEntry | None = None,
    ) -> None:
        """Store ``batch`` fresh (secrets sealed), all or nothing, in one transaction with ``audit``.

        Raises :class:`NonceError`: ``nonce-mismatch`` (a nonce of the batch is for another key
        or epoch, or malformed), ``epoch`` (field ``epoch``) unless ``key_id`` is active here at
        exactly ``epoch``; ``cap`` (``count``) if the key's fresh nonces plus the batch would
        exceed ``cap``; ``nonce-used`` if an id exists already (fresh or used: one-time)."""
        for n in batch:
            i = n.info
            if (
                i.key_id != key_id or i.epoch != epoch or len(i.nonce_id) != ID_LEN or i.used
                or not 0 < len(i.hiding) <= MAX_ELEMENT or not 0 < len(i.binding) <= MAX_ELEMENT
            ):
                raise NonceError("nonce-mismatch", "count", "a nonce of the batch is for another key or epoch, or malformed")
        sealed = [(n.info, self._seal(KIND_NONCE, key_id + n.info.nonce_id, n.record)) for n in batch]
        with self._write() as c:
            held = _key_epoch(c, key_id)
            if held is None or held.status != "active" or held.epoch != epoch:
                now = "not active here" if held is None or held.status != "active" else f"at epoch {held.epoch}"
                raise NonceError("epoch", "epoch", f"key {key_id.hex()[:16]} is {now}, not at epoch {epoch}: nothing stored")
            (fresh,) = c.execute("SELECT COUNT(*) FROM frost_nonces WHERE used = 0 AND key_id = ?", (key_id,)).fetchone()
            if int(fresh) + len(batch) > cap:
                raise NonceError("cap", "count", f"{fresh} fresh nonce(s) of key {key_id.hex()[:16]} + {len(batch)} exceed the cap {cap}")
            for info, blob in sealed:
                if c.execute("SELECT 1 FROM frost_nonces WHERE nonce_id = ?", (info.nonce_id,)).fetchone():
                    raise NonceError("nonce-used", "nonce_id", f"nonce {info.nonce_id.hex()[:16]} exists already")
                c.execute(
                    "INSERT INTO frost_nonces (nonce_id, key_id, epoch, signer, hiding, binding, record, used, created_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                    (info.nonce_id, key_id, epoch, info.signer, info.hiding, info.binding, blob, info.created_ms),
                )
            if audit is not None:
                audit_outbox.queue(c, audit, time.time_ns() // 1_000_000, self.audit_appended_seq)

    def frost_nonce(self, nonce_id: bytes) -> tuple[NonceInfo, bytes | None] | None:
        """``(public part, secret record)`` of ``nonce_id`` while fresh, ``(public part, None)``
        once used; None if unknown (never made, discarded or deleted). The record may only be used
        to compute a share released after :meth:`consume_nonce` commits."""
        with self._read() as c:
            r = c.execute(f"SELECT {_COLUMNS}, record FROM frost_nonces WHERE nonce_id = ?", (nonce_id,)).fetchone()
        if r is None:
            return None
        info = _row(r)
        if info.used or r[10] is None:
            return info, None
        return info, self._unseal(KIND_NONCE, info.key_id + nonce_id, bytes(r[10]))

    def nonce_share(self, nonce_id: bytes, request_id: str, attempt: int, package_sha256: bytes | None = None) -> bytes | None:
        """The share released from ``nonce_id`` for exactly ``(request_id, attempt)`` (and, when
        given, the signing package of SHA-256 ``package_sha256``), or None."""
        with self._read() as c:
            r = c.execute(
                "SELECT share, package_sha256 FROM frost_nonces WHERE nonce_id = ? AND used = 1 AND request_id = ? AND attempt = ?",
                (nonce_id, request_id, attempt),
            ).fetchone()
        if r is None or r[0] is None:
            return None
        if package_sha256 is not None and not hmac.compare_digest(bytes(r[1] or b""), package_sha256):
            return None
        return bytes(r[0])

    def consume_nonce(
        self, nonce_id: bytes, share: bytes, *, package_sha256: bytes, epoch: int, served: ServedRequest,
        audit: Callable[[], audit_outbox.OutboxEntry],
    ) -> None:
        """Consume fresh ``nonce_id`` for ``served`` (its ``reservation`` is the attempt): one
        transaction, all or nothing: the secret is deleted and the row keeps ``(request_id,
        attempt, package_sha256, share)``; the request is recorded served (with this node's own
        reservation and the rate limit: :class:`~mpc_node.storage.ReservationConflict`,
        :class:`~mpc_node.storage.RequestAlreadyServed`, :class:`~mpc_node.storage.RateLimited`),
        and ``audit()`` is queued. Raises :class:`NonceError` ``nonce-used`` / ``nonce-unknown``
        (a concurrent consumer won, or a discard) or ``epoch`` (the key is no longer active at
        ``epoch``)."""
        from mpc_node.storage import _check_served, _record_served  # the one served-request rule

        served = _check_served(served)
        res = served.reservation
        if res is None or not 0 < len(share) <= MAX_SHARE or len(package_sha256) != 32:
            raise NonceError("nonce-mismatch", "attempt", "a nonce's share is released only for a reserved attempt")
        with self._write(tracked=True) as c:  # frost_nonces, requests, reservations, audit outbox only
            row = c.execute("SELECT used, key_id FROM frost_nonces WHERE nonce_id = ?", (nonce_id,)).fetchone()
            if row is None:
                raise NonceError("nonce-unknown", "nonce_id", f"no nonce {nonce_id.hex()[:16]} here")
            if row[0]:
                raise NonceError("nonce-used", "nonce_id", f"nonce {nonce_id.hex()[:16]} is used")
            held = _key_epoch(c, bytes(row[1]))
            if held is None or held.status != "active" or held.epoch != epoch:
                raise NonceError("epoch", "epoch", f"the key is no longer active at epoch {epoch} here")
            _record_served(c, served, self._served, self.steady.now_ms)
            cur = c.execute(
                "UPDATE frost_nonces SET record = NULL, used = 1, used_ms = ?, request_id = ?, attempt = ?, package_sha256 = ?,"
                " share = ? WHERE nonce_id = ? AND used = 0",
                (served.now_ms, served.request_id, res.attempt, package_sha256, share, nonce_id),
            )
            if cur.rowcount != 1:  # cannot happen inside the IMMEDIATE transaction
                raise NonceError("nonce-used", "nonce_id", f"nonce {nonce_id.hex()[:16]} is used")
            audit_outbox.queue(c, audit(), time.time_ns() // 1_000_000, self.audit_appended_seq)

    def fresh_nonces(self, key_id: bytes | None = None) -> list[NonceInfo]:
        """The fresh nonces (public parts), of ``key_id`` or of every key, oldest first."""
        where, args = ("AND key_id = ?", (key_id,)) if key_id is not None else ("", ())
        with self._read() as c:
            rows = c.execute(f"SELECT {_COLUMNS} FROM frost_nonces WHERE used = 0 {where} ORDER BY created_ms, rowid", args).fetchall()
        return [_row(r) for r in rows]

    def count_fresh_nonces(self, key_id: bytes | None = None) -> int:
        """How many fresh nonce pairs are stored (of ``key_id``, or all keys)."""
        with self._read() as c:
            if key_id is None:
                (n,) = c.execute("SELECT COUNT(*) FROM frost_nonces WHERE used = 0").fetchone()
            else:
                (n,) = c.execute("SELECT COUNT(*) FROM frost_nonces WHERE used = 0 AND key_id = ?", (key_id,)).fetchone()
        return int(n)

    def discard_nonces(
        self, key_id: bytes, nonce_ids: tuple[bytes, ...] | None = None, *,
        audit: Callable[[int], audit_outbox.OutboxEntry | None] | None = None,
    ) -> int:
        """Delete fresh nonces of ``key_id`` (those in ``nonce_ids``, else all): never a used
        one. ``audit(n)`` is queued in the same transaction (when it returns an entry). Returns
        how many were deleted."""
        with self._write() as c:
            if nonce_ids is None:
                n = delete_fresh_nonces(c, key_id)
            else:
                n = sum(
                    int(c.execute("DELETE FROM frost_nonces WHERE used = 0 AND key_id = ? AND nonce_id = ?", (key_id, i)).rowcount)
                    for i in nonce_ids
                )
            entry = audit(n) if audit is not None else None
            if entry is not None:
                audit_outbox.queue(c, entry, time.time_ns() // 1_000_000, self.audit_appended_seq)
            return n

    def delete_all_fresh_nonces(self, *, audit: Callable[[int], audit_outbox.OutboxEntry | None] | None = None) -> int:
        """At node start: delete every fresh nonce (a restored store, snapshot or copied file
        must never revive one: a nonce used twice reveals the share). Returns how many.
        ``audit(n)`` (None: no entry) is queued in the audit outbox in the deleting transaction."""
        with self._read() as c:
            if c.execute("SELECT 1 FROM frost_nonces WHERE used = 0 LIMIT 1").fetchone() is None:
                return 0
        with self._write() as c:
            n = int(c.execute("DELETE FROM frost_nonces WHERE used = 0").rowcount)
            entry = audit(n) if audit is not None else None
            if entry is not None:
                audit_outbox.queue(c, entry, time.time_ns() // 1_000_000, self.audit_appended_seq)
            return n


def delete_fresh_nonces(c: sqlite3.Connection, key_id: bytes) -> int:
    """Inside the caller's write transaction (an epoch commit or retirement of ``key_id``, a
    discard): delete the key's fresh nonces. Returns how many."""
    return int(c.execute("DELETE FROM frost_nonces WHERE used = 0 AND key_id = ?", (key_id,)).rowcount)
