"""One process per store, whatever the path (mpcnet/common/datadir.py).

Found as an operator: a second coordinator whose data directory held symlinks to the first one's
``coordinator.db`` and ``audit.db`` (a file bind-mounted into two containers is the same case)
started and served on the same database beside the running one: the directory lock sees two
directories. The store files themselves are now locked too (and a first start creates them, so
that it holds them from the start)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mpcnet.common.datadir import DataDirBusy, hold_data_dirs


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    return a, b


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_store_reached_through_another_path_is_refused(tmp_path: Path, how: str) -> None:
    a, b = _dirs(tmp_path)
    (a / "coordinator.db").write_bytes(b"")
    (os.symlink if how == "symlink" else os.link)(a / "coordinator.db", b / "coordinator.db")
    with hold_data_dirs([a], files=[a / "coordinator.db", a / "audit.db"]):
        with pytest.raises(DataDirBusy) as e:
            with hold_data_dirs([b], files=[b / "coordinator.db", b / "audit.db"]):
                pass
        assert "is in use by another process (the same file through another path" in str(e.value)
        assert str(b / "coordinator.db") in str(e.value) or str(a / "coordinator.db") in str(e.value)
    with hold_data_dirs([b], files=[b / "coordinator.db"]):  # free again once the first ended
        pass


def test_a_first_start_creates_and_holds_its_store_files(tmp_path: Path) -> None:
    a, b = _dirs(tmp_path)
    with hold_data_dirs([a], files=[a / "node.db", a / "audit.db"]):
        for name in ("node.db", "audit.db"):
            st = (a / name).stat()
            assert st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0o600
        os.symlink(a / "node.db", b / "node.db")  # made while the first runs
        with pytest.raises(DataDirBusy):
            with hold_data_dirs([b], files=[b / "node.db"]):
                pass


def test_the_same_configuration_twice_still_names_the_directory(tmp_path: Path) -> None:
    a, _ = _dirs(tmp_path)
    with hold_data_dirs([a], files=[a / "coordinator.db"]):
        with pytest.raises(DataDirBusy) as e:
            with hold_data_dirs([a], files=[a / "coordinator.db"]):
                pass
        assert f"data directory {a.resolve()} is in use by pid {os.getpid()}" in str(e.value)
