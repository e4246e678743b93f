"""The coordinator's wall clock stepped back (NTP after a bad start, an operator, a VM snapshot
restored) while a backup collection or a ceremony waits to be tried again: the wait is measured
on the monotonic clock, so the step is not added to it (a day back was a day more without a
bundle, or a drill not retried). Persisted dates (drill periods, order expiry) stay wall-clock.
The key operations' background reshare, whose failures are dated in the database, is covered in
tests/coordinator/test_reconcile_backoff.py."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator import backups as backups_mod, ceremonies as ceremonies_mod
from coordinator.backups import BACKOFF_MS
from coordinator.ceremonies import RETRY_MS
from tests.coordinator.recovery_util import World

DAY_MS = 86_400_000


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def test_a_backup_retry_is_not_delayed_by_a_clock_stepped_back(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.configure()
    real_add = world.db.add_bundle
    monkeypatch.setattr(world.db, "add_bundle", lambda *a, **kw: (_ for _ in ()).throw(sqlite3.OperationalError("disk I/O error")))
    assert world.backups.check() == []
    assert "next try in 30 s" in world.backups.waiting(world.key_id)
    monkeypatch.setattr(world.db, "add_bundle", real_add)
    wall, mono = backups_mod.now_ms(), backups_mod.monotonic_ms()
    monkeypatch.setattr(backups_mod, "now_ms", lambda: wall - DAY_MS)  # stepped back a day
    monkeypatch.setattr(backups_mod, "monotonic_ms", lambda: mono + BACKOFF_MS + 1)  # the wait has passed
    assert len(world.backups.check()) == 1


def test_a_ceremony_retry_is_measured_on_the_monotonic_clock(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    wall = ceremonies_mod.now_ms()
    monkeypatch.setattr(ceremonies_mod, "now_ms", lambda: wall + DAY_MS)  # a clock a day ahead, stepped back later
    before = time.monotonic()
    world.ceremonies._later(b"\x05" * 16)
    at = world.ceremonies._retry_at[b"\x05" * 16]
    assert before + RETRY_MS / 1000 <= at <= time.monotonic() + RETRY_MS / 1000
