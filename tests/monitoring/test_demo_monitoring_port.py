"""``scripts/demo-monitoring`` and the port of its Prometheus (a flake under the full suite's load:
``JSONDecodeError`` from the demo).

Cause: the demo picked Prometheus's port *before* ``mpc-cluster up``, which then picked the
cluster's gRPC and metrics ports from the same range (the test suite gives each worker 400 ports):
a metrics endpoint could take Prometheus's port. Prometheus then could not bind it and exited, but
the demo's first ``GET /api/v1/targets``, sent before it had, reached the metrics endpoint, which
answers every path with the text exposition: ``json.loads`` raised and the demo died with a
traceback. Now the port is picked once the cluster's ports are bound, a taken ``--listen`` is
refused up front, and an answer that is not Prometheus's JSON is an OSError that the waits poll
past (then name), never a traceback. The steps are faked here (no cluster, no Prometheus)."""

from __future__ import annotations

import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from mpcnet.cluster import demo_monitoring, prometheus_setup
from mpcnet.cluster.demo_monitoring import NotPrometheus, Prom, prometheus_address, wait_for
from mpcnet.common import cliutil
from mpcnet.common.metrics_http import serve


@pytest.fixture
def metrics_endpoint() -> Iterator[str]:
    """A cluster process's metrics endpoint (the text exposition at every path) on a free port."""
    registry = CollectorRegistry()
    Counter("mpcnet_signatures", "signatures", registry=registry).inc()
    httpd, t = serve("127.0.0.1", 0, registry)
    try:
        yield f"127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)


def test_an_answer_that_is_not_prometheus_json_is_an_oserror_naming_it(metrics_endpoint: str) -> None:
    with pytest.raises(NotPrometheus, match="did not answer as Prometheus's API does: JSONDecodeError") as e:
        Prom(metrics_endpoint).get("/api/v1/targets")
    assert isinstance(e.value, OSError)


def test_a_wait_polls_past_it_and_names_it_when_it_times_out(metrics_endpoint: str) -> None:
    prom = Prom(metrics_endpoint)
    with pytest.raises(SystemExit, match=r"timed out after 1 s waiting for the targets \(last: http://.*JSONDecodeError"):
        wait_for("the targets", lambda: prom.get("/api/v1/targets")["activeTargets"], timeout=1)


def test_a_taken_listen_address_is_refused_and_a_free_port_is_one_nobody_holds() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        held = f"127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(cliutil.Failed, match="already in use; pick a free address with --listen"):
            prometheus_address(held)
        assert prometheus_address(None) != held
    assert prometheus_address(held) == held  # free again


def test_the_port_is_picked_once_the_cluster_is_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Before, ``free_ports`` ran before ``mpc-cluster up`` (whose processes could then take the port)."""
    steps: list[str] = []

    def fake_run(args: list[str], what: str) -> str:
        steps.append(args[1])
        Path(args[3]).mkdir(parents=True)
        raise SystemExit("demo: stop here (test)")

    def fake_free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
        steps.append("free_ports")
        return [1] * count

    monkeypatch.setattr(demo_monitoring, "_run", fake_run)
    monkeypatch.setattr(demo_monitoring, "free_ports", fake_free_ports)
    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 0, b"", b""))
    monkeypatch.setattr(prometheus_setup, "find_binary", lambda: "/bin/true")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert demo_monitoring.main(["--scrypt-n", "1024"]) == 1
    assert steps == ["up"]


def test_the_demo_polls_past_a_foreign_answer_until_prometheus_answers(metrics_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race itself: the first answers come from a metrics endpoint, then from Prometheus."""
    prom = Prom(metrics_endpoint)
    calls: list[int] = []
    real = Prom.get

    def get(self: Prom, path: str, **params: str) -> Any:
        calls.append(1)
        if len(calls) < 3:
            return real(self, path, **params)  # NotPrometheus
        return {"activeTargets": [{"health": "up"}] * 4}

    monkeypatch.setattr(Prom, "get", get)
    active = wait_for("the targets", lambda: prom.get("/api/v1/targets")["activeTargets"], timeout=30)
    assert len(active) == 4 and len(calls) == 3
