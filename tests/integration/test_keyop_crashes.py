"""Issue 11 on real processes: a node or the coordinator killed at each step of a refresh and of
a reshare (test-mode crash points: :mod:`mpc_node.faults` for the nodes, :mod:`coordinator.faults`
for the coordinator), restarted by the test like a supervisor would. Afterwards:

* the operation ended ``done`` or ``failed`` (never stuck running/committing), and a failed one
  proposed again (a new operation of the same old epoch) succeeds;
* every node is in ONE epoch of the key: ``ListKeys`` epoch and committee equal on every node,
  and the coordinator's ``GetKey`` agrees;
* the key signs (OpenSSL-verified) under the unchanged public key, and a node asked to sign in
  the previous epoch refuses naming ``sign.epoch`` (no old-epoch share is left to sign with).

One 2-of-3 cluster and one key for the whole module: each test starts from the epoch the
previous one left (read from the coordinator).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation, sign_key_operation
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2, node_pb2

from .conftest import coordinator_handles, make_cluster
from .test_cluster_api import verify_independently

N, T = 3, 2
Code = grpc.StatusCode
SETTLE_S = 60.0  # an operation is done or failed within this (the push retries every 2 s)
COORDINATOR_FAULT_ENV = "MPC_TEST_COORDINATOR_FAULT_FILE"


@pytest.fixture(scope="module")
def kc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "keyop-crash-2of3", N, T, fault_files=True)
    c.env = {COORDINATOR_FAULT_ENV: str(c.lay.dir / "faults" / "coordinator.json")}  # the nodes ignore it
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def admins(kc: LocalCluster) -> Iterator[tuple[MpcClient, MpcClient]]:
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1", timeout=120) as a1, \
            MpcClient.from_cluster(kc.lay.dir, identity="admin2", timeout=120) as a2:
        yield a1, a2


@pytest.fixture(scope="module")
def team(kc: LocalCluster) -> Iterator[SigningTeam]:
    with SigningTeam.from_cluster(kc.lay.dir, timeout=120) as t:
        yield t


@pytest.fixture(scope="module")
def key(admins: tuple[MpcClient, MpcClient]) -> Any:
    return admins[0].create_key("crash-lifecycle")


# --- harness -----------------------------------------------------------------------------------
def arm(kc: LocalCluster, name: str, fault: dict[str, Any]) -> None:
    """Write ``name``'s fault file (``node-i`` or ``coordinator``); it is read at each point."""
    (kc.lay.dir / "faults" / f"{name}.json").write_text(json.dumps(fault))


def disarm(kc: LocalCluster) -> None:
    for f in (kc.lay.dir / "faults").glob("*.json"):
        f.unlink()


def node_env(kc: LocalCluster, name: str) -> dict[str, str] | None:
    return kc.node_env.get(int(name.split("-")[1])) if name.startswith("node-") else None


def await_exit(kc: LocalCluster, name: str, timeout: float = 60.0) -> None:
    """Wait until the fault killed ``name`` (exit status 137: ``os._exit`` at the point)."""
    p = kc.procs[name]
    try:
        rc = p.wait(timeout=timeout)
    except Exception:
        pytest.fail(f"{name} did not reach its crash point within {timeout:.0f} s")
    assert rc == 137, f"{name} exited with {rc}, not at the injected crash"


def restart(kc: LocalCluster, name: str) -> None:
    """The supervisor's part: start ``name`` again."""
    kc.start(name, node_env(kc, name))
    kc.wait_healthy([name])


def every_node_seen(admin: MpcClient) -> None:
    """Wait until the coordinator's health probe sees every node again (a refresh needs the
    whole committee)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = admin._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30)
        if all(n.healthy for n in st.nodes if not n.revoked):
            return
        time.sleep(0.2)
    pytest.fail("the coordinator did not see every node healthy again")


def epoch(admin: MpcClient, key: Any) -> common_pb2.KeyInfo:
    return admin._stub.GetKey(coordinator_pb2.GetKeyRequest(key_id=key.key_id), timeout=30)


def build(kc: LocalCluster, admin: MpcClient, key: Any, kind: KeyOpKind, new: tuple[int, ...]) -> SignedKeyOperation:
    """``kind`` of ``key`` from its current epoch to committee ``new`` (threshold T), signed by
    admin1 and admin2."""
    info = epoch(admin, key)
    root = admin._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30).governance_root
    version = len(admin._stub.GetRoster(coordinator_pb2.GetClusterRosterRequest(), timeout=30).signed_changes)
    op = KeyOperation(
        root, os.urandom(16), kind, key.key_id, key.public_key, key.chain_code, info.epoch, info.threshold,
        tuple(info.committee), T, new, version, "crash test",
    )
    sigs = tuple(sign_key_operation(op, a, load_identity(kc.lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    return SignedKeyOperation(op, sigs)


def propose(admins: tuple[MpcClient, MpcClient], signed: SignedKeyOperation) -> str:
    """Propose (admin1) and approve (admin2): the coordinator starts the operation at the quorum.
    The approval's answer may be lost when a coordinator fault fires at once."""
    a1, a2 = admins
    one = SignedKeyOperation(signed.operation, signed.signatures[:1])
    prop = a1._stub.ProposeKeyOperation(coordinator_pb2.ProposeKeyOperationRequest(signed_operation=one.to_bytes()), timeout=30)
    try:
        a2._stub.ApproveLifecycleProposal(
            coordinator_pb2.ApproveLifecycleProposalRequest(
                proposal_id=prop.proposal_id, admin="admin2", signature=signed.signatures[1].signature
            ),
            timeout=30,
        )
    except grpc.RpcError as e:
        assert e.code() == Code.UNAVAILABLE, e
    return str(prop.proposal_id)


