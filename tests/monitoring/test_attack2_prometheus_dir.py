"""Attack on ``mpc-cluster prometheus``'s files (issue 15 review 2), as a careless operator or a
planter of odd files in ``DIR/prometheus/``.

Found: Prometheus resolves ``rule_files`` and ``file_sd_configs.files`` as glob patterns joined to
the config file's directory, so a DIR whose path holds ``[``, ``*``, ``?`` or ``\\`` made a
Prometheus that loaded no alert rule and scraped no target, silently (``promtool check config``:
"does not point to an existing file"); such a DIR is now refused (exit 2, nothing written).
Held: symlinks, FIFOs and directories planted where a file goes (replaced or one-line refusals,
never written through, never a hang), DIR paths with spaces, quotes, ``%``, ``$``, unicode and a
newline (promtool accepts the config and finds the rules)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mpcnet.cluster import cli
from mpcnet.cluster.launcher import Layout, load_layout, prepare
from mpcnet.cluster.prometheus_setup import PrometheusFiles, SetupError, write_setup

REPO = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")
NO_PROMETHEUS = "prometheus not installed (Debian package 'prometheus'; scripts/test installs it)"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared 2-of-3 cluster directory (not started); tests rename it and put it back."""
    return prepare(tmp_path_factory.mktemp("attack2-dir") / "c", 3, 2, scrypt_n=2**10).dir


@pytest.fixture
def named(prepared: Path) -> Iterator[Callable[[str], Layout]]:
    """``named(name)``: the prepared cluster moved to ``<parent>/<name>`` (moved back afterwards)."""
    moved: list[Path] = []

    def move(name: str) -> Layout:
        target = prepared.parent / name
        os.rename(prepared, target)
        moved.append(target)
        return load_layout(target)

    yield move
    for m in moved:
        shutil.rmtree(m / "prometheus", ignore_errors=True)
        os.rename(m, prepared)


@pytest.mark.parametrize("name", ["c[1]", "c*", "c?", "c\\x"])
def test_a_dir_with_a_glob_character_is_refused_and_nothing_is_written(
    named: Callable[[str], Layout], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lay = named(name)
    with pytest.raises(SetupError, match="glob"):
        write_setup(lay, alerts=REPO / "deploy" / "monitoring" / "alerts.yml")
    assert cli.main(["prometheus", "--dir", str(lay.dir), "--config-only"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "glob" in err
    assert not PrometheusFiles.of(lay.dir).root.exists()


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMETHEUS)
@pytest.mark.parametrize("name", ["with space", "q'u\"ote", "pct%s$HOME", "ünï código", "new\nline"])
def test_odd_dir_names_give_a_config_whose_rules_promtool_finds(
    named: Callable[[str], Layout], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lay = named(name)
    assert cli.main(["prometheus", "--dir", str(lay.dir), "--config-only"]) == 0
    files = PrometheusFiles.of(lay.dir)
    p = subprocess.run([str(PROMTOOL), "check", "config", str(files.config)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 rule files found" in p.stdout + p.stderr
    out = capsys.readouterr().out
    assert "\n" not in out.split("\n", 2)[0] and "new\nline" not in out  # the path is printed escaped


def test_planted_symlinks_and_fifos_are_replaced_never_written_through(named: Callable[[str], Layout], tmp_path: Path) -> None:
    lay = named("c-plant")
    files = PrometheusFiles.of(lay.dir)
    files.targets.parent.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    files.alerts.symlink_to(victim)
    files.config.symlink_to(victim)
    os.mkfifo(files.targets)  # opening it to write would block for ever
    assert cli.main(["prometheus", "--dir", str(lay.dir), "--config-only"]) == 0
    assert victim.read_text() == "precious"
    for f in (files.alerts, files.config, files.targets):
        assert f.is_file() and not f.is_symlink()


def test_a_directory_where_a_file_goes_is_a_one_line_usage_error(
    named: Callable[[str], Layout], capsys: pytest.CaptureFixture[str]
) -> None:
    lay = named("c-dir")
    files = PrometheusFiles.of(lay.dir)
    files.config.mkdir(parents=True)
    (files.config / "keep").write_text("x")
    assert cli.main(["prometheus", "--dir", str(lay.dir), "--config-only"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (files.config / "keep").read_text() == "x"


def test_the_demo_refuses_a_glob_dir_before_starting_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mpcnet.cluster import demo_monitoring

    assert demo_monitoring.main(["--dir", str(tmp_path / "d[1]")]) == 2
    err = capsys.readouterr().err
    assert "glob" in err and "Traceback" not in err
    assert not (tmp_path / "d[1]").exists()


@pytest.mark.skipif(PROMTOOL is None or shutil.which("prometheus") is None, reason=NO_PROMETHEUS)
def test_a_second_prometheus_on_the_same_dir_fails_at_once_and_the_first_runs_on(named: Callable[[str], Layout]) -> None:
    """Found: Prometheus 2.42 takes no lock on its storage unless asked, so two ``mpc-cluster
    prometheus`` on one DIR wrote one TSDB (WAL) at once; the second now exits 1 at once."""
    import socket
    import sys
    import time
    import urllib.request

    from mpcnet.cluster.launcher import free_ports

    lay = named("c-two")
    p1, p2 = free_ports(2)
    cmd = [sys.executable, "-m", "mpcnet.cluster.cli", "prometheus", "--dir", str(lay.dir), "--listen"]
    first = subprocess.Popen([*cmd, f"127.0.0.1:{p1}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{p1}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert first.poll() is None and time.monotonic() < deadline, "the first Prometheus did not start"
            time.sleep(0.2)
        second = subprocess.run([*cmd, f"127.0.0.1:{p2}"], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert second.returncode == 1, second.stderr[-500:]
        assert "lock DB directory" in second.stderr
        assert first.poll() is None
        with socket.create_connection(("127.0.0.1", p1), timeout=2):
            pass
    finally:
        first.terminate()
        first.wait(30)


@pytest.mark.parametrize("listen", [
    'evil.example:80',
    '127.0.0.1:9101"}], "labels": {"job": "x"}, {"targets": ["evil:1',
    "127.0.0.1:9101\n- targets: [evil:1]",
    "127.0.0.1:99999",
    "127.0.0.1:-1",
])
def test_a_hostile_metrics_listen_injects_no_target_label_or_yaml(named: Callable[[str], Layout], listen: str) -> None:
    """Held: the targets file takes only the port of ``metrics.listen`` (an int in 1-65535) and
    writes ``localhost:PORT``; anything else leaves that process out."""
    import json

    lay = named("c-listen")
    original = lay.node_config(1).read_text()
    doc = json.loads(original)
    doc["metrics"]["listen"] = listen
    lay.node_config(1).write_text(json.dumps(doc))
    try:
        assert cli.main(["prometheus", "--dir", str(lay.dir), "--config-only"]) == 0
    finally:
        lay.node_config(1).write_text(original)
    groups = json.loads(PrometheusFiles.of(lay.dir).targets.read_text())
    for g in groups:
        assert set(g) == {"targets", "labels"} and set(g["labels"]) == {"job", "process"}
        (target,) = g["targets"]
        host, _, port = target.rpartition(":")
        assert host == "localhost" and 1 <= int(port) <= 65535
    names = [g["labels"]["process"] for g in groups]
    assert names[0] == "coordinator" and set(names) <= {"coordinator", "node-1", "node-2", "node-3"}
