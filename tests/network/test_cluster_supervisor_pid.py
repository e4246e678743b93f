"""`mpc-cluster stop/status/up` find the supervisor through the lock it holds on the cluster
directory, never by trusting the pid in cluster.json: a killed supervisor leaves that pid
behind, and the system may give it to an unrelated process, which `stop` must not kill."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpcnet.cluster.cli import main
from mpcnet.cluster.launcher import INFO_FILE, PARAMS_FILE


def _stale_cluster(d: Path, pid: int) -> None:
    (d / PARAMS_FILE).write_text(json.dumps({"nodes": 2, "threshold": 2}))
    (d / INFO_FILE).write_text(json.dumps({
        "status": "running", "supervisor_pid": pid, "threshold": 2, "ca_cert": "", "certs": {},
        "nodes": [{"index": i, "name": f"node-{i}", "endpoint": "127.0.0.1:1", "pid": pid} for i in (1, 2)],
        "coordinator": {"endpoint": "127.0.0.1:1", "pid": pid},
    }))


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process of ours, standing in for one that reused the dead supervisor's pid."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p
    p.kill()
    p.wait()


def test_stop_never_signals_a_pid_left_in_cluster_json(
    tmp_path: Path, stranger: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    _stale_cluster(tmp_path, stranger.pid)
    assert main(["stop", "--dir", str(tmp_path)]) == 0
    assert "not running" in capsys.readouterr().out
    assert stranger.poll() is None, "mpc-cluster stop killed an unrelated process"


def test_status_does_not_call_a_stale_pid_the_supervisor(
    tmp_path: Path, stranger: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    _stale_cluster(tmp_path, stranger.pid)
    assert main(["status", "--dir", str(tmp_path), "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "stopped" and doc["supervisor_pid"] is None
