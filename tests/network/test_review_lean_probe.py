"""Review of issue 14's throttled store probe (R4): a signing session's first durable write (its
sign-start entry in the audit outbox) stands for the probe, but a keygen or reshare session
makes no such write when it starts. It must still be refused at once by a node that cannot
write its store, not accepted for up to STORE_PROBE_INTERVAL_S after the last good probe and
then fail at the end, when its peers have done the work (and, for a reshare, moved on)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mpc_node.service import NodeService
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import node_pb2

from .test_bans import N, T, _service


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("probe"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def svcs(lay: Layout) -> Iterator[dict[int, NodeService]]:
    out = {i: _service(lay, i) for i in range(1, N + 1)}
    yield out
    for s in out.values():
        s.stop()
        s.store.close()
        s.audit.close()


def test_a_keygen_session_is_refused_by_a_node_that_cannot_write_right_after_a_good_probe(svcs: dict[int, NodeService]) -> None:
    node = svcs[1]
    assert node.probe_store() == ""  # a good probe just now: the throttle would skip the next one
    node.store.write_fault = lambda: "disk I/O error (injected)"
    try:
        req = node_pb2.StartSessionRequest(session_id=os.urandom(32), dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"p"))
        with pytest.raises(RpcError) as e:
            node.StartSession(req, None)
        assert e.value.code.name == "UNAVAILABLE" and "cannot write its store" in e.value.message
    finally:
        node.store.write_fault = None
    assert node.probe_store() == ""
