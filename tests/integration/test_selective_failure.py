"""Selective failure through concurrent sessions, on real processes (issue 8, item 1).

Node 2 is corrupted (fault file ``tamper-ote``): in every signing session it flips a bit of its
OT-extension message to node 1, so node 1's KOS consistency check fails. The test plays a
compromised coordinator that runs 32 signing sessions of node 1 with node 2 at once, each with
its own valid approvals, hoping to observe one check outcome per session (one bit of node 1's
long-term Delta each). Node 1 must run the checks with node 2 one at a time: the first fails and
bans node 2 durably, and every other session aborts with the ban as its reason, its check never
run. Afterwards node 1 refuses node 2 for the key, also after a restart.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from mpcnet.wire.mpc.v1 import governance_pb2, node_pb2

from .conftest import coordinator_handles, make_cluster
from .govtools import approved_bundle
from .relay_util import route, run

N, T = 3, 2
SESSIONS = 32
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def sf(tmp_path_factory):
    c = make_cluster(tmp_path_factory, "selective-2of3", N, T, policy_max_age_s=0)  # nodes only: no admin to attest
    fdir = c.lay.dir / "faults"
    fdir.mkdir()
    c.node_env[2] = {"MPC_TEST_FAULT_FILE": str(fdir / "node-2.json")}
    try:
        for i in range(1, N + 1):
            c.start(f"node-{i}", c.node_env.get(i))
        c.wait_healthy([f"node-{i}" for i in range(1, N + 1)])
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def nodes(sf):
    with coordinator_handles(sf) as hs:
        yield hs


def _sign_params(lay, key, signers):
    digest = os.urandom(32)
    rid, bundle = approved_bundle(lay, key.key_id, digest)
    return node_pb2.SignParams(key_id=key.key_id, signers=list(signers), digest=digest, request_id=rid, approval_bundle=bundle)


def _call(fn, req):
    try:
        return fn(req, timeout=60)
    except grpc.RpcError as e:
        return e


def test_concurrent_sessions_reveal_one_check_outcome_only(sf, nodes) -> None:
    res = run(nodes, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"sf"))
    key = res[1].dkg_result
    for h in nodes.values():
        h.stub.CommitKey(node_pb2.CommitKeyRequest(key_id=key.key_id, public_key=key.public_key), timeout=10)
    (sf.lay.dir / "faults" / "node-2.json").write_text(
        json.dumps({"action": "tamper-ote", "protocol": "sign", "round": 2, "receiver": 1})
    )
    params = [_sign_params(sf.lay, key, (1, 2)) for _ in range(SESSIONS)]
    barrier = threading.Barrier(SESSIONS)

    def session(p):
        """Start and relay round 1, wait for all, then deliver round 2 (node 1 checks)."""
        sid = os.urandom(32)
        req = node_pb2.StartSessionRequest(session_id=sid, sign=p)
        resps = {i: nodes[i].stub.StartSession(req, timeout=60) for i in (1, 2)}
        inb = route(resps, [1, 2])
        out = {k: _call(nodes[k].stub.Step, node_pb2.StepRequest(session_id=sid, round=1, envelopes=inb[k])) for k in (1, 2)}
        assert all(isinstance(r, node_pb2.StepResponse) for r in out.values()), out
        barrier.wait(timeout=120)
        inb = route(out, [1, 2])
        return _call(nodes[1].stub.Step, node_pb2.StepRequest(session_id=sid, round=2, envelopes=inb[1]))

    with ThreadPoolExecutor(SESSIONS) as pool:
        results = list(pool.map(session, params))

    assert all(isinstance(r, grpc.RpcError) and r.code() == Code.ABORTED for r in results), results
    details = [r.details() for r in results]
    failed = [d for d in details if d.endswith("node 2 (node-2): OT extension consistency check failed")]
    assert len(failed) == 1, details  # the one check outcome the coordinator sees
    banned = [d for d in details if "node 2 (node-2): banned by node-1 for key" in d]
    assert len(banned) == SESSIONS - 1, details
    assert all("OT extension consistency check failed in session" in d and "no check of this session ran" in d for d in banned)
    for r in results:
        md = dict(r.trailing_metadata())
        assert md["mpc-culprit"] == "2" and md["mpc-ban"] == "1" and md["mpc-reporter"] == "1"

    # node 1's audit log holds exactly one ban of node 2, recorded before anything else left
    page = nodes[1].stub.GetAuditLog(governance_pb2.AuditLogRequest(after_seq=0, limit=1000), timeout=10)
    bans = [e for e in page.entries if e.action == "ban"]
    assert len(bans) == 1 and bans[0].outcome == "recorded"
    assert json.loads(bans[0].details_json)["peer"] == 2

    # new sessions with node 2 are refused, also after node 1 restarts (the ban is durable)
    (sf.lay.dir / "faults" / "node-2.json").unlink()
    for restart in (False, True):
        if restart:
            sf.kill("node-1")
            sf.start("node-1")
            sf.wait_healthy(["node-1"])
        with pytest.raises(grpc.RpcError) as e:
            nodes[1].stub.StartSession(
                node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=_sign_params(sf.lay, key, (1, 2))), timeout=30
            )
        assert e.value.code() == Code.PERMISSION_DENIED
        assert "node 2 (node-2) is banned by node-1" in e.value.details()
    res = run(nodes, os.urandom(32), [1, 3], sign=_sign_params(sf.lay, key, (1, 3)))  # without node 2 it signs
    assert all(isinstance(r, node_pb2.StepResponse) and r.finished for r in res.values()), res
