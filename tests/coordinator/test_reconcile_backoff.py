"""Operator (issue 11): the background pass (``KeyOperations.reconcile``) reshares any key still
holding a revoked node. When that reshare cannot succeed (a node of the new committee is down
for good), it used to start a new operation every 30 s forever: a failed operation, its audit
entries and its node sessions twice a minute, flooding ``mpc key operations`` and the audit
trail. Now the wait doubles with each failure in a row (capped at an hour); a success resets it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import coordinator.keyops as keyops
from coordinator.keyop_store import KeyOpRecord
from coordinator.keyops import RECONCILE_BACKOFF_MAX_MS, KeyOperations

NOW = 10_000_000_000
ROSTER: Any = SimpleNamespace()  # the roster in force (active_entries is patched)


def _rec(state: str, updated_ms: int) -> KeyOpRecord:
    return KeyOpRecord("op", b"\x01" * 32, b"", "roster", state, b"", (), (), (), "", 0, updated_ms, updated_ms)


def _fake(ops: list[KeyOpRecord]) -> Any:
    started: list[bytes] = []

    def start(key_id: bytes, roster: Any) -> str:
        started.append(key_id)
        return "new-op"

    fake = SimpleNamespace(
        db=SimpleNamespace(
            expiry_ms=lambda wall: wall,  # the wall clock, never stepped here
            list_keys=lambda state: [SimpleNamespace(key_id=b"\x01" * 32, scheme="ecdsa-secp256k1")],
            list_key_operations=lambda key_id: ops,
        ),
        epoch_of=lambda k: (3, (1, 2, 3, 4)),  # node 4 is revoked
        start_roster_implied=start,
        started=started,
    )
    return fake


@pytest.fixture(autouse=True)
def _roster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyops, "active_entries", lambda roster: [SimpleNamespace(index=i) for i in (1, 2, 3)])
    monkeypatch.setattr(keyops, "now_ms", lambda: NOW)


@pytest.mark.parametrize(("failures", "since_s", "starts"), [
    (0, 0, True),
    (1, 29, False), (1, 31, True),
    (2, 31, False), (2, 61, True),
    (5, 479, False), (5, 481, True),
    (40, 3599, False), (40, 3601, True),  # capped at an hour
])
def test_the_background_reshare_backs_off_after_failures_in_a_row(failures: int, since_s: int, starts: bool) -> None:
    ops = [_rec("done", NOW - 10**8)] + [_rec("failed", NOW - 10**7)] * (failures - 1)
    if failures:
        ops.append(_rec("failed", NOW - since_s * 1000))
    fake = _fake(ops)
    assert (KeyOperations.reconcile(fake, ROSTER, backoff_ms=30_000) == ["new-op"]) is starts
    assert RECONCILE_BACKOFF_MAX_MS == 3_600_000


def test_a_success_resets_the_backoff() -> None:
    ops = [_rec("failed", NOW - 10**7)] * 10 + [_rec("done", NOW - 40_000), _rec("failed", NOW - 31_000)]
    assert KeyOperations.reconcile(_fake(ops), ROSTER, backoff_ms=30_000) == ["new-op"]


def test_a_live_operation_is_never_doubled() -> None:
    assert KeyOperations.reconcile(_fake([_rec("running", NOW)]), ROSTER, backoff_ms=0) == []


@pytest.mark.parametrize("stepped_back_s", [1, 3600, 86_400])
def test_a_wall_clock_stepped_back_does_not_stretch_the_backoff(stepped_back_s: int) -> None:
    """The coordinator's clock stepped back (NTP, an operator, a VM restore) after the last failed
    reshare: the failure is dated in its future, and waiting until ``updated_ms + backoff``
    by the new clock would add the whole step (a day) to the wait. It is tried at once instead;
    its own failure, dated by the new clock, restarts the measure."""
    ops = [_rec("failed", NOW - 10**7)] * 4 + [_rec("failed", NOW + stepped_back_s * 1000)]
    assert KeyOperations.reconcile(_fake(ops), ROSTER, backoff_ms=30_000) == ["new-op"]


def test_operations_are_listed_in_recording_order_after_a_clock_step_back(tmp_path) -> None:
    """Regression (review of 0242f7d/573f9fa): listed by created_ms, an operation recorded after
    the wall clock was stepped back sorted before an older one dated ahead, so the backoffs'
    "newest" operation stayed the one dated ahead: each background pass retried at once (once
    only was meant) until the clock caught up."""
    from coordinator.db import AuditEvent, CoordinatorDb

    db = CoordinatorDb(tmp_path / "c.db")
    try:
        for op_id, t in (("ahead", NOW + 86_400_000), ("after-the-step", NOW)):
            rec = KeyOpRecord(op_id, b"\x01" * 32, b"x", "roster", "failed", b"", (), (), (), "", 0, t, t)
            assert db.add_key_operation(rec, AuditEvent("test", "keyop-started", op_id, "started", {}))
        assert [o.op_id for o in db.list_key_operations(b"\x01" * 32)] == ["ahead", "after-the-step"]
        assert keyops._retry_at(db.list_key_operations(b"\x01" * 32), 30_000, NOW) == NOW + 60_000  # two in a row: held
    finally:
        db.close()


def test_a_step_back_while_running_keeps_the_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """p16: ``reconcile`` judges on the store's expiry clock (the later of the wall clock and
    wall-at-start + steady time since): stepped back a day while the coordinator runs, a failure
    31 s old by the expiry clock is not retried at once (the test above: only across a restart)."""
    ops = [_rec("done", NOW - 10**8), _rec("failed", NOW - 31_000), _rec("failed", NOW - 31_000)]
    fake = _fake(ops)
    fake.db.expiry_ms = lambda wall: max(wall, NOW)  # wall-at-start + steady elapsed == NOW
    monkeypatch.setattr(keyops, "now_ms", lambda: NOW - 86_400_000)  # stepped back a day
    assert KeyOperations.reconcile(fake, ROSTER, backoff_ms=30_000) == []  # two in a row: 60 s
    fake.db.expiry_ms = lambda wall: max(wall, NOW + 30_000)
    assert KeyOperations.reconcile(fake, ROSTER, backoff_ms=30_000) == ["new-op"]
