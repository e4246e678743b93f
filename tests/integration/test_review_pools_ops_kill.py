"""Review of presignature pools as an operator (issue 14): a real 2-of-3 cluster with the launcher's
pools (on by default), several client threads signing, and the coordinator and nodes SIGKILLed at
random moments and at the crash points (node ``presign-consumed``: after the consume commit,
before the reply; coordinator ``presig-assigned`` / ``presig-partial``: after the assignment,
before / during its sends), and while pools refill. After the restarts: every request ends (DONE
or FAILED) within MAX_SIGN_ATTEMPTS, no ``r`` repeats across all signatures of the run, each
verifies under OpenSSL, nothing stays SIGNING or assigned, pools refill, ``mpc audit verify``'s
check passes, and no fresh presignature made before a node's restart is left on it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from coordinator.faults import ENV as COORD_FAULT_ENV
from governance.keyop import KeyOpKind
from governance.reservation import MAX_SIGN_ATTEMPTS
from mpcnet.client import MpcClient, MpcError, SigningTeam, SignRequest
from mpcnet.client.audit import verify_cluster
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.wire.mpc.v1 import coordinator_pb2

from .conftest import make_cluster
from .test_cluster_api import verify_independently
from .test_key_operations import _run_operation

THREADS = 3
PER_THREAD = 28  # 3 x 28 + a few stays under the default policy's 100 signatures per hour
PACE_S = 1.0  # between a thread's requests: the load lasts through every kill


@pytest.fixture(scope="module")
def kc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "review-pools-kill", 3, 2, fault_files=True)
    try:
        c.start_all()
        c.kill("coordinator")  # the coordinator reads its fault file from now on
        c.start("coordinator", _coord_env(c))
        c.wait_healthy(["coordinator"])
        yield c
    finally:
        c.stop()


def _coord_env(c: LocalCluster) -> dict[str, str]:
    return {COORD_FAULT_ENV: str(c.lay.dir / "faults" / "coordinator.json")}


def _rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _status(a: MpcClient) -> coordinator_pb2.ClusterStatusResponse:
    return a._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30)


def _wait(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = cond()
        except Exception:  # the coordinator restarting
            got = None
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _aim_at_refill(kc: LocalCluster, timeout: float = 60) -> None:
    """Wait until a refill is running, so the next kill lands inside a presign session; on a
    loaded machine the refiller may still be backing off after the kills before, and then the
    kill lands outside one (said in the output). Whether the pools come back is asserted at the
    end (the refill after the kills), not here."""
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1", timeout=60) as admin:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the coordinator restarting
                if any(p.filling for p in _status(admin).pools):
                    return
            time.sleep(0.2)
    print(f"no refill running within {timeout:.0f} s: this kill lands outside a presign session")


def _restart(kc: LocalCluster, name: str) -> None:
    kc.procs[name].wait(30)
    kc.start(name, _coord_env(kc) if name == "coordinator" else kc.node_env.get(int(name.split("-")[1])))
    kc.wait_healthy([name])


def _no_orphans(kc: LocalCluster) -> bool:
    """Every node's fresh presignatures are ready or assigned at the coordinator (none orphaned by
    a kill: each takes the node's per-key capacity until it restarts)."""
    live = [(bytes(i), s) for i, s in _rows(kc.lay.coordinator_dir / "coordinator.db",
                                             "SELECT presig_id, signers FROM presigs WHERE state IN ('ready', 'assigned')")]
    for n in range(1, kc.lay.nodes + 1):
        fresh = {bytes(i) for (i,) in _rows(kc.lay.node_dir(n) / "node.db", "SELECT sigid FROM presignatures WHERE used = 0")}
        mine = {i for i, s in live if str(n) in s.split(",")}
        if fresh - mine:
            print(f"node-{n}: {len(fresh - mine)} orphaned fresh presignature(s)")
            return False
    return True


