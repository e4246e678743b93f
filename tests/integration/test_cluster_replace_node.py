"""``mpc-cluster wipe-node`` and ``replace-node`` on a running dev cluster (issue 12): the wiped
node is killed and not restarted by the supervisor, ``up`` holds the replacement back until the
admin quorum's roster change names its new keys, then starts it (SIGUSR1), and the coordinator
reaches it under the rotated roster entry; a restart keeps it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from governance.roster import rotate_keys
from mpcnet.client import MpcClient
from mpcnet.cluster.launcher import child_env, load_layout
from mpcnet.common.datadir import lock_holder


def _cluster(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpcnet.cluster.cli", *args], env=child_env(), capture_output=True,
                          text=True, timeout=timeout)


def _status(d: Path) -> dict[str, dict[str, object]]:
    s = _cluster("status", "--dir", str(d), "--json")
    return {p["name"]: p for p in json.loads(s.stdout)["processes"]}


def test_wipe_replace_and_start_once_the_roster_names_the_new_keys(tmp_path: Path) -> None:
    d = tmp_path / "c"
    up = _cluster("up", "--dir", str(d), "-n", "3", "-t", "2", "--scrypt-n", "1024", "--quiet")
    assert up.returncode == 0, up
    try:
        lay = load_layout(d)
        wipe = _cluster("wipe-node", "--dir", str(d), "3", "--json")
        assert wipe.returncode == 0 and "Traceback" not in wipe.stderr, wipe
        assert json.loads(wipe.stdout)["killed_pid"]
        time.sleep(3)  # the supervisor would have restarted a crashed node by now
        assert lock_holder(lay.node_dir(3)) is None and not (lay.node_dir(3) / "keystore.json").exists()
        assert json.loads(lay.info_path.read_text())["restarts"].get("node-3", 0) == 0  # a wipe is not a crash
        st = _status(d)
        assert st["node-3"]["held_back"] == "wiped" and not st["node-3"]["healthy"] and st["node-1"]["healthy"]

        rep = _cluster("replace-node", "--dir", str(d), "3", "--json")
        assert rep.returncode == 0, rep
        enrol = json.loads(Path(json.loads(rep.stdout)["enrolment"]).read_text())
        again = _cluster("up", "--dir", str(d), "--quiet")  # the roster still names the lost host's keys
        assert again.returncode == 0 and "started" not in again.stdout, again
        assert _status(d)["node-3"]["held_back"] == "replaced" and lock_holder(lay.node_dir(3)) is None

        with MpcClient.from_cluster(d, identity="admin1", timeout=60) as a1, \
                MpcClient.from_cluster(d, identity="admin2", timeout=60) as a2:
            view = a1.roster()
            new = rotate_keys(view.roster, 3, identity_key=bytes.fromhex(enrol["identity_key"]),
                              encryption_key=bytes.fromhex(enrol["encryption_key"]),
                              tls_fingerprint=bytes.fromhex(enrol["tls_fingerprint"]))
            p = a1.propose_roster_change(new)
            p = a2.approve_lifecycle(p.proposal_id, expect_digest=p.signed.change.digest())  # type: ignore[union-attr]
            assert p.state == "applied", p
        start = _cluster("up", "--dir", str(d), "--quiet")
        assert start.returncode == 0 and "started node-3 (replaced)" in start.stdout, start
        st = _status(d)
        assert all(p["healthy"] for p in st.values()) and "held_back" not in st["node-3"], st
        with MpcClient.from_cluster(d, identity="auditor1", timeout=60) as au:
            deadline = time.monotonic() + 30
            while True:  # the coordinator reaches the new host under the rotated roster entry
                nodes = {n.index: n for n in au.node_states()}
                if nodes[3].healthy or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert nodes[3].healthy, nodes
            e = au.roster().roster.entry(3)
            assert e is not None and e.key_version == 2 and e.identity_key.hex() == enrol["identity_key"]
        # stopped and started again: the new host keeps its place (its store holds the rotated roster)
        assert _cluster("stop", "--dir", str(d)).returncode == 0
        again = _cluster("up", "--dir", str(d), "--quiet")
        assert again.returncode == 0, again
        assert all(p["healthy"] for p in _status(d).values())
    finally:
        _cluster("stop", "--dir", str(d))
