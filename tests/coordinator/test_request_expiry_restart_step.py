"""A request that expired while the coordinator was down is not revived by a wall clock stepped
back before the restart (issue 16 p16, newuser review).

:meth:`CoordinatorDb.expiry_ms` restarts from the wall clock at each open (by design: a clock
that was wrongly ahead must not stay ahead forever), so a request whose ``expires_ms`` passed
while the coordinator was stopped, restarted with its wall clock stepped back, was PENDING again:
approvable, and once approved sent to the nodes to sign. A pending or signing request's expiry is
now also judged on the store's steady clock, which continues across restarts: the request's
lifetime (``expires_ms - created_ms``) counted from ``created_steady_ms``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def _down_past_expiry_then_back(world: Any) -> None:
    """The coordinator stops, the request's lifetime passes in real (steady) time, its wall clock
    is stepped back a day, and it starts again over the same files."""
    world.steady.ms += (TTL_S + 1) * 1000
    world.clock.ms += (TTL_S + 1) * 1000 - DAY_MS
    world.restart()


def test_a_request_that_expired_while_down_cannot_be_approved_after_a_step_back(world: Any) -> None:
    world.submit("r1")
    world.decide("r1", "alice", Decision.APPROVE)
    _down_past_expiry_then_back(world)
    with pytest.raises(RpcError) as e:
        world.decide("r1", "bert", Decision.APPROVE)
    assert "EXPIRED" in e.value.message or "expired" in e.value.message
    rec = world.db.get_sign_request("r1")
    assert rec is not None and rec.state == "expired"
    assert "r1" not in world.nodes.calls


def test_the_sweep_expires_it_after_the_restart(world: Any) -> None:
    world.submit("r2")
    _down_past_expiry_then_back(world)
    world.requests.expire_due()
    rec = world.db.get_sign_request("r2")
    assert rec is not None and rec.state == "expired"


def test_an_approved_request_that_expired_while_down_is_not_signed(world: Any) -> None:
    world.submit("r3")
    world.decide("r3", "alice", Decision.APPROVE)
    world.decide("r3", "bert", Decision.APPROVE)  # SIGNING, queued; the coordinator dies before it runs
    world.requests.queue.clear()
    _down_past_expiry_then_back(world)
    while world.sign_next() is not None:
        pass
    rec = world.db.get_sign_request("r3")
    assert rec is not None and rec.state == "expired" and "r3" not in world.nodes.calls


def test_a_live_request_still_signs_after_a_restart_with_a_step_back(world: Any) -> None:
    world.submit("r4")
    world.steady.ms += 1000
    world.clock.ms += 1000 - DAY_MS
    world.restart()
    world.decide("r4", "alice", Decision.APPROVE)
    world.decide("r4", "bert", Decision.APPROVE)
    assert world.sign_next() == "r4"
    rec = world.db.get_sign_request("r4")
    assert rec is not None and rec.state == "done"
