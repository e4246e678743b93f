"""Key operations on the coordinator: proposals, orchestration and recovery (design section 4).

A key operation (refresh or reshare, :class:`governance.keyop.SignedKeyOperation`) is
authorized either by an admin quorum (a ``key-operation`` lifecycle proposal, see
:mod:`coordinator.lifecycle_proposals`) or by the roster (:meth:`KeyOperations.start_roster_implied`,
no signatures: every node checks that it is exactly the reshare its roster implies). The
coordinator checks the operation against its own key record (id, public key, chain code, old
epoch, threshold and committee) and roster (version, new committee active); every node checks
it again against its own state, so a coordinator cannot make the nodes do anything else.

Orchestration of one operation (a durable ``key_operations`` row, state ``running`` ->
``committing`` -> ``done`` | ``failed``):

1. dealers = old committee ∩ active roster ∩ reachable ∩ holding a share of the old epoch
   (``GetPendingEpoch``; a share restored by a recovery order counts; a member holding none,
   wiped or replaced, only receives) — all of them if available, at least the old threshold; a
   refresh needs the whole committee; the session id and dealers are recorded before any node
   hears of the session;
2. :func:`coordinator.relay.run_session` over the dealers and the new committee;
3. the receipts of every new-committee node are verified as a commit certificate against the
   coordinator's own roster, then **the decision point**, one transaction: certificate, state
   ``committing``, the key's new epoch/threshold/committee and its audit entry;
4. ``CommitEpoch`` is pushed to every old and new committee node until all switched (retried in
   the background; dropped nodes that are revoked or gone are skipped); then ``done``.

A failure before the decision sends ``DiscardEpoch`` to the participants and marks the operation
``failed``: the key stays in its old epoch and the same operation may run again while that epoch
is current (proposing it again restarts it). After a restart (:meth:`KeyOperations.resume`): a
``running`` operation asks ``GetPendingEpoch`` of every new-committee node for its last session
and proceeds to the decision if each holds its receipt, else discards and fails; a
``committing`` one continues pushing. Every step is audited (``key-operation``).

FROST keys (issue 16) run the same way with a KeyOperation v2 (naming the key's scheme); at the
decision the new epoch's public shares every new holder reported are checked against the
certificate's state digest (:mod:`coordinator.frost_keyops`) and recorded in the decision's
transaction, with the old epoch's fresh nonce commitments discarded. Roster-implied reshares and
scheduled refreshes include them; backups of FROST keys are coordinated by :mod:`coordinator.backups`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

from coordinator.config import DEFAULT_RECHECK_S
from coordinator.db import AuditEvent, CoordinatorDb, KeyRecord, now_ms
from coordinator.foreground import Foreground
from coordinator.frost_keyops import PublicSharesRefused, new_epoch_public_shares
from coordinator.keyop_store import LIVE, KeyOpRecord
from coordinator.lifecycle_proposals import Proposed
from coordinator.liveness import recheck
from coordinator.relay import Aborted, NodeHandle, NodesUnavailable, Refused, fanout, run_session
from coordinator.schemes import is_frost
from coordinator.store_failure import one_line, store_failure
from governance.errors import GovernanceError
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation, check_authorized, verify_commit_certificate
from governance.policy import AdminSet
from governance.roster import Roster, active_entries
from mpcnet.common.rpc import RpcError, status_of
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

log = logging.getLogger("coordinator.keyops")
Code = grpc.StatusCode
KIND = "key-operation"
PUSH_RETRY_S = 2.0
NO_ROSTER = "the coordinator has no signed roster (config governance.roster_history)"


RECONCILE_BACKOFF_MAX_MS = 3_600_000  # the background pass retries a failing roster-implied reshare at least hourly
SETTLE_WAIT_S = 10.0  # how long a failed session waits for a crashed node's receipt
STORE_RETRY_S = 1.0  # an operation stopped by a store failure resumes after this many seconds (doubling)
STORE_RETRY_MAX_S = 30.0  # ... up to this many seconds between tries


class OperationFailed(Exception):
    """An operation failed before its decision point (the key stays in its old epoch)."""


class KeyOperations:
    """Key operations of one coordinator; ``roster()`` is the roster in force (None: legacy),
    ``nodes`` the live node handles by roster index, ``flush()`` appends queued audit entries."""

    def __init__(
        self, admins: AdminSet, db: CoordinatorDb, audit: AuditLog, nodes: Mapping[int, NodeHandle],
        roster: Callable[[], Roster | None], flush: Callable[[], None], *, timeout_s: float, name: str = "coordinator",
    ) -> None:
        self.admins = admins
        self.db = db
        self.audit = audit
        self.nodes = nodes
        self.roster = roster
        self.flush = flush
        self.timeout_s = timeout_s
        self.name = name
        # test mode (coordinator.faults): called at each durable step ("recorded", "round-R",
        # "receipts", "decided", "pushed"); it can only crash or delay the process
        self.fault: Callable[[str], None] | None = None
        self.on_done: Callable[[bytes], None] | None = None  # called with the key id once an operation is done (new backups)
        # an operation's session holds its key and nodes here: background refills stand aside (coordinator.foreground)
        self.foreground = Foreground()
        self.recheck_s = DEFAULT_RECHECK_S  # the second health check's deadline (s) before failing for down nodes
        self.on_back: Callable[[int], None] | None = None  # a node judged down answered that second check
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        # operations whose run ended by an unexpected error (their row stays running until the next
        # start resumes them): nothing works on their key meanwhile, so the refills need not stand aside
        self._stalled: set[str] = set()
        # op id -> key id of the rows in state running, as last read (None: read the database at
        # the next busy_keys); rows only enter that state here, so it is read again only after
        # one did (:meth:`_running_changed`), not on every refiller pass over a table that only grows
        self._running: dict[str, bytes] | None = None
        self._running_gen = 0
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    # --- checks ------------------------------------------------------------------------------
    def _key(self, key_id: bytes, field: str) -> KeyRecord:
        k = self.db.get_key(key_id)
        if k is None:
            raise RpcError(Code.NOT_FOUND, f"{field}.key_id: unknown key {key_id.hex()}")
        if k.status != "active":
            raise RpcError(Code.FAILED_PRECONDITION, f"{field}.key_id: key {key_id.hex()[:16]} is {k.status}, not active")
        return k

    def epoch_of(self, k: KeyRecord) -> tuple[int, tuple[int, ...]]:
        """(epoch, committee) of key ``k`` in the coordinator's record."""
        return self.db.key_epoch(k.key_id, k.parties)

    def check(self, op: KeyOperation, field: str = "signed_operation.operation") -> Roster:
        """``op`` matches the key's record and the roster in force; returns the roster.
        RpcError naming ``<field>.<name>``."""
        if op.governance_root != self.admins.digest():
            raise RpcError(Code.PERMISSION_DENIED, f"{field}.governance_root: names another governance root")
        k = self._key(op.key_id, field)
        if op.scheme != k.scheme:  # issue 16: a FROST key's operation names its scheme (KeyOperation v2)
            raise RpcError(Code.FAILED_PRECONDITION, f"{field}.scheme: is {op.scheme}, key {op.key_id.hex()[:16]} is a {k.scheme} key")
        if op.public_key != k.public_key:
            raise RpcError(Code.FAILED_PRECONDITION, f"{field}.public_key: differs from key {op.key_id.hex()[:16]}'s")
        if op.chain_code != k.chain_code:
            raise RpcError(Code.FAILED_PRECONDITION, f"{field}.chain_code: differs from key {op.key_id.hex()[:16]}'s")
        epoch, committee = self.epoch_of(k)
        for name, want, got in (
            ("old_epoch", epoch, op.old_epoch), ("old_threshold", k.threshold, op.old_threshold),
            ("old_committee", committee, op.old_committee),
        ):
            if want != got:
                shown = list(got) if isinstance(got, tuple) else got
                expected = list(want) if isinstance(want, tuple) else want
                raise RpcError(Code.FAILED_PRECONDITION, f"{field}.{name}: is {shown}, the key's is {expected}")
        roster = self.roster()
        if roster is None:
            raise RpcError(Code.FAILED_PRECONDITION, f"{field}: {NO_ROSTER}")
        if op.roster_version != roster.version:
            raise RpcError(
                Code.FAILED_PRECONDITION, f"{field}.roster_version: is {op.roster_version}, the roster in force is version {roster.version}"
            )
        active = {e.index for e in active_entries(roster)}
        absent = [i for i in op.new_committee if i not in active]
        if absent:
            raise RpcError(
                Code.FAILED_PRECONDITION, f"{field}.new_committee: node {absent[0]} is not active in roster version {roster.version}"
            )
        return roster

    # --- the "key-operation" lifecycle kind ---------------------------------------------------
    def decode_proposal(self, data: bytes) -> Proposed:
        """For :class:`coordinator.lifecycle_proposals.LifecycleProposals` (kind ``key-operation``)."""
        try:
            signed = SignedKeyOperation.from_bytes(data)
        except GovernanceError as e:
            raise RpcError(Code.INVALID_ARGUMENT, f"signed_operation.{e.field}: {e.reason}") from None
        op = signed.operation
        if self.db.get_key_operation(op.proposal_id) is None:  # one recorded was checked at its start (apply_proposal)
            self.check(op)

        def rebuild(sigs: tuple[Any, ...]) -> bytes:
            return SignedKeyOperation(op, sigs).to_bytes()

        return Proposed(op.proposal_id, op.encode(), signed.signatures, rebuild, _details(op))

    def apply_proposal(self, data: bytes, actor: str) -> list[str]:
        """At the admin quorum: start the operation (in the background). Idempotent: an
        operation already recorded for this proposal (its start committed, then the coordinator
        was killed or its store failed before the proposal was marked applied) is not started
        again; its id is returned so the proposal is recorded applied (review 2: it stayed pending
        at its quorum for ever, a re-approval's start refused ALREADY_EXISTS)."""
        signed = SignedKeyOperation.from_bytes(data)
        if self.db.get_key_operation(signed.operation.proposal_id) is not None:
            return [signed.operation.proposal_id]
        roster = self.check(signed.operation)
        try:
            how = check_authorized(signed, self.admins, roster)
        except GovernanceError as e:
            raise RpcError(Code.PERMISSION_DENIED, f"signed_operation.{e.field}: {e.reason}") from None
        return [self.start(signed, how, actor)]

    # --- starting ----------------------------------------------------------------------------
    def start(self, signed: SignedKeyOperation, authorized_by: str, actor: str, *, wait: bool = False) -> str:
        """Record the operation and run it (in a background thread unless ``wait``). A failed
        operation proposed again runs again. Returns its id; RpcError FAILED_PRECONDITION if
        another operation of the key is not finished."""
        op = signed.operation
        t = now_ms()
        rec = KeyOpRecord(op.proposal_id, op.key_id, signed.to_bytes(), authorized_by, "running", b"", (), (), (), "", 0, t, t)
        try:
            created = self.db.add_key_operation(rec, self._event(actor, "started", op, authorized_by=authorized_by))
        except ValueError as e:
            raise RpcError(Code.FAILED_PRECONDITION, f"signed_operation.operation.key_id: {e}") from None
        if not created:
            old = self.db.get_key_operation(rec.op_id)
            assert old is not None
            if old.state != "failed" or not self.db.restart_key_operation(rec.op_id, self._event(actor, "restarted", op), now_ms()):
                raise RpcError(Code.ALREADY_EXISTS, f"operation_id: operation {rec.op_id} is {old.state}")
        self._running_changed()  # recorded running: the refills stand aside for its key from now
        try:
            self.flush()  # the queued audit entries (the start itself is in the same transaction as the row)
        finally:  # recorded running, so it must run: a failed flush (retried later) must not leave it idle
            log.info("key %s: %s operation %s started (%s)", op.key_id.hex()[:16], op.kind.name.lower(), rec.op_id, authorized_by)
            if wait:
                self.run(rec.op_id)
            else:
                self._spawn(rec.op_id)
        return rec.op_id

    def start_roster_implied(self, key_id: bytes, roster: Roster, *, wait: bool = False) -> str | None:
        """The reshare that ``roster`` (the roster in force) implies for ``key_id``, unsigned
        (authorized by the roster), same threshold: a committee holding nodes no longer active
        drops them (adding nobody); otherwise to exactly the active nodes. None if the key's
        committee already is the active nodes. RpcError if it cannot be built (e.g. fewer
        active nodes than the threshold) or another operation of the key is not finished."""
        k = self._key(key_id, "key")
        epoch, committee = self.epoch_of(k)
        active = tuple(e.index for e in active_entries(roster))
        if committee == active:
            return None
        # a committee holding a node no longer active drops it and adds nobody (an admin-chosen
        # committee keeps the nodes it left out, out); else it follows the active nodes
        kept = tuple(i for i in committee if i in active)
        new = kept if kept != committee else active
        try:
            op = KeyOperation(
                self.admins.digest(), os.urandom(16), KeyOpKind.RESHARE, key_id, k.public_key, k.chain_code, epoch, k.threshold,
                committee, k.threshold, new, roster.version, f"roster version {roster.version}", scheme=k.scheme,
            )
        except GovernanceError as e:
            raise RpcError(
                Code.FAILED_PRECONDITION, f"key: cannot reshare key {key_id.hex()[:16]} to the roster: {e.field}: {e.reason}"
            ) from None
        return self.start(SignedKeyOperation(op), "roster", self.name, wait=wait)

    def follow_roster(self, old: Roster | None, new: Roster) -> list[str]:
        """After a membership change (``old`` -> ``new``): start, in the background, the
        roster-implied reshare of every active key that followed the roster (its committee was
        ``old``'s active nodes) or that a revocation concerns (its committee holds a node that is
        not active in ``new``). A key an admin reshared to a committee of its own choosing is left
        alone unless it holds a revoked node. Returns the ids of the operations started; a key
        that cannot be reshared (e.g. fewer active nodes than its threshold, another operation
        running) is logged and skipped."""
        before = None if old is None else tuple(e.index for e in active_entries(old))
        active = {e.index for e in active_entries(new)}
        ids: list[str] = []
        for k in self.db.list_keys("active"):
            _, committee = self.epoch_of(k)
            if committee != before and all(i in active for i in committee):
                continue
            try:
                op_id = self.start_roster_implied(k.key_id, new)
            except RpcError as e:
                log.error("key %s: no roster-implied reshare to roster version %d: %s", k.key_id.hex()[:16], new.version, e.message)
                continue
            if op_id is not None:
                ids.append(op_id)
        return ids

    def committing_with(self, nodes: set[int]) -> list[str]:
        """Ids of the operations still switching nodes to a new epoch (state committing) whose
        old or new committee holds one of ``nodes``."""
        out = []
        for rec in self.db.list_key_operations(states=("committing",)):
            op = self._op(rec)
            if nodes & (set(op.old_committee) | set(op.new_committee)):
                out.append(rec.op_id)
        return out

    def reconcile(self, roster: Roster, *, backoff_ms: int = 30_000, history: Sequence[Roster] = ()) -> list[str]:
        """The background check (every health interval): an active key whose committee still
        holds a node that is not active in ``roster`` (a revocation whose reshare failed, or the
        coordinator was killed between applying the roster change and starting the reshares) and
        has no live operation gets its roster-implied reshare, ``backoff_ms`` after a failed one,
        doubling with each failure in a row (at most :data:`RECONCILE_BACKOFF_MAX_MS`), so a
        reshare that cannot succeed (a new-committee node down for good) does not add a failed
        operation and its audit entries every 30 s forever. A key whose roster-implied reshare to
        the active nodes failed (a node added before its operator started it) is retried the same
        way, once every active node answers health checks; the first retry at once (also after a
        revocation's drop-only reshare interrupted that follow: :meth:`_failed_follow`). A key
        whose follow of a membership change was never started (the coordinator was killed between
        applying the roster change and starting its reshares; the change's proposal is then
        recorded applied with nothing run again: :func:`_missed_follow` over ``history``, every
        roster version in force so far, oldest first) gets it now, once (its operation names the
        roster in force, so it is not started again; a failure is retried as above). Returns the
        ids started."""
        active = {e.index for e in active_entries(roster)}
        now = self.db.expiry_ms(now_ms())  # expiry clock: a wall clock stepped back does not undo the backoff
        ids: list[str] = []
        for k in self.db.list_keys("active"):
            epoch, committee = self.epoch_of(k)
            ops, wait_ms, missed = None, backoff_ms, None
            if all(i in active for i in committee):
                # an added node: the follow failed (the node was not up yet); retried once all answer
                ops = self.db.list_key_operations(k.key_id)
                if tuple(committee) == tuple(sorted(active)):
                    continue
                missed = _missed_follow(committee, ops, history)
                if missed is None:  # else started now, as the roster change would have (a failure is retried below)
                    if not self._failed_follow(ops, epoch):
                        continue
                    if not all(getattr(self.nodes.get(i), "healthy", None) is True for i in active):
                        continue
                    if _failures(ops) == 1:
                        wait_ms = 0  # the first retry, as soon as every node of the new committee answers
            ops = self.db.list_key_operations(k.key_id) if ops is None else ops
            if any(o.state in LIVE for o in ops) or now < _retry_at(ops, wait_ms, now):
                continue
            try:
                op_id = self.start_roster_implied(k.key_id, roster)
            except RpcError as e:
                log.warning("key %s: roster-implied reshare not started: %s", k.key_id.hex()[:16], e.message)
                continue
            if op_id is not None:
                if missed is not None:
                    log.warning("key %s: the reshare roster version %d called for was never started (a restart between "
                                "the change and its reshares); started now as %s", k.key_id.hex()[:16], missed, op_id)
                ids.append(op_id)
        return ids

    def _failed_follow(self, ops: list[KeyOpRecord], epoch: int) -> bool:
        """Whether the newest of ``ops`` is a failed roster-implied reshare from the key's current
        ``epoch`` that added nodes (a node added while it was not yet running): the key follows
        the roster, and its retry goes to the active nodes of the roster in force. Likewise when
        the newest is a done roster-implied reshare that only dropped nodes (a revocation) right
        after such a failed follow from its own old epoch: the revocation interrupted the follow,
        the key still follows the roster (its committee is not an admin's choice)."""
        if not ops or ops[-1].authorized_by != "roster" or ops[-1].state not in ("failed", "done"):
            return False
        try:
            op = self._op(ops[-1])
        except GovernanceError:
            return False
        if ops[-1].state == "done":
            dropped = set(op.new_committee) < set(op.old_committee)
            return dropped and op.new_epoch == epoch and self._failed_follow(ops[:-1], op.old_epoch)
        return op.old_epoch == epoch and set(op.new_committee) > set(op.old_committee)

    def resume(self, *, wait: bool = False) -> None:
        """After a restart: continue every operation that is running or committing (first
        marking applied the proposal of each, see :meth:`_settle_proposal`)."""
        for rec in self.db.list_key_operations(states=LIVE):
            try:
                self._settle_proposal(rec)
            except Exception:  # one operation's proposal bookkeeping must not keep the others from resuming
                log.exception("key operation %s: its lifecycle proposal could not be marked applied (retried at the next start)",
                              rec.op_id)
            if wait:
                self.run(rec.op_id, resuming=True)
            else:
                self._spawn(rec.op_id, resuming=True)

    def _settle_proposal(self, rec: KeyOpRecord) -> None:
        """A coordinator killed between recording an admin-approved operation and marking its
        lifecycle proposal applied (two transactions) left the proposal pending at its quorum
        although the operation runs: mark it applied now (audited ``lifecycle-apply`` applied,
        ``recovered``), as the apply would have."""
        if rec.authorized_by == "roster":
            return
        p = self.db.get_lifecycle_proposal(rec.op_id)
        if p is None or p.kind != KIND or p.state != "pending":
            return
        self.db.put_lifecycle_proposal(dataclasses.replace(p, state="applied", operations=(rec.op_id,), error="", updated_ms=now_ms()))
        self.audit.append(self.name, "lifecycle-apply", outcome="applied", details={
            "proposal": rec.op_id, "kind": KIND, "operations": rec.op_id, "recovered": True,
        })
        log.info("lifecycle proposal %s (%s): its operation was recorded before a restart; marked applied", rec.op_id, KIND)

    def _spawn(self, op_id: str, resuming: bool = False) -> None:
        threading.Thread(target=self._drive, args=(op_id, resuming), name=f"keyop-{op_id[:8]}", daemon=True).start()

    def _drive(self, op_id: str, resuming: bool) -> None:
        """Run ``op_id`` on this thread until it ends here. While the coordinator cannot use its
        database or audit log (disk full, read-only, I/O error: :func:`coordinator.store_failure.store_failure`)
        it waits (:data:`STORE_RETRY_S`, doubling up to :data:`STORE_RETRY_MAX_S`) and resumes the
        operation from what is durable, as a restart would (its row stays ``running`` or
        ``committing`` and its key busy meanwhile), instead of leaving it stuck until the next start.
        Any other unexpected error stops it until the next start."""
        delay = STORE_RETRY_S
        while True:
            try:
                self.run(op_id, resuming=resuming)
                return
            except Exception as e:
                what = store_failure(e)
                if what is None:
                    log.exception("key operation %s: unexpected error (it resumes at the next start)", op_id)
                    return
                log.error("key operation %s: the coordinator cannot use its %s (%s); resuming it in %.0f s",
                          op_id, what, one_line(e), delay)
                with self._lock:  # still to run here: its key stays busy (busy_keys) while it waits
                    self._stalled.discard(op_id)
                self._running_changed()
            if self._stop.wait(delay):
                return
            delay, resuming = min(delay * 2, STORE_RETRY_MAX_S), True

    # --- running -----------------------------------------------------------------------------
    def run(self, op_id: str, *, resuming: bool = False) -> str:
        """Drive operation ``op_id`` as far as it goes; returns its final state here."""
        with self._lock:
            lock = self._locks.setdefault(op_id, threading.Lock())
        with lock:
            with self._lock:
                self._stalled.discard(op_id)
            try:
                return self._run(op_id, resuming)
            except Exception:
                with self._lock:  # its key is no longer busy here (busy_keys) until the next start resumes it
                    self._stalled.add(op_id)
                raise
            finally:
                self._running_changed()  # it may have left state running

    def _running_changed(self) -> None:
        """A row may have entered or left state running: :meth:`busy_keys` reads them again."""
        with self._lock:
            self._running = None
            self._running_gen += 1

    def _run(self, op_id: str, resuming: bool) -> str:
        rec = self.db.get_key_operation(op_id)
        if rec is None:
            raise RpcError(Code.NOT_FOUND, f"operation_id: unknown operation {op_id}")
        if rec.state == "running":
            op = self._op(rec)
            try:
                with self.foreground.hold(f"key operation {op_id}", keys=(op.key_id,),
                                          nodes=set(op.old_committee) | set(op.new_committee)):
                    if resuming and rec.session_id:
                        self._recover(rec)
                    else:
                        self._session(rec)
            except OperationFailed as e:
                self._failed(rec, str(e))
                return "failed"
        self._push(op_id)
        cur = self.db.get_key_operation(op_id)
        return cur.state if cur is not None else "unknown"

    def _op(self, rec: KeyOpRecord) -> KeyOperation:
        return SignedKeyOperation.from_bytes(rec.signed).operation

    def _session(self, rec: KeyOpRecord) -> None:
        op = self._op(rec)
        try:
            roster = self.check(op, "operation")
        except RpcError as e:
            raise OperationFailed(e.message) from None
        active = {e.index for e in active_entries(roster)}
        up = self._available(rec.op_id, op, active)
        if op.kind is KeyOpKind.REFRESH and tuple(up) != op.old_committee:
            down = sorted(set(op.old_committee) - set(up))
            raise OperationFailed(f"a refresh needs the whole committee; unavailable: node(s) {down}")
        if len(up) < op.old_threshold:
            raise OperationFailed(f"needs {op.old_threshold} dealers of the old committee, only {len(up)} available ({up})")
        missing = [i for i in op.new_committee if i not in self.nodes]
        if missing:
            raise OperationFailed(f"node {missing[0]} of the new committee has no connection here")
        dealers = self._dealers(op, up)
        self._settle_failed_sessions(op)
        sid = os.urandom(32)
        self.db.key_operation_session(rec.op_id, sid, dealers, now_ms())  # durable before any node hears of it
        self._at("recorded")
        parts = sorted(set(dealers) | set(op.new_committee))
        k = self.db.get_key(op.key_id)
        label = k.label.encode() if k is not None else b""
        start = node_pb2.StartSessionRequest(
            session_id=sid, reshare=node_pb2.ReshareParams(
                operation=rec.signed, dealers=dealers, key_label=label, abandoned=self.db.abandonments(op.key_id),
            ),
        )
        log.info("key operation %s: session %s with dealers %s, new committee %s", rec.op_id, sid.hex()[:12], list(dealers),
                 list(op.new_committee))
        try:
            final = run_session(
                {i: self.nodes[i] for i in parts}, sid, {i: start for i in parts}, self.timeout_s, before_step=self._round_point
            )
        except (NodesUnavailable, Aborted, Refused) as e:
            # a node may have stored its outcome (and so confirmed the session) just before it
            # failed to answer: if every new holder did, the certificate is complete after all
            found = self._receipts(op, sid, wait_s=SETTLE_WAIT_S if isinstance(e, NodesUnavailable) else 0.0)
            if found is not None:
                log.info("key operation %s: session %s failed (%s) but every new holder confirmed it", rec.op_id, sid.hex()[:12], e)
                self._decide(rec, op, sid, parts, found, roster)
                return
            self._discard(parts, op.key_id, sid)
            raise OperationFailed(f"session {sid.hex()[:12]}: {e}") from None
        receipts = tuple(final[i].reshare_result.receipt for i in op.new_committee)
        shares = {i: tuple(final[i].reshare_result.public_shares) for i in op.new_committee}  # issue 16: a FROST key's
        self._decide(rec, op, sid, parts, receipts, roster, shares)

    def _available(self, op_id: str, op: KeyOperation, active: set[int]) -> list[int]:
        """The old committee's members that are active, connected and not known down. Before
        ``op`` would fail for members known down (a refresh: any; a reshare: fewer than the old
        threshold left), exactly those are asked once more, with the longer deadline
        :attr:`recheck_s` (:func:`coordinator.liveness.recheck`): one late answer to the background
        health probe from a busy node must not fail the operation."""

        got = [i for i in op.old_committee if i in active and i in self.nodes and self.nodes[i].healthy is not False]
        short = tuple(got) != op.old_committee if op.kind is KeyOpKind.REFRESH else len(got) < op.old_threshold
        late = [i for i in op.old_committee if i in active and i in self.nodes and self.nodes[i].healthy is False]
        could = len(got) + len(late) == len(op.old_committee) if op.kind is KeyOpKind.REFRESH else len(got) + len(late) >= op.old_threshold
        if not (short and late and could):  # asking again cannot save it when the others are missing anyway
            return got
        log.info("key operation %s: node(s) %s were judged unavailable; asking them again (up to %.1f s)", op_id, late,
                 self.recheck_s)
        still = recheck(self.nodes, late, self.recheck_s, self.on_back)
        for i, why in sorted(still.items()):
            h = self.nodes.get(i)
            log.warning("key operation %s: %s is still unavailable after a second health check: %s", op_id,
                        h.label if h is not None else f"node {i}", why)
        # the second check's verdict, not a re-read of the marks: the probe runs beside it, and its
        # late call to a busy node may mark that node down again just after it answered here
        return [i for i in op.old_committee if i in got or (i in late and i not in still and i in self.nodes)]

    def busy_keys(self) -> frozenset[bytes]:
        """Keys with a key operation recorded and not yet decided (state ``running``, also one not
        yet resumed after a restart; not one whose run here ended by an unexpected error, which
        only the next start resumes) or holding a session now: background refills start nothing
        for them (:mod:`coordinator.foreground`)."""
        with self._lock:
            stalled, running, gen = set(self._stalled), self._running, self._running_gen
        if running is None:
            running = {r.op_id: r.key_id for r in self.db.list_key_operations(states=("running",))}
            with self._lock:
                if self._running_gen == gen:  # no row changed state meanwhile: keep what was read
                    self._running = running
        return frozenset(k for op_id, k in running.items() if op_id not in stalled) | self.foreground.keys_held()

    def _dealers(self, op: KeyOperation, up: list[int]) -> tuple[int, ...]:
        """The dealers of ``op`` among the reachable old-committee members ``up``: those that hold
        a share of the key at the old epoch (``GetPendingEpoch``'s ``holds_key`` and
        ``active_epoch``; a share restored by a recovery order counts). A member that holds none
        (wiped, or a replaced host) only receives, if the new committee names it. OperationFailed
        naming who holds what when a refresh lacks a member's share or fewer than the old
        threshold hold one."""
        req = node_pb2.GetPendingEpochRequest(key_id=op.key_id, session_id=os.urandom(32))
        got, errs = fanout({i: (self.nodes[i].stub.GetPendingEpoch, req) for i in up}, self.timeout_s)
        holders = tuple(i for i in up if i in got and got[i].holds_key and got[i].active_epoch == op.old_epoch)
        if (op.kind is KeyOpKind.REFRESH and holders != op.old_committee) or len(holders) < op.old_threshold:
            need = "a refresh needs a share of every committee member" if op.kind is KeyOpKind.REFRESH else (
                f"needs {op.old_threshold} dealers holding a share")
            raise OperationFailed(f"{need} of epoch {op.old_epoch}; {_who_holds(op, up, got, errs)}")
        return holders

    def _receipts(self, op: KeyOperation, sid: bytes, *, wait_s: float = 0.0) -> tuple[bytes, ...] | None:
        """Every new-committee node's receipt of session ``sid`` (``GetPendingEpoch``), in
        committee order, or None if one lacks it (asked again for up to ``wait_s`` seconds: a node
        that just crashed is restarted by its supervisor within moments)."""
        deadline = time.monotonic() + wait_s
        req = node_pb2.GetPendingEpochRequest(key_id=op.key_id, session_id=sid)
        while True:
            got, errs = fanout(
                {i: (self.nodes[i].stub.GetPendingEpoch, req) for i in op.new_committee if i in self.nodes}, self.timeout_s
            )
            have = {i: bytes(r.receipt) for i, r in got.items() if r.receipt and (r.pending or r.committed)}
            if len(have) == len(op.new_committee):
                return tuple(have[i] for i in op.new_committee)
            lacking = [i for i in op.new_committee if i not in have]
            # only a node that did not answer may still turn out to hold its receipt
            if not all(i in errs or i not in self.nodes for i in lacking) or time.monotonic() >= deadline:
                return None
            if self._stop.wait(0.5):
                return None

    def _recover(self, rec: KeyOpRecord) -> None:
        """A running operation found after a restart: the decision if every new-committee node
        holds its receipt of the last session, else discard and fail."""
        op = self._op(rec)
        sid = rec.session_id
        parts = sorted(set(rec.dealers) | set(op.new_committee))
        req = node_pb2.GetPendingEpochRequest(key_id=op.key_id, session_id=sid)
        got, _ = fanout({i: (self.nodes[i].stub.GetPendingEpoch, req) for i in op.new_committee if i in self.nodes}, self.timeout_s)
        receipts = tuple(got[i].receipt for i in op.new_committee if i in got and (got[i].pending or got[i].committed))
        if len(receipts) != len(op.new_committee):
            self._discard(parts, op.key_id, sid)
            lacking = sorted(i for i in op.new_committee if not (i in got and got[i].receipt))
            raise OperationFailed(f"interrupted by a coordinator restart before node(s) {lacking} confirmed session {sid.hex()[:12]}")
        roster = self.roster()
        if roster is None:
            raise OperationFailed(NO_ROSTER)
        self._decide(rec, op, sid, parts, receipts, roster)

    def _decide(
        self, rec: KeyOpRecord, op: KeyOperation, sid: bytes, parts: list[int], receipts: tuple[bytes, ...], roster: Roster,
        reported: Mapping[int, tuple[bytes, ...]] | None = None,
    ) -> None:
        identities = {e.index: e.identity_key for e in active_entries(roster)}
        try:
            cert = verify_commit_certificate(
                receipts, governance_root=self.admins.digest(), key_id=op.key_id, session_id=sid, identities=identities
            )
        except GovernanceError as e:
            self._discard(parts, op.key_id, sid)
            raise OperationFailed(f"the receipts do not form a commit certificate: {e.field}: {e.reason}") from None
        if (cert.op_digest, cert.epoch, cert.threshold, cert.committee) != (op.digest(), op.new_epoch, op.new_threshold, op.new_committee):
            self._discard(parts, op.key_id, sid)
            raise OperationFailed("the receipts are for another operation or committee")
        self._at("receipts")
        frost_shares: tuple[bytes, ...] = ()
        if is_frost(op.scheme):  # issue 16: the new epoch's public shares (coordinator/frost_keyops.py)
            try:
                frost_shares = new_epoch_public_shares(op, cert.state_digest, reported or self._reported_shares(op, sid))
            except PublicSharesRefused as e:
                self._discard(parts, op.key_id, sid)
                raise OperationFailed(str(e)) from None
        pending = tuple(sorted(set(op.old_committee) | set(op.new_committee)))
        try:
            self.db.decide(
                rec.op_id, receipts, key_id=op.key_id, epoch=op.new_epoch, threshold=op.new_threshold, committee=op.new_committee,
                pending=pending, audit=self._event(self.name, "committing", op, session=sid.hex()[:16]), now=now_ms(),
                frost_public_shares=frost_shares,
            )
        except ValueError as e:
            raise OperationFailed(str(e)) from None
        self.flush()
        log.info(
            "key %s: epoch %d decided (operation %s); switching nodes %s", op.key_id.hex()[:16], op.new_epoch, rec.op_id, list(pending)
        )
        self._at("decided")

    def _reported_shares(self, op: KeyOperation, sid: bytes) -> dict[int, tuple[bytes, ...]]:
        """Issue 16: each new-committee node's public shares of session ``sid``'s epoch
        (``GetPendingEpoch``; a decision found after a failed answer or a restart)."""
        req = node_pb2.GetPendingEpochRequest(key_id=op.key_id, session_id=sid)
        got, _ = fanout({i: (self.nodes[i].stub.GetPendingEpoch, req) for i in op.new_committee if i in self.nodes}, self.timeout_s)
        return {i: tuple(bytes(s) for s in r.public_shares) for i, r in got.items()}

    def _push(self, op_id: str) -> None:
        """Push CommitEpoch until every old and new committee node switched (or this stops)."""
        while True:
            rec = self.db.get_key_operation(op_id)
            if rec is None or rec.state != "committing":
                return
            op = self._op(rec)
            roster = self.roster()
            active = {e.index for e in active_entries(roster)} if roster is not None else set(self.nodes)
            # a dropped node that is revoked or gone has nothing left to switch
            pending = tuple(i for i in rec.pending_nodes if i in op.new_committee or (i in active and i in self.nodes))
            req = node_pb2.CommitEpochRequest(key_id=op.key_id, session_id=rec.session_id, receipts=rec.receipts)
            ok, errs = fanout({i: (self.nodes[i].stub.CommitEpoch, req) for i in pending if i in self.nodes}, self.timeout_s)
            past: set[int] = set()
            for i, e in sorted(errs.items()):
                code, details = status_of(e)
                if code == Code.FAILED_PRECONDITION and "not newer than the key's active epoch" in details:
                    past.add(i)  # it is already at a later epoch: nothing left to switch
                    continue
                log.warning("key operation %s: node %d did not switch yet: %s: %s", op_id, i, code.name, details)
            left = tuple(i for i in pending if i not in ok and i not in past)
            done = self._event(self.name, "done", op) if not left else None
            self.db.switched(op_id, left, done, now_ms())
            if not left:
                self.flush()
                log.info("key %s: every node switched to epoch %d (operation %s done)", op.key_id.hex()[:16], op.new_epoch, op_id)
                if self.on_done is not None:
                    self.on_done(op.key_id)
                return
            if ok:
                self._at("pushed")
            if self._stop.wait(PUSH_RETRY_S):
                return

    def _at(self, point: str) -> None:
        if self.fault is not None:
            self.fault(point)

    def _round_point(self, rnd: int) -> dict[str, Any]:
        """``run_session``'s ``before_step``: the nodes answered round ``rnd``."""
        self._at(f"round-{rnd}")
        return {}

    def _discard(self, parts: list[int] | tuple[int, ...], key_id: bytes, sid: bytes) -> None:
        """Abandon session ``sid`` on ``parts``; keep the signed abandonments they answer (a later
        session of the key carries them: nodes that confirmed ``sid`` may then take part)."""
        req = node_pb2.DiscardEpochRequest(key_id=key_id, session_id=sid)
        ok, _ = fanout({i: (self.nodes[i].stub.DiscardEpoch, req) for i in parts if i in self.nodes}, 5.0)
        proofs = {i: bytes(r.abandonment) for i, r in ok.items() if r.abandonment}
        if proofs:
            self.db.add_abandonments(key_id, sid, proofs, now_ms())

    def _settle_failed_sessions(self, op: KeyOperation) -> None:
        """Before a new session of ``op``'s key: every earlier failed session of the key from the
        same epoch must be settled (a node that confirmed one refuses any other session of that
        epoch: one epoch, one session). If every member of its new committee holds its receipt,
        its certificate is complete after all: that operation is decided and committed instead,
        and this one fails (the key moved on). Otherwise its members are asked again to abandon
        it (a node that was down when it failed may answer now); their signed abandonments go
        with the new session."""
        for prev in self.db.list_key_operations(op.key_id, ("failed",)):
            if not prev.session_id:
                continue
            pop = self._op(prev)
            if pop.old_epoch != op.old_epoch or self.db.abandoned_holders(op.key_id, prev.session_id) & set(pop.new_committee):
                continue
            found = self._receipts(pop, prev.session_id)
            if found is not None:
                self._complete_failed(prev, pop, found)
                raise OperationFailed(
                    f"session {prev.session_id.hex()[:12]} of operation {prev.op_id} (the same epoch) was confirmed by every "
                    f"new holder after all: it commits epoch {pop.new_epoch} instead; propose again from the key's new epoch"
                )
            self._discard(pop.new_committee, op.key_id, prev.session_id)

    def _complete_failed(self, prev: KeyOpRecord, pop: KeyOperation, receipts: tuple[bytes, ...]) -> None:
        """A failed operation whose session turns out confirmed by every new holder: decide it
        and push its commit (in the background)."""
        roster = self.roster()
        if roster is None or not self.db.restart_key_operation(
            prev.op_id, self._event(self.name, "restarted", pop, reason="every new holder confirmed its session"), now_ms()
        ):
            return
        self._running_changed()
        rec = self.db.get_key_operation(prev.op_id)
        assert rec is not None
        try:
            self._decide(rec, pop, prev.session_id, sorted(set(prev.dealers) | set(pop.new_committee)), receipts, roster)
        except OperationFailed as e:
            self._failed(rec, str(e))
            return
        self.flush()
        self._spawn(prev.op_id)

    def _failed(self, rec: KeyOpRecord, why: str) -> None:
        op = self._op(rec)
        self.db.fail_key_operation(rec.op_id, why[:1000], self._event(self.name, "failed", op, reason=why), now_ms())
        self.flush()
        log.warning("key operation %s failed (key %s stays in epoch %d): %s", rec.op_id, op.key_id.hex()[:16], op.old_epoch, why)

    def _event(self, actor: str, outcome: str, op: KeyOperation, **extra: str | int | bool) -> AuditEvent:
        details: dict[str, str | int | bool] = {**_details(op), "operation": op.proposal_id}
        for k, v in extra.items():
            details[k] = v if not isinstance(v, str) else v[:500]
        return AuditEvent(actor, "key-operation", "", outcome, details)

    # --- reading -----------------------------------------------------------------------------
    def signing(self, k: KeyRecord) -> tuple[int, tuple[int, ...], set[int]]:
        """(epoch, committee, excluded): the key's epoch and committee, and the nodes that must
        not sign it now (outside the committee, or not yet switched by a committing operation)."""
        epoch, committee = self.epoch_of(k)
        excluded = {i for i in self.nodes if i not in committee}
        for rec in self.db.list_key_operations(k.key_id, ("committing",)):
            excluded |= set(rec.pending_nodes)
        return epoch, committee, excluded

    def status(self, rec: KeyOpRecord) -> coordinator_pb2.KeyOperationStatus:
        op = self._op(rec)
        return coordinator_pb2.KeyOperationStatus(
            operation_id=rec.op_id, key_id=rec.key_id, kind=op.kind.name.lower(), state=rec.state, old_epoch=op.old_epoch,
            new_epoch=op.new_epoch, old_committee=op.old_committee, new_committee=op.new_committee, old_threshold=op.old_threshold,
            new_threshold=op.new_threshold, authorized_by=rec.authorized_by, error=rec.error, created_unix_ms=rec.created_ms,
            updated_unix_ms=rec.updated_ms, pending_nodes=rec.pending_nodes if rec.state == "committing" else (),
            signed_operation=rec.signed, attempts=rec.attempts,
        )

    def get(self, op_id: str) -> coordinator_pb2.KeyOperationStatus:
        rec = self.db.get_key_operation(op_id)
        if rec is None:
            raise RpcError(Code.NOT_FOUND, f"operation_id: unknown operation {op_id}")
        return self.status(rec)

    def listing(self, key_id: bytes | None = None) -> list[coordinator_pb2.KeyOperationStatus]:
        return [self.status(r) for r in self.db.list_key_operations(key_id)]

    def not_done(self) -> list[coordinator_pb2.KeyOperationStatus]:
        """Running and committing operations, and each key's last operation if it failed."""
        out = [self.status(r) for r in self.db.list_key_operations(states=LIVE)]
        last: dict[bytes, KeyOpRecord] = {}
        for r in self.db.list_key_operations():
            last[r.key_id] = r
        out += [self.status(r) for r in last.values() if r.state == "failed"]
        return out


