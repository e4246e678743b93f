"""Key operations across real processes (issue 11): admins propose and approve a refresh or a
reshare through the coordinator (ProposeKeyOperation, ApproveLifecycleProposal), the coordinator
runs it, and the key keeps signing (through the coordinator, verified with OpenSSL) under the
unchanged public key in the new epoch, with its new committee and threshold.
"""

from __future__ import annotations

import os
import time

import grpc
import pytest

from coordinator.config import load_coordinator_config
from coordinator.db import AuditEvent, CoordinatorDb, now_ms
from coordinator.keyop_store import KeyOpRecord
from coordinator.relay import run_session
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation, sign_key_operation
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.client.identities import load_identity
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

from .conftest import coordinator_handles, running_cluster
from .test_cluster_api import verify_independently

N, T = 3, 2
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def kc(tmp_path_factory):
    with running_cluster(tmp_path_factory, "keyops-2of3", N, T) as c:
        yield c


@pytest.fixture(scope="module")
def admins(kc):
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1", timeout=120) as a1, \
            MpcClient.from_cluster(kc.lay.dir, identity="admin2", timeout=120) as a2:
        yield a1, a2


@pytest.fixture(scope="module")
def team(kc):
    with SigningTeam.from_cluster(kc.lay.dir, timeout=120) as t:
        yield t


def _run_operation(kc, admins, key, kind: KeyOpKind, new: tuple[int, ...], new_t: int) -> coordinator_pb2.KeyOperationStatus:
    a1, a2 = admins
    info = a1._stub.GetKey(coordinator_pb2.GetKeyRequest(key_id=key.key_id), timeout=30)
    status = a1._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30)
    roster = a1._stub.GetRoster(coordinator_pb2.GetClusterRosterRequest(), timeout=30)  # version V: V changes
    op = KeyOperation(
        status.governance_root, os.urandom(16), kind, key.key_id, key.public_key, key.chain_code, info.epoch, info.threshold,
        tuple(info.committee), new_t, new, len(roster.signed_changes), "integration test",
    )
    sig1 = sign_key_operation(op, "admin1", load_identity(kc.lay.dir, "admin1").signing_key)
    prop = a1._stub.ProposeKeyOperation(
        coordinator_pb2.ProposeKeyOperationRequest(signed_operation=SignedKeyOperation(op, (sig1,)).to_bytes()), timeout=30
    )
    assert prop.state == coordinator_pb2.PROPOSAL_STATE_PENDING and prop.kind == "key-operation"
    sig2 = sign_key_operation(op, "admin2", load_identity(kc.lay.dir, "admin2").signing_key)
    prop = a2._stub.ApproveLifecycleProposal(
        coordinator_pb2.ApproveLifecycleProposalRequest(proposal_id=prop.proposal_id, admin="admin2", signature=sig2.signature),
        timeout=30,
    )
    assert prop.state == coordinator_pb2.PROPOSAL_STATE_APPLIED and list(prop.operations) == [op.proposal_id]
    deadline = time.monotonic() + 120
    while True:
        st = a1._stub.GetKeyOperation(coordinator_pb2.GetKeyOperationRequest(operation_id=op.proposal_id), timeout=30)
        if st.state in ("done", "failed") or time.monotonic() > deadline:
            return st
        time.sleep(0.2)


