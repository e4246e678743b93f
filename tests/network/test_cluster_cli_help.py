"""``mpc-cluster --help`` lists the user's commands only: the internal ``_supervise`` (the detached
supervisor ``up`` starts) stays out of the usage line and the command list, and still parses."""

from __future__ import annotations

import pytest

from mpcnet.cluster import cli


def test_help_lists_up_status_stop_and_not_the_internal_supervisor(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: mpc-cluster [OPTIONS] COMMAND [ARGS]...")
    commands = out.split("Commands:")[1].split("Exit codes:")[0]
    listed = [line.split()[0] for line in commands.strip().splitlines()]
    assert listed == ["add-node", "prometheus", "replace-node", "status", "stop", "up", "wipe-node"]
    assert "_supervise" not in out and "SUPPRESS" not in out


def test_supervise_still_parses(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["_supervise", "--help"]) == 0
    assert "--dir" in capsys.readouterr().out
