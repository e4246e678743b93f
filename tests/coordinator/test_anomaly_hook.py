"""coordinator/anomaly_hook.py: each detection is an `anomaly` audit entry, two metrics and a log
line; caller text is escaped; monitoring never fails the caller."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.anomaly import AnomalyConfig
from coordinator.anomaly_hook import AnomalyMonitor
from mpcnet.common.stores.audit import AuditLog

KEY = bytes.fromhex("ab" * 32)


class _Child:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def set(self, value: float) -> None:
        self.value = value


class _Family:
    def __init__(self) -> None:
        self.children: dict[str, _Child] = {}

    def labels(self, *args: str, **kw: str) -> _Child:
        return self.children.setdefault(kw["rule"], _Child())


class FakeMetrics:
    def __init__(self) -> None:
        self.anomalies_total = _Family()
        self.anomaly_active = _Family()


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def audit(tmp_path: Path) -> Any:
    log = AuditLog.open(tmp_path / "audit.db", component="coordinator", signing_key=Ed25519PrivateKey.generate())
    yield log
    log.close()


def test_a_burst_is_audited_counted_and_logged(audit: AuditLog, caplog: pytest.LogCaptureFixture) -> None:
    metrics, clock = FakeMetrics(), Clock()
    mon = AnomalyMonitor(AnomalyConfig(burst_min_count=3), audit, "coordinator", metrics, clock)
    with caplog.at_level(logging.WARNING, logger="coordinator.anomaly"):
        for _ in range(6):
            clock.ms += 10
            mon.signed(KEY, (0,), ["node-1", "node-2"])
    entries = [e for e in audit.entries() if e.action == "anomaly"]
    assert len(entries) == 1  # once per (rule, subject) per window
    e = entries[0]
    assert (e.actor, e.outcome) == ("coordinator", "detected")
    assert dict(e.details) == {"rule": "key_burst", "key_prefix": "abababab", "observed": "4", "expected": "3", "window_s": "60"}
    assert "ab" * 32 not in str(e.details)
    assert metrics.anomalies_total.children["key_burst"].value == 1
    assert metrics.anomaly_active.children["key_burst"].value == 1
    assert any("anomaly key_burst: abababab" in r.getMessage() for r in caplog.records)
    clock.ms += 61_000
    mon.refresh()
    assert metrics.anomaly_active.children["key_burst"].value == 0


def test_caller_text_is_escaped(audit: AuditLog, caplog: pytest.LogCaptureFixture) -> None:
    mon = AnomalyMonitor(AnomalyConfig(max_denied=0), audit, "coordinator", None, Clock())
    with caplog.at_level(logging.WARNING, logger="coordinator.anomaly"):
        mon.rpc_denied("eve\n\x1b[31mFAKE")
    (e,) = [e for e in audit.entries() if e.action == "anomaly"]
    assert "\n" not in str(e.details["subject"]) and "\x1b" not in str(e.details["subject"])
    assert all("\n" not in r.getMessage() and "\x1b" not in r.getMessage() for r in caplog.records)


def test_denials_seen_through_the_audit_log(audit: AuditLog) -> None:
    mon = AnomalyMonitor(AnomalyConfig(max_denied=1), audit, "coordinator", None, Clock())
    watched = mon.watching_denials(audit)
    watched.append("mallory", "rpc-denied", outcome="denied", details={"method": "CreateKey"})
    watched.append("mallory", "something-else", outcome="ok", details={})
    assert not [e for e in audit.entries() if e.action == "anomaly"]
    watched.append("mallory", "rpc-denied", outcome="denied", details={"method": "CreateKey"})
    (e,) = [e for e in audit.entries() if e.action == "anomaly"]
    assert e.details["rule"] == "denied_calls" and e.details["subject"] == "mallory"


def test_a_failing_audit_log_never_fails_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def append(self, *a: Any, **kw: Any) -> Any:
            raise OSError("disk full")

    mon = AnomalyMonitor(AnomalyConfig(max_denied=0), Broken(), "coordinator", None, Clock())
    with caplog.at_level(logging.WARNING, logger="coordinator.anomaly"):
        found = mon.rpc_denied("eve")
    assert [d.rule for d in found] == ["denied_calls"]
    assert any("cannot write its audit entry" in r.getMessage() for r in caplog.records)


def test_disabled_monitor_is_silent(audit: AuditLog) -> None:
    mon = AnomalyMonitor.off()
    assert mon.rpc_denied("eve") == [] and not mon.poll_due()


def test_audit_heads_are_polled_at_most_every_quarter_stall(audit: AuditLog) -> None:
    clock = Clock()
    mon = AnomalyMonitor(AnomalyConfig(audit_stall_s=8), audit, "coordinator", None, clock)
    polls: list[int] = []

    def heads() -> dict[str, int]:
        polls.append(clock.ms)
        return {"node-1": 3}

    mon.poll_audit_heads(heads)
    clock.ms += 500
    mon.signed(KEY, (), ["node-1"])  # a session after that poll: node-1's head must move
    clock.ms += 500
    mon.poll_audit_heads(heads)  # not due yet (every 2 s)
    assert len(polls) == 1
    for _ in range(5):
        clock.ms += 2000
        mon.poll_audit_heads(heads)
    (e,) = [e for e in audit.entries() if e.action == "anomaly"]
    assert e.details["rule"] == "audit_head_stalled" and e.details["subject"] == "node-1"


def test_the_real_metrics_count_and_flag_the_rule(audit: AuditLog) -> None:
    from mpcnet.common.metrics import Metrics

    m, clock = Metrics("coordinator"), Clock()
    mon = AnomalyMonitor(AnomalyConfig(max_denied=0), audit, "coordinator", m, clock)
    mon.rpc_denied("eve")
    text = m.render().decode()
    assert 'mpcnet_anomalies_total{rule="denied_calls"} 1.0' in text
    assert 'mpcnet_anomaly_active{rule="denied_calls"} 1.0' in text
    assert 'mpcnet_anomaly_active{rule="key_burst"} 0.0' in text
    assert "eve" not in text  # labels carry the rule only
    clock.ms += 61_000
    mon.refresh()
    assert 'mpcnet_anomaly_active{rule="denied_calls"} 0.0' in m.render().decode()
