"""Attack on a real cluster's metrics endpoints (issue 15 review): the endpoints bind 127.0.0.1
(the dev cluster), and a flood of idle connections (slowloris) on a node's and the coordinator's
metrics port neither makes the process start a thread per connection nor hangs it: the
connections are dropped after the idle timeout, the key plane (gRPC) answers meanwhile, and a
scrape answers afterwards. Also: the JSON-less stdout of every process holds no traceback of it."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from mpcnet.client import MpcClient
from mpcnet.common import metrics_http

from ..integration.conftest import running_cluster

FLOOD = 80


@pytest.fixture(scope="module")
def mc(tmp_path_factory):
    with running_cluster(tmp_path_factory, "metrics-attack", 2, 2) as c:
        yield c


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def _scrape(endpoint: str) -> bytes:
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as r:
        body: bytes = r.read()
    return body


def test_the_dev_cluster_binds_metrics_on_loopback_only(mc) -> None:
    for name, path in (("coordinator", mc.lay.coordinator_config), ("node-1", mc.lay.node_config(1)), ("node-2", mc.lay.node_config(2))):
        doc = json.loads(path.read_text())
        assert doc["metrics"]["listen"].startswith("127.0.0.1:"), name
        assert doc["metrics"]["key_labels"] is False


@pytest.mark.parametrize("name", ["node-1", "coordinator"])
def test_a_connection_flood_on_the_metrics_port_pins_no_threads_and_the_key_plane_answers(mc, name: str) -> None:
    endpoint = json.loads((mc.lay.dir / "cluster.json").read_text())["metrics"][name]
    host, _, port = endpoint.rpartition(":")
    pid = mc.procs[name].pid
    before = _threads(pid)
    socks = []
    try:
        for _ in range(FLOOD):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\n")  # headers never end
            socks.append(s)
        time.sleep(0.5)
        grown = _threads(pid) - before
        assert grown <= metrics_http.MAX_CONNECTIONS + 2, f"{name}: {grown} threads for {FLOOD} idle connections"
        with MpcClient.from_cluster(mc.lay.dir, identity="admin1", timeout=30) as admin:
            assert admin.cluster_status().parties == 2  # the key plane is not starved
        deadline = time.monotonic() + metrics_http.IDLE_TIMEOUT_S + 5
        open_left = len(socks)
        for s in socks:  # the server drops them after the idle timeout
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                if s.recv(1) == b"":
                    open_left -= 1
            except OSError:
                open_left -= 1
        assert open_left == 0, f"{open_left} idle connections still open after the timeout"
    finally:
        for s in socks:
            s.close()
    assert b"mpcnet_build_info" in _scrape(endpoint)
    out = mc.lay.log(name).with_suffix(".out").read_bytes()
    assert b"Traceback" not in out and b"Exception occurred during processing" not in out
