"""Presignature pools on real node processes (issue 14): a node killed (``os._exit``, the
``presign-consumed`` fault point of mpc_node/faults.py) right after its SignPresigned consume
transaction committed and before it answered. Restarted, it answers the same (request, attempt,
presig_id) with the stored share (``replayed``), refuses anything else on that presignature,
and holds no fresh presignature (all deleted at its start). The test plays the coordinator over
gRPC with the coordinator's certificate."""

from __future__ import annotations

import os

import grpc
import pytest

from mpcnet.client import MpcClient
from mpcnet.wire.mpc.v1 import node_pb2
from tests.network.presign_util import combine_verified, share_of_envelope, sign_request

from .conftest import coordinator_handles, running_cluster
from .relay_util import run
from .test_faults import revive, set_fault

N, T = 3, 2


@pytest.fixture(scope="module")
def pc(tmp_path_factory):
    # the test plays the coordinator: the real one keeps no pools (its refiller would add presignatures on the nodes)
    with running_cluster(tmp_path_factory, "presign-crash", N, T, fault_files=True, policy_max_age_s=0, presign=False) as c:
        yield c


def test_a_node_killed_after_its_consume_commit_replays_after_the_restart(pc) -> None:
    with MpcClient.from_cluster(pc.lay.dir, identity="admin1", timeout=120) as admin:
        key = admin.create_key("pool crash")
    with coordinator_handles(pc) as hs:
        identities = {i: hs[i].stub.GetInfo(node_pb2.GetInfoRequest(), timeout=30).identity_public for i in (1, 2)}
        params = node_pb2.PresignParams(key_id=key.key_id, signers=[1, 2], count=2, epoch=key.epoch)
        res = run(hs, os.urandom(32), [1, 2], presign=params)
        assert all(isinstance(r, node_pb2.StepResponse) and r.finished for r in res.values()), res
        a, b = res[1].presign_result.presignatures
        req = sign_request(pc.lay, key, a)
        set_fault(pc, 1, action="crash", point="presign-consumed")
        with pytest.raises(grpc.RpcError) as e:
            hs[1].stub.SignPresigned(req, timeout=30)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert pc.procs["node-1"].wait(timeout=30) == 137  # killed after the commit, before the answer
        revive(pc, 1)
        first = hs[1].stub.SignPresigned(req, timeout=30)
        again = hs[1].stub.SignPresigned(req, timeout=30)
        assert first.replayed and again.replayed and again.share == first.share
        other = hs[2].stub.SignPresigned(req, timeout=30)
        assert not other.replayed
        shares = {1: share_of_envelope(identities[1], first, a.presig_id), 2: share_of_envelope(identities[2], other, a.presig_id)}
        combine_verified(key, req, shares)
        with pytest.raises(grpc.RpcError) as e:
            hs[1].stub.SignPresigned(sign_request(pc.lay, key, a), timeout=30)
        assert ("mpc-governance", "presig-used") in e.value.trailing_metadata()
        with pytest.raises(grpc.RpcError) as e:  # b was fresh at the kill: deleted at the start
            hs[1].stub.SignPresigned(sign_request(pc.lay, key, b), timeout=30)
        assert ("mpc-governance", "presig-unknown") in e.value.trailing_metadata()
        assert hs[1].stub.ListPresignatures(node_pb2.ListPresignaturesRequest(), timeout=30).presignatures == []
        assert hs[1].stub.Health(node_pb2.NodeHealthRequest(), timeout=30).presignatures == 0
        assert hs[2].stub.Health(node_pb2.NodeHealthRequest(), timeout=30).presignatures == 1  # b, on node 2
