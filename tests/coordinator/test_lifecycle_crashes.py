"""Property test of the signing-request lifecycle with a crash between any two writes.

A hypothesis ``RuleBasedStateMachine`` submits, approves, rejects, retries decisions, moves a
fake clock, expires and signs requests on an in-process coordinator (real SQLite files, see
``lifecycle_util``), and arms a crash at the k-th next write (coordinator DB or audit log,
before or after its commit); when it fires, everything is rebuilt over the same files and
recovered, as a restarted ``mpc-coordinator`` would. After every step: no request is lost, none
is stuck (a pending request's stored decisions leave its tally open; every SIGNING request is
queued for signing), none is signed twice, the outbox is empty and every request has exactly
the audit entries of the states it went through.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import grpc
from hypothesis import event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from governance.approval import Decision
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import verify_audit

from .lifecycle_util import APPROVERS, TTL_S, Crash, World

MAX_REQUESTS = 4
OK_CODES = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS}
STATE_ENTRY = {
    "signing": "sign-approved", "rejected": "sign-rejected", "expired": "sign-expired",
    "failed": "sign-failed", "done": "sign-done",
}


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="lifecycle-"))
        self.world = World(self.tmp)
        self.submitted: set[str] = set()  # the caller got an answer: must exist from now on
        self.tried: list[str] = []
        self.decided: dict[tuple[str, str], str] = {}  # (rid, approver) -> decision the caller saw accepted
        self.crashes = 0

    def teardown(self) -> None:
        try:
            self.world.close()
            report = verify_audit(self.tmp / "audit.db", self.world.audit.public_key)
            assert report.ok, report.reason
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        try:
            return fn(*args)
        except Crash:
            self.crashes += 1
            event("crash in " + getattr(fn, "__name__", "?"))
            self.world.restart()
            return None

    # --- rules -------------------------------------------------------------------------------
    @precondition(lambda self: len(self.tried) < MAX_REQUESTS)
    @rule()
    def submit(self) -> None:
        rid = f"r{len(self.tried)}"
        self.tried.append(rid)
        if self._run(self.world.submit, rid) is not None:
            self.submitted.add(rid)

    @precondition(lambda self: bool(self.tried))
    @rule(i=st.integers(0, MAX_REQUESTS - 1), approver=st.sampled_from(APPROVERS), approve=st.booleans())
    def decide(self, i: int, approver: str, approve: bool) -> None:
        self._decide(i, approver, approve)

    def _decide(self, i: int, approver: str, approve: bool) -> None:
        rid = self.tried[i % len(self.tried)]
        if self.world.db.get_sign_request(rid) is None:
            return
        decision = Decision.APPROVE if approve else Decision.REJECT
        before = self.decided.get((rid, approver))
        try:
            info = self._run(self.world.decide, rid, approver, decision)
        except RpcError as e:
            assert e.code in OK_CODES, e
            if e.code == grpc.StatusCode.ALREADY_EXISTS:
                assert before is None or before != decision.value, f"identical retry refused: {e.message}"
            return
        if info is not None:
            assert before is None or before == decision.value, "a second, different decision was accepted"
            self.decided[(rid, approver)] = decision.value

    @precondition(lambda self: bool(self.tried))
    @rule(i=st.integers(0, MAX_REQUESTS - 1), approver=st.sampled_from(APPROVERS))
    def approve(self, i: int, approver: str) -> None:
        self._decide(i, approver, True)

    @rule(seconds=st.sampled_from([1, 10, TTL_S // 2, TTL_S]))
    def tick(self, seconds: int) -> None:
        self.world.clock.ms += seconds * 1000

    @rule()
    def expire(self) -> None:
        self._run(self.world.requests.expire_due)

    @rule()
    def sign(self) -> None:
        self._run(self.world.sign_next)

    @rule(k=st.integers(1, 5), after=st.booleans())
    def arm_crash(self, k: int, after: bool) -> None:
        self.world.faults.arm(k, after)

    @rule()
    def restart(self) -> None:
        self.world.restart()

    # --- invariants --------------------------------------------------------------------------
    @invariant()
    def nothing_lost_stuck_or_unaudited(self) -> None:
        w = self.world
        if w.faults.crashed:
            return
        assert not w.db.pending_audit(), "the outbox was not flushed"
        signing_queue = set(w.requests.queue)
        for rid in self.tried:
            rec = w.db.get_sign_request(rid)
            if rec is None:
                assert rid not in self.submitted, f"{rid} was lost"
                continue
            stored = {a.approver: a.decision for a in w.db.approvals(rid)}
            for (r, approver), decision in self.decided.items():
                if r == rid:
                    assert stored.get(approver) == decision, f"{rid}: {approver}'s accepted decision was lost"
            approvals = sum(1 for d in stored.values() if d == "approve")
            rejections = sum(1 for d in stored.values() if d == "reject")
            event(f"state {rec.state}")
            if rec.state == "pending_approval":
                assert approvals < 2 and rejections < 2, f"{rid} stuck pending with {stored}"
            if rec.state == "signing":
                assert rid in signing_queue, f"{rid} is SIGNING but nobody signs it"
            if rec.state == "done":
                assert rec.signature == w.nodes.served[rid].SerializeToString()
            actions = [(e.action, e.actor) for e in w.entries(rid) if e.outcome != "refused"]  # refused attempts: audited besides
            assert actions.count(("sign-request", "req-1")) == 1, (rid, actions)
            for approver in stored:
                assert [a for a in actions if a == ("sign-decision", approver)] == [("sign-decision", approver)], (rid, actions)
            path = ["signing"] if rec.state in ("signing", "done") or (rec.state in ("expired", "failed") and approvals >= 2) else []
            if rec.state != "signing" and rec.state != "pending_approval":
                path.append(rec.state)
            for state in path:
                assert actions.count((STATE_ENTRY[state], "coordinator")) == 1, (rid, rec.state, actions)

    @invariant()
    def never_signed_twice(self) -> None:
        for rid, n in self.world.nodes.calls.items():
            assert n == 1 or self.crashes > 0, f"{rid} was handed to the signer {n} times without a crash"


Lifecycle.TestCase.settings = settings(stateful_step_count=30)
TestLifecycle = Lifecycle.TestCase
