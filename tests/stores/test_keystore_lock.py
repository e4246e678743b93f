"""One process per keystore, and no start on a dangling symlink (mpcnet/common/keystore_lock.py,
mpcnet/common/datadir_check.py).

A second node whose config names the running node's keystore but other data directories (a
copied config, one file bind-mounted into two containers) started beside it and signed as the
same identity; now it exits 2 naming the keystore and the holder's pid. A data directory or a
keystore path that is a dangling symlink (its volume not mounted) is refused at start with one
line naming the link -- before, the data directory was silently created (mkdir) under the link's
parent... or the start failed with a bare "No such file or directory". Real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mpcnet.cluster.launcher import Layout, child_env, free_ports, prepare
from mpcnet.common.datadir_check import DataDirUnusable
from mpcnet.common.keystore_lock import KeystoreBusy, flock_holder, hold_keystore


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("kslock"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


def _node(cfg: Path) -> list[str]:
    return [sys.executable, "-m", "mpc_node.main", "--config", str(cfg)]


def _copy_config(lay: Layout, i: int, where: Path, **changes: Any) -> Path:
    """node ``i``'s config with absolute paths, its stores in ``where``, a free port and ``changes``."""
    src = lay.node_config(i)
    doc = json.loads(src.read_text())
    base = src.parent
    for k in ("keystore", "passphrase_file"):
        doc[k] = str(base / doc[k])
    where.mkdir(parents=True, exist_ok=True)
    doc["store"], doc["audit_db"] = str(where / "node.db"), str(where / "audit.db")
    doc["listen"] = f"127.0.0.1:{free_ports(1)[0]}"
    doc["log_file"] = str(where / "node.log")
    doc.pop("metrics", None)
    doc.update(changes)
    out = where / "config.json"
    out.write_text(json.dumps(doc))
    return out


