"""Backup collection while the coordinator cannot write its database or audit log (disk full):
the key's row in ``mpc status`` names the coordinator's store (not ``internal error
(OperationalError)``), the next try waits the first delay (30 s) however often it failed (the
nodes are not at fault: a full disk of an hour must not push the next try an hour past its end),
an audit log that refuses the failure's entry does not end the pass with a traceback, and the
bundle is collected once writes succeed. Siblings of the key-operation and signing fixes
(coordinator/store_failure.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.backups import BACKOFF_MS
from governance.errors import GovernanceError
from tests.coordinator.recovery_util import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def test_a_full_disk_is_named_retried_soon_and_then_collected(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.configure()
    real_add, real_append = world.db.add_bundle, world.audit.append

    def full(*a, **kw):  # type: ignore[no-untyped-def]
        raise sqlite3.OperationalError("database or disk is full")

    def audit_full(*a, **kw):  # type: ignore[no-untyped-def]
        raise GovernanceError("database", "database or disk is full")

    monkeypatch.setattr(world.db, "add_bundle", full)
    monkeypatch.setattr(world.audit, "append", audit_full)
    for _ in range(6):  # six passes in a row while the disk is full
        assert world.backups.check() == []
        failures, _at = world.backups._backoff[world.key_id]
        world.backups._backoff[world.key_id] = (failures, 0)  # the wait has passed
    why = world.backups.waiting(world.key_id)
    assert why.startswith("the coordinator cannot use its database (database or disk is full)"), why
    assert "internal error" not in why and "failed 6 time(s) in a row" in why
    monkeypatch.setattr(world.audit, "append", real_append)
    monkeypatch.setattr(world.db, "add_bundle", real_add)  # room again
    failures, _at = world.backups._backoff[world.key_id]
    world.backups._backoff[world.key_id] = (failures, 0)
    assert len(world.backups.check()) == 1
    assert world.backups.waiting(world.key_id) == ""


def test_the_delay_after_a_full_disk_is_the_first_one(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.configure()
    monkeypatch.setattr(world.db, "add_bundle", lambda *a, **kw: (_ for _ in ()).throw(sqlite3.OperationalError("disk I/O error")))
    monkeypatch.setattr("coordinator.backups.monotonic_ms", lambda: 1_000_000)
    for _ in range(5):
        world.backups.check()
        failures, _at = world.backups._backoff[world.key_id]
        world.backups._backoff[world.key_id] = (failures, 0)
    world.backups.check()
    assert world.backups._backoff[world.key_id] == (6, 1_000_000 + BACKOFF_MS)
