"""One command-line foundation (issue 10 item 15): the five programs (``mpc``, ``mpc-cluster``,
``scripts/demo``, ``mpc-node``, ``mpc-coordinator``) read every typed value with the parameter
types of :mod:`mpcnet.common.cliutil`, end through its one ``run`` (the same codes and wording for
the same ending), and the two servers share one entry point. In-process, nothing is started."""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from coordinator import main as coordinator_main
from mpc_node import main as node_main
from mpcnet.client import cli as mpc_cli
from mpcnet.client.cli_args import PathText
from mpcnet.cluster import cli as cluster_cli, demo
from mpcnet.common import cliutil
from mpcnet.common.config import ConfigError

PROGRAMS: list[tuple[str, Callable[[list[str] | None], int], click.Command]] = [
    ("mpc", mpc_cli.main, mpc_cli.cli),
    ("mpc-cluster", cluster_cli.main, cluster_cli.cli),
    ("scripts/demo", demo.main, demo.demo),
    ("mpc-node", node_main.main, node_main._command),
    ("mpc-coordinator", coordinator_main.main, coordinator_main._command),
    # the servers' off-line subcommands (issue 13: init, join, rekey-store)
    *[(f"mpc-node {name}", node_main.main, cliutil.lazy_command(target)) for name, target in node_main.SUBCOMMANDS.items()],
    *[(f"mpc-coordinator {name}", coordinator_main.main, cliutil.lazy_command(target))
      for name, target in coordinator_main.SUBCOMMANDS.items()],
]


def _params(cmd: click.Command) -> Iterator[click.Parameter]:
    yield from cmd.params
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            yield from _params(sub)


