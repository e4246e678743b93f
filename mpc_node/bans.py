"""The node's ban registry: which peers it refuses for a key, and the order of consistency checks.

Why: the OT-extension (KOS), RVOLE (mu) and Gamma checks of DKLs23 signing can each be made to
pass or fail depending on one bit of the honest party's long-term OT secret (selective
failure). The protocol is safe only if the *first* failed check bans the peer before any other
check with that peer can run and be observed; concurrent sessions of the same key with the same
peer would otherwise each leak a bit.

Invariants (the service keeps them with this registry):

* A ban-able check of a session of key ``K`` runs only inside :meth:`BanRegistry.hold` of
  ``K`` and *every* peer of the session (one lock per ``(K, peer)``, taken in ascending peer
  order, so two sessions never deadlock), and only after :meth:`BanRegistry.refusal` returned
  ``None`` under those locks. So per ``(K, peer)`` checks run one at a time, and none runs once
  a ban of the peer is pending or recorded.
* :meth:`BanRegistry.record` (called under the locks) first marks the ban *pending* (it counts as
  a ban at once), then writes it to the store (durable, fsynced) with its ``ban`` audit entry
  queued in the store's audit outbox in the same transaction (:mod:`mpc_node.audit_outbox`; so
  does :meth:`BanRegistry.retry`, outcome ``recorded-late``). If the store write fails (a
  full disk), it writes the ban to the :mod:`ban journal <mpc_node.banjournal>` (preallocated at
  start, so this needs no new space): the ban is then durable, and the key stays open. Only if
  the journal write fails too (or the journal is full) is the key *fail-closed*: :meth:`refusal`
  refuses every session of it until :meth:`retry` (run by the node's sweeper) has made every
  pending ban of the key durable (in the store or the journal).
* So :meth:`record` returns only once the ban is durable, or the key is fail-closed; the
  service lets the failing session's answer leave only after it returned.
* Recorded bans are loaded from the store, and journaled bans from the journal (pending, and
  durable), when the registry is built: a restart loses no durable ban. :meth:`retry` moves
  pending bans into the store and then frees their journal slots. Only a ban that neither the
  store nor the journal could take lives in memory only (with its key fail-closed).

Errors: :meth:`record` and :meth:`retry` never raise for a store failure (they report it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Literal

from mpc_node.audit_outbox import OutboxEntry
from mpc_node.banjournal import BanJournal, BanJournalError
from mpc_node.storage import MAX_REASON, NodeStore

log = logging.getLogger("mpc_node.bans")


@dataclass(frozen=True)
class Refusal:
    """Why a session of ``key_id`` may not run a check: ``peer`` is banned (recorded or pending;
    ``reason`` is the ban's reason), or ``peer`` is ``None`` and the key is fail-closed."""

    key_id: bytes
    peer: int | None
    reason: str


@dataclass(frozen=True)
class Ban:
    """A ban: ``key_id`` (32 bytes), ``peer`` (party index), ``reason`` (at most MAX_REASON chars)."""

    key_id: bytes
    peer: int
    reason: str


Outcome = Literal["recorded", "journaled", "not-recorded"]
RECORDED_LATE: Final = "recorded-late"  # moved into the store by retry() (the outcome of its audit entry)
EntryOf = Callable[[Ban, str], OutboxEntry]  # a ban and the outcome of its store write -> its audit entry
RECORDED: Final = "recorded"  # in the store
JOURNALED: Final = "journaled"  # in the ban journal (durable); the sweeper moves it into the store
NOT_RECORDED: Final = "not-recorded"  # in memory only: the key is fail-closed


class BanRegistry:
    """Thread-safe. ``store`` must offer ``add_ban(key_id, peer, reason)`` and ``all_bans()``;
    ``journal`` is the node's ban journal (this registry is its only writer)."""

    def __init__(self, store: NodeStore, journal: BanJournal, *, entry: EntryOf | None = None) -> None:
        """``entry(ban, outcome)`` makes the audit entry queued with each store write of a ban
        (outcome :data:`RECORDED` from :meth:`record`, ``recorded-late`` from :meth:`retry`),
        in the same transaction; None: no entry."""
        self._store = store
        self._journal = journal
        self._entry = entry
        self._mu = threading.Lock()  # guards the dicts below; never held while waiting for anything
        self._recorded: dict[bytes, dict[int, str]] = {k: dict(v) for k, v in store.all_bans().items()}
        self._pending: dict[tuple[bytes, int], str] = {}  # not (known to be) in the store
        self._journaled: dict[tuple[bytes, int], int] = {}  # pending bans in the journal -> slot
        self._stale: list[int] = []  # journal slots whose ban is in the store (to free)
        self._closed: dict[bytes, str] = {}  # key -> why it is fail-closed
        self._in_flight: set[tuple[bytes, int]] = set()  # bans record() is writing now (retry() leaves them to it)
        self._pair_locks: dict[tuple[bytes, int], threading.Lock] = {}
        for e in journal.entries():
            kp = (e.key_id, e.peer)
            if e.peer in self._recorded.get(e.key_id, {}) or kp in self._journaled:
                self._stale.append(e.slot)
            else:
                self._pending[kp] = e.reason
                self._journaled[kp] = e.slot

    # --- queries -----------------------------------------------------------------------------
    def banned(self, key_id: bytes) -> frozenset[int]:
        """Peers banned for ``key_id``: recorded or pending."""
        with self._mu:
            pend = {p for (k, p) in self._pending if k == key_id}
            return frozenset(self._recorded.get(key_id, {})) | frozenset(pend)

    def reason(self, key_id: bytes, peer: int) -> str:
        with self._mu:
            got = self._pending.get((key_id, peer))
            return got if got is not None else self._recorded.get(key_id, {}).get(peer, "")

    def journaled(self, key_id: bytes) -> frozenset[int]:
        """Peers whose ban of ``key_id`` is durable in the journal, not yet in the store."""
        with self._mu:
            return frozenset(p for (k, p) in self._journaled if k == key_id)

    def closed(self, key_id: bytes) -> str | None:
        """Why ``key_id`` is fail-closed (a ban of it could not be written), else ``None``."""
        with self._mu:
            return self._closed.get(key_id)

    def refusal(self, key_id: bytes, peers: Iterable[int]) -> Refusal | None:
        """Whether a session of ``key_id`` with ``peers`` must not run (a banned peer first)."""
        with self._mu:
            rec = self._recorded.get(key_id, {})
            for p in sorted(set(peers)):
                why = self._pending.get((key_id, p), rec.get(p))
                if why is not None:
                    return Refusal(key_id, p, why)
            closed = self._closed.get(key_id)
        return None if closed is None else Refusal(key_id, None, closed)

    # --- check ordering ----------------------------------------------------------------------
    def _lock_of(self, key_id: bytes, peer: int) -> threading.Lock:
        with self._mu:
            lk = self._pair_locks.get((key_id, peer))
            if lk is None:
                lk = self._pair_locks[(key_id, peer)] = threading.Lock()
            return lk

    @contextlib.contextmanager
    def hold(self, key_id: bytes, peers: Iterable[int]) -> Iterator[None]:
        """Hold the check lock of every ``(key_id, peer)``, taken in ascending peer order."""
        locks = [self._lock_of(key_id, p) for p in sorted(set(peers))]
        taken: list[threading.Lock] = []
        try:
            for lk in locks:
                lk.acquire()
                taken.append(lk)
            yield
        finally:
            for lk in reversed(taken):
                lk.release()

    # --- recording ---------------------------------------------------------------------------
    def record(self, key_id: bytes, peer: int, reason: str) -> Outcome:
        """Ban ``peer`` for ``key_id`` (call it holding :meth:`hold` for the peer).

        The ban counts (pending) before this returns, whatever happens. Returns
        :data:`RECORDED` once it is in the store, :data:`JOURNALED` if the store refused the
        write but the ban journal took it (durable either way), :data:`NOT_RECORDED` if both
        failed: the key is then fail-closed until :meth:`retry` makes the ban durable. The first
        reason of a ban is kept (the journal keeps a shortened one).
        """
        reason = reason[:MAX_REASON] or "ban"
        kp = (key_id, peer)
        with self._mu:
            if peer in self._recorded.get(key_id, {}):
                return RECORDED
            self._pending.setdefault(kp, reason)
            self._in_flight.add(kp)  # the sweeper's retry() must not write (and report) it at the same time
        try:
            if self._write(key_id, peer, reason, RECORDED):
                return RECORDED
            if self._journal_ban(key_id, peer, reason):
                return JOURNALED
            with self._mu:
                self._closed[key_id] = "a ban could not be recorded (store and ban journal writes failed)"
            return NOT_RECORDED
        finally:
            with self._mu:
                self._in_flight.discard(kp)

    def retry(self) -> list[Ban]:
        """Write every pending ban to the store (journaling those the store still refuses and
        the journal does not hold yet), except those :meth:`record` is writing at this moment
        (each ban is reported once: by ``record`` or here); free the journal slots of bans now in the store; lift
        fail-closed keys whose pending bans are all durable now. Returns the bans written to
        the store by this call."""
        with self._mu:
            todo = [(kp, reason) for kp, reason in self._pending.items() if kp not in self._in_flight]
            stale, self._stale = self._stale, []
        for slot in stale:
            self._free_slot(slot)
        written = []
        for (key_id, peer), reason in todo:
            if self._write(key_id, peer, reason, RECORDED_LATE):
                written.append(Ban(key_id, peer, reason))
            else:
                self._journal_ban(key_id, peer, reason)
        with self._mu:
            for key_id in [k for k in self._closed if not any(
                pk == k and (pk, pp) not in self._journaled for (pk, pp) in self._pending
            )]:
                del self._closed[key_id]
                log.warning("key %s: pending bans are durable; sessions of the key are accepted again", key_id.hex()[:16])
        return written

    def _write(self, key_id: bytes, peer: int, reason: str, outcome: str) -> bool:
        """The ban and its audit entry (``outcome``) in one store transaction; False if the
        store refused it (nothing written, nothing queued)."""
        try:  # a failure to build the entry counts as a failed write: the ban goes to the journal
            audit = None if self._entry is None else self._entry(Ban(key_id, peer, reason), outcome)
            self._store.add_ban(key_id, peer, reason, audit=audit)
        except Exception as e:  # any failure: fail closed (the message names no secret)
            log.error("key %s: cannot record the ban of party %d (%s: %s)", key_id.hex()[:16], peer, type(e).__name__, e)
            return False
        with self._mu:
            self._pending.pop((key_id, peer), None)
            self._recorded.setdefault(key_id, {}).setdefault(peer, reason)
            slot = self._journaled.pop((key_id, peer), None)
        if slot is not None:
            self._free_slot(slot)
        return True

    def _journal_ban(self, key_id: bytes, peer: int, reason: str) -> bool:
        """Make a pending ban durable in the journal; ``True`` once it is durable somewhere."""
        kp = (key_id, peer)
        with self._mu:
            if kp in self._journaled or kp not in self._pending:
                return True
        try:
            slot = self._journal.put(key_id, peer, reason)
        except (BanJournalError, ValueError) as e:
            log.error("key %s: cannot journal the ban of party %d either (%s)", key_id.hex()[:16], peer, e)
            return False
        with self._mu:
            if kp in self._pending and kp not in self._journaled:
                self._journaled[kp] = slot
                log.warning("key %s: ban of party %d written to the ban journal (slot %d)", key_id.hex()[:16], peer, slot)
                return True
        self._free_slot(slot)  # stored or journaled meanwhile by another thread
        return True

    def _free_slot(self, slot: int) -> None:
        try:
            self._journal.clear(slot)
        except BanJournalError as e:  # harmless: the ban is in the store; retried by the sweeper
            log.warning("%s", e)
            with self._mu:
                self._stale.append(slot)
