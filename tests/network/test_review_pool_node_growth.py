"""Review of the node side of presignature pools (issue 14, P2), as an attacker: growth.

Finding: the presignatures a node holds *in the making* (live presign sessions) were bounded
only per key (``max_presignatures_per_key``) and by ``max_sessions`` (256): a compromised
coordinator opening presign sessions over many keys could pin about 128 KiB of session state per
presignature (measured: 4 MiB for two nodes' 16-presignature sessions after round 2), i.e. up to
256 x 64 x 128 KiB = 2 GiB per node. Now the node refuses a presign session that would put more
than MAX_PRESIGNATURES_IN_MAKING (all keys) in the making: RESOURCE_EXHAUSTED naming
presign.count, audited, nothing started."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import mpc_node.presign as presign_mod
from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .presign_util import Code, close, run_session, service

N, T = 3, 2


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("review-growth"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        close(s)


def _dkg(svcs: dict[int, NodeService], label: bytes) -> node_pb2.DkgResult:
    res = run_session(svcs, os.urandom(32), [1, 2, 3], dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=label))
    k: node_pb2.DkgResult = res[1].dkg_result
    for s in svcs.values():
        s.CommitKey(node_pb2.CommitKeyRequest(key_id=k.key_id, public_key=k.public_key), None)
    return k


def test_presignatures_in_the_making_are_bounded_over_all_keys(svcs: dict[int, NodeService], monkeypatch: pytest.MonkeyPatch) -> None:
    assert presign_mod.MAX_PRESIGNATURES_IN_MAKING >= 4 * svcs[1].cfg.max_presign_batch  # a refiller's few sessions fit
    keys = [_dkg(svcs, b"growth-a"), _dkg(svcs, b"growth-b")]
    n1 = svcs[1]
    monkeypatch.setattr(presign_mod, "MAX_PRESIGNATURES_IN_MAKING", 5)

    def start(key: node_pb2.DkgResult, count: int) -> node_pb2.StartSessionRequest:
        return node_pb2.StartSessionRequest(
            session_id=os.urandom(32), presign=node_pb2.PresignParams(key_id=key.key_id, signers=[1, 2], count=count))

    n1.StartSession(start(keys[0], 3), None)
    before = n1.Health(node_pb2.NodeHealthRequest(), None).presign_sessions
    with pytest.raises(RpcError) as e:
        n1.StartSession(start(keys[1], 3), None)  # another key: its own cap is far, the node's bound is not
    assert e.value.code == Code.RESOURCE_EXHAUSTED and e.value.message.startswith("presign.count: ")
    assert n1.Health(node_pb2.NodeHealthRequest(), None).presign_sessions == before
    assert [x.outcome for x in n1.audit.entries() if x.action == "presign"][-1] == "refused"
    n1.StartSession(start(keys[1], 2), None)  # within the bound