def _who_holds(
    op: KeyOperation, up: list[int], got: Mapping[int, node_pb2.PendingEpochInfo], errs: Mapping[int, grpc.RpcError]
) -> str:
    """Who holds what of ``op``'s key among the old committee, for an operation's error: e.g.
    ``holding epoch 0: [1, 2]; no share: [4, 5]; at epoch 1: [3]; unavailable: [6]``."""
    hold, none, unavailable = [], [], []
    other: dict[int, int] = {}
    for i in op.old_committee:
        info = got.get(i)
        if i not in up or i in errs or info is None:
            unavailable.append(i)
        elif not info.holds_key:
            none.append(i)
        elif info.active_epoch != op.old_epoch:
            other[i] = int(info.active_epoch)
        else:
            hold.append(i)
    parts = [f"holding epoch {op.old_epoch}: {hold}", f"no share: {none}"]
    parts += [f"at epoch {e}: {[i for i in other if other[i] == e]}" for e in sorted(set(other.values()))]
    if unavailable:
        parts.append(f"unavailable: {unavailable}")
    return "; ".join(parts)


def _missed_follow(committee: Sequence[int], ops: Sequence[KeyOpRecord], history: Sequence[Roster]) -> int | None:
    """The version of the membership change (in ``history``, every roster version in force so
    far, oldest first) whose roster-implied reshare of a key with ``committee`` and operations
    ``ops`` (oldest first) was never started, or None. The key followed the roster if its
    committee was the active nodes just before a membership change (as
    :meth:`KeyOperations.follow_roster` decides) and no operation of the key since that change
    decided its committee: a failed admin-approved operation changed nothing, and a roster-implied
    one that only dropped (since revoked) nodes leaves the key following what it had (its old
    committee is compared). Any other operation made at that roster version or later (the
    follow itself, failed or not, or an admin's reshare) means the follow was started."""
    if len(history) < 2:
        return None  # no membership change to follow
    followed = tuple(sorted(committee))
    since = 0  # the roster version of the newest operation that decided the key's committee
    for rec in reversed(ops):
        try:
            op = SignedKeyOperation.from_bytes(rec.signed).operation
        except GovernanceError:
            return None  # an unreadable record: nothing is inferred from it
        if rec.state == "failed" and rec.authorized_by != "roster":
            continue
        if (rec.authorized_by == "roster" and rec.state == "done" and set(op.new_committee) < set(op.old_committee)
                and tuple(sorted(op.new_committee)) == followed):
            followed = tuple(sorted(op.old_committee))  # a revocation's drop: the key followed its old committee
            continue
        since = op.roster_version
        break
    missed = None
    for prev, cur in itertools.pairwise(history):
        before = tuple(sorted(e.index for e in active_entries(prev)))
        if cur.version > since and before == followed and before != tuple(sorted(e.index for e in active_entries(cur))):
            missed = cur.version
    return missed


