"""Review E, finding 3: once a pool falls to ``refill_at`` the refiller tops it up to ``target``
(README "Presignature pools"), also when that takes more than one batch: with target 24,
refill_at 12 and batch 8 a pool stopped at 16 (the first batch above refill_at) and stayed
there, shown as "ready 16 (target 24)" with nothing filling; and a pool that fell below
refill_at (concurrent use) stopped one batch above it."""

from __future__ import annotations

from pathlib import Path

import pytest

import coordinator.pool as pool_mod
from coordinator.pool_config import PresignConfig
from governance.reservation import MAX_SIGN_ATTEMPTS

from .pool_util import cluster
from .test_pool_refill import FakeSessions, _fill


def test_a_pool_is_filled_to_target_in_several_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=True, target=24, refill_at=12, cap=32, batch=8))
    monkeypatch.setattr(pool_mod, "run_session", FakeSessions(c))
    monkeypatch.setattr(pool_mod.PresignPools, "reconcile_due", lambda self: None)
    _fill(c)
    counts = c.db.pool_counts()
    assert counts and all(v["ready"] == 24 for v in counts.values()), counts
    pool = next(iter(counts))
    for i in range(15):  # ready falls below refill_at (24 -> 9): topped up to target again
        a = c.db.assign_presig(f"r{i}", c.key.key_id, 0, (), [pool[3]], MAX_SIGN_ATTEMPTS, 9)
        assert a is not None
        c.db.discard_presigs([a.presig_id], "failed", 9)
    _fill(c)
    assert c.db.pool_counts()[pool]["ready"] == 24
    _fill(c, 3)
    assert c.db.pool_counts()[pool]["ready"] == 24  # at target: nothing more (never above)
