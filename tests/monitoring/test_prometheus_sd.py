"""mpcnet.cluster.prometheus_sd: cluster.json's metrics endpoints as Prometheus file_sd targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpcnet.cluster.prometheus_sd import file_sd_groups, main, write_file_sd


def test_groups_label_job_and_process_in_order() -> None:
    eps = {"node-2": "localhost:9102", "coordinator": "localhost:9100", "node-10": "localhost:9110", "node-1": "localhost:9101"}
    info = {"metrics": eps}
    groups = file_sd_groups(info)
    assert [g["labels"]["process"] for g in groups] == ["coordinator", "node-1", "node-2", "node-10"]
    assert groups[0] == {"targets": ["localhost:9100"], "labels": {"job": "mpcnet-coordinator", "process": "coordinator"}}
    assert {g["labels"]["job"] for g in groups[1:]} == {"mpcnet-node"}


@pytest.mark.parametrize(
    ("metrics", "field"),
    [
        (None, "'metrics'"),
        ({}, "'metrics'"),
        ({"evil\n": "localhost:1"}, "'metrics'"),
        ({"node-1": "localhost"}, "'metrics.node-1'"),
        ({"node-1": "localhost:99999"}, "'metrics.node-1'"),
        ({"node-1": "local host:1"}, "'metrics.node-1'"),
        ({"coordinator": 9100}, "'metrics.coordinator'"),
    ],
)
def test_bad_metrics_sections_are_refused_naming_the_field(metrics: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        file_sd_groups({} if metrics is None else {"metrics": metrics})


def test_write_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cluster.json").write_text(json.dumps({"metrics": {"coordinator": "localhost:9100"}}))
    out = tmp_path / "targets.json"
    assert main([str(tmp_path), str(out)]) == 0
    assert json.loads(out.read_text()) == write_file_sd(tmp_path, out)
    (tmp_path / "cluster.json").write_text("{not json")
    assert main([str(tmp_path), str(out)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert json.loads(out.read_text())[0]["labels"]["process"] == "coordinator"  # left as it was
    assert main([]) == 2


def test_the_cli_makes_the_targets_directory_and_names_the_file_it_could_not_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """deploy/monitoring/targets/ is not in git: the documented recipe writes into it on a fresh clone."""
    (tmp_path / "cluster.json").write_text(json.dumps({"metrics": {"coordinator": "localhost:9100"}}))
    out = tmp_path / "targets" / "mpcnet.json"
    assert main([str(tmp_path), str(out)]) == 0
    assert json.loads(out.read_text())[0]["targets"] == ["localhost:9100"]
    deep = tmp_path / "no" / "such" / "mpcnet.json"  # only the last level is made
    assert main([str(tmp_path), str(deep)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"No such file or directory: {deep}" in err and ".tmp" not in err
    assert main([str(tmp_path / "missing"), str(out)]) == 2
    assert "cluster.json" in capsys.readouterr().err
