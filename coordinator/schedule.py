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
  member too) and only once per pass for all keys together, so the pass waits at most
  ``liveness_recheck_s`` seconds. A member that stays down is not asked again until it has been
  seen healthy (a dead node costs one wait, not one per pass).

Each start is audited ``key-refresh-scheduled`` (the operation itself is audited
``key-operation`` like any other). The nodes decide for themselves: a coordinator that starts a
refresh too early gets it refused by every node (``reshare.operation.signatures``).
"""

from __future__ import annotations

import logging
import os
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
    index; ``clock``: Unix ms (tests pass a fake one); ``name``: the coordinator's name (the
    actor of the operations and audit entries).
    """

    def __init__(
        self, keyops: KeyOperations, db: CoordinatorDb, audit: AuditLog, nodes: Mapping[int, NodeHandle],
        policy_for: Callable[[bytes], KeyPolicy], *, name: str, clock: Callable[[], int] = now_ms, margin_ms: int = MARGIN_MS,
    ) -> None:
        self.keyops = keyops
        self.db = db
        self.audit = audit
        self.nodes = nodes
        self.policy_for = policy_for
        self.name = name
        self.clock = clock
        self.margin_ms = margin_ms
        self._skipped: dict[bytes, str] = {}  # key -> the reason last logged (log once)
        self._unanswered: set[int] = set()  # asked again, still down: not asked again until seen healthy

    def due(self, k: KeyRecord, now: int) -> Due | None:
        """``k``'s refresh if it is due at ``now`` and may start (no live operation, not backing off)."""
        period = self.policy_for(k.key_id).refresh_period_s
        if period <= 0:
            return None
        ops = self.db.list_key_operations(k.key_id)
        if any(r.state in LIVE for r in ops):
            return None
        last = last_change_ms(k, ops)
        if now - last < period * 1000 + self.margin_ms:
            return None
        failed = [r for r in ops if r.authorized_by == SCHEDULE and r.state == "failed"]
        # a failure dated after now: the wall clock was stepped back; the wait cannot be measured
        # and must not last until the clock catches up (coordinator.keyops._retry_at likewise)
        if failed and 0 <= now - max(r.updated_ms for r in failed) < backoff_ms(period):
            return None
        return Due(k.key_id, period, last)

    def check(self) -> list[str]:
        """One pass over the active keys; returns the ids of the refreshes started. Members judged
        down that could save a due refresh are asked once more first, all at once
        (:meth:`_second_look`: at most ``keyops.recheck_s`` seconds per pass)."""
        # seen healthy since (a probe answered): may be asked again the next time it is judged down
        self._unanswered = {i for i in self._unanswered if i in self.nodes and self.nodes[i].healthy is not True}
        pending: list[tuple[KeyRecord, Due]] = []
        for k in self.db.list_keys("active"):
            try:
                due = self.due(k, self.clock())
                if due is not None:
                    pending.append((k, due))
            except RpcError as e:
                self._skip(k.key_id, e.message)
            except Exception:
                log.exception("key %s: scheduled refresh check failed", k.key_id.hex()[:16])
        back: frozenset[int] = frozenset()
        try:
            back = self._second_look([k for k, _ in pending]) if pending else back
        except Exception:
            log.exception("scheduled refresh: the second health check failed")
        started: list[str] = []
        for k, due in pending:
            try:
                op_id = self._start(k, due, back)
                if op_id is not None:
                    started.append(op_id)
            except RpcError as e:
                self._skip(k.key_id, e.message)
            except Exception as e:
                log_failure(log, e, f"key {k.key_id.hex()[:16]}: scheduled refresh check failed")
        return started

    def _blockers(self, committee: tuple[int, ...], active: set[int], back: frozenset[int]) -> list[int]:
        """The members of ``committee`` that keep a refresh from starting: not active in the
        roster in force, not connected, or not healthy (unless in ``back``: they answered the
        second health check of this pass)."""
        return [i for i in committee if i not in active or i not in self.nodes or (self.nodes[i].healthy is not True and i not in back)]

    def _second_look(self, keys: list[KeyRecord]) -> frozenset[int]:
        """Ask the members judged down once more (:func:`coordinator.liveness.recheck`, deadline
        ``keyops.recheck_s`` seconds, one fan-out for all ``keys``), but only those whose answer
        can let a due refresh start (all of its blockers are such members) and that were not asked
        already since they were last seen healthy. Returns the members that answered serving."""
        roster = self.keyops.roster()
        if roster is None:
            return frozenset()
        active = {e.index for e in active_entries(roster)}
        ask: set[int] = set()
        for k in keys:
            _, committee = self.keyops.epoch_of(k)
            blocking = self._blockers(committee, active, frozenset())
            late = [i for i in blocking if i in active and i in self.nodes and self.nodes[i].healthy is False
                    and i not in self._unanswered]
            if blocking and len(late) == len(blocking):
                ask.update(late)
        if not ask:
            return frozenset()
        log.info("scheduled refresh: committee node(s) %s were judged unavailable; asking them again (up to %.1f s)", sorted(ask),
                 self.keyops.recheck_s)
        still = recheck(self.nodes, sorted(ask), self.keyops.recheck_s, self.keyops.on_back)
        for i, why in sorted(still.items()):
            log.warning("scheduled refresh: %s is still unavailable after a second health check: %s (not asked again until it "
                        "answers a probe)", self.nodes[i].label, why)
        self._unanswered.update(still)
        # the second check's verdict, not a re-read of the marks (the probe may mark a node down again meanwhile)
        return frozenset(ask - set(still))

    def _skip(self, key_id: bytes, why: str) -> None:
        if self._skipped.get(key_id) != why:
            self._skipped[key_id] = why
            log.warning("key %s: scheduled refresh skipped: %s", key_id.hex()[:16], why)

    def _start(self, k: KeyRecord, due: Due, back: frozenset[int] = frozenset()) -> str | None:
        """Start ``k``'s due refresh unless a committee member blocks it (``back``: members that
        answered this pass's second health check). Returns the operation id, or None (logged)."""
        roster = self.keyops.roster()
        if roster is None:
            self._skip(k.key_id, "the coordinator has no signed roster")
            return None
        epoch, committee = self.keyops.epoch_of(k)
        active = {e.index for e in active_entries(roster)}
        down = self._blockers(committee, active, back)
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

