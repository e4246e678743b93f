"""The dev cluster's metrics ports: one per process, none a gRPC port, kept by a repeated
``up`` (prepare), and a node made from another's config (add-node, replace-node) gets its own."""

from __future__ import annotations

import json

from mpcnet.cluster.launcher import prepare
from mpcnet.cluster.metrics_ports import metrics_endpoints, own_metrics_section


def _port(endpoint: str) -> int:
    return int(endpoint.rpartition(":")[2])


def test_ports_are_distinct_kept_and_a_copied_node_gets_its_own(tmp_path) -> None:
    lay = prepare(tmp_path / "c", 3, 2, scrypt_n=2**10, test_mode=True)
    eps = metrics_endpoints(lay)
    assert set(eps) == {"coordinator", "node-1", "node-2", "node-3"}
    ports = {_port(e) for e in eps.values()}
    grpc = {_port(e) for e in lay.endpoints().values()}
    assert len(ports) == 4 and not ports & grpc
    again = prepare(tmp_path / "c", 3, 2, scrypt_n=2**10, test_mode=True)
    assert metrics_endpoints(again) == eps  # a restarted cluster keeps its scrape targets
    # node-4's config starts as a copy of node-1's (add-node's template): it must not keep node-1's port
    doc = json.loads(lay.node_config(1).read_text())
    lay.node_config(4).parent.mkdir(parents=True, exist_ok=True)
    lay.node_config(4).write_text(json.dumps(doc))
    section = own_metrics_section(lay, 4, 1)
    p = _port(section["metrics"]["listen"])
    assert p not in ports | grpc | {1}
    # its own port, once written, is kept
    lay.node_config(4).write_text(json.dumps({**doc, **section}))
    assert own_metrics_section(lay, 4, 1) == section
