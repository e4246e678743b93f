"""Waiting never blocks deciding (issue 10): long-lived streams have their own bounded budget at
the coordinator (and the nodes), and SDK waits resume across server-ended streams and restarts.

One 2-of-3 cluster for the module; each test writes the coordinator settings it needs
(``max_streams``, ``stream_lifetime_s``) and restarts the coordinator.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mpcnet.client import MpcClient, SigningTeam
from mpcnet.client.identities import load_identity
from mpcnet.client.sdk import MpcError, SignRequest
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.common.pki import channel_credentials
from mpcnet.common.rpc import CHANNEL_OPTIONS
from mpcnet.wire.mpc.v1 import coordinator_pb2, coordinator_pb2_grpc
from tests.integration.conftest import running_cluster

WATCHERS = 200
DECIDE_BOUND_S = 2.0


@pytest.fixture(scope="module")
def wc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory, "watch-budget", 3, 2) as c:
        yield c


@pytest.fixture(scope="module")
def wteam(wc: LocalCluster) -> Iterator[SigningTeam]:
    with SigningTeam.from_cluster(wc.lay.dir, timeout=60) as t:
        yield t


@pytest.fixture(scope="module")
def wkey(wc: LocalCluster) -> Any:
    with MpcClient.from_cluster(wc.lay.dir, identity="admin1", timeout=120) as admin:
        return admin.create_key("watch-budget")


def configure(c: LocalCluster, **settings: object) -> None:
    """Set (or with None remove) coordinator config keys and restart the coordinator."""
    path = c.lay.coordinator_config
    doc = json.loads(path.read_text())
    for k, v in settings.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    path.write_text(json.dumps(doc))
    c.restart("coordinator")


@contextlib.contextmanager
def channels(c: LocalCluster, count: int, identity: str = "requester1") -> Iterator[list[grpc.Channel]]:
    ident = load_identity(c.lay.dir, identity)
    creds = channel_credentials(ident.cert, c.lay.ca.cert)
    endpoint = c.lay.endpoints()["coordinator"]
    chs = [grpc.secure_channel(endpoint, creds, options=CHANNEL_OPTIONS) for _ in range(count)]
    try:
        yield chs
    finally:
        for ch in chs:
            ch.close()


def open_watch(ch: grpc.Channel, rid: str) -> Any:
    """A WatchSignRequest stream with its first message read (so the server holds it open)."""
    call = coordinator_pb2_grpc.CoordinatorStub(ch).WatchSignRequest(coordinator_pb2.GetSignRequestRequest(request_id=rid), timeout=30)
    first = next(call)
    assert first.request_id == rid
    return call


def submit(team: SigningTeam, key: Any, text: str) -> SignRequest:
    return team.requester.submit_sign_request(key.key_id, hashlib.sha256(text.encode()).digest(), description=text)


def timed_sign(team: SigningTeam, key: Any, text: str) -> tuple[float, float]:
    """(slowest approval call, submit -> DONE) in seconds."""
    t0 = time.monotonic()
    r = submit(team, key, text)
    slowest = 0.0
    for a in team.approvers:
        t = time.monotonic()
        a.approve(r.request_id)
        slowest = max(slowest, time.monotonic() - t)
    done = team.requester.wait_sign_request(r.request_id, timeout=60)
    assert done.state == "done", done
    return slowest, time.monotonic() - t0


def test_200_watchers_leave_approvals_signing_and_status_at_normal_latency(wc: LocalCluster, wteam: SigningTeam, wkey: Any) -> None:
    configure(wc, max_streams=None, max_streams_per_caller=None, stream_lifetime_s=None)  # the defaults: 256 streams, 60 s
    _, baseline = timed_sign(wteam, wkey, "baseline")
    held = [submit(wteam, wkey, f"held-{i}") for i in range(4)]
    calls = []
    watchers = ("requester1", "approver1", "approver3", "auditor1")  # 50 each: within one caller's share (64)
    with contextlib.ExitStack() as stack:
        chs = [stack.enter_context(channels(wc, 1, identity=who))[0] for who in watchers]
        try:
            for i in range(WATCHERS):  # more than the coordinator's 48 workers, all on pending requests
                calls.append(open_watch(chs[i % len(chs)], held[i % len(held)].request_id))
            t = time.monotonic()
            assert len(wteam.requester.node_states()) == 3  # ClusterStatus
            assert time.monotonic() - t < DECIDE_BOUND_S
            slowest, loaded = timed_sign(wteam, wkey, "under 200 watchers")
            print(f"sign: {baseline:.2f} s without watchers, {loaded:.2f} s with {WATCHERS} (slowest approval {slowest:.2f} s)")
            assert slowest < DECIDE_BOUND_S, f"an approval took {slowest:.2f} s with {WATCHERS} watchers open"
            assert loaded < max(10.0, 3 * baseline), f"sign took {loaded:.2f} s with watchers, {baseline:.2f} s without"
            # the watchers of a request that changes see the change; the others stay open
            wteam.approvers[0].reject(held[0].request_id)
            wteam.approvers[1].reject(held[0].request_id)
            for call in calls[0 : len(calls) : len(held)]:
                states = [m.state for m in call]  # ends after the final state
                assert states[-1] == coordinator_pb2.SIGN_REQUEST_STATE_REJECTED, states
            assert all(c.is_active() for i, c in enumerate(calls) if i % len(held))
        finally:
            for call in calls:
                call.cancel()


def test_a_full_stream_budget_is_resource_exhausted_and_unary_calls_still_work(wc: LocalCluster, wteam: SigningTeam, wkey: Any) -> None:
    configure(wc, max_streams=3, max_streams_per_caller=3, stream_lifetime_s=None)
    r = submit(wteam, wkey, "budget")
    with channels(wc, 1) as (ch,):
        calls = [open_watch(ch, r.request_id) for _ in range(3)]
        try:
            with pytest.raises(grpc.RpcError) as e:
                open_watch(ch, r.request_id)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "too many open streams (3); retry later" in (e.value.details() or "")
            # reflection streams hold a thread too: same budget
            refl = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
            )
            with pytest.raises(grpc.RpcError) as e2:
                list(refl)
            assert e2.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert wteam.requester.get_sign_request(r.request_id).state == "pending_approval"  # unary: fine
            assert len(wteam.requester.node_states()) == 3
            # a client that goes away frees its slot promptly
            calls.pop().cancel()
            deadline = time.monotonic() + 3
            while True:
                try:
                    calls.append(open_watch(ch, r.request_id))
                    break
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert time.monotonic() < deadline, "a cancelled watch did not free its slot"
                    time.sleep(0.1)
        finally:
            for call in calls:
                call.cancel()


def test_one_identity_cannot_hold_every_stream_slot(wc: LocalCluster, wteam: SigningTeam, wkey: Any) -> None:
    """A requester (any certificate) opening watches until it is refused leaves slots for others:
    an approver's wait still gets a stream (the budget is shared per identity, not first come)."""
    configure(wc, max_streams=8, max_streams_per_caller=None, stream_lifetime_s=None)
    r = submit(wteam, wkey, "hog")
    calls = []
    with channels(wc, 1) as (hog,), channels(wc, 1, identity="approver1") as (other,):
        try:
            with pytest.raises(grpc.RpcError) as e:
                for _ in range(9):
                    calls.append(open_watch(hog, r.request_id))
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert 1 <= len(calls) < 8
            calls.append(open_watch(other, r.request_id))  # the approver's watch is served
        finally:
            for call in calls:
                call.cancel()


