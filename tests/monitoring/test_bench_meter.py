"""mpcnet.cluster.bench_meter (issue 14's instruments): CPU from /proc and getrusage, the cost of
a phase per process, cluster.json parsing, the commit log and the critical-path window."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mpcnet.cluster.bench_meter import (
    CLIENT,
    Commit,
    Meter,
    MeterError,
    Processes,
    Snapshot,
    cores,
    critical_path_commits,
    process_cpu_s,
    read_commit_log,
    self_cpu_s,
)


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_proc_stat_and_getrusage_agree_on_this_process() -> None:
    a, b = process_cpu_s(os.getpid()), self_cpu_s()
    _burn(0.05)
    da, db = process_cpu_s(os.getpid()) - a, self_cpu_s() - b
    assert da >= 0.03 and db >= 0.04  # /proc counts whole clock ticks
    assert abs(da - db) < 0.03


def test_a_gone_process_is_a_meter_error() -> None:
    with pytest.raises(MeterError) as e:
        process_cpu_s(2**22 + 12345)  # above pid_max's default
    assert e.value.field == "pid"


def test_the_cost_of_a_phase_per_process_and_the_ceiling() -> None:
    before = Snapshot(cpu_s={"coordinator": 1.0, "node-1": 2.0, CLIENT: 0.5}, commits={"coordinator": 10, "node-1": 3})
    after = Snapshot(cpu_s={"coordinator": 1.4, "node-1": 2.2, CLIENT: 0.6}, commits={"coordinator": 50, "node-1": 19})
    c = Meter.cost(before, after, 4)
    assert c.cpu_ms_per_sig == {"coordinator": 100.0, "node-1": 50.0, CLIENT: 25.0, "total": 175.0}
    assert c.commits_per_sig == {"coordinator": 10.0, "node-1": 4.0, "total": 14.0}
    assert c.ceiling_per_s == round(cores() / 0.175, 1)
    assert set(c.as_dict()) == {"cpu_ms_per_sig", "cpu_bound_ceiling_per_s", "commits_per_sig"}
    with pytest.raises(ValueError, match="signatures"):
        Meter.cost(before, after, 0)


def _cluster_json(tmp_path: Path, doc: object) -> Path:
    (tmp_path / "cluster.json").write_text(json.dumps(doc))
    return tmp_path


def test_processes_from_cluster_json(tmp_path: Path) -> None:
    doc = {
        "coordinator": {"pid": 10, "endpoint": "x"},
        "nodes": [{"name": "node-1", "pid": 11}, {"name": "node-2", "pid": 12}],
        "metrics": {"coordinator": "localhost:9100", "node-1": "localhost:9101"},
    }
    p = Processes.from_cluster(_cluster_json(tmp_path, doc))
    assert p.pids == {"coordinator": 10, "node-1": 11, "node-2": 12}
    assert p.metrics == {"coordinator": "localhost:9100", "node-1": "localhost:9101"}


@pytest.mark.parametrize("doc", [
    {"nodes": []},
    {"coordinator": {"pid": None}, "nodes": []},
    {"coordinator": {"pid": 1}, "nodes": [{"name": "node-1\nx", "pid": 2}]},
    {"coordinator": {"pid": 1}, "nodes": [], "metrics": {"../etc": "localhost:1"}},
    [1, 2],
])
def test_a_bad_cluster_json_is_a_meter_error(tmp_path: Path, doc: object) -> None:
    with pytest.raises(MeterError) as e:
        Processes.from_cluster(_cluster_json(tmp_path, doc))
    assert e.value.field == "cluster.json"


def test_the_commit_log_is_read_per_pid_and_sorted(tmp_path: Path) -> None:
    (tmp_path / "commits-10.log").write_text("300 coordinator.db sign-ab\n100 audit.db T1\ngarbage line\n400 x")
    (tmp_path / "commits-11.log").write_text("200 node.db ThreadPoolExecutor-0_1\n")
    log = read_commit_log(tmp_path, {"coordinator": 10, "node-1": 11, "node-2": 12})
    assert [(c.at_ns, c.process) for c in log] == [(100, "coordinator"), (200, "node-1"), (300, "coordinator")]


def _c(ms: float, process: str) -> Commit:
    return Commit(int(ms * 1_000_000), process, "x.db", "t")


def test_the_critical_path_runs_from_the_quorum_approval_through_the_done_commit() -> None:
    log = [
        _c(999.5, "coordinator"),  # before the approval was sent: not counted
        _c(1000.2, "coordinator"), _c(1000.9, "coordinator"),  # the quorum decision and its audit
        _c(1003.0, "node-1"), _c(1003.1, "node-2"), _c(1010.0, "node-1"),
        _c(1019.7, "coordinator"),  # the attempt, before DONE's millisecond
        _c(1020.4, "coordinator"),  # DONE (its record says updated 1020 ms): the end
        _c(1020.6, "coordinator"), _c(1021.0, "node-2"),  # the audit flush after DONE: not counted
    ]
    start_ns = 1000 * 1_000_000
    assert critical_path_commits(log, start_ns, 1020) == {
        "coordinator": 4, "node-1": 2, "node-2": 1, "total": 7, "serial": 6,
    }
    assert critical_path_commits(log, start_ns, 1030) is None  # no DONE commit logged
    assert critical_path_commits(log, 1_020_500_000, 1020) is None  # DONE before the start: not a window
