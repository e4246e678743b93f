"""Operating issue 15 (operator review): ``mpc-cluster up`` on a stopped cluster whose metrics
port was taken meanwhile by another process gives that process a new metrics port (the old one
would be a process that cannot start). A Prometheus scraping the old ``cluster.json`` targets would
now scrape the other process, so ``up`` must say so (its progress line names the process, the old
and the new port and what to update), not move the target silently; an unmoved port says nothing."""

from __future__ import annotations

import socket

from mpcnet.cluster.launcher import prepare
from mpcnet.cluster.metrics_ports import metrics_endpoints


def _port(endpoint: str) -> int:
    return int(endpoint.rpartition(":")[2])


def test_a_moved_metrics_port_is_reported_by_up(tmp_path) -> None:
    lay = prepare(tmp_path / "c", 3, 2, scrypt_n=2**10, test_mode=True)
    old = metrics_endpoints(lay)
    said: list[str] = []
    prepare(tmp_path / "c", 3, 2, scrypt_n=2**10, test_mode=True, progress=said.append)
    assert not [m for m in said if "metrics port" in m]  # nothing moved, nothing said
    with socket.socket() as squatter:  # another program took node-2's metrics port meanwhile
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", _port(old["node-2"])))
        squatter.listen()
        said.clear()
        again = prepare(tmp_path / "c", 3, 2, scrypt_n=2**10, test_mode=True, progress=said.append)
    new = metrics_endpoints(again)
    assert new["node-2"] != old["node-2"]
    assert {k: v for k, v in new.items() if k != "node-2"} == {k: v for k, v in old.items() if k != "node-2"}
    moved = [m for m in said if "metrics port" in m]
    assert len(moved) == 1, said
    assert "node-2" in moved[0] and str(_port(old["node-2"])) in moved[0] and str(_port(new["node-2"])) in moved[0]
    assert "prometheus" in moved[0].lower()
