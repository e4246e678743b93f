"""Issue 15: a real Prometheus (Debian's ``prometheus`` binary) scrapes a local 2-of-3 cluster through
the file_sd targets of :mod:`mpcnet.cluster.prometheus_sd` and evaluates a copy of
``deploy/monitoring/alerts.yml`` whose ``for:`` durations are 1 s; the client signs on a quiet key
and a burst on another; Prometheus's HTTP API then reports counters equal to what the client did,
and the ``MpcnetSigningBurst`` alert firing.

Scrape and rule evaluation every second; every wait is bounded and polls the API.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mpcnet.client import MpcClient, SigningTeam
from mpcnet.cluster.launcher import LocalCluster, free_ports, kill_and_reap
from mpcnet.cluster.prometheus_sd import write_file_sd

from ..integration.conftest import make_cluster

PROMETHEUS = shutil.which("prometheus")
MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
HAS_ANOMALY = importlib.util.find_spec("coordinator.anomaly_config") is not None
BURST = 4  # signatures on the burst key; the coordinator's key_burst minimum is set to 3 below
QUIET = 1  # signatures on the quiet key

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (Debian package 'prometheus'; scripts/test installs it)"
)


def fast_rules(text: str) -> str:
    """``alerts.yml`` with every ``for:`` duration set to 1 s (the test's copy)."""
    out, n = re.subn(r"(?m)^(\s+for:\s*)\S+\s*$", r"\g<1>1s", text)
    assert n >= 8, "alerts.yml has fewer for: durations than alerts"
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "prom-2of3", 3, 2)
    if HAS_ANOMALY:  # issue 15 M2: detect a burst of more than 3 signatures in 10 minutes
        cfg = json.loads(c.lay.coordinator_config.read_text())
        cfg["anomaly"] = {"burst_min_count": 3, "window_s": 600}
        c.lay.coordinator_config.write_text(json.dumps(cfg))
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


