"""Issue 15: every counter child an alert reads with ``increase()`` exists at 0 from the
process's start, so Prometheus has a sample before the first event and the alert sees it
(deploy/monitoring/alerts.yml): the anomaly monitor's rules (and their gauges), the coordinator's
request states and approval outcomes, a node's session aborts by protocol and reason class.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from coordinator.anomaly import RULES, AnomalyConfig
from coordinator.anomaly_hook import AnomalyMonitor
from coordinator.metrics import APPROVAL_OUTCOMES, coordinator_metrics, key_created
from coordinator.store_health import StoreHealth
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
    m = coordinator_metrics(_coordinator(tmp_path, key_labels=False))
    assert samples(m, "mpcnet_requests_total") == {f'state="{s}"': 0.0 for s in REQUEST_STATES}
    assert samples(m, "mpcnet_approvals_total") == {f'outcome="{o}"': 0.0 for o in APPROVAL_OUTCOMES}
    assert set(APPROVAL_OUTCOMES) == {"approve", "reject", "refused"}  # Decision values + a refused decision
    assert "mpcnet_signatures_total 0.0" in m.render().decode()  # no key label: one series from the start


def test_with_key_labels_every_active_key_and_each_new_one_has_its_signature_series(tmp_path: Path) -> None:
    m = coordinator_metrics(_coordinator(tmp_path, key_labels=True))
    assert samples(m, "mpcnet_signatures_total") == {'key="treasury"': 0.0, 'key="other"': 0.0}
    key_created(m, "ops-2")
    m.signature("ops-2")
    assert samples(m, "mpcnet_signatures_total") == {'key="treasury"': 0.0, 'key="other"': 0.0, 'key="ops-2"': 1.0}
    off = coordinator_metrics(_coordinator(tmp_path, key_labels=False))
    key_created(off, "ops-2")
    assert samples(off, "mpcnet_signatures_total") == {}  # no {key} children without the opt-in
    key_created(NullMetrics("coordinator"), "ops-2")


def _coordinator(tmp_path: Path, *, key_labels: bool) -> Any:
    keys = [SimpleNamespace(label="treasury"), SimpleNamespace(label="bad label\n")]  # the second: key="other"
    return SimpleNamespace(
        cfg=SimpleNamespace(metrics=MetricsSettings("127.0.0.1:0", key_labels=key_labels), db=tmp_path / "coordinator.db"),
        audit=SimpleNamespace(head_stamp=lambda: None),
        db=SimpleNamespace(list_keys=lambda state: keys if state == "active" else [], health=StoreHealth()),
    )


def test_node_metrics_create_every_abort_class(tmp_path: Path) -> None:
    m = node_metrics(_node(tmp_path))
    want = {f'protocol="{p}",reason="{r}"': 0.0 for p in PROTOCOLS for r in ABORT_REASONS}
    assert samples(m, "mpcnet_sessions_aborted_total") == want
    assert len(want) == 25  # small and fixed: 5 protocols x 5 reason classes
    assert 'mpcnet_bans_total 0.0' in m.render().decode()  # no labels: there from the start


_COUNTED = re.compile(r"\b(?:increase|rate)\((mpcnet_\w+_total)\b")


def test_every_counter_an_alert_or_panel_counts_exists_from_the_start_or_is_guarded(tmp_path: Path) -> None:
    """Each ``mpcnet_*_total`` an alert or a dashboard panel reads with ``increase()`` / ``rate()``
    has a sample as soon as the process serves metrics (a coordinator with its anomaly monitor,
    a node), or its expression also counts a child that is new in the window (``unless NAME
    offset``): otherwise the first event after a child's creation is invisible."""
    from .test_rules import dashboard_exprs, rules

    coordinator = coordinator_metrics(_coordinator(tmp_path, key_labels=False))
    AnomalyMonitor(AnomalyConfig(), None, "coordinator").attach_metrics(coordinator)
    node = node_metrics(_node(tmp_path))
    present = {
        line.split("{")[0].split(" ")[0]
        for m in (coordinator, node) for line in m.render().decode().splitlines() if not line.startswith("#")
    }
    exprs = [r["expr"] for r in rules()] + dashboard_exprs()
    checked = set()
    for expr in exprs:
        for name in _COUNTED.findall(expr):
            checked.add(name)
            assert name in present or f"{name} unless {name} offset" in expr, (name, expr)
    assert {"mpcnet_anomalies_total", "mpcnet_rpc_denied_total", "mpcnet_sessions_aborted_total",
            "mpcnet_requests_total", "mpcnet_bans_total"} <= checked


def test_no_alert_or_panel_reads_the_short_lived_anomaly_gauge() -> None:
    """``mpcnet_anomaly_active`` is 1 only within a rule's window (possibly shorter than a scrape):
    the dashboard and the alerts read the counter."""
    from .test_rules import dashboard_exprs, metric_names, rules

    for expr in [r["expr"] for r in rules()] + dashboard_exprs():
        assert "mpcnet_anomaly_active" not in metric_names(expr), expr


def _node(tmp_path: Path) -> Any:
    return SimpleNamespace(
        cfg=SimpleNamespace(metrics=MetricsSettings("127.0.0.1:0"), store=tmp_path / "store.db"),
        audit=SimpleNamespace(head_stamp=lambda: None), clock=SimpleNamespace(now_ms=lambda: 0),
        store_problem=None, _lock=threading.Lock(), _sessions={},
    )


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Every panel's query is valid PromQL (``promtool check rules`` on recording rules made of
    them, Grafana's ``$__rate_interval`` read as 1m)."""
    from .test_rules import PROMTOOL, dashboard_exprs

    if PROMTOOL is None:
        pytest.skip("promtool not installed (Debian package 'prometheus'; scripts/test installs it)")
    group = {"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e.replace("$__rate_interval", "1m")} for i, e in enumerate(dashboard_exprs())
    ]}
    (tmp_path / "dashboard.yml").write_text(json.dumps({"groups": [group]}))  # JSON is YAML
    r = subprocess.run([PROMTOOL, "check", "rules", str(tmp_path / "dashboard.yml")], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
