"""No traceback, ever, from ``mpc-cluster``, ``scripts/demo``, ``mpc-node`` or ``mpc-coordinator``
(issue 10, item 8): every command of each (enumerated from its click command tree, the hidden
``_supervise`` included, so a new command or option is covered without editing this test) is run
in-process with hostile arguments; each run must end with exit code 2, exactly one line on
stderr, nothing on stdout, no traceback, and no raw control character of the input on the
terminal. Nothing is started: every run has an argument the command refuses before it acts.

Also here: ``up``'s checks of ``--nodes``/``--threshold`` and of DIR's stored topology (item 14),
Ctrl-C while ``up`` creates the cluster (exit 130, nothing left that blocks the next ``up``), and a
closed stdout (``status --json | head -1``: exit 141, silent).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest

from coordinator import main as coordinator_main
from mpc_node import main as node_main
from mpcnet.cluster import cli, demo, launcher
from mpcnet.cluster.launcher import INFO_FILE, PARAMS_FILE

Main = Callable[[list[str] | None], int]

HOSTILE_VALUES = [
    "", "\x00", "\uff15", "-1", "0", "99999999999999999999999", "1e3", "0x10", "a" * 5000,
    "\x1b[2J\nforged line", "\u202e", "\udcff", " 3", "3 ",
]
"""Values every option with a value gets, one option at a time (the other arguments stay
refusable, so whatever the option accepts, the command stops before it acts)."""
HOSTILE_PATHS = ["", "\x00", "a" * 5000, "{tmp}/a-regular-file", "{tmp}/a-regular-file/x", "{tmp}/ctl\x1b[2J\nfile",
                 "~no-such-user-here/x"]
"""Values the path option (``--dir``, ``--config``: the one the base arguments make refusable)
gets: none is a usable path, so no command acts on it."""


def _commands(cmd: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every leaf command of ``cmd``'s tree with the words that reach it (hidden ones too)."""
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _commands(sub, (*path, name))
    else:
        yield path, cmd


def _options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option) and "--help" not in p.opts]


def _programs(tmp_path: Path) -> list[tuple[str, Main, click.Command, list[str]]]:
    """(name, main, root command, base arguments that every command of it refuses)."""
    regular = tmp_path / "a-regular-file"
    regular.write_text("{")
    (tmp_path / "ctl\x1b[2J\nfile").write_text("{")
    return [
        ("mpc-cluster", cli.main, cli.cli, ["--dir", str(regular)]),
        ("scripts/demo", demo.main, demo.demo, ["--dir", str(regular)]),
        ("mpc-node", node_main.main, node_main._command, ["--config", str(regular)]),
        ("mpc-coordinator", coordinator_main.main, coordinator_main._command, ["--config", str(regular)]),
    ]


def _cases(tmp_path: Path) -> Iterator[tuple[str, Main, list[str]]]:
    """(label, main, argv) for every command and every hostile argument."""
    for prog, main, root, base in _programs(tmp_path):
        if isinstance(root, click.Group):
            yield f"{prog} no command", main, []
            yield f"{prog} unknown command", main, ["no-such-command\x1b[0m"]
        for path, cmd in _commands(root):
            words = list(path)
            yield f"{prog} {words} unknown option", main, [*words, *base, "--no-such-option"]
            yield f"{prog} {words} extra argument", main, [*words, *base, "extra\x1b[0m"]
            for opt in _options(cmd):
                name = max(opt.opts, key=len)
                rest = [a for a in base if a != name] if name in base else base
                if name in base:  # the option that makes the base refusable: drop it and its value
                    i = base.index(name)
                    rest = base[:i] + base[i + 2:]
                if opt.is_flag:
                    yield f"{prog} {words} {name}=value", main, [*words, *base, f"{name}=x"]
                    continue
                yield f"{prog} {words} {name} without a value", main, [*words, *rest, name]
                values = HOSTILE_PATHS if name in base else HOSTILE_VALUES
                for v in values:
                    v = v.format(tmp=tmp_path)
                    yield f"{prog} {words} {name}={v[-20:]!r}", main, [*words, *rest, name, v]
            if any(p.required for p in cmd.params):
                yield f"{prog} {words} nothing", main, words


def _check(label: str, rc: int, out: str, err: str) -> None:
    assert rc == 2, (label, rc, out, err)
    assert out == "", (label, out)
    assert err.endswith("\n") and err.count("\n") == 1, (label, err)
    assert "Traceback" not in err, (label, err)
    for raw in ("\x00", "\x1b", "\u202e", "\udcff"):  # the input's control characters, escaped
        assert raw not in err, (label, err)


