"""A recovery ceremony that expired while the coordinator was stopped is not revived by a wall
clock stepped back before the restart (p16 review, newuser).

:meth:`CoordinatorDb.expiry_ms` adopts the wall clock again at each open: a restore order that
expired while the coordinator was down, restarted a day back, kept its ceremony collecting pieces
and restoring shares, and a drill stayed open a day longer. The store now keeps each ceremony's
steady creation time (``ceremony_steady``); its expiry and a drill's age are judged on
:meth:`CoordinatorDb.ceremony_clock_ms` (the later of the expiry clock and the creation stamp +
the steady time since)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import coordinator.ceremonies as ceremonies_mod
import coordinator.db as db_mod
import coordinator.recovery_proposals as proposals_mod
from coordinator.ceremonies import DRILL_MAX_MS
from governance.recovery import PiecePurpose
from tests.coordinator.recovery_util import World
from tests.coordinator.test_recovery_ceremonies import _configured, _refused
from tests.steady_fake import FakeSteady

DAY_MS = 86_400_000


class Clocks:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall = db_mod.now_ms()
        self.steady = FakeSteady(self.wall)
        monkeypatch.setattr(db_mod, "SteadySource", self.steady.source)
        for mod in (db_mod, ceremonies_mod, proposals_mod):
            monkeypatch.setattr(mod, "now_ms", lambda: self.wall)

    def down_then_back(self, world: World, real_ms: int) -> None:
        """The coordinator stops, ``real_ms`` pass, its wall clock is set back a day, it starts."""
        world.close()
        self.steady.ms += real_ms
        self.wall += real_ms - DAY_MS
        world.open()


@pytest.fixture
def clocks_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Clocks, World]]:
    clocks = Clocks(monkeypatch)
    w = World(tmp_path)
    yield clocks, w
    w.close()


def test_an_order_that_expired_while_down_restores_nothing(clocks_world: tuple[Clocks, World]) -> None:
    clocks, world = clocks_world
    digest = _configured(world)
    order = world.restore_order((3,), digest, expires_ms=clocks.wall + 60_000)
    world.propose_order(order, "ada", "bob")
    cid = order.order_id
    world.ceremonies.submit(world.pieces("officer1", cid, PiecePurpose.RESTORE), "officer1")
    clocks.down_then_back(world, 120_000)
    e = _refused(world.ceremonies.submit, world.pieces("officer2", cid, PiecePurpose.RESTORE), "officer2")
    assert e.code == grpc.StatusCode.FAILED_PRECONDITION and "the recovery order expired at" in e.message, e
    assert world.ceremonies.get(cid).state == "failed" and world.nodes[3].restored is None


def test_a_live_order_still_restores_after_a_restart_with_a_step_back(clocks_world: tuple[Clocks, World]) -> None:
    clocks, world = clocks_world
    digest = _configured(world)
    order = world.restore_order((3,), digest, expires_ms=clocks.wall + 600_000)
    world.propose_order(order, "ada", "bob")
    cid = order.order_id
    world.ceremonies.submit(world.pieces("officer1", cid, PiecePurpose.RESTORE), "officer1")
    clocks.down_then_back(world, 60_000)
    world.ceremonies.submit(world.pieces("officer2", cid, PiecePurpose.RESTORE), "officer2")
    assert world.ceremonies.get(cid).state != "failed" and world.nodes[3].restored is not None


def test_a_drill_open_past_its_limit_while_down_is_closed(clocks_world: tuple[Clocks, World]) -> None:
    clocks, world = clocks_world
    _configured(world)
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    clocks.down_then_back(world, DRILL_MAX_MS + 1000)
    world.ceremonies._retry_at.clear()
    world.ceremonies.check()
    rec = world.ceremonies.get(c.ceremony_id)
    assert rec.state == "failed" and "did not complete within" in rec.error
