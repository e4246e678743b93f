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
* a node frozen (SIGSTOP) until the health probe judges it down, resumed only once the
  coordinator logged that it asks it again (the second health check, ``liveness_recheck_s``,
  :data:`RECHECK_S` here: no timer that a loaded machine could fire before the approval): the
  second check finds it serving (logged) and the refresh is done (before, it failed at once:
  "unavailable: node(s) [2]").
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
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
RECHECK_S = 15.0  # liveness_recheck_s: room for a node resumed under load; the test waits only as long as it needs
ASKING = "node(s) [2] were judged unavailable; asking them again"  # coordinator/keyops.py, before the second check
ANSWERED = "node 2 (node-2) answered its health check within"  # coordinator/liveness.py, the second check's verdict


@pytest.fixture(scope="module")
def bc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "busy-2of3", 3, 2)
    doc = json.loads(c.lay.coordinator_config.read_text())
    doc["presign"] = DEEP
    doc["liveness_recheck_s"] = RECHECK_S
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


def _log_since(path: Path, offset: int) -> str:
    """The text a process logged to ``path`` after byte ``offset`` (records are flushed whole)."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def _resume_when(path: Path, offset: int, text: str, pid: int, done: threading.Event, seen: threading.Event) -> None:
    """Send ``pid`` SIGCONT once ``text`` is logged to ``path`` after ``offset`` (sets ``seen``), or
    give up when ``done`` is set (the caller resumes the node anyway)."""
    while not done.wait(0.02):
        if text in _log_since(path, offset):
            seen.set()
            os.kill(pid, signal.SIGCONT)
            return


def test_a_refresh_approved_while_the_probe_judges_a_frozen_node_down_is_done_once_it_answers(
    bc: LocalCluster, admins: Any
) -> None:
    a1, _ = admins
    key = a1.create_key("busy-frozen")
    log = bc.lay.log("coordinator")
    pid = bc.procs["node-2"].pid
    os.kill(pid, signal.SIGSTOP)
    done, asked = threading.Event(), threading.Event()
    try:
        deadline = time.monotonic() + 30
        while next(n for n in _status(a1).nodes if n.index == 2).healthy:
            assert time.monotonic() < deadline, "the probe did not judge the frozen node down"
            time.sleep(0.1)
        offset = log.stat().st_size
        # it answers again only once the coordinator asks it the second time: whatever the load,
        # the operation cannot have passed the check of its committee without that second look
        watcher = threading.Thread(target=_resume_when, args=(log, offset, ASKING, pid, done, asked), daemon=True)
        watcher.start()
        st = _run_operation(bc, admins, key, KeyOpKind.REFRESH, (1, 2, 3), 2)
    finally:
        done.set()
        os.kill(pid, signal.SIGCONT)
    assert asked.is_set(), "the coordinator never asked the frozen node again"
    assert st.state == "done", st.error
    assert ANSWERED in _log_since(log, offset)  # the second check, not a probe, found it serving
    assert a1._stub.GetKey(coordinator_pb2.GetKeyRequest(key_id=key.key_id), timeout=30).epoch == 1