def test_every_command_refuses_hostile_arguments_with_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr("subprocess.Popen", lambda *a, **k: started.append(a))  # nothing may start
    monkeypatch.setattr("subprocess.run", lambda *a, **k: started.append(a))
    cases = list(_cases(tmp_path))
    assert len(cases) > 100
    labels = {c[0].split(" [")[0] + " " + c[0].split("] ")[0].split(" [")[1] for c in cases if " [" in c[0]}
    for want in ("mpc-cluster 'up'", "mpc-cluster 'status'", "mpc-cluster 'stop'", "mpc-cluster '_supervise'"):
        assert any(lab.startswith(want) for lab in labels), (want, labels)
    for label, main, argv in cases:
        rc = main(argv)
        out, err = capsys.readouterr()
        _check(label, rc, out, err)
    assert started == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-regular-file", "ctl\x1b[2J\nfile"]  # nothing was created


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--nodes", "0"], "must be 2..32, got 0"),
        (["--nodes", "100000"], "must be 2..32, got 100000"),
        (["--nodes", "\uff15"], "must be a whole number written with the digits 0-9, got '\\uff15'"),
        (["--threshold", "9", "--nodes", "3"], "threshold: need 2 <= threshold <= nodes, got 9-of-3"),
        (["--threshold", "4", "--nodes", "3"], "threshold: need 2 <= threshold <= nodes, got 4-of-3"),
        (["--timeout", "-1"], "must be a number of seconds written with the digits 0-9 (e.g. 30 or 2.5), got '-1'"),
        (["--scrypt-n", "3"], "must be 1024..1048576, got 3"),
        (["--scrypt-n", "3000"], "scrypt-n: must be a power of two"),
        (["--nodes"], "Option '--nodes' requires an argument. (see 'mpc-cluster up --help')"),
    ],
)
def test_up_refuses_a_bad_topology_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    d = tmp_path / "c"
    assert cli.main(["up", "--dir", str(d), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpc-cluster: error: ") and says in err and err.count("\n") == 1, err
    assert not d.exists()


def test_up_on_a_regular_file_or_under_one_or_on_a_damaged_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("")
    assert cli.main(["up", "--dir", str(f)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert cli.main(["up", "--dir", str(f / "c"), "-n", "2", "-t", "2", "--scrypt-n", "1024"]) == 2
    assert "mpc-cluster: error: cannot create the cluster in " in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for doc in ("{", "[]", '{"nodes": "5", "threshold": 3}', '{"nodes": 5}', '{"nodes": 1, "threshold": 1}'):
        (damaged / PARAMS_FILE).write_text(doc)
        for argv in (["up"], ["status"], ["stop"]):
            assert cli.main([*argv, "--dir", str(damaged)]) == 2, doc
            err = capsys.readouterr().err
            assert f"{PARAMS_FILE}: damaged" in err and err.count("\n") == 1, err


def test_status_and_stop_on_a_directory_that_is_not_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status"], ["status", "--json"], ["stop"]):
        assert cli.main([*argv, "--dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "not a cluster directory" in err and err.count("\n") == 1


def _stored(d: Path, nodes: int, threshold: int) -> None:
    (d / PARAMS_FILE).write_text(json.dumps({"nodes": nodes, "threshold": threshold}))


def test_up_with_a_flag_that_conflicts_with_the_stored_topology_says_what_dir_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _stored(tmp_path, 5, 3)
    for flags in (["--nodes", "3"], ["-t", "2"], ["-n", "4", "-t", "3"]):
        assert cli.main(["up", "--dir", str(tmp_path), *flags]) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path} holds a 3-of-5 cluster; run 'mpc-cluster up --dir {tmp_path}' without --nodes/--threshold" in err, err
        assert "or use a new --dir" in err and err.count("\n") == 1
    assert json.loads((tmp_path / PARAMS_FILE).read_text()) == {"nodes": 5, "threshold": 3}


def test_up_without_flags_uses_the_stored_topology(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int]] = []

    def fake_prepare(d: Path, nodes: int, threshold: int, **kw: object) -> launcher.Layout:
        seen.append((nodes, threshold))
        raise launcher.ClusterError("stop here")

    monkeypatch.setattr(cli, "prepare", fake_prepare)
    _stored(tmp_path, 4, 3)
    assert cli.main(["up", "--dir", str(tmp_path), "-q"]) == 2
    assert cli.main(["up", "--dir", str(tmp_path), "-q", "--nodes", "4", "--threshold", "3"]) == 2  # agreeing flags are fine
    new = tmp_path / "new"
    assert cli.main(["up", "--dir", str(new), "-q"]) == 2
    assert cli.main(["up", "--dir", str(new), "-q", "-n", "2"]) == 2  # threshold defaults to min(3, nodes)
    assert seen == [(4, 3), (4, 3), (5, 3), (2, 2)]
    capsys.readouterr()


def test_ctrl_c_while_up_creates_the_cluster_exits_130_and_the_next_up_completes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "c"
    real = launcher.make_dev_node  # type: ignore[attr-defined]  # a node's keys (issue 13: the enrolment code)
    calls = []

    def interrupted(*a: object, **k: object) -> tuple[bytes, bytes]:
        calls.append(a)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(launcher, "make_dev_node", interrupted)
    assert cli.main(["up", "--dir", str(d), "-n", "3", "-t", "2", "--scrypt-n", "1024"]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines()[-1] == "mpc-cluster: interrupted", err
    assert "creating the dev CA" in err and "[" in err  # the progress lines before it, with timings
    assert not (d / PARAMS_FILE).exists()  # not a cluster directory yet: no topology to conflict with
    monkeypatch.setattr(launcher, "make_dev_node", real)
    lay = launcher.prepare(d, 2, 2, scrypt_n=1024)  # another topology: nothing blocks it
    assert launcher.load_layout(d) == lay and (lay.node_dir(2) / "keystore.json").exists()


def test_up_on_a_full_disk_is_one_line_without_a_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # regression: a full disk said "No space left on device (None)" (an OSError without a filename)
    import errno
    import os

    def full(*a: object, **k: object) -> launcher.Layout:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cli, "prepare", full)
    assert cli.main(["up", "--dir", str(tmp_path / "c"), "-q", "-n", "2"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "No space left on device" in err and "None" not in err, err


def test_json_is_one_document_also_when_up_finds_it_running_or_status_finds_no_cluster_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # regression: 'up --json' on a running cluster and 'status --json' on a cluster directory
    # without cluster.json (an 'up' interrupted early) printed a text line on stdout
    _stored(tmp_path, 2, 2)
    assert cli.main(["status", "--dir", str(tmp_path), "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "stopped" and doc["supervisor_pid"] is None and doc["processes"] == []
    _stale(tmp_path)
    monkeypatch.setattr(cli, "_supervisor_pid", lambda lay: 4242)
    monkeypatch.setattr(cli, "check_health", lambda *a, **k: False)
    monkeypatch.setattr(cli, "prepare", lambda *a, **k: pytest.fail("up on a running cluster prepared it again"))
    assert cli.main(["up", "--dir", str(tmp_path), "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["supervisor_pid"] == 4242 and [p["name"] for p in doc["processes"]] == ["node-1", "node-2", "coordinator"]
    assert cli.main(["up", "--dir", str(tmp_path), "-q"]) == 0
    assert "already running" in capsys.readouterr().out  # the text view is unchanged


def test_a_second_up_waits_for_the_first_instead_of_racing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # regression: two 'mpc-cluster up --dir D' at once (two cron jobs) both ran prepare(): one failed
    # with "File exists (.passphrase...tmp)", and the CA, keys and configs could mix the two runs
    import fcntl
    import os
    import threading
    import time

    d = tmp_path / "c"
    d.mkdir()
    first = os.open(d / cli.UP_LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(first, fcntl.LOCK_EX)  # as a running 'up' holds it
    prepared: list[float] = []

    def fake_prepare(*a: object, **k: object) -> launcher.Layout:
        prepared.append(time.monotonic())
        raise launcher.ClusterError("stop here")

    monkeypatch.setattr(cli, "prepare", fake_prepare)
    codes: list[int] = []
    t = threading.Thread(target=lambda: codes.append(cli.main(["up", "--dir", str(d), "-n", "2"])))
    t.start()
    time.sleep(0.6)
    assert not prepared  # waiting for the first
    released = time.monotonic()
    os.close(first)
    t.join(10)
    assert codes == [2] and prepared and prepared[0] >= released
    assert "another 'mpc-cluster up' is starting this cluster: waiting for it" in capsys.readouterr().err


def test_up_foreground_releases_the_up_lock_once_it_supervises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl
    import os

    d = tmp_path / "c"
    free: list[bool] = []

    def fake_supervise(lay: launcher.Layout, *, echo: bool, progress: object, locked: Callable[[], None]) -> int:
        locked()
        fd = os.open(d / cli.UP_LOCK, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another 'up' would get it now
            free.append(True)
        finally:
            os.close(fd)
        return 0

    monkeypatch.setattr(cli, "supervise", fake_supervise)
    assert cli.main(["up", "--dir", str(d), "-n", "2", "-t", "2", "--scrypt-n", "1024", "--foreground", "-q"]) == 0
    assert free == [True]


def test_stop_waits_for_an_up_under_way(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # regression: 'stop' while 'up' was preparing said "not running" (exit 0), and then the cluster came up
    import fcntl
    import os
    import threading
    import time

    _stored(tmp_path, 2, 2)
    first = os.open(tmp_path / cli.UP_LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(first, fcntl.LOCK_EX)
    codes: list[int] = []
    t = threading.Thread(target=lambda: codes.append(cli.main(["stop", "--dir", str(tmp_path)])))
    t.start()
    time.sleep(0.5)
    assert not codes  # waiting for the up
    os.close(first)
    t.join(10)
    out, err = capsys.readouterr()
    assert codes == [0] and "waiting for it" in err and "not running" in out


class _ClosedPipe(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def _stale(d: Path) -> None:
    _stored(d, 2, 2)
    (d / INFO_FILE).write_text(json.dumps({
        "status": "running", "supervisor_pid": None, "threshold": 2, "ca_cert": "", "certs": {},
        "nodes": [{"index": i, "name": f"node-{i}", "endpoint": "127.0.0.1:1", "pid": None} for i in (1, 2)],
        "coordinator": {"endpoint": "127.0.0.1:1", "pid": None},
    }))


def test_status_into_a_closed_pipe_exits_141_silently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stale(tmp_path)
    for argv in (["status", "--json"], ["status"]):
        with monkeypatch.context() as m:
            m.setattr("sys.stdout", _ClosedPipe())
            assert cli.main([*argv, "--dir", str(tmp_path)]) == 141
        assert capsys.readouterr().err == ""


def test_status_json_and_up_json_print_one_json_document_when_not_running_or_already_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--json``: "one JSON document on stdout"; a stopped DIR (no cluster.json) and ``up`` on a
    running cluster printed a text line there instead."""
    _stored(tmp_path, 3, 2)
    assert cli.main(["status", "--dir", str(tmp_path), "--json"]) == 3
    out, err = capsys.readouterr()
    assert json.loads(out)["status"] == "stopped" and "not running" in err
    _stale(tmp_path)
    monkeypatch.setattr(cli, "_supervisor_pid", lambda lay: 4242)
    monkeypatch.setattr(cli, "check_health", lambda *a: False)
    monkeypatch.setattr(cli, "prepare", lambda *a, **kw: pytest.fail("up started a running cluster again"))
    assert cli.main(["up", "--dir", str(tmp_path), "--json", "-q"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["dir"] == str(tmp_path) and "already running" in err
    assert cli.main(["up", "--dir", str(tmp_path), "-q"]) == 0
    assert "already running" in capsys.readouterr().out  # text mode: as before
    # --foreground prints the supervisor's lines, never the status: --json with it was silently ignored
    assert cli.main(["up", "--dir", str(tmp_path / "new"), "--foreground", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--json goes without --foreground" in err and err.count("\n") == 1
    assert not (tmp_path / "new").exists()


def test_status_of_a_running_cluster_whose_ca_file_is_gone_is_one_line_not_an_internal_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probing health reads DIR/ca/ca.pem: a missing one was 'internal error (a bug)', exit 1."""
    _stale(tmp_path)
    monkeypatch.setattr(cli, "_supervisor_pid", lambda lay: 4242)
    assert cli.main(["status", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot check the processes' health: ca_cert: cannot read" in err and "internal error" not in err and err.count("\n") == 1, err


def test_a_damaged_cluster_json_and_hostile_text_in_it_never_reach_the_terminal_raw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _stale(tmp_path)
    info = json.loads((tmp_path / INFO_FILE).read_text())
    info["nodes"][0]["endpoint"] = "127.0.0.1:1\x1b[2J\nforged"
    (tmp_path / INFO_FILE).write_text(json.dumps(info))
    assert cli.main(["status", "--dir", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J\\nforged" in out
    (tmp_path / INFO_FILE).write_text('{"status": "running"}')
    assert cli.main(["status", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{INFO_FILE}: damaged" in err and err.count("\n") == 1


def test_help_of_every_command_shows_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for words in ([], ["up"], ["status"], ["stop"]):
        assert cli.main([*words, "--help"]) == 0
        out = capsys.readouterr().out
        assert "Exit codes:" in out and "130  interrupted" in out and "2    usage error" in out
    assert demo.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--keep" in out and "deleted at the end unless --keep is given" in out


def test_up_refuses_a_non_empty_directory_that_holds_no_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """'mpc-cluster up --dir ~' (a typo) quietly created a cluster among someone's files; a
    non-empty directory without a cluster (nor the up.lock an earlier, interrupted up leaves) is
    a usage error that writes nothing."""
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["up", "--dir", str(tmp_path), "-n", "2", "-t", "2"]) == 2
    err = capsys.readouterr().err
    assert "is not empty and holds no cluster" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
