"""A scheduled refresh is not delayed by a wall clock stepped back across a coordinator restart
(p16 review, newuser).

The scheduler's clock, :meth:`CoordinatorDb.expiry_ms`, adopts the wall clock again at each open,
and the key's last change is a wall stamp: stepped back a day before each restart, a refresh due
now waited a day more, and again after the next restart (indefinitely). The store now keeps the
steady time of each key's last share change (creation, a refresh or reshare done:
``key_change_steady``), and the age is the larger of the wall and the steady one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import coordinator.db as db_mod
import coordinator.schedule as schedule_mod
from coordinator.db import AuditEvent, CoordinatorDb, KeyRecord
from coordinator.keyop_store import KeyOpRecord
from coordinator.schedule import MARGIN_MS, SCHEDULE, RefreshScheduler
from tests.steady_fake import FakeSteady

DAY_MS = 86_400_000
T0 = 1_750_000_000_000
PERIOD_S = 3_600
KID = b"\x01" * 32
KEY = KeyRecord(KID, "k", b"\x02" * 33, b"\x00" * 32, 2, 3, "active", T0, "keygen-1")


class Coord:
    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path, self.wall, self.steady = path, T0, FakeSteady(T0)
        monkeypatch.setattr(schedule_mod, "now_ms", lambda: self.wall)
        monkeypatch.setattr(db_mod, "now_ms", lambda: self.wall)
        self._open()

    def _open(self) -> None:
        self.db = CoordinatorDb(self.path, steady=self.steady.source())
        policy = SimpleNamespace(refresh_period_s=PERIOD_S)
        self.sched = RefreshScheduler(None, self.db, None, {}, lambda kid: policy, name="c")  # type: ignore[arg-type]

    def restart_after(self, real_ms: int, step_ms: int) -> None:
        """Stopped for ``real_ms`` of real time, the wall clock stepped by ``step_ms`` meanwhile."""
        self.db.close()
        self.steady.ms += real_ms
        self.wall += real_ms + step_ms
        self._open()

    def due(self) -> Any:
        return self.sched.due(self.db.get_key(KID), self.sched.clock())  # type: ignore[arg-type]


@pytest.fixture
def coord(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Coord]:
    c = Coord(tmp_path / "c.db", monkeypatch)
    c.db.add_key(KEY)
    yield c
    c.db.close()


def test_a_step_back_across_a_restart_does_not_delay_a_due_refresh(coord: Coord) -> None:
    assert coord.due() is None
    coord.restart_after(PERIOD_S * 1000 + MARGIN_MS, -DAY_MS)
    assert coord.due() is not None


def test_repeated_steps_back_cannot_postpone_it(coord: Coord) -> None:
    for _ in range(3):
        coord.restart_after(PERIOD_S * 1000 // 3 + MARGIN_MS, -DAY_MS)
    assert coord.due() is not None


def test_not_due_before_its_period_by_either_clock(coord: Coord) -> None:
    coord.restart_after(PERIOD_S * 1000 + MARGIN_MS - 1, -DAY_MS)
    assert coord.due() is None


def test_a_done_refresh_restarts_the_steady_age(coord: Coord) -> None:
    coord.restart_after(PERIOD_S * 1000 + MARGIN_MS, 0)
    assert coord.due() is not None
    ev = AuditEvent("c", "key-refresh", "op-1", "started", {})
    rec = KeyOpRecord("op-1", KID, b"", SCHEDULE, "running", b"", (), (), (), "", 0, coord.wall, coord.wall)
    assert coord.db.add_key_operation(rec, ev)
    coord.db.decide("op-1", (), key_id=KID, epoch=1, threshold=2, committee=(1, 2, 3), pending=(1,), audit=ev, now=coord.wall)
    coord.db.switched("op-1", (), ev, coord.wall)
    assert coord.due() is None
    coord.restart_after(PERIOD_S * 1000 // 2, -DAY_MS)
    assert coord.due() is None
    coord.restart_after(PERIOD_S * 1000 // 2 + MARGIN_MS, -DAY_MS)
    assert coord.due() is not None