def _failures(ops: list[KeyOpRecord]) -> int:
    """How many of the newest ``ops`` (oldest first) failed in a row."""
    n = 0
    for o in reversed(ops):
        if o.state != "failed":
            break
        n += 1
    return n


def _retry_at(ops: list[KeyOpRecord], backoff_ms: int, now: int) -> int:
    """When (unix ms) the background pass may start another operation of a key whose operations
    are ``ops`` (oldest first): 0 unless the last ones failed; after f failures in a row,
    ``backoff_ms * 2**(f-1)`` (capped) after the last one. 0 too when the last one is dated
    after ``now`` (the coordinator's wall clock was stepped back before a restart, which the
    expiry clock ``now`` cannot bridge: the wait cannot be measured, and waiting for the clock to
    catch up could take hours; the next failure is dated anew)."""
    if ops and ops[-1].updated_ms > now:
        return 0
    failed = 0
    for o in reversed(ops):
        if o.state != "failed":
            break
        failed += 1
    if failed == 0:
        return 0
    delay: int = min(backoff_ms << min(failed - 1, 32), max(backoff_ms, RECONCILE_BACKOFF_MAX_MS))
    return ops[-1].updated_ms + delay


def _details(op: KeyOperation) -> dict[str, str | int | bool]:
    return {
        "key_id": op.key_id.hex(), "kind": op.kind.name.lower(), "old_epoch": op.old_epoch,
        "old_committee": ",".join(map(str, op.old_committee)), "new_committee": ",".join(map(str, op.new_committee)),
        "old_threshold": op.old_threshold, "new_threshold": op.new_threshold, "roster_version": op.roster_version,
    }