class PromApi:
    """The few HTTP API calls the test makes (``/api/v1/query``, ``/api/v1/alerts``, ``/api/v1/targets``)."""

    def __init__(self, address: str) -> None:
        self.address = address  # host:port

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"http://{self.address}{path}{query}", timeout=10) as r:
            doc = json.loads(r.read())
        assert doc["status"] == "success", doc
        return doc["data"]

    def scalar(self, expr: str) -> float | None:
        """The value of a query returning at most one series (None when it returns none)."""
        result = self.get("/api/v1/query", query=expr)["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``check`` every 0.5 s until it returns a truthy value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as e:  # not listening yet
            last = e
        else:
            if last:
                return last
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def prom(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromApi]:
    assert PROMETHEUS is not None
    info = json.loads((cluster.lay.dir / "cluster.json").read_text())
    if "metrics" not in info:
        pytest.skip("cluster.json has no metrics endpoints (issue 15 M1 not merged)")
    d = tmp_path_factory.mktemp("prometheus")
    (d / "targets").mkdir()
    groups = write_file_sd(cluster.lay.dir, d / "targets" / "mpcnet.json")
    assert len(groups) == 4
    (d / "alerts.yml").write_text(fast_rules((MONITORING / "alerts.yml").read_text()))
    (d / "prometheus.yml").write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": "mpcnet", "file_sd_configs": [{"files": ["targets/*.json"], "refresh_interval": "1s"}]}],
    }))
    port = free_ports(1)[0]
    log = (d / "prometheus.log").open("wb")
    p = subprocess.Popen(
        [PROMETHEUS, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, cwd=d,
    )
    api = PromApi(f"127.0.0.1:{port}")
    try:
        def ready() -> bool:
            with urllib.request.urlopen(f"http://{api.address}/-/ready", timeout=2) as r:
                return r.status == 200
        wait_for("prometheus to be ready", ready, timeout=30)

        def all_up() -> bool:
            active = api.get("/api/v1/targets")["activeTargets"]
            return len(active) == 4 and all(t["health"] == "up" for t in active)
        wait_for("every process's endpoint to be scraped", all_up)
        yield api
    finally:
        kill_and_reap(p)
        log.close()


@pytest.fixture(scope="module")
def acted(cluster: LocalCluster, prom: PromApi) -> dict[str, int]:
    """Two keys; ``QUIET`` signatures on one, then a burst of ``BURST`` on the other."""
    d = cluster.lay.dir
    with MpcClient.from_cluster(d, identity="admin1", timeout=120) as admin, SigningTeam.from_cluster(d, timeout=120) as team:
        quiet, busy = admin.create_key("prom-quiet"), admin.create_key("prom-burst")
        for i in range(QUIET):
            team.sign(quiet.key_id, hashlib.sha256(b"quiet %d" % i).digest())
        for i in range(BURST):
            team.sign(busy.key_id, hashlib.sha256(b"burst %d" % i).digest())
    return {"keys": 2, "signatures": QUIET + BURST}


def test_every_process_is_scraped_with_its_job_and_process_labels(prom: PromApi) -> None:
    active = prom.get("/api/v1/targets")["activeTargets"]
    labels = sorted((t["labels"]["job"], t["labels"]["process"]) for t in active)
    assert labels == [("mpcnet-coordinator", "coordinator"), ("mpcnet-node", "node-1"),
                      ("mpcnet-node", "node-2"), ("mpcnet-node", "node-3")]
    assert prom.scalar('count(up{job=~"mpcnet.*"} == 1)') == 4.0
    wait_for("the coordinator to see 3 nodes up", lambda: prom.scalar('sum(mpcnet_node_up{job="mpcnet-coordinator"})') == 3.0)


def test_counters_in_prometheus_equal_what_the_client_did(prom: PromApi, acted: dict[str, int]) -> None:
    n = acted["signatures"]
    expected = {
        "sum(mpcnet_signatures_total)": n,
        'sum(mpcnet_requests_total{state="created"})': n,
        'sum(mpcnet_requests_total{state="done"})': n,
        "sum(mpcnet_request_seconds_count)": n,
        "sum(mpcnet_keygen_seconds_count)": acted["keys"],
        'sum(mpcnet_approvals_total{outcome="approve"})': 2 * n,  # approver1 and approver2 each time
    }

    def scraped() -> bool:
        return prom.scalar("sum(mpcnet_signatures_total)") == float(n)
    wait_for(f"{n} signatures in Prometheus", scraped)
    time.sleep(1.5)  # one more scrape: the coordinator's counters were read at one instant
    got = {expr: prom.scalar(expr) for expr in expected}
    assert got == {expr: float(v) for expr, v in expected.items()}
    assert prom.scalar('sum(mpcnet_requests_total{state=~"rejected|expired|failed"})') in (None, 0.0)
    assert prom.scalar("sum(mpcnet_bans_total)") == 0.0
    # every node ran every signature's rounds (2-of-3: each signature uses at least 2 nodes)
    signing_nodes = prom.scalar('count(sum by (process) (mpcnet_round_seconds_count{protocol="sign"}) > 0)')
    assert signing_nodes is not None and signing_nodes >= 2


def test_the_burst_alert_fires(prom: PromApi, acted: dict[str, int]) -> None:
    if not HAS_ANOMALY:
        pytest.skip("the coordinator's anomaly detection (issue 15 M2, coordinator/anomaly_config.py) is not merged")

    def firing() -> list[dict[str, Any]]:
        alerts = prom.get("/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "MpcnetSigningBurst" and a["state"] == "firing"]
    alerts = wait_for("MpcnetSigningBurst to fire", firing)
    assert alerts[0]["labels"]["severity"] == "critical"
    assert alerts[0]["labels"].get("rule") == "key_burst"
    assert prom.scalar('max(mpcnet_anomaly_active{rule="key_burst"})') == 1.0
    assert prom.scalar('sum(mpcnet_anomalies_total{rule="key_burst"})') == 1.0
    # nothing else is wrong with the cluster
    others = {a["labels"]["alertname"] for a in prom.get("/api/v1/alerts")["alerts"] if a["state"] == "firing"}
    assert others <= {"MpcnetSigningBurst", "MpcnetKeyUsageAnomaly"}, others