def _run(main: Callable[[list[str] | None], int], argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_every_typed_value_of_every_program_goes_through_the_one_set_of_types() -> None:
    own = (
        cliutil.UInt, cliutil.Seconds, cliutil.Hex, cliutil.Identifier, cliutil.Text, cliutil.PathArg, cliutil.Endpoint, cliutil.Choice,
        cliutil.IndexList,
    )
    seen = set()
    for prog, _main, root in PROGRAMS:
        for p in _params(root):
            for t in p.type.types if isinstance(p.type, click.Tuple) else [p.type]:  # a pair of values: each typed
                seen.add(type(t).__name__)
                plain = (click.types.StringParamType, click.types.BoolParamType)  # free text (parsed by the command), flags
                assert isinstance(t, (*own, PathText, *plain)), (prog, p.name, t)
                if isinstance(t, click.Choice):
                    assert isinstance(t, cliutil.Choice), (prog, p.name)  # the one that quotes a short prefix
    assert {"UInt", "Seconds", "Hex", "Identifier", "Text", "PathArg", "InFile", "Endpoint"} <= seen


@pytest.mark.parametrize(("kind", "mpc_argv", "cluster_argv", "says"), [
    ("number", ["--cluster", "C", "--as", "a", "requests", "--limit", "\uff11\uff12"], ["up", "--dir", "D", "--nodes", "\uff11\uff12"],
     "must be a whole number written with the digits 0-9, got '\\uff11\\uff12'"),
    ("seconds", ["--timeout", "-1", "keys"], ["up", "--dir", "D", "--timeout", "-1"],
     "must be a number of seconds written with the digits 0-9 (e.g. 30 or 2.5), got '-1'"),
    ("seconds range", ["--timeout", "999999999", "keys"], ["up", "--dir", "D", "--timeout", "999999999"],
     "must be more than 0 and at most"),
    # plain numbers, not 3.16224e+07 or 1e+09
    ("seconds range, mpc", ["--timeout", "999999999", "keys"], ["up", "--dir", "D", "--timeout", "999999999"],
     "seconds, got 999999999 "),
    ("missing value", ["keys", "--timeout"], ["up", "--dir"], "requires an argument."),
    # digits 0-9 only, but too many: not "must be ... written with the digits 0-9"
    ("too many digits", ["--cluster", "C", "--as", "a", "requests", "--limit", "9" * 23], ["up", "--dir", "D", "--nodes", "0" * 20 + "5"],
     "(at most 20 digits), got '"),
    ("too many seconds digits", ["--timeout", "9" * 26, "keys"], ["up", "--dir", "D", "--timeout", "1." + "0" * 10],
     "must be more than 0 and at most"),
])
def test_the_same_bad_value_is_worded_alike_by_mpc_and_mpc_cluster(
    tmp_path: Path, kind: str, mpc_argv: list[str], cluster_argv: list[str], says: str
) -> None:
    for prog, main, argv in (("mpc", mpc_cli.main, mpc_argv), ("mpc-cluster", cluster_cli.main, cluster_argv)):
        code, out, err = _run(main, [str(tmp_path / a) if a == "D" else a for a in argv])
        assert code == 2 and out == "", (prog, kind, err)
        assert err.startswith(f"{prog}: error: ") and says in err and err.count("\n") == 1, (prog, kind, err)
        assert err.rstrip("\n").endswith(" --help')"), err


def test_defaults_are_checked_like_values() -> None:
    assert cliutil.UInt(1, 5).convert(3, None, None) == 3
    assert cliutil.Seconds(10).convert(2, None, None) == 2.0
    for t, v in ((cliutil.UInt(1, 5), 9), (cliutil.UInt(0, 5), True), (cliutil.Seconds(10), 11.0), (cliutil.Hex(2), b"\x00")):
        with pytest.raises(click.BadParameter):
            t.convert(v, None, None)


def test_paths_and_files(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    assert cliutil.InFile().convert(str(f), None, None) == f
    for bad in ("", "a\x00b", "a" * (cliutil.MAX_PATH + 1), str(tmp_path), str(tmp_path / "missing")):
        for t in (cliutil.InFile(), cliutil.PathArg()):
            if isinstance(t, cliutil.InFile) or bad in ("", "a\x00b") or len(bad) > cliutil.MAX_PATH:
                with pytest.raises(click.BadParameter) as e:
                    t.convert(bad, None, None)
                assert e.value.message.isprintable() and len(e.value.message) < 200, e.value.message


@click.command()
@click.argument("what")
def _boom(what: str) -> int:
    if what == "bug":
        raise KeyError("x" * 1000 + "\x1b[2J")
    if what == "mine":
        raise LookupError("handled")
    if what == "failed":
        raise cliutil.Failed("it failed\nforged")
    if what == "exit":
        raise SystemExit("demo: step failed")
    if what == "pipe":
        raise BrokenPipeError
    if what == "ctrl-c":
        raise KeyboardInterrupt
    return 7


def _mine(e: Exception) -> tuple[int, str] | None:
    return (3, "handled here") if isinstance(e, LookupError) and not isinstance(e, KeyError) else None


@pytest.mark.parametrize(("what", "code", "line"), [
    ("bug", 1, "prog: internal error (a bug, please report it): KeyError: "),
    ("mine", 3, "prog: handled here"),
    ("failed", 1, "prog: it failed\\nforged"),
    ("exit", 1, "prog: demo: step failed"),
    ("pipe", 141, ""),
    ("ctrl-c", 130, "prog: interrupted"),
    ("ok", 7, ""),
])
def test_run_maps_every_ending_to_one_code_and_at_most_one_line(
    what: str, code: int, line: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MPC_DEBUG", raising=False)
    assert cliutil.run(_boom, [what], "prog", handle=_mine) == code
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == (1 if line else 0) and "Traceback" not in err and "\x1b" not in err, err
    assert len(err) < 400


def test_mpc_debug_shows_the_traceback_of_a_bug(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPC_DEBUG", "1")
    assert cliutil.run(_boom, ["bug"], "prog") == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("prog: internal error")


def test_shell_completion_for_every_program(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_MPC_CLUSTER_COMPLETE", "bash_source")
    assert cluster_cli.main([]) == 0
    assert "_mpc_cluster_completion" in capsys.readouterr().out


@dataclass(frozen=True)
class _Cfg:
    name: str = "srv"
    log_file: Path | None = None
    log_level: str = "INFO"
    log_format: str = "text"


def test_the_servers_share_one_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert node_main._command.epilog == coordinator_main._command.epilog == cliutil.SERVER_EPILOG
    log_file = tmp_path / "srv.log"

    def load(path: Path) -> _Cfg:
        if path.name == "bad.json":
            raise ConfigError(f"{path}: threshold: must be in 2..3")
        return _Cfg(log_file=log_file)

    def serve(cfg: _Cfg, serving: threading.Event) -> int:
        raise OSError("listen: cannot bind 127.0.0.1:1")

    cmd = cliutil.server_command("srv", "a server", "srv", load, serve, (OSError,), logging.getLogger("test-srv"))
    assert cliutil.run(cmd, ["--config", str(tmp_path / "bad.json")], "srv") == 2
    err = capsys.readouterr().err
    assert err.startswith("srv: error: ") and "threshold: must be in 2..3 (see 'srv --help')" in err and err.count("\n") == 1
    assert cliutil.run(cmd, ["--config", str(tmp_path / "ok.json")], "srv") == 1
    assert capsys.readouterr().err == "srv: cannot start: listen: cannot bind 127.0.0.1:1\n"
    logging.getLogger().handlers.clear()  # setup_logging's handler: not for later tests
    assert "cannot start: listen: cannot bind" in log_file.read_text()


def test_a_server_failing_after_it_started_does_not_say_cannot_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # review: an error of start_errors raised while serving was reported as "cannot start: ..."
    log_file = tmp_path / "srv.log"

    def serve(cfg: _Cfg, serving: threading.Event) -> int:
        serving.set()  # listening: what follows is not a start-up failure
        raise OSError("audit_db: database or disk is full")

    cmd = cliutil.server_command(
        "srv", "a server", "srv", lambda p: _Cfg(log_file=log_file), serve, (OSError,), logging.getLogger("test-srv")
    )
    try:
        assert cliutil.run(cmd, ["--config", str(tmp_path / "ok.json")], "srv") == 1
    finally:
        for h in logging.getLogger().handlers:
            h.close()
        logging.getLogger().handlers.clear()
    assert capsys.readouterr().err == "srv: failed while serving: audit_db: database or disk is full\n"
    text = log_file.read_text()
    assert "failed while serving: audit_db: database or disk is full" in text and "cannot start" not in text


def test_a_seconds_bound_is_written_in_plain_digits() -> None:
    # regression: 'mpc --timeout 0' said "at most 3.16224e+07 seconds" (366 days)
    from governance.errors import GovernanceError
    from mpcnet.common.cliutil import parse_seconds

    with pytest.raises(GovernanceError) as e:
        parse_seconds("0", "timeout", 366 * 86400.0)
    assert "at most 31622400 seconds" in str(e.value.reason), e.value.reason
