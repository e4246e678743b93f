"""A dead node is marked down by a probe asked for at once, not at the next periodic probe; a
merely slow one is not marked down (coordinator/probe_now.py, on real processes).

A 2-of-3 cluster with deep pools (so presign sessions with every node run for a while after a key
is made) and a periodic health probe only every :data:`INTERVAL_S` seconds, so that a mark-down
within the test's window comes from the probe a failed background session asked for:

* node 2 frozen (SIGSTOP) for less than the probe's deadline while the pools fill: nothing asks
  for its probe (a deadline is not "unreachable") and it is never marked down;
* node 2 killed while the pools of a new key fill: a presign session fails UNAVAILABLE
  (connection refused), node 2 is probed at once and marked down, long before the periodic probe.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mpcnet.client import MpcClient
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.wire.mpc.v1 import coordinator_pb2

from .conftest import make_cluster

POOLS = {"enabled": True, "paths": [[]], "target": 48, "refill_at": 24, "cap": 96, "batch": 8, "max_parallel": 1}
INTERVAL_S = 30.0  # health_interval_s: the periodic probe runs at the coordinator's start, then this much later
FROZEN_S = 0.4  # less than the probe's 1 s deadline
ASKED = "node 2: a background session found it unreachable; probing it now"  # coordinator/probe_now.py
FOUND_DOWN = "node 2 (node-2): the probe a background session asked for found it unavailable"  # CoordinatorService.probe_one
MARKED_DOWN = "node 2 (node-2) marked unavailable"  # coordinator/relay.py NodeHandle.mark_down, whoever judged


@pytest.fixture(scope="module")
def pc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "probe-now-2of3", 3, 2)
    doc = json.loads(c.lay.coordinator_config.read_text())
    doc["presign"] = POOLS
    doc["health_interval_s"] = INTERVAL_S
    c.lay.coordinator_config.write_text(json.dumps(doc))
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


def _node2(a: MpcClient) -> Any:
    st = a._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30)
    return next(n for n in st.nodes if n.index == 2), sum(p.filling for p in st.pools)


def _log_since(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def _wait_filling(a: MpcClient) -> None:
    deadline = time.monotonic() + 30
    while _node2(a)[1] == 0:
        assert time.monotonic() < deadline, "the refiller started no presign session"
        time.sleep(0.05)


def test_a_slow_node_stays_up_and_a_dead_one_is_marked_down_by_a_probe_asked_for_at_once(pc: LocalCluster) -> None:
    log = pc.lay.log("coordinator")
    with MpcClient.from_cluster(pc.lay.dir, identity="admin1", timeout=120) as a1:
        a1.create_key("probe-now-a")
        _wait_filling(a1)
        offset = log.stat().st_size
        pid = pc.procs["node-2"].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(FROZEN_S)
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(1.5)  # sessions with node 2 go on; a probe asked for now would have answered
        node2, _ = _node2(a1)
        text = _log_since(log, offset)
        assert node2.healthy, node2.last_error
        assert ASKED not in text and MARKED_DOWN not in text, text

        a1.create_key("probe-now-b")  # its pools start filling: presign sessions with node 2 again
        offset = log.stat().st_size
        pc.kill("node-2")
        t0 = time.monotonic()
        while (node2 := _node2(a1)[0]).healthy:
            assert time.monotonic() - t0 < INTERVAL_S / 2, "node 2 still looks healthy"
            time.sleep(0.05)
        text = _log_since(log, offset)
        assert ASKED in text and FOUND_DOWN in text, text
        assert text.index(ASKED) < text.index(MARKED_DOWN), text  # marked down by that probe, not before it
        assert node2.last_error.startswith(("UNAVAILABLE", "DEADLINE_EXCEEDED")), node2.last_error
