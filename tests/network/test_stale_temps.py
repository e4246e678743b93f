"""A process killed inside an atomic write (:func:`mpcnet.common.fsutil.write_atomic`,
``replace_keystore``) leaves ``.<name>.<random>.tmp`` next to the file (a keystore's one is a
sealed copy of the keystore). Review: nothing ever removed them. A node and a coordinator now
sweep those of their own files at start (:mod:`mpcnet.common.tempsweep`): only regular files of
this user named exactly as ``write_atomic`` names them, never a symlink, another file's temp or
a directory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from coordinator import main as coord_main
from coordinator.config import load_coordinator_config
from mpc_node import main as node_main
from mpc_node.config import load_node_config
from mpcnet.cluster.launcher import prepare
from mpcnet.common.tempsweep import stale_temp_target, sweep_stale_temps

# a child that SIGKILLs itself inside write_atomic, after the temp file is written and before the rename
_KILLED_WRITE = """
import os, signal, sys
from pathlib import Path
from mpcnet.common import fsutil
fsutil.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
fsutil.write_atomic(Path(sys.argv[1]), b"sealed keystore copy", 0o600)
"""


def _killed_write(target: Path) -> Path:
    before = set(target.parent.iterdir())
    r = subprocess.run([sys.executable, "-c", _KILLED_WRITE, str(target)], cwd=Path(__file__).parents[2], timeout=60)
    assert r.returncode == -9
    (left,) = set(target.parent.iterdir()) - before
    assert stale_temp_target(left.name) == target.name
    return left


class _Stop(Exception):
    pass


def _decoys(d: Path, name: str) -> list[Path]:
    """Entries the sweep must leave: another file's temp, a symlink and a directory named like a
    temp of ``name``, near misses of the pattern."""
    other = d / ".unrelated.json.abcd1234.tmp"
    other.write_bytes(b"x")
    victim = d / "victim"
    victim.write_bytes(b"keep me")
    link = d / f".{name}.link0000.tmp"
    link.symlink_to(victim)
    sub = d / f".{name}.dir00000.tmp"
    sub.mkdir()
    short = d / f".{name}.abc.tmp"
    short.write_bytes(b"x")
    upper = d / f".{name}.ABCDEFGH.tmp"
    upper.write_bytes(b"x")
    return [other, victim, link, sub, short, upper]


def test_the_pattern_is_exactly_what_write_atomic_makes() -> None:
    assert stale_temp_target(".keystore.json.a1b2_c3d.tmp") == "keystore.json"
    for name in ("keystore.json.a1b2c3d4.tmp", ".keystore.json.a1b2c3d.tmp", ".keystore.json.a1b2c3d4.tmp~", ".a1b2c3d4.tmp"):
        assert stale_temp_target(name) is None, name


def test_a_node_sweeps_a_killed_writes_temp_files_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lay = prepare(tmp_path / "c", 2, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    cfg = load_node_config(lay.node_config(1))
    left = [_killed_write(Path(cfg.keystore)), _killed_write(Path(cfg.path)), _killed_write(Path(cfg.cert.key))]
    keep = _decoys(Path(cfg.keystore).parent, Path(cfg.keystore).name)

    def stop(*a: Any) -> Any:
        raise _Stop

    monkeypatch.setattr(node_main, "build_server", stop)
    with pytest.raises(_Stop):
        node_main.run(cfg, threading.Event(), threading.Event())
    assert [p for p in left if os.path.lexists(p)] == []
    assert all(os.path.lexists(p) for p in keep)
    assert (Path(cfg.keystore).parent / "victim").read_bytes() == b"keep me"  # the symlink was not followed


def test_a_coordinator_sweeps_a_killed_writes_temp_files_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lay = prepare(tmp_path / "c", 2, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)
    cfg = load_coordinator_config(lay.coordinator_config)
    left = [_killed_write(Path(cfg.keystore)), _killed_write(Path(cfg.path))]
    keep = _decoys(Path(cfg.keystore).parent, Path(cfg.keystore).name)

    def stop(*a: Any) -> Any:
        raise _Stop

    monkeypatch.setattr(coord_main, "build_server", stop)
    with pytest.raises(_Stop):
        coord_main.run(cfg, threading.Event())
    assert [p for p in left if os.path.lexists(p)] == []
    assert all(os.path.lexists(p) for p in keep)


def test_another_users_file_is_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / ".keystore.json.abcdefgh.tmp"
    f.write_bytes(b"x")
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(f).st_uid + 1)
    assert sweep_stale_temps([tmp_path / "keystore.json"]) == []
    assert f.exists()
    monkeypatch.undo()
    assert sweep_stale_temps([tmp_path / "keystore.json", tmp_path / "missing-dir" / "x"]) == [f]