def settle(admin: MpcClient, op_id: str) -> coordinator_pb2.KeyOperationStatus:
    """The operation's final state; fails if it is still running/committing after SETTLE_S."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        try:
            st = admin._stub.GetKeyOperation(coordinator_pb2.GetKeyOperationRequest(operation_id=op_id), timeout=30)
        except grpc.RpcError as e:
            if e.code() != Code.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
            continue
        if st.state in ("done", "failed"):
            return st
        if time.monotonic() > deadline:
            pytest.fail(f"operation {op_id} still {st.state} after {SETTLE_S:.0f} s: {st.error}")
        time.sleep(0.2)


def run_until_done(
    kc: LocalCluster, admins: tuple[MpcClient, MpcClient], team: SigningTeam, key: Any, kind: KeyOpKind, new: tuple[int, ...],
    first: coordinator_pb2.KeyOperationStatus,
) -> coordinator_pb2.KeyOperationStatus:
    """``first`` if it is done; if it failed the key is still in the operation's old epoch (and
    signs there) and the same change proposed again (a new operation) succeeds."""
    if first.state == "done":
        return first
    assert first.state == "failed" and first.error
    info = epoch(admins[0], key)
    assert info.epoch == first.old_epoch and list(info.committee) == list(first.old_committee)  # nothing half-done
    digest = os.urandom(32)  # and the key signs in its old epoch meanwhile
    verify_independently(key.public_key, team.sign(key.key_id, digest).der, digest)
    again = build(kc, admins[0], key, kind, new)
    propose(admins, again)
    st = settle(admins[0], again.operation.proposal_id)
    assert st.state == "done", st.error
    return st


def assert_one_epoch(kc: LocalCluster, admin: MpcClient, team: SigningTeam, key: Any, want: int, committee: tuple[int, ...]) -> None:
    """Every node and the coordinator in epoch ``want`` with ``committee``; the key signs; a
    committee node refuses to sign in the previous epoch naming sign.epoch."""
    info = epoch(admin, key)
    assert (info.epoch, tuple(info.committee), info.public_key) == (want, committee, key.public_key)
    with coordinator_handles(kc) as hs:
        for i, h in hs.items():
            keys = {k.key_id: k for k in h.stub.ListKeys(node_pb2.NodeListKeysRequest(), timeout=30).keys}
            k = keys[key.key_id]
            assert (k.epoch, tuple(k.committee)) == (want, committee), f"node {i}: epoch {k.epoch}, committee {list(k.committee)}"
        digest = os.urandom(32)
        for i, h in hs.items():  # no node signs with a share of the previous epoch
            with pytest.raises(grpc.RpcError) as ei:
                h.stub.StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=node_pb2.SignParams(
                    key_id=key.key_id, signers=sorted({i, *[c for c in (1, 2, 3) if c != i][:T - 1]}), digest=digest,
                    request_id=f"old-epoch-{want}-{i}", epoch=want - 1,
                )), timeout=30)
            got = (ei.value.code(), ei.value.details().split(":")[0])
            # a committee node names the epoch; a node that left holds no share of the key at all
            assert got == ((Code.FAILED_PRECONDITION, "sign.epoch") if i in committee else (Code.NOT_FOUND, "sign.key_id")), (
                i, ei.value.details())
    sig = team.sign(key.key_id, digest)
    verify_independently(key.public_key, sig.der, digest)
    assert set(sig.signers) <= set(committee)
    st = admin._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30)
    assert [o.state for o in st.operations if o.key_id == key.key_id and o.state != "failed"] == []


def crash_case(
    kc: LocalCluster, admins: tuple[MpcClient, MpcClient], team: SigningTeam, key: Any, kind: KeyOpKind, new: tuple[int, ...],
    faults: dict[str, dict[str, Any]],
) -> coordinator_pb2.KeyOperationStatus:
    """Run ``kind`` to ``new`` with ``faults`` armed (process name -> fault); wait for each faulty
    process to die, restart it, and check the outcome."""
    a1 = admins[0]
    before = epoch(a1, key).epoch
    signed = build(kc, a1, key, kind, new)
    for name, fault in faults.items():
        arm(kc, name, fault)
    try:
        pid = propose(admins, signed)
        for name in faults:
            await_exit(kc, name)
    finally:
        disarm(kc)
    for name in sorted(faults, key=lambda n: n == "coordinator"):  # nodes first: the coordinator resumes at its start
        restart(kc, name)
    every_node_seen(a1)
    first = settle(a1, signed.operation.proposal_id)
    prop = a1._stub.GetLifecycleProposal(coordinator_pb2.GetLifecycleProposalRequest(proposal_id=pid), timeout=30)
    assert prop.state == coordinator_pb2.PROPOSAL_STATE_APPLIED and list(prop.operations) == [signed.operation.proposal_id]
    st = run_until_done(kc, admins, team, key, kind, new, first)
    assert st.old_epoch == before and st.new_epoch == before + 1
    assert_one_epoch(kc, a1, team, key, st.new_epoch, new)
    return first


# --- refresh: every step ------------------------------------------------------------------------
REFRESH = [
    pytest.param({"node-2": {"action": "crash", "protocol": "reshare", "round": 1}}, "failed", id="node-round-1"),
    pytest.param({"node-2": {"action": "crash", "protocol": "reshare", "round": 2}}, "failed", id="node-round-2"),
    pytest.param({"node-2": {"action": "crash", "protocol": "reshare", "round": 3}}, "failed", id="node-round-3"),
    pytest.param({"node-1": {"action": "crash", "protocol": "reshare", "round": 4}}, "failed", id="node-round-4"),
    # stored (so confirmed) before the crash: the coordinator finds every receipt and decides
    pytest.param({"node-2": {"action": "crash", "point": "reshare-stored"}}, "done", id="node-stored"),
    pytest.param({"coordinator": {"action": "crash", "point": "recorded"}}, "failed", id="coordinator-recorded"),
    pytest.param({"coordinator": {"action": "crash", "point": "round-2"}}, "failed", id="coordinator-round-2"),
    pytest.param({"coordinator": {"action": "crash", "point": "round-4"}}, "failed", id="coordinator-round-4"),
    pytest.param({"coordinator": {"action": "crash", "point": "receipts"}}, "done", id="coordinator-receipts"),
    pytest.param({"coordinator": {"action": "crash", "point": "decided"}}, "done", id="coordinator-decided"),
    pytest.param(
        {"node-3": {"action": "crash", "point": "epoch-committed"}, "coordinator": {"action": "crash", "point": "pushed"}}, "done",
        id="node-committed-coordinator-pushed",
    ),
]


@pytest.mark.parametrize(("faults", "outcome"), REFRESH)
def test_a_refresh_killed_at_each_step_ends_in_one_epoch(kc, admins, team, key, faults, outcome) -> None:
    first = crash_case(kc, admins, team, key, KeyOpKind.REFRESH, (1, 2, 3), faults)
    assert first.state == outcome, first.error


# --- reshare: drop node 3, add it back ----------------------------------------------------------
RESHARE = [
    pytest.param(
        {"node-3": {"action": "crash", "point": "reshare-stored"}}, {"coordinator": {"action": "crash", "point": "decided"}},
        id="retiring-node-stored/coordinator-decided",
    ),
    pytest.param(
        {"node-3": {"action": "crash", "point": "epoch-committed"}}, {"node-3": {"action": "crash", "protocol": "reshare", "round": 2}},
        id="retiring-node-committed/joining-node-round-2",
    ),
    pytest.param(
        {"coordinator": {"action": "crash", "point": "round-1"}}, {"node-3": {"action": "crash", "point": "reshare-stored"}},
        id="coordinator-round-1/joining-node-stored",
    ),
    pytest.param(
        {"node-1": {"action": "crash", "protocol": "reshare", "round": 2}}, {"coordinator": {"action": "crash", "point": "receipts"}},
        id="staying-dealer-round-2/coordinator-receipts",
    ),
]


@pytest.mark.parametrize(("drop", "add"), RESHARE)
def test_a_reshare_dropping_a_node_then_adding_it_back_killed_at_a_step_ends_in_one_epoch(kc, admins, team, key, drop, add) -> None:
    crash_case(kc, admins, team, key, KeyOpKind.RESHARE, (1, 2), drop)
    crash_case(kc, admins, team, key, KeyOpKind.RESHARE, (1, 2, 3), add)
