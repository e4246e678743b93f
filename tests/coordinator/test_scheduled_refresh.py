"""Scheduled refresh (issue 11, item 5): the node's own decision (mpc_node.keyops.RefreshSchedule)
and the coordinator's scheduler (coordinator.schedule.RefreshScheduler) driving three in-process
nodes of a 2-of-3 cluster (no gRPC: node handles call the NodeService directly).

Clocks are faked without waiting: each node's :class:`mpc_node.clock.NodeClock` gets an offset
(what ``MPC_TEST_CLOCK_OFFSET_S`` does in test mode) and the scheduler a clock ahead of the real
one by the same amount. The key's own policy (scope = key id, admin-signed, installed on every
node) has ``refresh_period_s`` = 60, the minimum.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from coordinator.keyop_store import KeyOpRecord
from coordinator.schedule import RefreshScheduler
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation
from governance.policy import KeyPolicy
from mpc_node.clock import NodeClock
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.common.steadyclock import ExpiryClock
from mpcnet.wire.mpc.v1 import node_pb2
from tests.coordinator.test_keyops_orchestration import Coordinator
from tests.integration.govtools import bundle, default_policy, signed_change, signing_request
from tests.network import keyops_util
from tests.network.keyops_util import Handle, close, dkg, run, services, share

N, T = 3, 2
PERIOD = 60
ALL = (1, 2, 3)
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("schedule"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = services(lay)
    yield out
    close(out)


@pytest.fixture(autouse=True)
def real_clocks(svcs: dict[int, NodeService]) -> Iterator[None]:
    yield
    for s in svcs.values():
        s.clock = NodeClock()


@pytest.fixture
def coord(tmp_path: Path, lay: Layout, svcs: dict[int, NodeService]) -> Iterator[Coordinator]:
    c = Coordinator(tmp_path, lay, svcs, {i: Handle(s) for i, s in svcs.items()})
    yield c
    c.close()


def _shift(svcs: dict[int, NodeService], seconds: float, only: tuple[int, ...] = ALL) -> None:
    for i in only:
        svcs[i].clock = NodeClock(round(seconds * 1000))


def _key(lay: Layout, svcs: dict[int, NodeService], period: int = PERIOD) -> node_pb2.DkgResult:
    """A fresh 2-of-3 key; with ``period``, its own policy (the default's rules and that period)
    is installed on every node."""
    key = dkg(svcs, T)
    if period:
        policy = dataclasses.replace(default_policy(lay), version=1, refresh_period_s=period)
        data = signed_change(lay, policy, None, "admin1", "admin2", scope=key.key_id).to_bytes()
        for s in svcs.values():
            s.gov.install(data, actor="test")
    return key


def sign(lay: Layout, svcs: dict[int, NodeService], key: Any, signers: list[int], committee: tuple[int, ...], epoch: int) -> Any:
    """:func:`tests.network.keyops_util.sign` under the key's own policy (the one in force on node 1)."""
    policy = svcs[1].gov.policy_for(key.key_id)[1]  # type: ignore[index]

    def approved(lay: Layout, key_id: bytes, digest: bytes) -> tuple[str, bytes]:
        req = signing_request(lay, key_id, digest, policy=policy)
        return req.request_id, bundle(lay, req, "approver1", "approver2")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keyops_util, "approved_bundle", approved)
        return keyops_util.sign(lay, svcs, key, signers, committee, epoch)


def _unsigned_refresh(svc: NodeService, key: Any, epoch: int = 0) -> bytes:
    op = KeyOperation(
        svc.gov.governance_root, os.urandom(16), KeyOpKind.REFRESH, key.key_id, key.public_key, key.chain_code, epoch, T, ALL, T,
        ALL, svc.roster_state.version, "scheduled",
    )
    return SignedKeyOperation(op, ()).to_bytes()


def _start(svc: NodeService, op: bytes) -> RpcError:
    req = node_pb2.StartSessionRequest(
        session_id=os.urandom(32), reshare=node_pb2.ReshareParams(operation=op, dealers=list(ALL), key_label=b"keyops")
    )
    with pytest.raises(RpcError) as e:
        svc.StartSession(req, None)
    return e.value


