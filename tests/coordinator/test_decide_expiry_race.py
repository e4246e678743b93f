"""An approval landing between the expiry sweep and its decision's transaction is refused
(issue 16 p16, decide review).

``Requests.decide`` runs the sweep (``expire_due``) and then, after verifying the approval,
records it in its own transaction; that transaction did not judge expiry again, so a request
whose lifetime ended in between had the approval recorded (and, with a quorum, was sent to the
nodes to sign) although it had expired. The decision's transaction now judges expiry as the
sweep does (``CoordinatorDb.expiry_ms`` or the steady lifetime since ``created_steady_ms``):
FAILED_PRECONDITION naming ``request_id``, the request EXPIRED with the sweep's ``sign-expired``
entry, the refusal audited, no decision stored. The race is injected by a hook that runs right
after the real sweep and moves the clocks past the request's lifetime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from governance.approval import Decision
from mpcnet.common.rpc import RpcError
from tests.steady_fake import FakeSteady

from .lifecycle_util import T0_MS, TTL_S, World

DAY_MS = 86_400_000


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    fake = FakeSteady(T0_MS)
    monkeypatch.setattr("coordinator.db.SteadySource", fake.source)
    w = World(tmp_path)
    monkeypatch.setattr("coordinator.policies.now_ms", w.clock)
    w.steady = fake  # type: ignore[attr-defined]
    yield w
    w.close()


def _after_sweep(world: Any, monkeypatch: pytest.MonkeyPatch, hook: Callable[[], None]) -> None:
    """Run ``hook`` once right after the next real sweep (between it and the decision's transaction)."""
    real = world.requests.expire_due
    fired: list[bool] = []

    def sweep_then_hook() -> None:
        real()
        if not fired:
            fired.append(True)
            hook()

    monkeypatch.setattr(world.requests, "expire_due", sweep_then_hook)


def _assert_refused_and_expired(world: Any, rid: str, e: pytest.ExceptionInfo[RpcError], approvers: set[str]) -> None:
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.message.startswith("request_id:") and "EXPIRED" in e.value.message
    rec = world.db.get_sign_request(rid)
    assert rec is not None and rec.state == "expired"
    assert {a.approver for a in world.db.approvals(rid)} == approvers  # the late decision is not stored
    assert rid not in world.nodes.calls and rid not in world.requests.queue
    world.requests.flush_audit()
    actions = [(x.action, x.outcome) for x in world.entries(rid)]
    assert actions.count(("sign-expired", "expired")) == 1  # audited like the sweep's expiry, once
    assert ("sign-decision", "refused") in actions
    assert ("sign-decision", "approve") not in actions[actions.index(("sign-expired", "expired")):]


def test_an_approval_after_the_sweep_for_a_request_expired_by_the_wall_clock_is_refused(
    world: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    world.submit("w1")
    world.decide("w1", "alice", Decision.APPROVE)

    def lifetime_passes() -> None:
        world.clock.ms += (TTL_S + 1) * 1000
        world.steady.ms += (TTL_S + 1) * 1000

    _after_sweep(world, monkeypatch, lifetime_passes)
    with pytest.raises(RpcError) as e:
        world.decide("w1", "bert", Decision.APPROVE)  # would complete the quorum
    _assert_refused_and_expired(world, "w1", e, {"alice"})


def test_an_approval_after_the_sweep_for_a_request_expired_by_the_steady_clock_is_refused(
    world: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    world.submit("s1")

    def lifetime_passes_with_the_wall_clock_stepped_back() -> None:
        world.steady.ms += (TTL_S + 1) * 1000
        world.clock.ms -= DAY_MS

    _after_sweep(world, monkeypatch, lifetime_passes_with_the_wall_clock_stepped_back)
    with pytest.raises(RpcError) as e:
        world.decide("s1", "alice", Decision.APPROVE)
    _assert_refused_and_expired(world, "s1", e, set())


def test_a_rejection_after_the_sweep_is_refused_too(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    world.submit("r1")

    def lifetime_passes() -> None:
        world.clock.ms += (TTL_S + 1) * 1000
        world.steady.ms += (TTL_S + 1) * 1000

    _after_sweep(world, monkeypatch, lifetime_passes)
    with pytest.raises(RpcError) as e:
        world.decide("r1", "alice", Decision.REJECT)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    rec = world.db.get_sign_request("r1")
    assert rec is not None and rec.state == "expired" and world.db.approvals("r1") == []


def test_an_approval_within_the_lifetime_is_still_recorded(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    world.submit("ok")

    def a_little_time_passes() -> None:
        world.clock.ms += (TTL_S - 1) * 1000
        world.steady.ms += (TTL_S - 1) * 1000

    _after_sweep(world, monkeypatch, a_little_time_passes)
    world.decide("ok", "alice", Decision.APPROVE)
    world.decide("ok", "bert", Decision.APPROVE)
    assert world.sign_next() == "ok"
    rec = world.db.get_sign_request("ok")
    assert rec is not None and rec.state == "done"
