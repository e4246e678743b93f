"""Scheduled refresh on the coordinator (issue 11, item 5): a key whose policy in force has a
``refresh_period_s`` is refreshed when its shares are that old, without any admin action.

:meth:`RefreshScheduler.check` is one pass (the coordinator's background loop runs it after its
health probe). For every active key whose policy in force (key scope, else default;
:meth:`coordinator.policies.PolicyBook.policy_for`) has a period, it starts an **unsigned**
refresh (``SignedKeyOperation(op, ())``, ``authorized_by="schedule"``, a random op id) when

* the key's last epoch change, by the coordinator's record, is at least the period plus
  :data:`MARGIN_MS` in the past: the key's ``created_ms`` for epoch 0, else the time its last
  operation was ``done`` (every node had switched; ``key_operations.updated_ms``), so each
  node's own record (when it switched) is younger than the coordinator's and the node, which
  checks the age again by its own clock (:mod:`mpc_node.keyops`), agrees;
* no operation of the key is running or committing (the store refuses a second one anyway);
* the key's last scheduled refresh did not fail less than ``min(period, 60 s)`` ago (backoff);
* every committee node is active in the roster in force and healthy (a refresh is dealt by the
  whole committee); else the key is skipped, logged once per reason. Members the health probe
  judged down (``healthy is False``: a busy node may answer its 1 s probe late) are first asked
  once more, as a foreground operation does (:func:`coordinator.liveness.recheck`, deadline
  ``liveness_recheck_s``), but only when that can save the refresh (every other blocker is such a
  member too). The second check runs on its own thread, one at a time, so the background pass
  (health probes, commits, refills) never waits for it; a member that answered it serving counts
  as available for :data:`ANSWER_FRESH_S` seconds, so the next pass starts the refresh even if a
  probe judged the member down again meanwhile (the operation itself checks its members again).
  A member that stays down is not asked again until it has been seen healthy (a dead node costs
  one check, not one per pass).

Each start is audited ``key-refresh-scheduled`` (the operation itself is audited
``key-operation`` like any other). The nodes decide for themselves: a coordinator that starts a
refresh too early gets it refused by every node (``reshare.operation.signatures``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from coordinator.db import CoordinatorDb, KeyRecord, now_ms
from coordinator.keyop_store import LIVE, KeyOpRecord
from coordinator.keyops import KeyOperations
from coordinator.liveness import recheck
from coordinator.relay import NodeHandle
from coordinator.store_failure import log_failure
from governance.errors import GovernanceError
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation
from governance.policy import KeyPolicy
from governance.roster import active_entries
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog

ANSWER_FRESH_S = 10.0  # a member's serving answer to the second check counts this long (seconds)

log = logging.getLogger("coordinator.schedule")
MARGIN_MS = 2_000  # so that the nodes' clocks (and their later switch) agree that the refresh is due
MAX_BACKOFF_S = 60
SCHEDULE = "schedule"


@dataclass(frozen=True)
class Due:
    """Key ``key_id`` is due for its scheduled refresh: its shares changed last at
    ``last_change_ms`` (Unix ms), its policy's period is ``period_s`` seconds."""

    key_id: bytes
    period_s: int
    last_change_ms: int


def last_change_ms(k: KeyRecord, ops: list[KeyOpRecord]) -> int:
    """When key ``k``'s shares last changed, by the coordinator's record (Unix ms): the time its
    last operation was done, else its creation. ``ops``: the key's operations."""
    return max([k.created_ms] + [r.updated_ms for r in ops if r.state == "done"])


def backoff_ms(period_s: int) -> int:
    """How long after a failed scheduled refresh the next one may start: min(period, 60 s)."""
    return min(period_s, MAX_BACKOFF_S) * 1000


