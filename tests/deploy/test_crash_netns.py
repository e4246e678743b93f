"""The namespace harness (tests/deploy/netns.py) when a run is SIGKILLed, and when a new run's pid
is the pid of a run killed before (issue 13, R2).

A SIGKILLed run leaves its namespaces, bridge, /etc/netns directories and the servers it started
(they run in their own sessions); the next run removes them (:func:`remove_stale`, by the dead
creator's pid in their names). Finding: names carry ``pid n run``, so a run whose pid is a killed
run's (pid reuse: containers, long-lived machines) met that run's leftovers, skipped as stale
only when their pid is dead: ``ip netns add`` failed ("File exists") and the deploy test was
*skipped* ("cannot create network namespaces here"). Fixed: leftovers named with this process's
own pid that this process did not make are stale too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.crashkit import ROOT
from tests.deploy.netns import NETNS_ETC, Network, _ip, remove_stale, unavailable


@pytest.fixture(autouse=True)
def _root() -> None:
    why = unavailable()
    if why:
        pytest.skip(why)


def _namespaces() -> set[str]:
    return {line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()}


CHILD = """
import sys, time
from pathlib import Path
from tests.deploy.netns import Network
net = Network(Path(sys.argv[1]), ("a", "b"), {"ha": "a", "hb": "b"})
net.__enter__()
net.spawn(net.host("ha"), "exec sleep 600")
print(net.tag, flush=True)
time.sleep(600)
"""


def test_a_sigkilled_run_leaves_namespaces_that_the_next_run_removes(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    tag = child.stdout.readline().strip()
    assert tag.startswith(f"{child.pid}n")
    ours = {f"mpc{tag}-a", f"mpc{tag}-b"}
    deadline = time.monotonic() + 10
    while not _ip("netns", "pids", f"mpc{tag}-a").split():  # the server it started is up
        assert time.monotonic() < deadline
        time.sleep(0.1)
    server = [int(p) for p in _ip("netns", "pids", f"mpc{tag}-a").split()]
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert ours <= _namespaces()  # left behind, with their server running
    assert all(_alive(p) for p in server)
    with Network(tmp_path / "next", ("c",), {"hc": "c"}) as net:  # the next run
        assert not ours & _namespaces()
        assert not any((NETNS_ETC / n).exists() for n in ours)
        assert f"mb{tag}" not in _ip("-o", "link", "show", "type", "bridge")
        assert net.namespaces["c"].ns in _namespaces()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in server):
        assert time.monotonic() < deadline, "the killed run's server survived"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def test_a_run_whose_pid_a_killed_run_had_removes_that_runs_leftovers(tmp_path: Path) -> None:
    tag = f"{os.getpid()}n97"  # what a killed run with this pid left (pid reuse)
    stale = f"mpc{tag}-a"
    _ip("netns", "add", stale)
    _ip("link", "add", f"mb{tag}", "type", "bridge")
    (NETNS_ETC / stale).mkdir(parents=True, exist_ok=True)
    try:
        with Network(tmp_path, ("a",), {"ha": "a"}, tag=tag) as net:
            assert net.run(net.host("ha"), "echo up").strip() == "up"
    finally:
        remove_stale()
    assert stale not in _namespaces() and not (NETNS_ETC / stale).exists()
