"""``mpc-cluster add-node`` on a running dev cluster (issue 11 item 6): the supervisor starts the
added node (SIGUSR1), the admin quorum's roster change enrols it and the key is reshared to it,
``status`` and cluster.json show it, and ``up`` after ``stop`` starts the grown cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mpcnet.cluster.launcher import child_env, load_layout


def _cluster(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpcnet.cluster.cli", *args], env=child_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_add_node_starts_the_node_under_the_supervisor_and_up_keeps_it(tmp_path: Path) -> None:
    d = tmp_path / "c"
    up = _cluster("up", "--dir", str(d), "-n", "2", "-t", "2", "--scrypt-n", "1024", "--quiet")
    assert up.returncode == 0, up
    try:
        add = _cluster("add-node", "--dir", str(d), "--timeout", "60", "--quiet")
        assert "Traceback" not in add.stderr
        assert add.returncode == 0, add
        status = _cluster("status", "--dir", str(d), "--json")
        assert status.returncode == 0, status
        names = {p["name"]: p["healthy"] for p in json.loads(status.stdout)["processes"]}
        assert names == {"node-1": True, "node-2": True, "node-3": True, "coordinator": True}, names
        assert load_layout(d).nodes == 3
        assert [n["name"] for n in json.loads((d / "cluster.json").read_text())["nodes"]] == ["node-1", "node-2", "node-3"]
        assert _cluster("stop", "--dir", str(d)).returncode == 0
        up = _cluster("up", "--dir", str(d), "--quiet")
        assert up.returncode == 0 and "node-3" in up.stdout, up
    finally:
        _cluster("stop", "--dir", str(d))