class RefreshScheduler:
    """Starts the scheduled refreshes of one coordinator (see the module).

    ``policy_for(key_id)``: the key policy in force; ``nodes``: the live node handles by roster
    index; ``clock``: Unix ms for the due judgement (default: the store's expiry clock,
    :meth:`CoordinatorDb.expiry_ms`, so a wall clock stepped back delays no due refresh; tests
    pass a fake one); ``name``: the coordinator's name (the actor of the operations and audit
    entries).
    """

    def __init__(
        self, keyops: KeyOperations, db: CoordinatorDb, audit: AuditLog, nodes: Mapping[int, NodeHandle],
        policy_for: Callable[[bytes], KeyPolicy], *, name: str, clock: Callable[[], int] | None = None, margin_ms: int = MARGIN_MS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keyops = keyops
        self.db = db
        self.audit = audit
        self.nodes = nodes
        self.policy_for = policy_for
        self.name = name
        self.clock: Callable[[], int] = clock if clock is not None else lambda: db.expiry_ms(now_ms())
        self.margin_ms = margin_ms
        self._skipped: dict[bytes, str] = {}  # key -> the reason last logged (log once)
        self.monotonic = monotonic  # seconds, for ANSWER_FRESH_S
        self._lock = threading.Lock()  # guards the three below (the second check's thread writes them)
        self._unanswered: set[int] = set()  # asked again, still down: not asked again until seen healthy
        self._answered: dict[int, float] = {}  # member -> monotonic() when it answered the second check serving
        self._look: threading.Thread | None = None  # the second check running, if any
        self._asking: frozenset[int] = frozenset()  # the members it asks
        self._stopped = False

    def due(self, k: KeyRecord, now: int) -> Due | None:
        """``k``'s refresh if it is due at ``now`` and may start (no live operation, not backing off)."""
        period = self.policy_for(k.key_id).refresh_period_s
        if period <= 0:
            return None
        ops = self.db.list_key_operations(k.key_id)
        if any(r.state in LIVE for r in ops):
            return None
        last = last_change_ms(k, ops)
        age = now - last
        steady_age = self.db.key_change_age_ms(k.key_id)  # a step back across a restart shortens no age
        if steady_age is not None:
            age = max(age, steady_age)
        if age < period * 1000 + self.margin_ms:
            return None
        failed = [r for r in ops if r.authorized_by == SCHEDULE and r.state == "failed"]
        # the newest failure as recorded (ops are oldest first in recording order), not the
        # latest-dated: one dated after now (the wall clock was stepped back) is retried at once,
        # without waiting for the clock to catch up, and that retry's own failure, dated by the
        # stepped clock, holds the next one as usual (with the latest date, each pass retried at
        # once until the clock caught up); coordinator.keyops._retry_at likewise
        if failed and 0 <= now - failed[-1].updated_ms < backoff_ms(period):
            return None
        return Due(k.key_id, period, last)

    def check(self) -> list[str]:
        """One pass over the active keys; returns the ids of the refreshes started. Members judged
        down that could save a due refresh are asked once more on another thread
        (:meth:`_second_look`); a pass never waits for that."""
        with self._lock:  # seen healthy since (a probe answered): may be asked again the next time it is judged down
            self._unanswered = {i for i in self._unanswered if i in self.nodes and self.nodes[i].healthy is not True}
        pending: list[tuple[KeyRecord, Due]] = []
        for k in self.db.list_keys("active"):
            try:
                due = self.due(k, self.clock())
                if due is not None:
                    pending.append((k, due))
            except RpcError as e:
                self._skip(k.key_id, e.message)
            except Exception as e:  # a full disk: one line naming the store per pass, not a traceback
                log_failure(log, e, f"key {k.key_id.hex()[:16]}: scheduled refresh check failed", self.db.health.saw)
        back = self._fresh_answers()
        try:
            if pending:
                self._second_look([k for k, _ in pending], back)
        except Exception:
            log.exception("scheduled refresh: the second health check failed to start")
        with self._lock:
            asking = self._asking
        started: list[str] = []
        for k, due in pending:
            try:
                op_id = self._start(k, due, back, asking)
                if op_id is not None:
                    started.append(op_id)
            except RpcError as e:
                self._skip(k.key_id, e.message)
            except Exception as e:
                log_failure(log, e, f"key {k.key_id.hex()[:16]}: scheduled refresh check failed", self.db.health.saw)
        return started

    def _blockers(self, committee: tuple[int, ...], active: set[int], back: frozenset[int]) -> list[int]:
        """The members of ``committee`` that keep a refresh from starting: not active in the
        roster in force, not connected, or not healthy (unless in ``back``: they answered the
        second health check of this pass)."""
        return [i for i in committee if i not in active or i not in self.nodes or (self.nodes[i].healthy is not True and i not in back)]

    def _fresh_answers(self) -> frozenset[int]:
        """The members that answered the second check serving less than ANSWER_FRESH_S s ago."""
        now = self.monotonic()
        with self._lock:
            self._answered = {i: t for i, t in self._answered.items() if 0 <= now - t < ANSWER_FRESH_S}
            return frozenset(self._answered)

    def _second_look(self, keys: list[KeyRecord], back: frozenset[int]) -> None:
        """Ask the members judged down once more (:func:`coordinator.liveness.recheck`, deadline
        ``keyops.recheck_s`` seconds, one fan-out for all ``keys``, on its own thread), but only
        those whose answer can let a due refresh start (all of its blockers are such members), that
        have not answered already (``back``) and that were not asked since they were last seen
        healthy. Nothing when a check still runs or after :meth:`stop`."""
        roster = self.keyops.roster()
        if roster is None:
            return
        active = {e.index for e in active_entries(roster)}
        ask: set[int] = set()
        with self._lock:
            unanswered = set(self._unanswered)
        for k in keys:
            _, committee = self.keyops.epoch_of(k)
            blocking = self._blockers(committee, active, back)
            late = [i for i in blocking if i in active and i in self.nodes and self.nodes[i].healthy is False
                    and i not in unanswered]
            if blocking and len(late) == len(blocking):
                ask.update(late)
        if not ask:
            return
        with self._lock:
            if self._stopped or (self._look is not None and self._look.is_alive()):
                return
            self._look = threading.Thread(target=self._look_run, args=(sorted(ask),), name="schedule-second-look", daemon=True)
            self._asking = frozenset(ask)
            try:
                self._look.start()
            except BaseException:
                self._asking = frozenset()
                raise

    def _look_run(self, ask: list[int]) -> None:
        log.info("scheduled refresh: committee node(s) %s were judged unavailable; asking them again (up to %.1f s)", ask,
                 self.keyops.recheck_s)

        def on_back(i: int) -> None:  # resync a member that is back, unless the coordinator stopped meanwhile
            if not self._stopped and self.keyops.on_back is not None:
                self.keyops.on_back(i)

        try:
            still = recheck(self.nodes, ask, self.keyops.recheck_s, on_back)
        except Exception:
            if not self._stopped:  # after stop() the channels and their pool are closed under it: expected
                log.exception("scheduled refresh: the second health check failed")
            with self._lock:
                self._asking = frozenset()
            return
        with self._lock:
            self._asking = frozenset()
            if self._stopped:
                return
            for i, why in sorted(still.items()):
                log.warning("scheduled refresh: %s is still unavailable after a second health check: %s (not asked again until "
                            "it answers a probe)", self.nodes[i].label, why)
            self._unanswered.update(still)
            # the second check's verdict, not a re-read of the marks (the probe may mark a node down again meanwhile)
            now = self.monotonic()
            self._answered.update({i: now for i in ask if i not in still})

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for a running second check to end; True if none runs."""
        with self._lock:
            look = self._look
        if look is not None:
            look.join(timeout_s)
            return not look.is_alive()
        return True

    def stop(self) -> None:
        """Start no more second checks; one still running records nothing and resyncs nothing."""
        with self._lock:
            self._stopped = True

    def _skip(self, key_id: bytes, why: str) -> None:
        if self._skipped.get(key_id) != why:
            self._skipped[key_id] = why
            log.warning("key %s: scheduled refresh skipped: %s", key_id.hex()[:16], why)

    def _start(self, k: KeyRecord, due: Due, back: frozenset[int] = frozenset(), asking: frozenset[int] = frozenset()) -> str | None:
        """Start ``k``'s due refresh unless a committee member blocks it (``back``: members that
        answered the second health check lately; ``asking``: members it is asking now, which
        put the key off to a later pass without a "skipped" warning). Returns the operation id,
        or None (logged)."""
        roster = self.keyops.roster()
        if roster is None:
            self._skip(k.key_id, "the coordinator has no signed roster")
            return None
        epoch, committee = self.keyops.epoch_of(k)
        active = {e.index for e in active_entries(roster)}
        down = self._blockers(committee, active, back)
        if down and set(down) <= asking:
            return None  # their second check runs: the next pass decides
        if down:
            self._skip(k.key_id, f"committee node(s) {down} not active and healthy (a refresh is dealt by the whole committee)")
            return None
        try:
            op = KeyOperation(
                self.keyops.admins.digest(), os.urandom(16), KeyOpKind.REFRESH, k.key_id, k.public_key, k.chain_code, epoch,
                k.threshold, committee, k.threshold, committee, roster.version, f"scheduled refresh (every {due.period_s} s)",
                scheme=k.scheme,  # issue 16: FROST keys are refreshed too (a KeyOperation v2)
            )
        except GovernanceError as e:
            self._skip(k.key_id, f"cannot build the refresh: {e.field}: {e.reason}")
            return None
        op_id = self.keyops.start(SignedKeyOperation(op, ()), SCHEDULE, self.name)
        self._skipped.pop(k.key_id, None)
        age_s = (self.clock() - due.last_change_ms) // 1000
        self.audit.append(self.name, "key-refresh-scheduled", outcome="started", details={
            "key_id": k.key_id.hex(), "operation": op_id, "epoch": epoch, "period_s": due.period_s, "age_s": age_s,
        })
        log.info("key %s: scheduled refresh %s started (shares %d s old, period %d s)", k.key_id.hex()[:16], op_id, age_s,
                 due.period_s)
        return op_id