def _refresh(svcs: dict[int, NodeService], op: bytes) -> None:
    """Run the refresh session and commit it on every node (the test plays the coordinator)."""
    sid = os.urandom(32)
    res = run(svcs, sid, list(ALL), reshare=node_pb2.ReshareParams(operation=op, dealers=list(ALL), key_label=b"keyops"))
    receipts = [r.reshare_result.receipt for r in res.values()]
    key_id = SignedKeyOperation.from_bytes(op).operation.key_id
    for s in svcs.values():
        s.CommitEpoch(node_pb2.CommitEpochRequest(key_id=key_id, session_id=sid, receipts=receipts), None)


# --- the node decides by its own policy, record and clock --------------------------------------


def test_node_refuses_a_refresh_that_is_not_due_and_takes_part_once_due(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = _key(lay, svcs)
    svc = svcs[1]
    op = _unsigned_refresh(svc, key)
    before = len([e for e in svc.audit.entries() if e.action == "key-reshare" and e.outcome == "refused"])
    e = _start(svc, op)
    assert e.code == Code.PERMISSION_DENIED
    assert e.message.startswith("reshare.operation.signatures: missing, and no scheduled refresh is due here (not due: the share is ")
    assert "the policy's period is 60 s" in e.message
    _shift(svcs, PERIOD - 2)  # almost: still refused
    assert re.search(r"not due: the share is 5[89] s old", _start(svc, op).message)
    refused = [e for e in svc.audit.entries() if e.action == "key-reshare" and e.outcome == "refused"][before:]
    assert len(refused) == 2 and "not due" in str(refused[-1].details["reason"])
    # one node whose clock says not yet: it refuses, so no session runs
    _shift(svcs, PERIOD + 1, only=(1, 2))
    assert "not due" in _start(svcs[3], op).message
    # every node's share is old enough by its own clock: the refresh runs, authorized by the schedule
    _shift(svcs, PERIOD + 1)
    old = share(svc, key.key_id)
    _refresh(svcs, op)
    new = share(svc, key.key_id)
    assert old is not None and new is not None and new.secret_share != old.secret_share and new.public_key == old.public_key
    accepted = [e for e in svc.audit.entries() if e.action == "key-reshare" and e.outcome == "accepted"][-1]
    assert accepted.details["authorized_by"] == "schedule"
    assert isinstance(sign(lay, svcs, key, [1, 3], ALL, 1), bytes)
    # the new share is fresh: the next unsigned refresh is not due (by the real clock)
    _shift(svcs, 0)
    assert re.search(r"not due: the share is [0-9] s old", _start(svc, _unsigned_refresh(svc, key, epoch=1)).message)


def test_node_without_a_period_refuses_every_unsigned_refresh(lay: Layout, svcs: dict[int, NodeService]) -> None:
    key = _key(lay, svcs, period=0)  # the default policy: no refresh_period_s
    _shift(svcs, 400 * 86400)
    e = _start(svcs[1], _unsigned_refresh(svcs[1], key))
    assert e.code == Code.PERMISSION_DENIED
    assert "no scheduled refresh is due here (the key's policy here has no refresh_period_s)" in e.message
    # an unsigned *reshare* is never authorized by the schedule (the message stays the general one)
    s = svcs[1]
    op = KeyOperation(s.gov.governance_root, os.urandom(16), KeyOpKind.RESHARE, key.key_id, key.public_key, key.chain_code, 0, T,
                      ALL, 3, ALL, s.roster_state.version, "x")
    e = _start(s, SignedKeyOperation(op, ()).to_bytes())
    assert e.code == Code.PERMISSION_DENIED and "no refresh is due" in e.message and "scheduled" not in e.message


# --- the coordinator's scheduler -----------------------------------------------------------------


class Clock:
    """The scheduler's clock: the real one plus ``offset_s``."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> int:
        return NodeClock(round(self.offset_s * 1000)).now_ms()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The coordinator's clock (scheduler and key-operation records alike)."""
    c = Clock()
    monkeypatch.setattr("coordinator.keyops.now_ms", c)
    return c


def _scheduler(coord: Coordinator, key: Any, clock: Clock, period: int = PERIOD) -> RefreshScheduler:
    base = default_policy(coord.lay)
    policies = {key.key_id: dataclasses.replace(base, version=1, refresh_period_s=period)}
    coord.add_key(key)
    return RefreshScheduler(coord.ops, coord.db, coord.audit, coord.handles,  # type: ignore[arg-type]
                            lambda kid: policies.get(kid, base), name="coordinator", clock=clock)


def _jump(svcs: dict[int, NodeService], clock: Clock, seconds: float) -> None:
    clock.offset_s = seconds
    _shift(svcs, seconds)


def test_scheduler_starts_exactly_one_refresh_when_due_and_none_before(
    lay: Layout, svcs: dict[int, NodeService], coord: Coordinator, clock: Clock
) -> None:
    key = _key(lay, svcs)
    sched = _scheduler(coord, key, clock)
    assert sched.check() == []
    _jump(svcs, clock, PERIOD)  # the period, but not the margin (2 s)
    assert sched.check() == []
    _jump(svcs, clock, PERIOD + 3)
    started = sched.check()
    assert len(started) == 1
    assert sched.check() == []  # never two at once: the first is live
    st = coord.wait(started[0])
    assert st.state == "done" and st.authorized_by == "schedule" and st.kind == "refresh" and st.new_epoch == 1
    assert coord.db.key_epoch(key.key_id, N)[0] == 1
    assert all(s.store.key_epoch(key.key_id).epoch == 1 for s in svcs.values())  # type: ignore[union-attr]
    assert isinstance(sign(lay, svcs, key, [2, 3], ALL, 1), bytes)
    scheduled = [e for e in coord.audit.entries() if e.action == "key-refresh-scheduled"]
    assert len(scheduled) == 1 and scheduled[0].details["operation"] == started[0] and scheduled[0].details["period_s"] == PERIOD
    _jump(svcs, clock, 0)  # the new shares are fresh
    assert sched.check() == []
    other = _key(lay, svcs, period=0)  # a key without a period is never refreshed
    coord.add_key(other)
    _jump(svcs, clock, 400 * 86400)
    assert [coord.ops.get(i).key_id for i in sched.check()] == [key.key_id]


def test_scheduler_backs_off_after_a_failure(lay: Layout, svcs: dict[int, NodeService], coord: Coordinator, clock: Clock) -> None:
    key = _key(lay, svcs)
    sched = _scheduler(coord, key, clock)
    _jump(svcs, clock, PERIOD + 3)
    coord.handles[3].down = True  # still believed healthy: the session fails
    (first,) = sched.check()
    assert coord.wait(first).state == "failed"
    coord.handles[3].down = False
    assert sched.check() == []  # backing off: min(period, 60 s)
    _jump(svcs, clock, PERIOD + 3 + 30)
    assert sched.check() == []
    _jump(svcs, clock, PERIOD + 3 + 61)
    (second,) = sched.check()
    assert second != first and coord.wait(second).state == "done"


def test_scheduler_skips_a_key_with_a_live_operation_or_an_unhealthy_committee(
    lay: Layout, svcs: dict[int, NodeService], coord: Coordinator, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    key = _key(lay, svcs)
    sched = _scheduler(coord, key, clock)
    _jump(svcs, clock, PERIOD + 3)
    # a node of the committee is down: skipped, logged once
    coord.handles[2].healthy = False
    coord.handles[2].down = True  # really down: the second health check fails too
    with caplog.at_level(logging.WARNING, logger="coordinator.schedule"):
        # the first pass asks node 2 again on its own thread (put off, no warning); once that
        # check ended (not before: it runs beside the passes), the next passes skip it, warned once
        assert sched.check() == [] and sched.wait_idle(10.0)
        assert sched.check() == [] and sched.check() == []
    assert len([r for r in caplog.records if "scheduled refresh skipped" in r.getMessage()]) == 1
    coord.handles[2].healthy, coord.handles[2].down = True, False
    # another operation of the key is live (e.g. an admin's reshare): skipped
    signed = SignedKeyOperation.from_bytes(_unsigned_refresh(svcs[1], key))
    t = clock()
    live = KeyOpRecord(signed.operation.proposal_id, key.key_id, signed.to_bytes(), "admin-quorum", "running", b"", (), (), (), "", 0,
                       t, t)
    assert coord.db.add_key_operation(live, coord.ops._event("test", "started", signed.operation))
    assert sched.check() == []
    coord.db.fail_key_operation(live.op_id, "test", coord.ops._event("test", "failed", signed.operation), t)
    (op_id,) = sched.check()  # a failed admin operation does not hold the schedule back
    assert coord.wait(op_id).state == "done"


def test_a_coordinator_early_for_the_nodes_gets_the_refresh_refused(
    lay: Layout, svcs: dict[int, NodeService], coord: Coordinator, clock: Clock
) -> None:
    key = _key(lay, svcs)
    sched = _scheduler(coord, key, clock)
    clock.offset_s = PERIOD + 3  # only the coordinator's clock is ahead: every node refuses
    (op_id,) = sched.check()
    st = coord.wait(op_id)
    assert st.state == "failed" and "not due" in st.error
    assert all(s.store.key_epoch(key.key_id).epoch == 0 for s in svcs.values())  # type: ignore[union-attr]
    assert isinstance(sign(lay, svcs, key, [1, 2], ALL, 0), bytes)


def test_policy_period_is_checked(lay: Layout) -> None:
    with pytest.raises(Exception, match="refresh_period_s"):
        KeyPolicy.from_dict(default_policy(lay).to_dict() | {"refresh_period_s": 59})


# --- a committee member the probe judged down is asked once more (coordinator.liveness) ------------


class LiveHandle(Handle):
    """A handle whose health follows mark_down / mark_up, as a NodeHandle's does."""

    def mark_down(self, reason: str) -> None:
        self.healthy, self.last_error = False, reason

    def mark_up(self) -> None:
        self.healthy, self.last_error = True, ""


@pytest.fixture
def live(tmp_path: Path, lay: Layout, svcs: dict[int, NodeService]) -> Iterator[Coordinator]:
    c = Coordinator(tmp_path, lay, svcs, {i: LiveHandle(s) for i, s in svcs.items()})
    c.ops.recheck_s = 2.0
    yield c
    c.close()


def _health_calls(monkeypatch: pytest.MonkeyPatch, svc: NodeService) -> list[int]:
    calls: list[int] = []
    real = svc.Health

    def health(req: node_pb2.NodeHealthRequest, ctx: Any) -> node_pb2.NodeHealthResponse:
        calls.append(1)
        return real(req, ctx)

    monkeypatch.setattr(svc, "Health", health)
    return calls


def test_a_member_that_answered_its_probe_late_is_asked_again_and_the_refresh_starts(
    lay: Layout, svcs: dict[int, NodeService], live: Coordinator, clock: Clock, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = _key(lay, svcs)
    sched = _scheduler(live, key, clock)
    back: list[int] = []
    live.ops.on_back = back.append
    calls = _health_calls(monkeypatch, svcs[2])
    _jump(svcs, clock, PERIOD + 3)
    live.handles[2].mark_down("DEADLINE_EXCEEDED: Deadline Exceeded")  # the 1 s probe while node 2 was busy
    with caplog.at_level(logging.INFO, logger="coordinator.schedule"):
        # the second check runs on its own thread: this pass does not wait for it (one that ends
        # before the pass reaches the key has marked node 2 up: the refresh starts in this pass)
        first = sched.check()
        assert sched.wait_idle(10.0)
        assert calls == [1] and back == [2] and live.handles[2].healthy is True  # asked once, resynced
        live.handles[2].mark_down("DEADLINE_EXCEEDED: Deadline Exceeded")  # the probe may judge it down again meanwhile
        (op_id,) = first or sched.check()  # the second check's answer counts (ANSWER_FRESH_S), not the probe's mark
    assert "committee node(s) [2] were judged unavailable; asking them again (up to 2.0 s)" in caplog.text
    assert "scheduled refresh skipped" not in caplog.text
    assert live.wait(op_id).state == "done"


def test_a_member_really_down_is_asked_once_per_down_spell_and_the_key_skipped(
    lay: Layout, svcs: dict[int, NodeService], live: Coordinator, clock: Clock, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dead node costs the scheduler one wait of up to liveness_recheck_s, not one per pass."""
    import coordinator.schedule as schedule_mod

    key = _key(lay, svcs)
    sched = _scheduler(live, key, clock)
    asked: list[tuple[list[int], float]] = []
    real = schedule_mod.recheck

    def recheck(nodes: Any, indices: Any, timeout_s: float, on_back: Any = None) -> dict[int, str]:
        asked.append((list(indices), timeout_s))
        return real(nodes, indices, timeout_s, on_back)

    monkeypatch.setattr(schedule_mod, "recheck", recheck)
    _jump(svcs, clock, PERIOD + 3)
    live.handles[2].mark_down("UNAVAILABLE: connection refused")
    live.handles[2].down = True
    try:
        with caplog.at_level(logging.INFO, logger="coordinator.schedule"):
            assert sched.check() == [] and sched.wait_idle(10.0)
            assert sched.check() == [] and sched.check() == []
        assert asked == [([2], 2.0)]
        assert "node 2 (node-2) is still unavailable after a second health check: UNAVAILABLE: node is down (test)" in caplog.text
        assert len([r for r in caplog.records if "scheduled refresh skipped" in r.getMessage()]) == 1
        assert live.handles[2].healthy is False
        live.handles[2].mark_up()  # a probe saw it again (a pass while the key is not due) ...
        _jump(svcs, clock, 0)
        assert sched.check() == []
        live.handles[2].mark_down("UNAVAILABLE: connection refused")  # ... then judged it down again: asked again
        _jump(svcs, clock, PERIOD + 3)
        assert sched.check() == [] and sched.wait_idle(10.0)
        assert asked == [([2], 2.0), ([2], 2.0)]
    finally:
        live.handles[2].down = False


def test_nobody_is_asked_again_when_the_answer_cannot_save_the_refresh(
    lay: Layout, svcs: dict[int, NodeService], live: Coordinator, clock: Clock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Node 3 has no connection here (or node 1 was never probed): whatever node 2 answers, no
    refresh can start, so no wait of up to liveness_recheck_s."""
    key = _key(lay, svcs)
    sched = _scheduler(live, key, clock)
    calls = _health_calls(monkeypatch, svcs[2])
    _jump(svcs, clock, PERIOD + 3)
    live.handles[2].mark_down("DEADLINE_EXCEEDED: Deadline Exceeded")
    h3 = live.handles.pop(3)
    try:
        assert sched.check() == []
    finally:
        live.handles[3] = h3
    live.handles[1].healthy = None  # not yet probed: not judged down, not asked
    assert sched.check() == [] and calls == []
    live.handles[1].healthy = True
    first = sched.check()  # now it can save the refresh: asked (started at once if that check ended first)
    assert sched.wait_idle(10.0)
    (op_id,) = first or sched.check()
    assert calls == [1] and live.wait(op_id).state == "done"


def test_one_second_check_per_pass_for_every_key_waiting_on_the_same_members(
    lay: Layout, svcs: dict[int, NodeService], live: Coordinator, clock: Clock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two due keys, both held back by node 2 judged down: one fan-out, and both refreshes start."""
    key1, key2 = _key(lay, svcs), _key(lay, svcs)
    sched = _scheduler(live, key1, clock)
    base = default_policy(lay)
    periodic = {k.key_id: dataclasses.replace(base, version=1, refresh_period_s=PERIOD) for k in (key1, key2)}
    live.add_key(key2)
    sched.policy_for = lambda kid: periodic.get(kid, base)
    calls = _health_calls(monkeypatch, svcs[2])
    _jump(svcs, clock, PERIOD + 3)
    live.handles[2].mark_down("DEADLINE_EXCEEDED: Deadline Exceeded")
    first = sched.check()  # put off while node 2 is asked (started if that check ended before the pass reached them)
    assert sched.wait_idle(10.0)
    started = first + sched.check()
    assert calls == [1] and len(started) == 2
    assert sorted(live.ops.get(i).key_id for i in started) == sorted([key1.key_id, key2.key_id])
    assert all(live.wait(i).state == "done" for i in started)


def test_the_pass_does_not_wait_for_the_second_check_and_a_stale_answer_does_not_count(
    lay: Layout, svcs: dict[int, NodeService], live: Coordinator, clock: Clock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second check runs on its own thread: a member that takes its time to answer does not
    hold the background pass (health probes, commits, refills) up. Its answer counts for
    ANSWER_FRESH_S seconds only; one check runs at a time; after stop() none starts."""
    import coordinator.schedule as schedule_mod

    key = _key(lay, svcs)
    now = [1000.0]
    sched = _scheduler(live, key, clock)
    sched.monotonic = lambda: now[0]
    release = threading.Event()
    real = svcs[2].Health
    calls: list[int] = []

    def slow_health(req: node_pb2.NodeHealthRequest, ctx: Any) -> node_pb2.NodeHealthResponse:
        calls.append(1)
        release.wait(5.0)
        return real(req, ctx)

    monkeypatch.setattr(svcs[2], "Health", slow_health)
    _jump(svcs, clock, PERIOD + 3)
    live.handles[2].mark_down("DEADLINE_EXCEEDED: Deadline Exceeded")
    t0 = time.monotonic()
    assert sched.check() == [] and sched.check() == []  # neither pass waits; one check runs, not two
    assert time.monotonic() - t0 < 1.0 and not sched.wait_idle(0.05)
    release.set()
    assert sched.wait_idle(10.0) and calls == [1]
    live.handles[2].mark_down("DEADLINE_EXCEEDED: Deadline Exceeded")
    now[0] += schedule_mod.ANSWER_FRESH_S + 1  # the answer is too old to count now: asked again instead
    first = sched.check()  # asked again (the refresh starts in this pass if that check ended before it reached the key)
    assert sched.wait_idle(10.0) and calls == [1, 1]
    assert all(live.wait(i).state == "done" for i in first)
    if first:  # refreshed: due again one period later
        _jump(svcs, clock, 2 * (PERIOD + 3))
    sched.stop()
    live.handles[2].mark_down("DEADLINE_EXCEEDED: Deadline Exceeded")
    now[0] += schedule_mod.ANSWER_FRESH_S + 1
    assert sched.check() == [] and sched.wait_idle(1.0) and calls == [1, 1]  # stopped: no check starts


def test_a_node_clock_set_back_does_not_make_a_due_refresh_wait(lay: Layout, svcs: dict[int, NodeService]) -> None:
    """Issue 14 red team (clock steps): a share's age is judged by the node's expiry clock, the
    later of the wall clock and (the wall clock at start + steady time since)."""
    key = _key(lay, svcs)
    op = _unsigned_refresh(svcs[1], key)
    saved = {i: s.expiry_clock for i, s in svcs.items()}
    try:
        for s in svcs.values():  # a period of steady time passes, and every wall clock is set back a day
            steady = s.store.steady.now_ms()
            s.expiry_clock = ExpiryClock(
                lambda s=s: s.clock.now_ms(), lambda t=steady: t + (PERIOD + 1) * 1000, NodeClock().now_ms(), steady,
            )
        _shift(svcs, -86_400)
        old = share(svcs[1], key.key_id)
        _refresh(svcs, op)
        new = share(svcs[1], key.key_id)
        assert old is not None and new is not None and new.secret_share != old.secret_share
    finally:
        for i, s in svcs.items():
            s.expiry_clock = saved[i]
