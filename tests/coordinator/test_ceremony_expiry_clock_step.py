"""Ceremony, drill and recovery-order expiry do not follow the coordinator's wall clock back (p16).

``Ceremonies._expire`` / ``_follow_up`` and ``RecoveryProposals`` compared the order's
``expires_ms`` and a drill's age with ``time.time()``: stepped back a day, an expired restore
order could still be approved and its ceremony kept collecting pieces, and a drill stayed open a
day longer. They now read :meth:`coordinator.db.CoordinatorDb.expiry_ms`. The order's
``expires_ms`` is signed by the admins and checked by the nodes: it stays a wall time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import coordinator.ceremonies as ceremonies_mod
import coordinator.recovery_proposals as proposals_mod
from coordinator.ceremonies import DRILL_MAX_MS
from coordinator.db import now_ms
from governance.recovery import PiecePurpose
from mpcnet.common.steadyclock import ExpiryClock
from tests.coordinator.recovery_util import World
from tests.coordinator.test_recovery_ceremonies import _configured, _refused

DAY_MS = 86_400_000


class Clocks:
    """The wall clock the coordinator reads (settable) and the steady clock behind its expiry clock."""

    def __init__(self, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall, self.steady = now_ms(), 1_000_000
        world.db.expiry = ExpiryClock.start(lambda: self.wall, lambda: self.steady)
        monkeypatch.setattr(ceremonies_mod, "now_ms", lambda: self.wall)
        monkeypatch.setattr(proposals_mod, "now_ms", lambda: self.wall)

    def step_back_and_wait(self, wait_ms: int) -> None:
        self.wall -= DAY_MS
        self.steady += wait_ms


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def test_a_step_back_keeps_no_drill_open(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    _configured(world)
    clocks = Clocks(world, monkeypatch)
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    clocks.step_back_and_wait(DRILL_MAX_MS + 1000)
    world.ceremonies._retry_at.clear()
    world.ceremonies.check()
    rec = world.ceremonies.get(c.ceremony_id)
    assert rec.state == "failed" and "did not complete within" in rec.error


def test_a_step_back_revives_no_expired_order(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = _configured(world)
    clocks = Clocks(world, monkeypatch)
    order = world.restore_order((3,), digest, expires_ms=clocks.wall + 60_000)
    p = world.propose_order(order, "ada")
    clocks.step_back_and_wait(120_000)
    e = _refused(world.approve, p.proposal_id, "bob", order.encode())  # approved too late: not applied
    assert e.code == grpc.StatusCode.FAILED_PRECONDITION and "expires_ms" in e.message, e
    assert world.ceremonies.db.get_ceremony(order.order_id) is None


def test_a_step_back_keeps_no_expired_ceremony_collecting(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = _configured(world)
    clocks = Clocks(world, monkeypatch)
    order = world.restore_order((3,), digest, expires_ms=clocks.wall + 60_000)
    world.propose_order(order, "ada", "bob")
    cid = order.order_id
    world.ceremonies.submit(world.pieces("officer1", cid, PiecePurpose.RESTORE), "officer1")
    clocks.step_back_and_wait(120_000)
    e = _refused(world.ceremonies.submit, world.pieces("officer2", cid, PiecePurpose.RESTORE), "officer2")
    assert e.code == grpc.StatusCode.FAILED_PRECONDITION and "the recovery order expired at" in e.message, e
    rec = world.ceremonies.get(cid)
    assert rec.state == "failed" and world.nodes[3].restored is None


def test_a_step_back_hides_no_overdue_drill(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Backups.status`` (``drill_overdue``, and the drill-age gauge behind the alert) judged the
    drill's age on the wall clock: stepped back a day, an overdue drill was reported on time."""
    _configured(world, drill_period_s=86_400)
    clocks = Clocks(world, monkeypatch)
    monkeypatch.setattr("coordinator.backups.now_ms", lambda: clocks.wall)
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    assert world.ceremonies.submit(world.pieces("officer3", c.ceremony_id, PiecePurpose.DRILL), "officer3").state == "done"
    [row] = world.backups.status()
    assert not row.drill_overdue
    clocks.wall = row.last_drill_unix_ms - 1000  # stepped back (to before the drill) ...
    clocks.steady += DAY_MS + 1000  # ... and a day passes
    [row] = world.backups.status()
    assert row.drill_overdue
