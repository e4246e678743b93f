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
        db=SimpleNamespace(list_key_operations=lambda key_id: ops, key_change_age_ms=lambda key_id: None),
        margin_ms=2_000,
    )
    key = SimpleNamespace(key_id=b"\x01" * 32, created_ms=NOW - 2 * PERIOD_S * 1000)
    return RefreshScheduler.due(fake, key, NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(("failed_s_ago", "due"), [(30, False), (61, True), (-1, True), (-86_400, True)])
def test_backoff_after_a_failure_and_a_clock_stepped_back(failed_s_ago: int, due: bool) -> None:
    assert (_due([_rec("failed", NOW - failed_s_ago * 1000)]) is not None) is due


def test_the_retry_after_a_clock_step_back_happens_once_not_every_pass() -> None:
    """Regression (review of 573f9fa): the failure dated a day ahead was retried at once, and that
    retry's failure (dated by the stepped-back clock, 10 s ago) did not hold the next pass: the
    latest-dated failure stayed the one a day ahead, so every pass started a refresh (and its
    failure, its audit entries, its node sessions) until the clock caught up."""
    ahead, retried = _rec("failed", NOW + 86_400_000), _rec("failed", NOW - 10_000)
    assert _due([ahead]) is not None  # retried at once
    assert _due([ahead, retried]) is None  # then backing off from the retry's failure
