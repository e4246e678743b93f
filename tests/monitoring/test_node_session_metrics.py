"""mpc_node's session metrics in process (no gRPC): live sessions by protocol, aborts by reason
class (the coordinator's AbortSession, an idle timeout), and the dev cluster's configs carry a
``metrics`` section (so the services below count into a real registry)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from mpc_node.config import load_node_config
from mpc_node.service import NodeService
from mpc_node.storage import NodeStore
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.keystore import load_keystore, read_passphrase
from mpcnet.common.metrics import Metrics
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import node_pb2

N, T = 3, 2


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("session-metrics"), N, T, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture(scope="module")
def node(lay: Layout) -> Iterator[NodeService]:
    cfg = load_node_config(lay.node_config(1))
    assert cfg.metrics is not None and cfg.metrics.listen.startswith("127.0.0.1:")
    pp = read_passphrase(file=cfg.passphrase_file, env=cfg.passphrase_env)
    keys = load_keystore(cfg.keystore, pp)
    store = NodeStore.open(cfg.store, pp, cfg.index, scrypt_n=cfg.scrypt_n)
    audit = AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=keys.identity)
    svc = NodeService(cfg, keys, store, audit)
    yield svc
    store.close()
    audit.close()


def _value(m: Metrics, series: str) -> float:
    for line in m.render().decode().splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _start_dkg(node: NodeService) -> bytes:
    sid = os.urandom(32)
    node.StartSession(
        node_pb2.StartSessionRequest(session_id=sid, dkg=node_pb2.DkgParams(threshold=T, parties=N, key_label=b"m")), None
    )
    return sid


def test_live_sessions_and_aborts_by_reason_class(node: NodeService) -> None:
    m = node.metrics
    assert isinstance(m, Metrics) and m.enabled
    assert _value(m, 'mpcnet_sessions_live{protocol="dkg"}') == 0.0
    a, b = _start_dkg(node), _start_dkg(node)
    assert _value(m, 'mpcnet_sessions_live{protocol="dkg"}') == 2.0
    node.AbortSession(node_pb2.AbortSessionRequest(session_id=a, reason="operator stop"), None)
    assert _value(m, 'mpcnet_sessions_live{protocol="dkg"}') == 1.0
    assert _value(m, 'mpcnet_sessions_aborted_total{protocol="dkg",reason="coordinator"}') == 1.0
    # an unknown session aborted again counts nothing
    node.AbortSession(node_pb2.AbortSessionRequest(session_id=a, reason="again"), None)
    assert _value(m, 'mpcnet_sessions_aborted_total{protocol="dkg",reason="coordinator"}') == 1.0
    assert node.sweep(time.monotonic() + node.cfg.session_timeout_s + 1) >= 1
    assert _value(m, 'mpcnet_sessions_aborted_total{protocol="dkg",reason="timeout"}') == 1.0
    assert _value(m, 'mpcnet_sessions_live{protocol="dkg"}') == 0.0
    assert b not in node._sessions
    assert _value(m, "mpcnet_store_healthy") == 1.0
    assert _value(m, "mpcnet_audit_entries_total") >= 1.0
