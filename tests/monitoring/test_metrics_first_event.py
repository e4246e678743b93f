"""Issue 15: every counter child an alert reads with ``increase()`` exists at 0 from the
process's start, so Prometheus has a sample before the first event and the alert sees it
(deploy/monitoring/alerts.yml): the anomaly monitor's rules (and their gauges), the coordinator's
request states and approval outcomes, a node's session aborts by protocol and reason class.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from types import SimpleNamespace

from coordinator.anomaly import RULES, AnomalyConfig
from coordinator.anomaly_hook import AnomalyMonitor
from coordinator.metrics import APPROVAL_OUTCOMES, coordinator_metrics
from mpc_node.metrics import node_metrics
from mpcnet.common.metrics import ABORT_REASONS, PROTOCOLS, REQUEST_STATES, Metrics, MetricsSettings, NullMetrics

KEY = b"\xab" * 32


def samples(m: Metrics, name: str) -> dict[str, float]:
    """``{label text: value}`` of the samples of ``name`` in ``m``'s exposition."""
    out: dict[str, float] = {}
    for line in m.render().decode().splitlines():
        got = re.fullmatch(re.escape(name) + r"\{(.*)\} (\S+)", line)
        if got:
            out[got.group(1)] = float(got.group(2))
    return out


def test_attach_metrics_creates_every_rule_at_zero_then_counts() -> None:
    m = Metrics("coordinator")
    clock = SimpleNamespace(ms=1_700_000_000_000)
    mon = AnomalyMonitor(AnomalyConfig(burst_min_count=3), None, "coordinator", clock=lambda: clock.ms)
    assert samples(m, "mpcnet_anomalies_total") == {}
    mon.attach_metrics(m)
    assert mon.metrics is m
    zero = {f'rule="{r}"': 0.0 for r in RULES}
    assert samples(m, "mpcnet_anomalies_total") == zero
    assert samples(m, "mpcnet_anomaly_active") == zero
    for _ in range(4):
        clock.ms += 10
        mon.signed(KEY, (0,), ["node-1", "node-2"])
    assert samples(m, "mpcnet_anomalies_total") == zero | {'rule="key_burst"': 1.0}
    assert samples(m, "mpcnet_anomaly_active") == zero | {'rule="key_burst"': 1.0}
    mon.attach_metrics(m)  # again (a re-wired service): counts are kept, nothing goes back
    assert samples(m, "mpcnet_anomalies_total")['rule="key_burst"'] == 1.0


def test_attach_null_metrics_is_a_no_op() -> None:
    mon = AnomalyMonitor(AnomalyConfig(), None, "coordinator")
    mon.attach_metrics(NullMetrics("coordinator"))
    assert mon.signed(KEY, (0,), ["node-1"]) == []


def test_coordinator_metrics_create_request_states_and_approval_outcomes(tmp_path: Path) -> None:
    svc = SimpleNamespace(
        cfg=SimpleNamespace(metrics=MetricsSettings("127.0.0.1:0"), db=tmp_path / "coordinator.db"),
        audit=SimpleNamespace(head_stamp=lambda: None),
    )
    m = coordinator_metrics(svc)  # type: ignore[arg-type]
    assert samples(m, "mpcnet_requests_total") == {f'state="{s}"': 0.0 for s in REQUEST_STATES}
    assert samples(m, "mpcnet_approvals_total") == {f'outcome="{o}"': 0.0 for o in APPROVAL_OUTCOMES}
    assert set(APPROVAL_OUTCOMES) == {"approve", "reject", "refused"}  # Decision values + a refused decision


def test_node_metrics_create_every_abort_class(tmp_path: Path) -> None:
    svc = SimpleNamespace(
        cfg=SimpleNamespace(metrics=MetricsSettings("127.0.0.1:0"), store=tmp_path / "store.db"),
        audit=SimpleNamespace(head_stamp=lambda: None), clock=SimpleNamespace(now_ms=lambda: 0),
        store_problem=None, _lock=threading.Lock(), _sessions={},
    )
    m = node_metrics(svc)  # type: ignore[arg-type]
    want = {f'protocol="{p}",reason="{r}"': 0.0 for p in PROTOCOLS for r in ABORT_REASONS}
    assert samples(m, "mpcnet_sessions_aborted_total") == want
    assert len(want) == 25  # small and fixed: 5 protocols x 5 reason classes
    assert 'mpcnet_bans_total 0.0' in m.render().decode()  # no labels: there from the start
