"""The hints the monitoring commands print (mpcnet/cluster/monitoring_hints.py; issue 15 review):
they name ``--as`` (``mpc status`` without it is a usage error), the alerts API (Debian's
Prometheus has no ``/alerts`` page, only ``/classic/alerts``), how to stop everything; and, with
the installed Prometheus, the URLs they name answer."""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mpcnet.cluster.launcher import free_ports
from mpcnet.cluster.monitoring_hints import ALERTS_JQ, alerts_where, demo_next_steps

from ..readme_commands import check_line


def _steps(temp_root: str | None = "/srv/mpcnet-monitoring-x") -> list[str]:
    return demo_next_steps(mpc="mpc", mpc_cluster="mpc-cluster", cluster_dir="/srv/mpcnet-monitoring-x/cluster",
                           listen="127.0.0.1:9999", prometheus_pid=4242, temp_root=temp_root)


def test_the_next_steps_are_commands_that_exist_with_as_and_stop_everything() -> None:
    lines = _steps()
    commands = [line.split(" #", 1)[0].strip() for line in lines if line.startswith("   mpc")]
    assert len(commands) == 3
    for command in commands:
        check_line(command.split(" | ", 1)[0])  # every mpc/mpc-cluster option exists
    assert "--as admin1 status --watch" in commands[0] and "--as auditor1 audit export" in commands[1]
    assert commands[2] == "mpc-cluster stop --dir /srv/mpcnet-monitoring-x/cluster"
    text = "\n".join(lines)
    assert "kill 4242" in text and "rm -r /srv/mpcnet-monitoring-x" in text
    assert "http://127.0.0.1:9999/api/v1/alerts" in text and "/classic/alerts" in text
    assert "rm -r" not in "\n".join(_steps(temp_root=None))  # a --dir the caller chose is theirs


def test_hints_escape_what_they_repeat() -> None:
    lines = demo_next_steps(mpc="mpc", mpc_cluster="mpc-cluster", cluster_dir="/srv/a\nb\x1b[2J",
                            listen="127.0.0.1:1", prometheus_pid=None, temp_root="/srv/a\u202e")
    assert all(line.isprintable() for line in lines)
    assert not any(line.startswith("   kill") for line in lines)
    assert alerts_where("h:1\n").isprintable()


def test_the_jq_filter_is_one_shell_word_pair() -> None:
    assert shlex.split(ALERTS_JQ)[:2] == ["jq", "-c"] and len(shlex.split(ALERTS_JQ)) == 3


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed (Debian package 'prometheus')")
def test_the_installed_prometheus_answers_at_the_urls_the_hints_name(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 5s\n")
    listen = f"127.0.0.1:{free_ports(1)[0]}"
    prom = subprocess.Popen([str(shutil.which("prometheus")), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address={listen}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{listen}/api/v1/alerts", timeout=2) as r:
                    assert r.status == 200
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "prometheus did not answer within 30 s"
                time.sleep(0.2)
        assert "/classic/alerts" in alerts_where(listen)
        served = []
        for page in ("/classic/alerts", "/alerts"):  # Debian's build serves the first, upstream's the second
            try:
                with urllib.request.urlopen(f"http://{listen}{page}", timeout=5) as r:
                    served.append(r.status == 200)
            except urllib.error.HTTPError:
                served.append(False)
        assert any(served)  # one of the two pages the hint names is served
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def test_a_taken_listen_address_is_one_line_exit_1_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A second 'mpc-cluster prometheus' (9090 taken) used to start Prometheus and end with its
    'exited with status 1' after a screen of its own log lines."""
    from mpcnet.cluster import cli, prometheus_cmd, prometheus_setup
    from mpcnet.cluster.launcher import prepare

    lay = prepare(tmp_path / "c", 3, 2, scrypt_n=2**10)
    monkeypatch.setattr(prometheus_setup, "find_binary", lambda name="prometheus": "/usr/bin/prometheus")
    monkeypatch.setattr("subprocess.Popen", lambda *a, **k: pytest.fail("started something"))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert prometheus_cmd.listen_taken(f"127.0.0.1:{port}")
        assert cli.main(["prometheus", "--dir", str(lay.dir), "--listen", f"127.0.0.1:{port}"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == (f"mpc-cluster: 127.0.0.1:{port} is already in use (another Prometheus?); "
                                 "pick a free address with --listen HOST:PORT\n")
    assert not prometheus_cmd.listen_taken(f"127.0.0.1:{port}")  # closed: free again
    assert not prometheus_cmd.listen_taken("no-such-host.invalid:9090")  # prometheus reports that itself
