"""``mpc-cluster up`` as a user runs it (issue 10, items 8 and 14): progress on stderr while it
starts the processes, Ctrl-C while it waits for them (exit 130, everything it started stopped,
nothing left that blocks the next ``up``), and a second ``up`` without ``--nodes/--threshold``
that starts the stored topology (a conflicting flag: exit 2, one line)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from mpcnet.cluster import cli
from mpcnet.cluster.launcher import child_env, load_layout

# SIGINT raises KeyboardInterrupt in the child even if this process was started with SIGINT
# ignored (a background job), which the child would inherit
_WITH_SIGINT = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'mpc-cluster'; runpy.run_module('mpcnet.cluster.cli', run_name='__main__')"
)


# the longest `up` may take to exit after Ctrl-C (mpc-cluster: cli._stop_starting): the supervisor
# gets STOP_GRACE_S + 10 s to stop its children, then it and they are killed and the holders of the
# cluster's locks get STOP_GRACE_S more; plus a margin for a loaded host. On an idle one it is ~1 s.
CTRL_C_EXIT_BOUND_S = 2 * cli.STOP_GRACE_S + 10 + 20


def _cluster(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpcnet.cluster.cli", *args], env=child_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_ctrl_c_while_up_waits_then_up_again_with_the_stored_topology(tmp_path: Path) -> None:
    d = tmp_path / "c"
    p = subprocess.Popen([sys.executable, "-c", _WITH_SIGINT, "up", "--dir", str(d), "-n", "2", "-t", "2", "--scrypt-n", "1024"],
                         env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = p.stderr.readline()
            seen.append(line)
            if "waiting for 2 nodes to become healthy" in line or not line:
                break
        assert seen[-1].startswith("mpc-cluster: [") and "waiting for 2 nodes" in seen[-1], seen
        p.send_signal(2)
        out, err = p.communicate(timeout=CTRL_C_EXIT_BOUND_S)
        assert p.returncode == 130, (out, seen, err)
        assert err.splitlines()[-1] == "mpc-cluster: interrupted" and "Traceback" not in err, err
        lay = load_layout(d)
        assert cli._supervisor_pid(lay) is None and cli._leftovers(lay) == {}  # nothing of it runs
        assert json.loads((d / "cluster.json").read_text())["status"] == "stopped"

        up = _cluster("up", "--dir", str(d))  # no --nodes/--threshold: DIR's own 2-of-2
        assert up.returncode == 0, up
        for step in ("starting the 2-of-2 cluster in", "starting node-1", "node-2 healthy (after", "starting the coordinator",
                     "coordinator healthy", "ready: 2-of-2 cluster running"):
            assert step in up.stderr, (step, up.stderr)
        assert all(line.startswith("mpc-cluster: [") for line in up.stderr.splitlines()), up.stderr
        assert "running, 2-of-2" in up.stdout
        quiet = _cluster("up", "--dir", str(d), "--quiet")
        assert quiet.returncode == 0 and quiet.stderr == "" and "already running" in quiet.stdout
        clash = _cluster("up", "--dir", str(d), "-n", "3", "-q")
        assert clash.returncode == 2 and clash.stderr.count("\n") == 1, clash
        assert f"holds a 2-of-2 cluster; run 'mpc-cluster up --dir {d}' without --nodes/--threshold" in clash.stderr
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        stop = _cluster("stop", "--dir", str(d))
        assert stop.returncode in (0, 2), stop
