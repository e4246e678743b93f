"""Review E, finding 1: a presign session interrupted by the coordinator's stop (its node
channels closed under it: ``ValueError: Cannot invoke RPC on closed channel!``) is not an
ERROR with a traceback in the operator's log; the same failure while running still is."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from .pool_util import cluster


def _fill_raising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopped: bool) -> None:
    c = cluster(tmp_path)
    pool = (c.key.key_id, 0, (), (1, 2))

    def closed(*_: object) -> int:
        raise ValueError("Cannot invoke RPC on closed channel!")

    monkeypatch.setattr(c.pools, "run_presign", closed)
    assert c.pools.deps.sessions.acquire(blocking=False) and c.pools._slots.acquire(blocking=False)
    c.pools._filling[pool] = 2
    c.pools._inflight += 1
    if stopped:
        c.pools.stop()
    c.pools._fill(c.key, pool, 2)
    assert pool not in c.pools._filling and c.pools._inflight == 0  # the bookkeeping is undone either way


def test_a_session_cut_by_the_stop_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="coordinator.pool"):
        _fill_raising(tmp_path, monkeypatch, stopped=True)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "stop" in caplog.text


def test_the_same_failure_while_running_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="coordinator.pool"):
        _fill_raising(tmp_path, monkeypatch, stopped=False)
    assert [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info], caplog.text
