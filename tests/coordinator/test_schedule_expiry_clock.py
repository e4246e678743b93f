"""The refresh scheduler's due judgement does not follow the coordinator's wall clock back (p16).

``RefreshScheduler`` judged a key's refresh due with ``time.time()``: stepped back a day, a
refresh due now waited a day more (shares older than the policy's period stayed in use). Its
default clock is now the store's expiry clock (:meth:`coordinator.db.CoordinatorDb.expiry_ms`).
The nodes check the age again by their own (expiry) clock (README "Clock steps")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import coordinator.schedule as schedule_mod
from coordinator.db import CoordinatorDb, KeyRecord
from coordinator.schedule import MARGIN_MS, RefreshScheduler
from mpcnet.common.steadyclock import ExpiryClock
from tests.steady_fake import FakeSteady

DAY_MS = 86_400_000
T0 = 1_750_000_000_000
PERIOD_S = 3_600
KEY = KeyRecord(b"\x01" * 32, "k", b"\x02" * 33, b"\x00" * 32, 2, 3, "active", T0, "keygen-1")


class Coord:
    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall, self.steady = T0, FakeSteady(T0)
        self.db = CoordinatorDb(path, steady=self.steady.source())
        self.db.expiry = ExpiryClock.start(lambda: self.wall, self.db.steady.now_ms)
        monkeypatch.setattr(schedule_mod, "now_ms", lambda: self.wall)
        policy = SimpleNamespace(refresh_period_s=PERIOD_S)
        self.sched = RefreshScheduler(None, self.db, None, {}, lambda kid: policy, name="c")  # type: ignore[arg-type]

    def due(self) -> Any:
        return self.sched.due(KEY, self.sched.clock())


@pytest.fixture
def coord(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Coord]:
    c = Coord(tmp_path / "c.db", monkeypatch)
    yield c
    c.db.close()


def test_a_step_back_does_not_delay_a_due_refresh(coord: Coord) -> None:
    assert coord.due() is None
    coord.wall -= DAY_MS
    coord.steady.ms += PERIOD_S * 1000 + MARGIN_MS
    due = coord.due()
    assert due is not None and due.last_change_ms == T0


def test_not_due_before_its_period_by_either_clock(coord: Coord) -> None:
    coord.wall -= DAY_MS
    coord.steady.ms += PERIOD_S * 1000 + MARGIN_MS - 1
    assert coord.due() is None
    coord.wall = T0 + PERIOD_S * 1000 + MARGIN_MS  # a step forward is followed at once (the nodes judge again)
    assert coord.due() is not None
