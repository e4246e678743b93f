"""coordinator.metrics helpers: node up/skew from the health probe's handles, the drill age
(oldest, or per key label when opted in), the quorum clock."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from coordinator.metrics import DrillAges, QuorumClock, coordinator_metrics, drill_ages, observe_nodes
from coordinator.store_health import StoreHealth
from mpcnet.common.clockskew import SkewSample
from mpcnet.common.metrics import Metrics, MetricsSettings, NullMetrics


def test_observe_nodes_sets_up_and_skew_per_node_name() -> None:
    m = Metrics("coordinator")
    observe_nodes(m, [
        SimpleNamespace(name="node-1", healthy=True, clock=SkewSample(1500, 3)),
        SimpleNamespace(name="node-2", healthy=False, clock=None),
        SimpleNamespace(name="node-3", healthy=None, clock=SkewSample(-250, 1)),
    ])
    text = m.render().decode()
    assert 'mpcnet_node_up{node="node-1"} 1.0' in text and 'mpcnet_node_up{node="node-2"} 0.0' in text
    assert 'mpcnet_node_up{node="node-3"} 0.0' in text  # not probed yet: not known up
    assert 'mpcnet_node_clock_skew_seconds{node="node-1"} 1.5' in text
    assert 'mpcnet_node_clock_skew_seconds{node="node-3"} -0.25' in text
    assert 'node_clock_skew_seconds{node="node-2"}' not in text  # not measured: no sample, not a 0
    observe_nodes(m, [SimpleNamespace(name="node-1", healthy=True, clock=None)])  # a measurement lost
    assert 'node_clock_skew_seconds{node="node-1"}' not in m.render().decode()


def _service(metrics: Metrics, now: int) -> Any:
    keys = {b"\x01" * 32: SimpleNamespace(key_id=b"\x01" * 32, label="treasury", created_ms=now - 50_000),
            b"\x02" * 32: SimpleNamespace(key_id=b"\x02" * 32, label="ops", created_ms=now - 400_000)}
    status = [SimpleNamespace(key_id=b"\x01" * 32, last_drill_unix_ms=now - 10_000),
              SimpleNamespace(key_id=b"\x02" * 32, last_drill_unix_ms=0)]  # never drilled: since its creation
    db = SimpleNamespace(list_keys=lambda state: list(keys.values()), get_key=keys.get, expiry_ms=lambda wall: wall)
    backups = SimpleNamespace(status=lambda now_ms: status)
    return SimpleNamespace(db=db, recovery=SimpleNamespace(backups=backups), metrics=metrics)


def test_drill_ages_oldest_or_per_key_label() -> None:
    now = 10_000_000
    assert drill_ages(_service(Metrics("coordinator"), now), now) == {"treasury": 10.0, "ops": 400.0}
    m = Metrics("coordinator")
    m.drill_age(drill_ages(_service(m, now), now))
    assert "mpcnet_backup_drill_age_seconds 400.0" in m.render().decode()
    k = Metrics("coordinator", key_labels=True)
    k.drill_age(drill_ages(_service(k, now), now))
    text = k.render().decode()
    assert 'mpcnet_backup_drill_age_seconds{key="treasury"} 10.0' in text
    assert "\\x01" not in text and "01" * 8 not in text  # never the key id


def test_drill_ages_refresh_is_throttled_and_off_without_metrics() -> None:
    calls: list[int] = []
    svc = _service(Metrics("coordinator"), 10_000_000)
    status = svc.recovery.backups.status
    svc.recovery.backups.status = lambda now_ms: calls.append(now_ms) or status(now_ms)
    d = DrillAges(svc)
    d.refresh()
    d.refresh()
    assert len(calls) == 1
    off = _service(NullMetrics("coordinator"), 0)
    off.recovery.backups.status = lambda now_ms: calls.append(now_ms) or []
    DrillAges(off).refresh()
    assert len(calls) == 1


def test_quorum_clock() -> None:
    q = QuorumClock()
    assert q.ended("req-1") is None
    q.reached("req-1")
    t = q.ended("req-1")
    assert t is not None and 0 <= t < 5
    assert q.ended("req-1") is None  # forgotten


def test_the_audit_head_age_is_judged_on_the_expiry_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """p16: ``mpcnet_audit_head_age_seconds`` read the wall clock: stepped back, a stalled audit
    log looked fresh (the alert stayed quiet). It reads the store's expiry clock."""
    svc = SimpleNamespace(
        cfg=SimpleNamespace(metrics=MetricsSettings("127.0.0.1:0"), db=tmp_path / "coordinator.db"),
        audit=SimpleNamespace(head_stamp=lambda: (7, 1_000_000)),
        db=SimpleNamespace(list_keys=lambda state: [], health=StoreHealth(), expiry_ms=lambda wall: max(wall, 1_600_000)),
    )
    m = coordinator_metrics(svc)  # type: ignore[arg-type]
    monkeypatch.setattr(time, "time_ns", lambda: 500_000 * 10**6)  # the wall clock stepped back before the head
    assert "mpcnet_audit_head_age_seconds 600.0" in m.render().decode()
