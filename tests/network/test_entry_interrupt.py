"""A Ctrl-C while a command line is still importing (grpc, cryptography, click: the first few
hundred milliseconds) ends with one line and exit 130, never a traceback: the console scripts
point at small entry functions that import the command inside a ``try`` (issue 10, item 8)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import coordinator.entry
import mpc_node.entry
from mpcnet import entry

ROOT = Path(__file__).resolve().parents[2]


def test_the_console_scripts_are_the_entry_functions() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {
        "mpc": "mpcnet.entry:mpc", "mpc-cluster": "mpcnet.entry:mpc_cluster",
        "mpc-node": "mpc_node.entry:main", "mpc-coordinator": "coordinator.entry:main",
    }


def _interrupting() -> None:
    raise KeyboardInterrupt


def test_an_interrupt_while_importing_is_one_line_and_130(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry._run("mpc", _interrupting) == 130  # type: ignore[arg-type]
    assert capsys.readouterr().err == "mpc: interrupted\n"


@pytest.mark.parametrize(("module", "prog", "target"), [
    (mpc_node.entry, "mpc-node", "mpc_node.main"), (coordinator.entry, "mpc-coordinator", "coordinator.main"),
])
def test_the_servers_entries_too(module, prog: str, target: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):  # the import of the server's main is interrupted
        if name == target:
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert module.main() == 130
    assert capsys.readouterr().err == f"{prog}: interrupted\n"


def test_the_entries_run_the_commands(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["mpc", "--help"])
    assert entry.mpc() == 0 and "Exit" in capsys.readouterr().out
    monkeypatch.setattr("sys.argv", ["mpc-cluster", "--help"])
    assert entry.mpc_cluster() == 0 and "up" in capsys.readouterr().out
