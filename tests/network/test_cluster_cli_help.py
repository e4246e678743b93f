"""``mpc-cluster --help`` lists the user's commands only: the internal ``_supervise`` (the detached
supervisor ``up`` starts) stays out of the usage line and the command list, and still parses."""

from __future__ import annotations

import pytest

from mpcnet.cluster import cli


def test_help_lists_up_status_stop_and_not_the_internal_supervisor(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: mpc-cluster [-h] {up,status,stop} ..." in out
    for name in ("up", "status", "stop"):
        assert f"\n    {name} " in out
    assert "_supervise" not in out and "SUPPRESS" not in out


def test_supervise_still_parses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["_supervise", "--help"])
    assert e.value.code == 0
    assert "--dir" in capsys.readouterr().out
