"""Operating issue 15's alerts (operator review) with ``promtool test rules`` on series that
restart: a process killed and restarted (``mpc-cluster``'s supervisor, or an operator) comes back
with every counter at 0 after a gap of a few scrapes. No alert of deploy/monitoring/alerts.yml may
fire just because of that restart, and none may go blind after it (the same events after the
restart still fire). Also: a request submitted to an idle network (pending approval: no node
takes part yet) is not an audit head that "stopped advancing while requests are served".

Series notation: ``_`` is a missing scrape (the process is down), ``aXn`` n+1 samples."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from .test_rules import MONITORING, PROMTOOL, needs_promtool

pytestmark = needs_promtool

C = 'job="mpcnet-coordinator", instance="c:9100"'
N = 'job="mpcnet-node", instance="n1:9101"'
ALL_ALERTS = (
    "MpcnetSigningBurst", "MpcnetSigningRateSpike", "MpcnetKeyUsageAnomaly", "MpcnetDeniedCalls", "MpcnetBans",
    "MpcnetSessionAborts", "MpcnetNodeDown", "MpcnetClockSkew", "MpcnetAuditHeadStalled", "MpcnetStoreUnhealthy",
    "MpcnetDiskLow", "MpcnetBackupDrillOverdue", "MpcnetCoordinatorStoreFailing",
)
RULES = ("key_burst", "new_derivation_path", "requester_rate", "repeated_rejections", "denied_calls",
         "protocol_aborts", "audit_head_stalled")


def promtool(tmp_path: Path, series: dict[str, str], checks: list[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
    """Run one promtool unit test: ``series`` (name{labels} -> values, 15 s apart) and
    ``checks`` of (eval_time, alertname) each expecting no alert."""
    doc = {
        "rule_files": [str(MONITORING / "alerts.yml")],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": [{"eval_time": t, "alertname": a, "exp_alerts": []} for t, a in checks],
        }],
    }
    f = tmp_path / "t.test.yml"
    f.write_text(yaml.safe_dump(doc))
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, "test", "rules", str(f)], capture_output=True, text=True, timeout=60, check=False)


def silent(tmp_path: Path, series: dict[str, str], times: tuple[str, ...], alerts: tuple[str, ...] = ALL_ALERTS) -> None:
    r = promtool(tmp_path, series, [(t, a) for t in times for a in alerts])
    assert r.returncode == 0, r.stdout + r.stderr


def fires(tmp_path: Path, series: dict[str, str], at: str, alert: str) -> bool:
    r = promtool(tmp_path, series, [(at, alert)])
    return r.returncode != 0 and alert in r.stdout + r.stderr


# the coordinator under signing load, killed at 5 min (two missed scrapes) and restarted
COORDINATOR_RESTART = {
    f"up{{{C}}}": "1x20 0 0 1x60",
    f'mpcnet_signatures_total{{{C}}}': "0+3x20 _ _ 0+3x60",
    f'mpcnet_requests_total{{state="created", {C}}}': "0+3x20 _ _ 0+3x60",
    f'mpcnet_requests_total{{state="done", {C}}}': "0+3x20 _ _ 0+3x60",
    f'mpcnet_node_up{{node="node-1", {C}}}': "1x20 _ _ 0 1x59",  # the first probe after the restart
    f'mpcnet_audit_head_age_seconds{{{C}}}': "1x20 _ _ 1x60",
    f'mpcnet_audit_head_age_seconds{{{N}}}': "1x82",
    **{f'mpcnet_anomalies_total{{rule="{r}", {C}}}': "2x20 _ _ 0x60" for r in RULES},
}
# a node killed at 5 min and restarted: its counters back to 0
NODE_RESTART = {
    f"up{{{N}}}": "1x20 0 0 1x60",
    f"mpcnet_bans_total{{{N}}}": "2x20 _ _ 0x60",
    f'mpcnet_sessions_aborted_total{{protocol="sign", reason="coordinator", {N}}}': "9x20 _ _ 0x60",
    f'mpcnet_rpc_denied_total{{role="requester", method="Sign", {N}}}': "10x20 _ _ _x60",
    f'mpcnet_store_healthy{{{N}}}': "1x20 _ _ 1x60",
    f'mpcnet_build_info{{version="1", component="node", {N}}}': "1x20 _ _ 1x60",
    f'mpcnet_disk_free_bytes{{{N}}}': "1e10x20 _ _ 1e10x60",
}
TIMES = ("5m30s", "6m", "7m", "9m", "15m", "20m")


def test_a_coordinator_restart_fires_nothing(tmp_path: Path) -> None:
    silent(tmp_path, COORDINATOR_RESTART, TIMES)


def test_a_node_restart_fires_nothing(tmp_path: Path) -> None:
    silent(tmp_path, NODE_RESTART, TIMES)


@pytest.mark.parametrize(("alert", "name", "after"), [
    ("MpcnetSigningBurst", f'mpcnet_anomalies_total{{rule="key_burst", {C}}}', "2x20 _ _ 0 0 1x58"),
    ("MpcnetKeyUsageAnomaly", f'mpcnet_anomalies_total{{rule="new_derivation_path", {C}}}', "2x20 _ _ 0 0 1x58"),
    ("MpcnetBans", f"mpcnet_bans_total{{{N}}}", "2x20 _ _ 0 0 1x58"),
    ("MpcnetDeniedCalls", f'mpcnet_rpc_denied_total{{role="requester", method="Sign", {N}}}', "10x20 _ _ _ _ 3 6 9 12x56"),
])
def test_the_same_event_after_a_restart_still_fires(tmp_path: Path, alert: str, name: str, after: str) -> None:
    series = {**COORDINATOR_RESTART, **NODE_RESTART, name: after}
    assert fires(tmp_path, series, "7m", alert), f"{alert} is blind after a restart"


def test_a_request_pending_approval_on_an_idle_network_is_no_stalled_audit_head(tmp_path: Path) -> None:
    """Nodes idle for half an hour (their heads 30 min old); a requester submits one request that
    waits for its approvers (the coordinator counts ``created``; no node has seen it yet), or
    approvers reject one, or one expires: nothing stalled."""
    for state in ("created", "rejected", "expired"):
        series = {
            f"mpcnet_audit_head_age_seconds{{{N}}}": "1800+15x80",
            f'mpcnet_audit_head_age_seconds{{{C}}}': "1800+15x20 0+15x60",
            f'mpcnet_requests_total{{state="{state}", {C}}}': "0x20 1x60",
            f'mpcnet_requests_total{{state="done", {C}}}': "5x80",
        }
        silent(tmp_path, series, ("5m30s", "6m", "10m"), ("MpcnetAuditHeadStalled",))


def test_signing_with_a_stuck_node_still_fires_the_stalled_head(tmp_path: Path) -> None:
    series = {
        f"mpcnet_audit_head_age_seconds{{{N}}}": "1800+15x80",
        f'mpcnet_requests_total{{state="done", {C}}}': "5x20 6+1x60",
    }
    assert fires(tmp_path, series, "6m", "MpcnetAuditHeadStalled")


def test_steady_signing_on_a_series_younger_than_a_day_is_no_rate_spike(tmp_path: Path) -> None:
    """A new deployment (or a new key label) signing steadily, 12 a minute, from its first hour: its
    "previous-day average" is not a day's average yet (rate over a 1 d range of a series a few
    minutes old is nearly 0), so it is no baseline (as for a key with no previous-day series)."""
    series = {f"mpcnet_signatures_total{{{C}}}": "0+3x600"}
    silent(tmp_path, series, ("7m", "30m", "2h"), ("MpcnetSigningRateSpike",))


def test_a_rate_spike_after_a_coordinator_restart_still_fires(tmp_path: Path) -> None:
    """A day at 1 signature a minute (one scrape a minute here), the coordinator restarted (two
    missed scrapes, the counter back to 0), then 100 a minute: the spike fires."""
    series = {f"mpcnet_signatures_total{{{C}}}": "0+0.25x5800 _x8 0+25x100"}
    assert fires(tmp_path, series, "1459m", "MpcnetSigningRateSpike")