def _drive(team: SigningTeam, key_id: bytes, rid: str, errors: list[str], timeout: float = 180.0) -> SignRequest | None:
    """Submit, approve and wait for ``rid``, resuming where a killed process interrupted it (the
    coordinator down: retried until it answers); the final request, or None at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            try:
                r = team.requester.get_sign_request(rid)
            except MpcError as e:
                if e.code != grpc.StatusCode.NOT_FOUND:
                    raise
                r = team.requester.submit_sign_request(key_id, hashlib.sha256(rid.encode()).digest(), request_id=rid)
            for ap in team.approvers:
                if r.state != "pending_approval":
                    break
                if ap.identity is not None and ap.identity.name not in r.verified("approve"):
                    r = ap.approve(rid)
            return team.requester.wait_sign_request(rid, timeout=60)
        except Exception as e:  # a killed process: resume
            errors.append(getattr(getattr(e, "code", None), "name", type(e).__name__))
            time.sleep(0.5)
    return None


def _fault(kc: LocalCluster, name: str, point: str) -> Path:
    f = kc.lay.dir / "faults" / f"{name}.json"
    f.write_text(json.dumps({"action": "crash", "point": point}))
    return f


PLAN_2OF3: list[tuple[list[str], str | None]] = [  # (victims, crash point; None: SIGKILL at a random moment)
    (["coordinator"], None),
    (["node-2"], "presign-consumed"),
    (["coordinator"], "presig-assigned"),
    (["node-1"], None),
    (["coordinator"], "presig-partial"),
    (["coordinator", "node-3"], None),
]


def test_kills_at_random_moments_and_crash_points_under_signing_load(kc: LocalCluster) -> None:
    kills_under_load(kc, PLAN_2OF3, "review-pools-kill")


def kills_under_load(kc: LocalCluster, plan: list[tuple[list[str], str | None]], label: str) -> None:
    """Run ``plan`` under THREADS signing clients, then check every outcome (module docstring)."""
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1", timeout=120) as admin:
        key = admin.create_key(label)
        _wait(lambda: sum(p.ready for p in _status(admin).pools if p.key_id == key.key_id) >= 4, 120, "no warm pool")
    rids: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def load(w: int) -> None:
        with SigningTeam.from_cluster(kc.lay.dir, timeout=60) as team:
            for j in range(PER_THREAD):
                if stop.is_set():
                    return
                rid = f"kill-{w}-{j}"
                rids.append(rid)
                _drive(team, key.key_id, rid, errors)
                time.sleep(PACE_S)

    threads = [threading.Thread(target=load, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    rng = random.SystemRandom()
    fired: list[str] = []
    node_restarts: dict[int, int] = {}  # node -> unix seconds of its last restart
    try:
        for victims, point in plan:
            time.sleep(rng.uniform(0.3, 1.5))
            if point is None:
                for v in victims:
                    kc.kill(v)
            else:
                _fault(kc, victims[0], point)
                deadline = time.monotonic() + 40
                while kc.procs[victims[0]].poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                f = kc.lay.dir / "faults" / f"{victims[0]}.json"
                if f.exists():  # the point was not reached (no pool signing meanwhile): plain kill
                    f.unlink()
                    kc.kill(victims[0])
                else:
                    fired.append(point)
            for v in victims:
                if v.startswith("node-"):
                    node_restarts[int(v.split("-")[1])] = int(time.time()) + 1
                _restart(kc, v)
        # a node killed while a presign session runs: node-1's restart empties its pools, the
        # refiller makes new ones, and node-2 dies in the middle of one
        kc.kill("node-1")
        node_restarts[1] = int(time.time()) + 1
        _restart(kc, "node-1")
        _aim_at_refill(kc)
        kc.kill("node-2")
        node_restarts[2] = int(time.time()) + 1
        _restart(kc, "node-2")
        # the coordinator killed while a presign session runs (nodes may have stored a batch it
        # never saw: orphans it must discard on them once it is back)
        kc.kill("node-1")
        node_restarts[1] = int(time.time()) + 1
        _restart(kc, "node-1")
        _aim_at_refill(kc)
        kc.kill("coordinator")
        _restart(kc, "coordinator")
        print("crash points", fired)
    finally:
        stop.set()
        for t in threads:
            t.join(300)

    coord_db = kc.lay.coordinator_dir / "coordinator.db"
    with SigningTeam.from_cluster(kc.lay.dir, timeout=120) as team:
        ended = {}
        for rid in rids:
            r = _drive(team, key.key_id, rid, errors)
            assert r is not None, rid
            ended[rid] = r
        after = _drive(team, key.key_id, "after-kills", errors)
        assert after is not None
        ended["after-kills"] = after
    states = Counter(r.state for r in ended.values())
    print(f"requests {len(rids)}, ended {states}, client errors {Counter(errors)}")
    assert set(states) <= {"done", "failed"}, states
    assert after.state == "done"
    sigs = [r.signature for r in ended.values() if r.state == "done"]
    assert all(s is not None for s in sigs)
    rs = [s.r for s in sigs if s is not None]
    assert len(rs) == len(set(rs)), "an r value repeats: a presignature signed twice"
    for r in ended.values():
        if r.state == "done":
            assert r.signature is not None
            verify_independently(key.public_key, r.signature.der, hashlib.sha256(r.request_id.encode()).digest())
    # the attempt numbers taken (reserved on the nodes), not sign_requests.attempts: that one
    # counts protocol sessions run, and a session cut by a kill before its reservation takes none
    attempts = _rows(coord_db, "SELECT request_id, reserved FROM sign_attempts")
    assert all(a <= MAX_SIGN_ATTEMPTS for _, a in attempts), attempts
    presigned = len(_rows(coord_db, "SELECT DISTINCT request_id FROM presigs WHERE state = 'used'"))
    print(f"signed from a pool: {presigned} of {states['done']}")
    assert presigned >= 1
    assert not _rows(coord_db, "SELECT request_id FROM sign_requests WHERE state = 'signing'")
    _wait(lambda: not _rows(coord_db, "SELECT presig_id FROM presigs WHERE state = 'assigned'"), 60,
          "a presignature stays assigned")
    used = [r for (r,) in _rows(coord_db, "SELECT request_id FROM presigs WHERE state = 'used'")]
    assert len(used) == len(set(used))
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1", timeout=60) as admin:  # the pools refill
        _wait(lambda: sum(p.ready for p in _status(admin).pools if p.key_id == key.key_id) >= 4, 120, "no refill")
    for i, since in node_restarts.items():  # nothing made before a node's restart is fresh on it
        old = _rows(kc.lay.node_dir(i) / "node.db",
                    "SELECT COUNT(*) FROM presignatures WHERE used = 0 AND created_at < ?", (since - 2,))
        assert old == [(0,)], (i, old)
    _wait(lambda: _no_orphans(kc), 150, "a node holds fresh presignatures the coordinator does not know")
    with MpcClient.from_cluster(kc.lay.dir, identity="auditor1", timeout=60) as auditor:
        info = json.loads((kc.lay.dir / "cluster.json").read_text(encoding="utf-8"))
        reports = verify_cluster(auditor, info, None)
        assert all(r.ok for r in reports), [(r.component, r.reason) for r in reports]


def test_after_a_refresh_status_lists_only_the_pools_of_the_new_epoch(kc: LocalCluster) -> None:
    """A refresh discards the pools of the old epoch (coordinator and nodes) and the refiller
    fills the new epoch's; ``mpc status`` then lists only the new epoch's pools: an emptied pool of
    an epoch the key left is gone, not a pool at 0 of 8 that looks stuck (review E, finding 2)."""
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1", timeout=120) as a1, \
            MpcClient.from_cluster(kc.lay.dir, identity="admin2", timeout=120) as a2:
        key = a1.create_key("review-pools-refresh")
        _wait(lambda: sum(p.ready for p in _status(a1).pools if p.key_id == key.key_id) >= 4, 120, "no warm pool")
        _wait(lambda: all(n.healthy for n in _status(a1).nodes), 60, "a node stays unhealthy")
        before = int(time.time())
        st = _run_operation(kc, (a1, a2), key, KeyOpKind.REFRESH, (1, 2, 3), 2)
        assert st.state == "done", st.error
        _wait(lambda: {p.epoch for p in _status(a1).pools if p.key_id == key.key_id and p.ready} == {1}, 60,
              "the new epoch's pools")
        mine = [p for p in _status(a1).pools if p.key_id == key.key_id]
        assert {p.epoch for p in mine} == {1}, [(p.epoch, p.ready, p.discarded_total) for p in mine]
    coord_db = kc.lay.coordinator_dir / "coordinator.db"
    assert _rows(coord_db, "SELECT COUNT(*) FROM presigs WHERE key_id = ? AND epoch = 0 AND state IN ('ready', 'assigned')",
                 (key.key_id,)) == [(0,)]
    for i in (1, 2, 3):  # the nodes hold no fresh presignature made before the refresh
        assert _rows(kc.lay.node_dir(i) / "node.db", "SELECT COUNT(*) FROM presignatures WHERE key_id = ? AND used = 0"
                     " AND created_at < ?", (key.key_id, before)) == [(0,)], i


def test_a_coordinator_stopped_during_a_refill_stops_within_seconds(kc: LocalCluster) -> None:
    """SIGTERM while a presign session runs (the refill after a node restart emptied its pools,
    one signer's round 2 delayed 3 s): the coordinator stops within seconds, with no ERROR
    traceback for the session the stop interrupted (the unit test of finding 1 is
    tests/coordinator/test_review_pools_ops_stop.py: this race is rarely hit here)."""
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1", timeout=120) as admin:
        key = admin.create_key("review-pools-stop")
        _wait(lambda: sum(p.ready for p in _status(admin).pools if p.key_id == key.key_id) >= 4, 120, "no warm pool")
    log = kc.lay.log("coordinator")
    delay = kc.lay.dir / "faults" / "node-3.json"
    kc.kill("node-3")  # its restart empties its pools: the refiller runs a presign session with it
    delay.write_text(json.dumps({"action": "delay", "protocol": "presign", "round": 2, "seconds": 3, "once": True}))
    _restart(kc, "node-3")
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1", timeout=60) as admin:
        _wait(lambda: any(p.filling for p in _status(admin).pools) and not delay.exists(), 60, "no delayed refill")
    size = log.stat().st_size
    p = kc.procs["coordinator"]
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    rc = p.wait(30)
    took = time.monotonic() - t0
    time.sleep(3)  # the session's threads outlive the server for a moment
    with log.open("rb") as f:
        f.seek(size)
        tail = f.read().decode("utf-8", "replace")
    _restart(kc, "coordinator")
    assert took < 10 and rc in (0, -signal.SIGTERM), (took, rc)
    assert "failed unexpectedly" not in tail and "Traceback" not in tail, tail[-2000:]