def collect(team: SigningTeam, rid: str, out: list[SignRequest], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            out.extend(team.requester.watch_sign_request(rid, timeout=90))
        except BaseException as e:  # reported by the test
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def no_duplicates(seen: list[SignRequest]) -> None:
    marks = [(s.state, s.updated_unix_ms, len(s.approvals)) for s in seen]
    assert len(marks) == len(set(marks)), marks


def test_waits_outlive_the_servers_stream_lifetime(wc: LocalCluster, wteam: SigningTeam, wkey: Any) -> None:
    configure(wc, max_streams=None, max_streams_per_caller=None, stream_lifetime_s=1.5)
    r = submit(wteam, wkey, "outlives streams")
    seen: list[SignRequest] = []
    errors: list[BaseException] = []
    watcher = collect(wteam, r.request_id, seen, errors)
    with pytest.raises(MpcError) as e:  # several server-ended streams, then the user's timeout
        wteam.requester.wait_sign_request(r.request_id, timeout=4)
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert e.value.message == f"request {r.request_id} still pending_approval after 4 s"
    for a in wteam.approvers:
        a.approve(r.request_id)
    done = wteam.requester.wait_sign_request(r.request_id, timeout=60)
    assert done.state == "done" and done.signature is not None
    watcher.join(30)
    assert not errors, errors
    assert seen[0].state == "pending_approval" and seen[-1].state == "done"
    no_duplicates(seen)


def test_a_wait_survives_a_coordinator_restart(wc: LocalCluster, wteam: SigningTeam, wkey: Any) -> None:
    configure(wc, max_streams=None, max_streams_per_caller=None, stream_lifetime_s=None)
    r = submit(wteam, wkey, "survives a restart")
    result: list[SignRequest] = []
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            result.append(wteam.requester.wait_sign_request(r.request_id))  # no timeout: until it ends
        except BaseException as e:
            errors.append(e)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    seen: list[SignRequest] = []
    watcher = collect(wteam, r.request_id, seen, errors)
    time.sleep(1.0)
    wc.restart("coordinator")  # SIGTERM: a graceful stop ends the open streams
    wteam.approvers[0].approve(r.request_id)
    time.sleep(0.5)
    wc.kill("coordinator")  # SIGKILL mid-wait
    time.sleep(1.0)
    wc.start("coordinator")
    wc.wait_healthy(["coordinator"])
    wteam.approvers[1].approve(r.request_id)
    waiter.join(60)
    watcher.join(30)
    assert not errors, errors
    assert result and result[0].state == "done", result
    assert [s.state for s in seen][0] == "pending_approval" and seen[-1].state == "done"
    no_duplicates(seen)


def test_reflection_streams_cannot_starve_the_nodes(wc: LocalCluster, wteam: SigningTeam, wkey: Any) -> None:
    """A node's RPCs are unary, but reflection streams hold a thread each: as many as a node has
    workers (16) would stop it signing. Each node's own stream budget (16) refuses the next one."""
    from mpcnet.common.rpc import wait_for_health

    stop = threading.Event()

    def held() -> Iterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        stop.wait(60)

    creds = channel_credentials(wc.lay.cert("client"), wc.lay.ca.cert)
    eps = wc.lay.endpoints()
    chs = [grpc.secure_channel(eps[f"node-{i}"], creds, options=CHANNEL_OPTIONS) for i in (1, 2, 3)]
    calls = []
    try:
        for ch in chs:
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            for _ in range(16):
                calls.append(stub.ServerReflectionInfo(held(), timeout=60))
                next(calls[-1])
            with pytest.raises(grpc.RpcError) as e:
                list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert wait_for_health(ch, timeout=2)
        slowest, took = timed_sign(wteam, wkey, "nodes hold 16 reflection streams each")
        assert slowest < DECIDE_BOUND_S and took < 30
    finally:
        stop.set()
        for c in calls:
            c.cancel()
        for ch in chs:
            ch.close()


def test_the_node_example_watches_again_after_a_server_ended_stream(wc: LocalCluster, wteam: SigningTeam, wkey: Any) -> None:
    """examples/node/sign.js waits for the signature across the coordinator's short stream lifetime
    (only approver1 approves there; approver2 approves here, after several streams ended)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(["bash", "-c", "source scripts/node_example.sh"], cwd=root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"installing the Node example failed:\n{r.stdout}\n{r.stderr}"
    configure(wc, max_streams=None, max_streams_per_caller=None, stream_lifetime_s=1.0)
    p = subprocess.Popen(
        ["node", "sign.js", "--cluster", str(wc.lay.dir), "--key-id", wkey.key_id.hex(), "--approvers", "approver1",
         "--timeout-s", "60"],
        cwd=root / "examples" / "node", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert p.stdout is not None
        rid = ""
        for line in p.stdout:
            if ": submitted request " in line:
                rid = line.split(": submitted request ")[1].split()[0]
                break
        assert rid, p.stderr.read() if p.stderr else ""
        time.sleep(3.5)  # three stream lifetimes
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
        wteam.approvers[1].approve(rid)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, f"{out}\n{err}"
        assert "signature verified" in out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_key_creations_that_hang_leave_the_workers_to_decisions(wc: LocalCluster, wteam: SigningTeam, wkey: Any) -> None:
    """A CreateKey holds its call's thread while its DKG runs (here: hangs on a stopped node for
    dkg_timeout_s): as many as the coordinator has workers stopped approvals. They (at most
    max_requests) run on threads of their own."""
    import os
    import signal

    configure(wc, max_streams=1, workers=4, max_requests=5, max_parallel_sessions=5, dkg_timeout_s=6)
    r = submit(wteam, wkey, "approved while keys are created")
    created: list[object] = []

    def create(i: int) -> None:
        with MpcClient.from_cluster(wc.lay.dir, identity="admin1", timeout=120) as admin:
            try:
                created.append(admin.create_key(f"busy-{i}"))
            except MpcError as e:  # node-3 is stopped: the DKG fails (after dkg_timeout_s)
                created.append(e.code)

    node3 = wc.procs["node-3"].pid
    os.kill(node3, signal.SIGSTOP)
    makers = [threading.Thread(target=create, args=(i,), daemon=True) for i in range(5)]
    try:
        for t in makers:
            t.start()
        time.sleep(1.0)  # every creation holds a thread now, waiting for node-3
        t0 = time.monotonic()
        assert len(wteam.requester.node_states()) == 3
        for a in wteam.approvers:
            a.approve(r.request_id)
        took = time.monotonic() - t0
        assert all(t.is_alive() for t in makers), "the key creations ended before the approvals were timed"
        assert took < 2 * DECIDE_BOUND_S, f"status and two approvals took {took:.2f} s while key creations hung"
    finally:
        os.kill(node3, signal.SIGCONT)
        for t in makers:
            t.join(120)
        configure(wc, max_streams=None, workers=None, max_requests=None, max_parallel_sessions=None, dkg_timeout_s=None)
    assert len(created) == 5
    assert wteam.requester.wait_sign_request(r.request_id, timeout=60).state == "done"
