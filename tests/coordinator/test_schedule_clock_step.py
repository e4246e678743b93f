"""The scheduled refresh's backoff after a failure (min(period, 60 s)) with the coordinator's wall
clock stepped back after that failure: the failure is dated in the future; the scheduler must
not wait for the clock to catch up (the whole step added to the backoff), as the background
reshare's backoff (tests/coordinator/test_reconcile_backoff.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from coordinator.keyop_store import KeyOpRecord
from coordinator.schedule import SCHEDULE, RefreshScheduler

NOW = 10_000_000_000
PERIOD_S = 86_400


def _rec(state: str, updated_ms: int) -> KeyOpRecord:
    return KeyOpRecord("op", b"\x01" * 32, b"", SCHEDULE, state, b"", (), (), (), "", 0, updated_ms, updated_ms)


def _due(ops: list[KeyOpRecord]) -> Any:
    fake = SimpleNamespace(
        policy_for=lambda key_id: SimpleNamespace(refresh_period_s=PERIOD_S),
        db=SimpleNamespace(list_key_operations=lambda key_id: ops),
        margin_ms=2_000,
    )
    key = SimpleNamespace(key_id=b"\x01" * 32, created_ms=NOW - 2 * PERIOD_S * 1000)
    return RefreshScheduler.due(fake, key, NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(("failed_s_ago", "due"), [(30, False), (61, True), (-1, True), (-86_400, True)])
def test_backoff_after_a_failure_and_a_clock_stepped_back(failed_s_ago: int, due: bool) -> None:
    assert (_due([_rec("failed", NOW - failed_s_ago * 1000)]) is not None) is due