def test_refresh_then_reshare_to_another_committee_and_threshold(kc, admins, team) -> None:
    a1, _ = admins
    key = a1.create_key("keyops")
    st = _run_operation(kc, admins, key, KeyOpKind.REFRESH, (1, 2, 3), 2)
    assert st.state == "done", st.error
    info = a1._stub.GetKey(coordinator_pb2.GetKeyRequest(key_id=key.key_id), timeout=30)
    assert info.epoch == 1 and list(info.committee) == [1, 2, 3]
    digest = os.urandom(32)
    sig = team.sign(key.key_id, digest)
    verify_independently(key.public_key, sig.der, digest)
    # drop node 2: node 3 becomes share index 2; the coordinator signs with nodes 1 and 3 only
    st = _run_operation(kc, admins, key, KeyOpKind.RESHARE, (1, 3), 2)
    assert st.state == "done", st.error
    for _ in range(2):
        digest = os.urandom(32)
        sig = team.sign(key.key_id, digest)
        verify_independently(key.public_key, sig.der, digest)
        assert sig.signers == (1, 3)
    # node 2 left the committee: its share is erased, the key row says so
    with coordinator_handles(kc) as hs:
        keys = {k.key_id: k for k in hs[2].stub.ListKeys(node_pb2.NodeListKeysRequest(), timeout=30).keys}
        assert keys[key.key_id].epoch == 2 and list(keys[key.key_id].committee) == [1, 3]
        with pytest.raises(grpc.RpcError) as ei:  # a node asked to sign at the old epoch refuses
            hs[1].stub.StartSession(node_pb2.StartSessionRequest(session_id=os.urandom(32), sign=node_pb2.SignParams(
                key_id=key.key_id, signers=[1, 3], digest=digest, request_id="old-epoch", epoch=1)), timeout=30)
        assert ei.value.code() == Code.FAILED_PRECONDITION and ei.value.details().startswith("sign.epoch:")
    status = a1._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30)
    assert all(o.key_id != key.key_id for o in status.operations)


def test_a_coordinator_killed_between_the_receipts_and_the_commit_finishes_after_restart(kc, admins, team) -> None:
    """The coordinator dies after the nodes returned their receipts and before its decision: on
    restart it finds the operation running, asks every new-committee node for its pending epoch,
    takes the decision and pushes the commit. (The test plays the coordinator's part up to the
    kill: it records the operation in the stopped coordinator's database, then relays the
    session to the real nodes with the coordinator's certificate.)"""
    a1, _ = admins
    key = a1.create_key("keyops-crash")
    info = a1._stub.GetKey(coordinator_pb2.GetKeyRequest(key_id=key.key_id), timeout=30)
    history = a1._stub.GetRoster(coordinator_pb2.GetClusterRosterRequest(), timeout=30)
    root = a1._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30).governance_root
    op = KeyOperation(root, os.urandom(16), KeyOpKind.REFRESH, key.key_id, key.public_key, key.chain_code, info.epoch,
                      info.threshold, tuple(info.committee), info.threshold, tuple(info.committee), len(history.signed_changes))
    sigs = tuple(sign_key_operation(op, a, load_identity(kc.lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    signed = SignedKeyOperation(op, sigs)
    kc.kill("coordinator")
    try:
        db = CoordinatorDb(load_coordinator_config(kc.lay.coordinator_config).db)
        t = now_ms()
        rec = KeyOpRecord(op.proposal_id, op.key_id, signed.to_bytes(), "admin-quorum", "running", b"", (), (), (), "", 0, t, t)
        assert db.add_key_operation(rec, AuditEvent("admin1", "key-operation", "", "started", {"operation": op.proposal_id}))
        sid = os.urandom(32)
        db.key_operation_session(op.proposal_id, sid, (1, 2, 3), now_ms())
        db.close()
        start = node_pb2.StartSessionRequest(
            session_id=sid, reshare=node_pb2.ReshareParams(operation=signed.to_bytes(), dealers=[1, 2, 3], key_label=b"keyops-crash")
        )
        with coordinator_handles(kc) as hs:
            final = run_session(hs, sid, {i: start for i in hs}, 60)
        assert all(r.reshare_result.receipt for r in final.values())
    finally:
        kc.start("coordinator")
        kc.wait_healthy(["coordinator"])
    deadline = time.monotonic() + 60
    while (st := a1._stub.GetKeyOperation(coordinator_pb2.GetKeyOperationRequest(operation_id=op.proposal_id), timeout=30)).state \
            not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert st.state == "done", st.error
    with coordinator_handles(kc) as hs:
        for h in hs.values():
            keys = {k.key_id: k for k in h.stub.ListKeys(node_pb2.NodeListKeysRequest(), timeout=30).keys}
            assert keys[key.key_id].epoch == 1
    digest = os.urandom(32)
    verify_independently(key.public_key, team.sign(key.key_id, digest).der, digest)
