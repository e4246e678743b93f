"""Issue 15: ``mpc-cluster prometheus`` writes ``DIR/prometheus/`` (a config promtool accepts, a
copy of the repository's alert rules, the file_sd targets of every process) and runs Debian's
``prometheus`` in the foreground; a bad argument or a missing binary writes nothing;
``mpc-cluster up`` (``launcher.prepare``) refreshes the targets when the cluster's ports change.
Nothing here starts the cluster."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpcnet.cluster import cli, prometheus_cmd, prometheus_setup
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.cluster.metrics_ports import metrics_endpoints
from mpcnet.cluster.prometheus_setup import PrometheusFiles, SetupError, repo_file
from mpcnet.common.cliutil import Failed

REPO = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")
NO_PROMETHEUS = "prometheus not installed (Debian package 'prometheus'; scripts/test installs it)"


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    """A prepared 2-of-3 cluster directory (not started)."""
    return prepare(tmp_path_factory.mktemp("prom-setup") / "c", 3, 2, scrypt_n=2**10)


@pytest.fixture
def fresh(lay: Layout) -> Iterator[Layout]:
    """``lay`` without a ``prometheus/`` directory, before and after the test."""
    shutil.rmtree(PrometheusFiles.of(lay.dir).root, ignore_errors=True)
    yield lay
    shutil.rmtree(PrometheusFiles.of(lay.dir).root, ignore_errors=True)


def _targets(path: Path) -> dict[str, str]:
    return {g["labels"]["process"]: g["targets"][0] for g in json.loads(path.read_text())}


def test_config_only_writes_the_setup_and_prints_the_command(fresh: Layout, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["prometheus", "--dir", str(fresh.dir), "--config-only", "--listen", "127.0.0.1:19090"]) == 0
    out, err = capsys.readouterr()
    files = PrometheusFiles.of(fresh.dir)
    assert err == ""
    assert files.alerts.read_bytes() == (REPO / "deploy" / "monitoring" / "alerts.yml").read_bytes()
    assert _targets(files.targets) == metrics_endpoints(fresh)
    assert set(_targets(files.targets)) == {"coordinator", "node-1", "node-2", "node-3"}
    config = files.config.read_text()
    assert "scrape_interval: 5s" in config and "evaluation_interval: 5s" in config and "- alerts.yml" in config
    assert files.data.is_dir()
    line = out.splitlines()[-1]
    argv = shlex.split(line)
    assert Path(argv[0]).name == "prometheus"
    assert argv[1:5] == [f"--config.file={files.config}", f"--storage.tsdb.path={files.data}",
                         "--web.listen-address=127.0.0.1:19090", "--storage.tsdb.retention.time=7d"]
    assert argv[5:] in ([], [prometheus_setup.LOCK_FLAG])  # the storage lock, when the binary needs the flag
    assert cli.main(["prometheus", "--dir", str(fresh.dir), "--config-only"]) == 0  # again: rewritten, same files
    assert "--web.listen-address=127.0.0.1:9090" in capsys.readouterr().out  # loopback by default


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMETHEUS)
def test_promtool_accepts_the_written_config_and_its_rules(fresh: Layout, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["prometheus", "--dir", str(fresh.dir), "--config-only"]) == 0
    capsys.readouterr()
    assert PROMTOOL is not None
    p = subprocess.run([PROMTOOL, "check", "config", str(PrometheusFiles.of(fresh.dir).config)],
                       capture_output=True, text=True, timeout=60, cwd="/")  # paths are relative to the file, not the cwd
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout and "rules found" in p.stdout, p.stdout


@pytest.mark.parametrize("argv", [
    ["--listen", "localhost"], ["--listen", "127.0.0.1:0"], ["--listen", "127.0.0.1:99999"], ["--listen", "h\x1b[2J:1"],
    ["--config-only=x"], ["--listen"], ["extra"],
])
def test_a_bad_argument_is_one_line_exit_2_and_writes_nothing(
    fresh: Layout, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert cli.main(["prometheus", "--dir", str(fresh.dir), "--config-only", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("mpc-cluster: error: ") and "\x1b" not in err, err
    assert not PrometheusFiles.of(fresh.dir).root.exists()


def test_a_directory_that_is_not_a_cluster_is_refused_and_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for flags in (["--config-only"], []):
        assert cli.main(["prometheus", "--dir", str(tmp_path), *flags]) == 2
        err = capsys.readouterr().err
        assert "not a cluster directory" in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []
    assert cli.main(["prometheus", "--dir", str(tmp_path / "missing"), "--config-only"]) == 2
    capsys.readouterr()
    assert list(tmp_path.iterdir()) == []


def test_a_missing_prometheus_is_one_line_exit_1_naming_the_package(
    fresh: Layout, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prometheus_setup, "find_binary", lambda name="prometheus": None)
    monkeypatch.setattr("subprocess.Popen", lambda *a, **k: pytest.fail("started something"))
    assert cli.main(["prometheus", "--dir", str(fresh.dir)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "mpc-cluster: 'prometheus' is not installed (Debian: apt-get install prometheus)\n"
    assert not PrometheusFiles.of(fresh.dir).root.exists()
    assert cli.main(["prometheus", "--dir", str(fresh.dir), "--config-only"]) == 0  # the files need no binary
    assert "prometheus --config.file=" in capsys.readouterr().out


def test_alerts_yml_is_found_from_the_package_or_a_clear_error(tmp_path: Path) -> None:
    assert repo_file(prometheus_setup.REPO_ALERTS) == REPO / "deploy" / "monitoring" / "alerts.yml"
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "pyproject.toml").write_text("")
    module = tmp_path / "proj" / "site" / "mpcnet" / "cluster" / "prometheus_setup.py"
    with pytest.raises(SetupError, match=r"cannot find deploy/monitoring/alerts\.yml .*run from a clone"):
        repo_file(prometheus_setup.REPO_ALERTS, start=module)


def test_up_refreshes_the_targets_when_prometheus_is_set_up_and_the_ports_change(
    fresh: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    said: list[str] = []
    assert prometheus_setup.refresh_targets(fresh, said.append) is False  # no DIR/prometheus: nothing written
    assert said == [] and not PrometheusFiles.of(fresh.dir).root.exists()
    prepare(fresh.dir, 3, 2, scrypt_n=2**10)
    assert not PrometheusFiles.of(fresh.dir).root.exists()  # up does not create it
    files = prometheus_setup.write_setup(fresh)
    before = _targets(files.targets)
    busy = int(before["coordinator"].rpartition(":")[2])
    with socket.socket() as s:  # the coordinator's metrics port is taken meanwhile: 'up' picks another
        s.bind(("127.0.0.1", busy))
        s.listen()
        lay = prepare(fresh.dir, 3, 2, scrypt_n=2**10, progress=said.append)
    after = _targets(files.targets)
    assert after == metrics_endpoints(lay) and after["coordinator"] != before["coordinator"]
    assert {k: v for k, v in after.items() if k != "coordinator"} == {k: v for k, v in before.items() if k != "coordinator"}
    assert f"refreshed the Prometheus targets in {files.targets}" in said


def test_run_foreground_forwards_sigterm_and_reports_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    timer = threading.Timer(0.5, lambda: signal.raise_signal(signal.SIGTERM))
    timer.start()
    t0 = time.monotonic()
    assert prometheus_cmd.run_foreground([sys.executable, "-c", "import time; time.sleep(60)"]) == 143
    assert time.monotonic() - t0 < 30
    timer.join()
    with pytest.raises(Failed, match="exited with status 3"):
        prometheus_cmd.run_foreground([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(Failed, match="cannot start"):
        prometheus_cmd.run_foreground(["/nonexistent/prometheus"])
