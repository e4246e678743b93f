"""``mpc-cluster status`` (and the summary ``up`` ends with) names every process's metrics endpoint
(issue 15 review: a newcomer found them only by reading cluster.json), escaped; ``--json`` has them
under ``"metrics"``; a cluster.json without metrics shows no such line."""

from __future__ import annotations

import json

import pytest

from mpcnet.cluster import cli
from mpcnet.cluster.launcher import Layout, prepare


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("status-metrics") / "c", 3, 2, scrypt_n=2**10)


def _info(metrics: object | None) -> dict[str, object]:
    info: dict[str, object] = {"threshold": 2, "ca_cert": "ca.pem", "certs": {},
                               "nodes": [{"name": f"node-{i}", "endpoint": f"localhost:{5000 + i}"} for i in (1, 2, 3)],
                               "coordinator": {"endpoint": "localhost:5000"}}
    if metrics is not None:
        info["metrics"] = metrics
    return info


def test_the_text_status_lists_the_metrics_endpoints_escaped(lay: Layout, capsys: pytest.CaptureFixture[str]) -> None:
    doc = cli.print_status(lay, _info({"coordinator": "localhost:9100", "node-1": "localhost:9101\x1b[2J"}),
                           as_json=False, probe=False)
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "metrics: coordinator localhost:9100, node-1 localhost:9101\\x1b[2J"
    assert out[-1].startswith("client: mpc --cluster ")
    assert doc["metrics"] == {"coordinator": "localhost:9100", "node-1": "localhost:9101\x1b[2J"}


def test_the_json_status_has_them_and_a_cluster_without_metrics_has_no_line(
        lay: Layout, capsys: pytest.CaptureFixture[str]) -> None:
    cli.print_status(lay, _info({"coordinator": "localhost:9100"}), as_json=True, probe=False)
    assert json.loads(capsys.readouterr().out)["metrics"] == {"coordinator": "localhost:9100"}
    for metrics in (None, "not a mapping"):
        doc = cli.print_status(lay, _info(metrics), as_json=False, probe=False)
        assert "metrics" not in doc and "metrics:" not in capsys.readouterr().out
