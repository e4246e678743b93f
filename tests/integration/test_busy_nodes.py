"""Background work never makes a busy node look down to a foreground operation (issue 14, on
real processes): a 2-of-3 cluster with deep pools (target 32, refill_at 16: the depth that made
a refresh fail under the full suite's load before, see coordinator/foreground.py and
coordinator/liveness.py).

* keys are created while the refiller fills the pools of the keys made before (the DKG holds every
  node: no new presign session starts on them meanwhile);
* the nodes and the coordinator restart (every fresh presignature is gone, so the refiller starts
  presign sessions for every key at once) and a refresh proposed right then is done, not refused
  for "unavailable" nodes; so is a second key's right after;
* the pools then refill at the new epoch (the refiller resumed), and a request signs from them;
* a node frozen (SIGSTOP) until the health probe judges it down, resumed half a second after a
  refresh is approved: the second health check (``liveness_recheck_s``) finds it serving and the
  refresh is done (before, it failed at once: "unavailable: node(s) [2]").
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from governance.keyop import KeyOpKind
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.wire.mpc.v1 import coordinator_pb2

from .conftest import make_cluster
from .test_cluster_api import verify_independently
from .test_key_operations import _run_operation

DEEP = {"enabled": True, "paths": [[]], "target": 32, "refill_at": 16, "cap": 64, "batch": 16, "max_parallel": 1}
KEYS = 3


@pytest.fixture(scope="module")
def bc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "busy-2of3", 3, 2)
    doc = json.loads(c.lay.coordinator_config.read_text())
    doc["presign"] = DEEP
    c.lay.coordinator_config.write_text(json.dumps(doc))
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def admins(bc: LocalCluster) -> Iterator[tuple[MpcClient, MpcClient]]:
    with MpcClient.from_cluster(bc.lay.dir, identity="admin1", timeout=120) as a1, \
            MpcClient.from_cluster(bc.lay.dir, identity="admin2", timeout=120) as a2:
        yield a1, a2


def _status(a: MpcClient) -> coordinator_pb2.ClusterStatusResponse:
    return a._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30)


def _filling(a: MpcClient) -> int:
    return sum(p.filling for p in _status(a).pools)


def test_a_refresh_right_after_a_restart_with_deep_pools_refilling_is_done(bc: LocalCluster, admins: Any) -> None:
    a1, _ = admins
    keys = [a1.create_key(f"busy-{i}") for i in range(KEYS)]  # each DKG while the previous keys' pools fill
    for name in ("node-1", "node-2", "node-3", "coordinator"):  # every fresh presignature is gone
        bc.restart(name)
    deadline = time.monotonic() + 30  # the refiller is at work for every key again
    while _filling(a1) == 0:
        assert time.monotonic() < deadline, "the refiller started no presign session after the restart"
        time.sleep(0.05)
    st = _run_operation(bc, admins, keys[0], KeyOpKind.REFRESH, (1, 2, 3), 2)
    assert st.state == "done", st.error
    st = _run_operation(bc, admins, keys[1], KeyOpKind.REFRESH, (1, 2, 3), 2)
    assert st.state == "done", st.error
    deadline = time.monotonic() + 120  # the refiller resumed: the refreshed keys' pools refill at epoch 1
    while True:
        pools = _status(a1).pools
        ready = {(p.key_id, p.epoch) for p in pools if p.ready > DEEP["refill_at"]}
        if {(keys[0].key_id, 1), (keys[1].key_id, 1), (keys[2].key_id, 0)} <= ready:
            break
        assert time.monotonic() < deadline, pools
        time.sleep(0.2)
    with SigningTeam.from_cluster(bc.lay.dir, timeout=120) as team:
        digest = os.urandom(32)
        r = team.request(keys[0].key_id, digest, request_id="busy-after-refresh")
        assert r.state == "done" and r.signature is not None
        verify_independently(keys[0].public_key, r.signature.der, digest)
        info = team.requester._stub.GetSignRequest(coordinator_pb2.GetSignRequestRequest(request_id="busy-after-refresh"), timeout=30)
        assert info.presigned


def test_a_refresh_approved_while_the_probe_judges_a_frozen_node_down_is_done_once_it_answers(
    bc: LocalCluster, admins: Any
) -> None:
    a1, _ = admins
    key = a1.create_key("busy-frozen")
    pid = bc.procs["node-2"].pid
    os.kill(pid, signal.SIGSTOP)
    resume = threading.Timer(0.5, os.kill, (pid, signal.SIGCONT))
    try:
        deadline = time.monotonic() + 30
        while next(n for n in _status(a1).nodes if n.index == 2).healthy:
            assert time.monotonic() < deadline, "the probe did not judge the frozen node down"
            time.sleep(0.1)
        resume.start()  # it answers again half a second after the approval (well within the 5 s second look)
        st = _run_operation(bc, admins, key, KeyOpKind.REFRESH, (1, 2, 3), 2)
    finally:
        resume.cancel()
        os.kill(pid, signal.SIGCONT)
    assert st.state == "done", st.error
    assert a1._stub.GetKey(coordinator_pb2.GetKeyRequest(key_id=key.key_id), timeout=30).epoch == 1
