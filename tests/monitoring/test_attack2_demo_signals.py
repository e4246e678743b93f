"""Attack on ``scripts/demo-monitoring``'s clean-up (issue 15 review 2): Ctrl-C or SIGTERM at any
step must stop what the demo started (the cluster, Prometheus: both run in their own sessions, so
the terminal's signal does not reach them) and delete its temporary directory.

Found: a Ctrl-C while ``mpc-cluster up`` ran left the cluster's processes running (the demo only
stopped a cluster once ``up`` had returned) and deleted the directory under them; SIGTERM killed
the demo at once (Python's default), leaving the cluster, Prometheus and the temporary directory.
The steps are faked here (no cluster is started): what is checked is the clean-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mpcnet.cluster import demo_monitoring, prometheus_setup

REPO = Path(__file__).resolve().parents[2]


def test_ctrl_c_during_up_stops_the_cluster_and_deletes_the_temp_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stops: list[list[str]] = []

    def fake_run(args: list[str], what: str) -> str:
        assert args[1] == "up"
        Path(args[3]).mkdir(parents=True)  # up got as far as creating the cluster
        raise KeyboardInterrupt

    def fake_subprocess_run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        stops.append(argv)
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    monkeypatch.setattr(demo_monitoring, "_run", fake_run)
    monkeypatch.setattr(subprocess, "run", fake_subprocess_run)
    monkeypatch.setattr(prometheus_setup, "find_binary", lambda: "/bin/true")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert demo_monitoring.main(["--scrypt-n", "1024"]) == 130
    assert [a[-3:-1] for a in stops] == [["stop", "--dir"]], "a Ctrl-C during 'mpc-cluster up' left the cluster running"
    assert list(tmp_path.iterdir()) == [], "the temporary directory is left behind"


CHILD = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    from pathlib import Path
    from mpcnet.cluster import demo_monitoring as dm
    marks = Path(sys.argv[1])

    def fake_run(args, what):
        Path(args[3]).mkdir(parents=True)
        (marks / "up").write_text(args[3])
        os.kill(os.getpid(), int(sys.argv[2]))
        time.sleep(10)
        (marks / "survived").write_text("")
        raise SystemExit("not terminated")

    def fake_subprocess_run(argv, **kw):
        (marks / "stop").write_text(argv[-1])
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    dm._run = fake_run
    dm.subprocess.run = fake_subprocess_run
    dm.setup.find_binary = lambda: "/bin/true"
    sys.exit(dm.main(["--scrypt-n", "1024"]))
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_stops_what_the_demo_started_and_deletes_the_temp_dir(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGHUP too: the terminal closed (the demo's Prometheus and cluster are in their own sessions)."""
    marks, temp = tmp_path / "marks", tmp_path / "tmp"
    marks.mkdir()
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp))
    p = subprocess.run([sys.executable, "-c", CHILD, str(marks), str(int(sig))], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert (marks / "up").exists(), p.stderr
    assert not (marks / "survived").exists()
    assert p.returncode == 128 + sig, p.stderr
    assert (marks / "stop").exists(), "SIGTERM left the cluster running"
    assert (marks / "stop").read_text() == (marks / "up").read_text()
    assert list(temp.iterdir()) == [], "SIGTERM left the temporary directory"
    assert "Traceback" not in p.stderr


def test_a_prometheus_that_exits_at_once_fails_the_demo_at_once_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found: a Prometheus that could not start (``--listen`` on a taken port, e.g. Debian's own
    prometheus.service on 9090) left the demo polling for 90 s -- or polling the other Prometheus --
    then failing with "timed out waiting for Prometheus to scrape"; it now fails when it exits."""
    import time

    from mpcnet.cluster.launcher import prepare

    failing = tmp_path / "prometheus"
    failing.write_text("#!/bin/sh\necho 'bind: address already in use' >&2\nexit 1\n")
    failing.chmod(0o755)

    def fake_run(args: list[str], what: str) -> str:
        prepare(Path(args[3]), 3, 2, scrypt_n=2**10)  # a cluster directory (nothing started)
        return ""

    monkeypatch.setattr(demo_monitoring, "_run", fake_run)
    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 0, "", ""))
    monkeypatch.setattr(prometheus_setup, "find_binary", lambda: str(failing))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "t"))
    (tmp_path / "t").mkdir()
    t0 = time.monotonic()
    assert demo_monitoring.main(["--scrypt-n", "1024"]) == 1
    assert time.monotonic() - t0 < 30, "the demo polled a Prometheus that had exited"
    err = capsys.readouterr().err
    assert "prometheus exited with status 1" in err and "Traceback" not in err
    assert list((tmp_path / "t").iterdir()) == []
