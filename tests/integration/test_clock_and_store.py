"""Real processes: a node with a skewed clock, and a node whose store cannot be written.

A 2-of-3 cluster whose default policy lets requests live 60 s. Node 3 is the odd one: restarted
with a test-mode clock offset (``MPC_TEST_CLOCK_OFFSET_S``) or given a store fault; nodes 1 and
2 are healthy and must still sign every request. Each case leaves node 3 healthy again.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator.config import NodeEndpoint
from coordinator.relay import NodeHandle
from mpc_node.clock import ENV as CLOCK_ENV
from mpc_node.faults import ENV as FAULT_ENV
from mpcnet.client import MpcClient, NodeState, SigningTeam
from mpcnet.client.cli import main as mpc_main
from mpcnet.cluster.launcher import child_env, health_channel
from mpcnet.common.pki import channel_credentials
from mpcnet.wire.mpc.v1 import node_pb2

from .conftest import make_cluster
from .pool_util import pools_off

TTL_S = 60


@pytest.fixture(scope="module")
def cc(tmp_path_factory):
    c = make_cluster(tmp_path_factory, "clock-2of3", 3, 2, default_policy={"ttl_seconds": TTL_S})
    fdir = c.lay.dir / "faults"
    fdir.mkdir()
    for i in range(1, 4):
        c.node_env[i] = {FAULT_ENV: str(fdir / f"node-{i}.json")}
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def auditor(cc):
    with MpcClient.from_cluster(cc.lay.dir, identity="auditor1", timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def cteam(cc):
    with SigningTeam.from_cluster(cc.lay.dir, timeout=120) as t:
        yield t


@pytest.fixture(scope="module")
def ckey(cc):
    with MpcClient.from_cluster(cc.lay.dir, identity="admin1", timeout=120) as admin:
        return admin.create_key("clock")


@pytest.fixture(scope="module")
def node3(cc):
    """node 3's stub, called with the coordinator's certificate (the test plays the coordinator)."""
    ep = NodeEndpoint(3, "node-3", cc.lay.endpoints()["node-3"])
    h = NodeHandle(ep, channel_credentials(cc.lay.cert("coordinator"), cc.lay.ca.cert))
    yield h
    h.close()


def digest(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()


def node(auditor: MpcClient, name: str) -> NodeState:
    return {n.name: n for n in auditor.node_states()}[name]


def wait_for(what: str, cond: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def restart_node3(cc, offset_s: float | None) -> None:
    """Restart node 3 with its clock shifted by ``offset_s``; back to the true clock (None), its
    expiry floor is reset while it is stopped (a clock that was ahead would otherwise keep it
    refusing requests as expired: mpc_node/expiry_floor.py)."""
    env = dict(cc.node_env[3])
    if offset_s is not None:
        env[CLOCK_ENV] = str(offset_s)
        cc.restart("node-3", env)
        return
    reset = [sys.executable, "-m", "mpc_node.main", "reset-clock-floor", "--config", str(cc.lay.node_config(3))]
    r = subprocess.run(reset, env=child_env(cc.env), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "stop it first" in r.stderr, r.stderr  # running
    cc.kill("node-3", signal.SIGTERM)
    r = subprocess.run(reset, env=child_env(cc.env), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    cc.start("node-3", env)
    cc.wait_healthy(["node-3"])


def sign_all(cteam: SigningTeam, key, tag: str, count: int) -> list:
    out = []
    for j in range(count):
        r = cteam.request(key.key_id, digest(f"{tag} {j}"))
        assert r.state == "done", (r.state, r.error_code, r.error_message)
        out.append(r)
    return out


def status_text(cc, capsys) -> str:
    capsys.readouterr()
    assert mpc_main(["--cluster", str(cc.lay.dir), "--as", "auditor1", "status"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("offset_s", [90.0, 7200.0, -360.0], ids=["+90s", "+2h", "-6min"])
def test_skewed_node_is_measured_shown_and_routed_around(cc, auditor, cteam, ckey, capsys, offset_s: float) -> None:
    restart_node3(cc, offset_s)
    try:
        wait_for(
            "the coordinator to measure node 3's skew",
            lambda: (n := node(auditor, "node-3")).healthy and n.clock_suspect and n.skew_s is not None
            and n.skew_error_s is not None and n.skew_error_s < 1.0 and abs(n.skew_s - offset_s) < 2.0 and n,
        )
        n1 = node(auditor, "node-1")
        assert not n1.clock_suspect and n1.skew_s is not None and abs(n1.skew_s) < 5.0
        line = next(ln for ln in status_text(cc, capsys).splitlines() if ln.startswith("node-3"))
        shown = re.search(r"skew ([+-]\d+\.\d)s CLOCK OFF", line)
        assert shown is not None and abs(float(shown.group(1)) - offset_s) < 5.0, line
        # every request is signed by the two healthy nodes, at the first attempt
        for r in sign_all(cteam, ckey, f"skew {offset_s}", 3):
            assert r.signature is not None and tuple(r.signature.signers) == (1, 2) and r.attempts == 1
    finally:
        restart_node3(cc, None)
    wait_for("node 3's clock to be trusted again", lambda: not node(auditor, "node-3").clock_suspect)


def test_expiry_refusal_is_the_nodes_fault_not_the_requests(cc, auditor, cteam, ckey) -> None:
    """With a coordinator that tolerates any skew (it does not route around node 3), node 3
    (+2 h) refuses every request as expired: the coordinator signs without it, and with no other
    node left fails UNAVAILABLE naming node 3 and its skew, never EXPIRED."""
    path = cc.lay.coordinator_config
    original = path.read_text()
    doc = json.loads(original)
    doc["max_clock_skew_s"] = 500_000  # any skew in this test
    doc["presign"]["enabled"] = False  # pools off: the full protocol's rotating choice of signers
    path.write_text(json.dumps(doc))
    cc.restart("coordinator")
    restart_node3(cc, 7200.0)
    try:
        wait_for("node 3 to be measured", lambda: (n := node(auditor, "node-3")).skew_s is not None and n.skew_s > 7000)
        retried = []
        for j in range(8):  # node selection rotates: node 3 is picked within a few requests
            (r,) = sign_all(cteam, ckey, f"refusal {j}", 1)
            assert r.signature is not None and 3 not in r.signature.signers
            if r.attempts > 1:
                retried.append(r)
                break
        assert retried, "node 3 was never picked"
        cc.kill("node-2")
        r = cteam.request(ckey.key_id, digest("no one left"))
        assert (r.state, r.error_code) == ("failed", "UNAVAILABLE"), (r.state, r.error_code, r.error_message)
        assert "node 3 (node-3): refused the request as expired by its own clock (skew +7200" in r.error_message
    finally:
        path.write_text(original)
        cc.restart("coordinator")
        if cc.procs["node-2"].poll() is not None:
            cc.start("node-2", cc.node_env[2])
        restart_node3(cc, None)
        cc.wait_healthy(["node-2"])
    wait_for(
        "every node to be healthy with a trusted clock",
        lambda: all(n.healthy and not n.clock_suspect for n in auditor.node_states()),
    )


def test_unwritable_store_is_not_serving_routed_around_and_recovers(cc, auditor, cteam, ckey, node3) -> None:
    fault = cc.lay.dir / "faults" / "node-3.json"
    fault.write_text(json.dumps({"action": "store-unwritable"}))
    ch = health_channel(cc.lay, cc.lay.endpoints()["node-3"])
    health = health_pb2_grpc.HealthStub(ch)

    def standard_health() -> int:
        return health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status

    try:
        # node 3 refuses to start a session at once (its store write fails), before any node
        # released anything for the request: the others sign it
        for r in sign_all(cteam, ckey, "store fault", 2):
            assert r.signature is not None and tuple(r.signature.signers) == (1, 2)
        wait_for("NOT_SERVING", lambda: standard_health() == health_pb2.HealthCheckResponse.NOT_SERVING)
        h = node3.stub.Health(node_pb2.NodeHealthRequest(), timeout=5)
        assert not h.serving and "store cannot be written" in h.reason and "disk I/O error" in h.reason
        assert abs(h.unix_ms - time.time() * 1000) < 5_000
        with pytest.raises(grpc.RpcError) as e:
            node3.stub.StartSession(
                node_pb2.StartSessionRequest(session_id=b"\x07" * 32, dkg=node_pb2.DkgParams(threshold=2, parties=3)),
                timeout=5,
            )
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "store: node-3 cannot write its store" in e.value.details()
        n3 = wait_for(
            "the coordinator's probe to see node 3 not serving",
            lambda: not (n := node(auditor, "node-3")).healthy and "NOT_SERVING" in n.last_error and n,
        )
        assert "store cannot be written" in n3.last_error
        for r in sign_all(cteam, ckey, "store down", 2):
            assert r.signature is not None and tuple(r.signature.signers) == (1, 2) and r.attempts == 1
    finally:
        fault.unlink(missing_ok=True)
    wait_for("SERVING again", lambda: standard_health() == health_pb2.HealthCheckResponse.SERVING)
    ch.close()
    assert node3.stub.Health(node_pb2.NodeHealthRequest(), timeout=5).serving
    wait_for("the coordinator to see node 3 up", lambda: node(auditor, "node-3").healthy)
    assert node3.stub.GetInfo(node_pb2.GetInfoRequest(), timeout=5).unix_ms > 0


def test_store_failure_in_the_middle_of_a_session_is_unavailable_not_an_abort(cc, auditor, cteam, ckey) -> None:
    """Node 3's store fails after the session started (while node 3 waits in round 2): its last
    round fails with UNAVAILABLE naming the store, nothing leaves node 3, and the coordinator
    does not report a protocol abort (ABORTED) or an internal error."""
    fault = cc.lay.dir / "faults" / "node-3.json"
    log = cc.lay.log("node-3")
    with pools_off(cc):  # the fault waits in round 2 of the full protocol (the pool path: test_presign_pool_store_fault.py)
        _store_fails_mid_session(cc, auditor, cteam, ckey, fault, log)


def _store_fails_mid_session(cc, auditor, cteam, ckey, fault, log) -> None:
    cc.kill("node-2")  # the signers are then nodes 1 and 3
    wait_for("the coordinator to see node 2 down", lambda: not node(auditor, "node-2").healthy)
    fault.write_text(json.dumps({"action": "delay", "protocol": "sign", "round": 2, "seconds": 2.0}))
    seen = log.read_text().count("injecting fault delay")
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(cteam.request(ckey.key_id, digest("mid-session store fault"))))
    worker.start()
    try:
        wait_for("node 3 to wait in round 2", lambda: log.read_text().count("injecting fault delay") > seen)
        fault.write_text(json.dumps({"action": "store-unwritable"}))
        worker.join(timeout=60)
        (r,) = result
        assert (r.state, r.error_code) == ("failed", "UNAVAILABLE"), (r.state, r.error_code, r.error_message)
        assert "node 3 (node-3): UNAVAILABLE: store: node-3 cannot" in r.error_message
        first = re.compile(
            rf"request {r.request_id}: session 1 \(attempt (1|none reserved)\) with nodes \[1, 3\] failed "
            rf"\(.*node 3 \(node-3\): UNAVAILABLE: store: node-3 cannot use its store"
        )
        assert first.search(cc.lay.log("coordinator").read_text())
        text = log.read_text()
        assert "signing contribution released" not in text.split("injecting fault delay")[-1]
        assert "internal error" not in text
    finally:
        fault.unlink(missing_ok=True)
        worker.join(timeout=60)
        cc.start("node-2", cc.node_env[2])
        cc.wait_healthy(["node-2"])
    wait_for("every node up", lambda: all(n.healthy for n in auditor.node_states()))