def _wait_listening(log: Path, p: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert p.poll() is None, p.stderr.read() if p.stderr else p.returncode
        if log.exists() and "listening on" in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError("the first node did not start")


def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_a_second_node_on_the_same_keystore_exits_2_naming_the_holder(lay: Layout, tmp_path: Path) -> None:
    first_cfg = _copy_config(lay, 1, tmp_path / "first")
    first = subprocess.Popen(_node(first_cfg), env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(tmp_path / "first" / "node.log", first)
        second_cfg = _copy_config(lay, 1, tmp_path / "second")  # other data dirs, the same keystore
        r = subprocess.run(_node(second_cfg), env=child_env(), capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 2, r
        keystore = lay.node_dir(1) / "keystore.json"
        assert _one_line(r) == (f"mpc-node: cannot start: keystore {keystore} is in use by pid {first.pid}: "
                                "one process per keystore (two would sign as one identity)")
        assert not (tmp_path / "second" / "node.db").exists() or (tmp_path / "second" / "node.db").stat().st_size == 0
        # the same config twice: still its busy data directory (exit 1), found first
        r2 = subprocess.run(_node(first_cfg), env=child_env(), capture_output=True, text=True, timeout=60, check=False)
        assert r2.returncode == 1 and f"is in use by pid {first.pid}" in _one_line(r2) and "data directory" in r2.stderr
    finally:
        first.terminate()
        first.wait(30)
    # the holder gone, the kernel dropped its lock: the second starts
    second = subprocess.Popen(_node(_copy_config(lay, 1, tmp_path / "second")), env=child_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(tmp_path / "second" / "node.log", second)
    finally:
        second.terminate()
        second.wait(30)


def test_a_dangling_data_dir_symlink_is_refused(lay: Layout, tmp_path: Path) -> None:
    link = tmp_path / "data"
    os.symlink(tmp_path / "volume-not-mounted" / "mpc", link)
    cfg = _copy_config(lay, 2, tmp_path / "cfg")
    doc = json.loads(cfg.read_text())
    doc["store"], doc["audit_db"] = str(link / "node.db"), str(link / "audit.db")
    cfg.write_text(json.dumps(doc))
    r = subprocess.run(_node(cfg), env=child_env(), capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1
    line = _one_line(r)
    assert line.startswith(f"mpc-node: cannot start: data dir {link}: cannot open: ") and "dangling symlink" in line
    assert not (tmp_path / "volume-not-mounted").exists()  # nothing created under the missing target


def test_a_dangling_keystore_symlink_is_refused(lay: Layout, tmp_path: Path) -> None:
    link = tmp_path / "keystore.json"
    os.symlink(tmp_path / "secrets" / "keystore.json", link)
    cfg = _copy_config(lay, 3, tmp_path / "cfg", keystore=str(link))
    r = subprocess.run(_node(cfg), env=child_env(), capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1
    line = _one_line(r)
    assert line.startswith(f"mpc-node: cannot start: keystore {link}: cannot open: ") and "dangling symlink" in line


def test_a_second_coordinator_on_the_same_keystore_exits_2(lay: Layout, tmp_path: Path) -> None:
    def config(where: Path) -> Path:
        doc = json.loads(lay.coordinator_config.read_text())
        base = lay.coordinator_config.parent
        doc["keystore"], doc["passphrase_file"] = str(base / doc["keystore"]), str(base / doc["passphrase_file"])
        where.mkdir()
        doc["db"], doc["audit_db"], doc["log_file"] = str(where / "c.db"), str(where / "a.db"), str(where / "c.log")
        doc["listen"] = f"127.0.0.1:{free_ports(1)[0]}"
        doc.pop("metrics", None)
        (where / "config.json").write_text(json.dumps(doc))
        return where / "config.json"

    cmd = [sys.executable, "-m", "coordinator.main", "--config"]
    first = subprocess.Popen([*cmd, str(config(tmp_path / "one"))], env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(tmp_path / "one" / "c.log", first)
        r = subprocess.run([*cmd, str(config(tmp_path / "two"))], env=child_env(), capture_output=True, text=True, timeout=60,
                           check=False)
        assert r.returncode == 2 and f"is in use by pid {first.pid}" in _one_line(r), r
    finally:
        first.terminate()
        first.wait(30)


def test_in_process_lock_and_holder(tmp_path: Path) -> None:
    ks = tmp_path / "keystore.json"
    ks.write_text("{}")
    with hold_keystore(ks):
        fd = os.open(ks, os.O_RDONLY)
        try:
            assert flock_holder(fd) == os.getpid()
        finally:
            os.close(fd)
        with pytest.raises(KeystoreBusy, match=f"is in use by pid {os.getpid()}") as e:
            with hold_keystore(ks):
                pass
        assert e.value.exit_code == 2
    with hold_keystore(ks):  # released
        pass
    with hold_keystore(tmp_path / "missing.json"):  # nothing to lock: the loader reports it
        pass
    os.symlink(tmp_path / "gone", tmp_path / "dangling.json")
    with pytest.raises(DataDirUnusable, match="dangling symlink"):
        with hold_keystore(tmp_path / "dangling.json"):
            pass


def test_the_lock_follows_a_keystore_replaced_by_a_rotation(tmp_path: Path) -> None:
    """A key rotation replaces the keystore by a rename (mpc_node/rotation.py): the flock on the old
    inode no longer covered the path, so a second process could start on the new keys."""
    from mpcnet.common.fsutil import write_atomic
    from mpcnet.common.keystore_lock import relock

    ks = tmp_path / "keystore.json"
    ks.write_text("{}")
    with hold_keystore(ks):
        write_atomic(ks, b'{"rotated": 1}', 0o600)  # a new inode
        with hold_keystore(ks):  # the fault: the new file is not held
            pass
        assert relock(ks)
        with pytest.raises(KeystoreBusy):
            with hold_keystore(ks):
                pass
    with hold_keystore(ks):  # the relocked descriptor was released at the end
        pass
    assert not relock(ks)  # not held: nothing to do


def test_a_rotation_locks_the_new_keystore_before_it_takes_the_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """relock() after the rename left a window in which another process could lock the new inode
    first; replace_keystore locks the new file before the rename (checked at the rename itself)."""
    import fcntl
    import os

    from mpcnet.common import keystore_lock
    from mpcnet.common.keystore_lock import replace_keystore

    ks = tmp_path / "keystore.json"
    ks.write_text("{}")
    seen: list[bool] = []
    real_replace = os.replace

    def replace(src: str, dst: object) -> None:
        fd = os.open(src, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append(False)  # another opener could lock it: the window is open
        except BlockingIOError:
            seen.append(True)
        finally:
            os.close(fd)
        real_replace(src, dst)  # type: ignore[arg-type]

    with hold_keystore(ks):
        monkeypatch.setattr(keystore_lock.os, "replace", replace)
        replace_keystore(ks, b'{"rotated": 1}')
        monkeypatch.setattr(keystore_lock.os, "replace", real_replace)
        assert seen == [True]
        assert ks.read_bytes() == b'{"rotated": 1}' and (ks.stat().st_mode & 0o777) == 0o600
        with pytest.raises(KeystoreBusy):
            with hold_keystore(ks):
                pass
    with hold_keystore(ks):  # released at the end of the outer hold
        pass
    replace_keystore(ks, b"{}")  # not held: a plain atomic write
    assert ks.read_bytes() == b"{}" and not list(tmp_path.glob(".keystore.json.*"))


def test_a_start_that_opened_the_keystore_before_a_rotation_does_not_lock_the_replaced_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second process opens the keystore path (the old inode), a running one rotates the key
    (replace_keystore: locks the new file, renames it, then releases the old inode), and the second
    one's flock then succeeds on the old, replaced inode: it ran beside the first as the same
    identity. hold_keystore must check, once locked, that the locked file is still the one at the path."""
    import fcntl

    from mpcnet.common.keystore_lock import replace_keystore

    ks = tmp_path / "keystore.json"
    ks.write_text("{}")
    real_flock = fcntl.flock
    rotated: list[bool] = []

    def flock(fd: int, op: int) -> None:
        if not rotated:  # the first flock is the second start's, on the inode it opened before the rename
            rotated.append(True)
            replace_keystore(ks, b'{"rotated": 1}')  # the running process's rotation, in between
        real_flock(fd, op)

    with hold_keystore(ks):  # the running process
        monkeypatch.setattr(fcntl, "flock", flock)
        with pytest.raises(KeystoreBusy, match="is in use by pid"):
            with hold_keystore(ks):  # the second start
                pass
        monkeypatch.setattr(fcntl, "flock", real_flock)
        assert rotated == [True] and ks.read_bytes() == b'{"rotated": 1}'
    with hold_keystore(ks):  # released at the end of the first hold
        pass
