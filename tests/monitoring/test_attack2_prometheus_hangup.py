"""``mpc-cluster prometheus`` when its terminal goes away (issue 15 review 2): the shell forwards
SIGHUP to the job, and Prometheus takes SIGHUP as "reload the config" and runs on. Found: the
command died of the SIGHUP (Python's default) and left Prometheus running, orphaned, holding its
port and its storage, so the next ``mpc-cluster prometheus`` failed. Now SIGHUP is handled like
SIGTERM: Prometheus is stopped, exit 129."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FAKE = """#!/bin/sh
echo $$ > "{pidfile}"
trap 'echo reloaded >> "{pidfile}.log"' HUP
trap 'exit 0' TERM INT
while :; do sleep 0.1; done
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sighup_stops_prometheus_and_exits_129(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    fake = tmp_path / "prometheus"
    fake.write_text(FAKE.format(pidfile=pidfile))
    fake.chmod(0o755)
    code = f"import sys; from mpcnet.cluster.prometheus_cmd import run_foreground; sys.exit(run_foreground([{str(fake)!r}]))"
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE, text=True)
    child = 0
    try:
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.05)
        child = int(pidfile.read_text())
        time.sleep(0.3)  # the parent's signal handlers are in place
        parent.send_signal(signal.SIGHUP)  # what the shell sends to its job when the terminal closes
        os.kill(child, signal.SIGHUP)
        rc = parent.wait(20)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "Prometheus runs on, orphaned, after its terminal went away"
        assert rc == 128 + signal.SIGHUP
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)
