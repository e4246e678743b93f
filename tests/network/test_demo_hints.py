"""The commands scripts/demo tells a new user to run work from their shell: scripts/demo runs
without the virtualenv on PATH, so 'mpc ...' alone is 'command not found' on a fresh machine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mpcnet.cluster import demo


def test_hints_name_the_virtualenvs_programs_unless_the_shell_finds_them(monkeypatch: pytest.MonkeyPatch) -> None:
    here = Path(sys.executable).parent
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert demo.installed("mpc") == str((here / "mpc").absolute())
    assert demo.installed("mpc-cluster") == str((here / "mpc-cluster").absolute())
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)  # another installation's
    assert demo.installed("mpc") == str((here / "mpc").absolute())
    monkeypatch.setattr("shutil.which", lambda name: str(here / name))
    assert demo.installed("mpc") == "mpc"
