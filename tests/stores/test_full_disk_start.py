"""A node or coordinator started on a full or read-only data directory exits with one line naming
the directory and what to do ("data dir D: disk full: ..."), rc != 0, no traceback -- instead of
"[Errno 28] No space left on device" without a path, or "node.db is not a usable SQLite database
(disk I/O error)" (SQLite meets a full disk creating its WAL index and calls it an I/O error).

Real processes on a real tiny tmpfs mounted over the data directory in a private user and mount
namespace (``unshare -rm``: no root needed where unprivileged user namespaces are allowed; the
test skips where they are not). Unit tests of the same checks without a namespace below."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpcnet.cluster.launcher import Layout, child_env, prepare
from mpcnet.common import datadir_check
from mpcnet.common.datadir import DataDirBusy
from mpcnet.common.datadir_check import DataDirUnusable, check_data_dirs, start_failure

# copy the data dir aside, mount a 4 MiB tmpfs over it, copy it back, fill it leaving $3 KiB
# (0: completely), optionally remount it read-only ($4 = ro), then exec the server
_SHELL = r"""
set -e
D=$1; SAVE=$2; LEAVE_KB=$3; MODE=$4; shift 4
cp -a "$D/." "$SAVE/"
mount -t tmpfs -o size=4m tmpfs "$D"
cp -a "$SAVE/." "$D/"
avail=$(df -k --output=avail "$D" | tail -1)
n=$(( (avail - LEAVE_KB) / 4 ))
if [ "$n" -gt 0 ]; then dd if=/dev/zero of="$D/filler" bs=4k count=$n >/dev/null 2>&1 || true; fi
if [ "$LEAVE_KB" = 0 ]; then dd if=/dev/zero of="$D/filler2" bs=4k >/dev/null 2>&1 || true; fi
if [ "$MODE" = ro ]; then mount -o remount,ro "$D"; fi
exec "$@"
"""


def _namespaces_work(tmp: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    d = tmp / "probe-mount"
    d.mkdir()
    r = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{d}'"],
                       capture_output=True, timeout=30, check=False)
    return r.returncode == 0


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    tmp = tmp_path_factory.mktemp("fulldisk")
    if not _namespaces_work(tmp):
        pytest.skip("no unprivileged user and mount namespaces here (unshare -rm)")
    return prepare(tmp / "c", 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


def _start_on(lay: Layout, name: str, leave_kb: int, mode: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    if name == "coordinator":
        d, cmd = lay.coordinator_dir, [sys.executable, "-m", "coordinator.main", "--config", str(lay.coordinator_config)]
    else:
        i = int(name.split("-")[1])
        d, cmd = lay.node_dir(i), [sys.executable, "-m", "mpc_node.main", "--config", str(lay.node_config(i))]
    save = tmp / f"save-{name}-{leave_kb}-{mode}"
    save.mkdir()
    return subprocess.run(
        ["unshare", "-rm", "bash", "-c", _SHELL, "full", str(d), str(save), str(leave_kb), mode, *cmd],
        capture_output=True, text=True, timeout=60, env=child_env(), check=False,
    )


def _one_line(r: subprocess.CompletedProcess[str], prog: str, directory: Path, kind: str) -> None:
    assert r.returncode not in (0, None), r
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith(f"{prog}: cannot start: data dir {directory}: {kind}: "), r.stderr


@pytest.mark.parametrize("name", ["node-1", "coordinator"])
@pytest.mark.parametrize("leave_kb", [0, 68])  # nothing left; room for the start probe but not the store's writes
def test_start_on_a_full_disk_is_one_line(lay: Layout, tmp_path: Path, name: str, leave_kb: int) -> None:
    r = _start_on(lay, name, leave_kb, "rw", tmp_path)
    prog, d = ("mpc-coordinator", lay.coordinator_dir) if name == "coordinator" else ("mpc-node", lay.node_dir(1))
    _one_line(r, prog, d, "disk full")
    log = lay.log(name).read_text() if lay.log(name).exists() else ""
    assert "Traceback" not in log


@pytest.mark.parametrize("name", ["node-2", "coordinator"])
def test_start_on_a_read_only_remount_is_one_line(lay: Layout, tmp_path: Path, name: str) -> None:
    r = _start_on(lay, name, 1024, "ro", tmp_path)
    prog, d = ("mpc-coordinator", lay.coordinator_dir) if name == "coordinator" else ("mpc-node", lay.node_dir(2))
    _one_line(r, prog, d, "read-only")


# --- the same checks without a namespace ----------------------------------------------------------


def test_probe_write_failure_names_the_dir_and_the_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(DataDirUnusable) as e:
        check_data_dirs([tmp_path])
    assert str(e.value).startswith(f"data dir {tmp_path}: disk full: free space")
    assert [p for p in tmp_path.iterdir()] == []  # the probe file is gone


def test_an_io_error_on_a_nearly_full_dir_reads_as_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    e = sqlite3.OperationalError("disk I/O error")
    e.sqlite_errorcode = 10 | (15 << 8)  # SQLITE_IOERR_SHMSIZE: creating the WAL index
    outer = RuntimeError(f"database: {tmp_path}/node.db is not a usable SQLite database (disk I/O error)")
    outer.__context__ = e
    monkeypatch.setattr(datadir_check, "free_bytes", lambda d: 4096)
    line = start_failure([tmp_path], outer)
    assert line is not None and str(line).startswith(f"data dir {tmp_path}: disk full: ")
    monkeypatch.setattr(datadir_check, "free_bytes", lambda d: 1 << 30)
    line = start_failure([tmp_path], outer)
    assert line is not None and str(line).startswith(f"data dir {tmp_path}: I/O error: ")


def test_what_is_not_the_data_dir_is_left_alone(tmp_path: Path) -> None:
    assert start_failure([tmp_path], RuntimeError("keystore: cannot be unlocked (wrong passphrase)")) is None
    try:
        try:
            raise BlockingIOError(errno.EWOULDBLOCK, "Resource temporarily unavailable")
        except OSError:
            raise DataDirBusy(f"data directory {tmp_path} is in use by pid 7") from None
    except DataDirBusy as busy:
        assert start_failure([tmp_path], busy) is None  # its own message says it all
    assert start_failure([tmp_path], OSError(errno.EADDRINUSE, "Address already in use")) is None
    assert start_failure([tmp_path], PermissionError(errno.EACCES, "Permission denied", "/etc/ssl/node.key")) is None
    # a missing certificate or key elsewhere is its own error, not the data dir's
    assert start_failure([tmp_path], FileNotFoundError(errno.ENOENT, "No such file or directory", "/etc/ssl/node.crt")) is None
    inside = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "node.db"))
    line = start_failure([tmp_path / "other", tmp_path], inside)
    assert line is not None and str(line).startswith(f"data dir {tmp_path}: cannot open: ")


@pytest.mark.parametrize("leave_kb", [0, 16])
def test_the_offline_audit_key_rotation_on_a_full_disk_is_one_line(lay: Layout, tmp_path: Path, leave_kb: int) -> None:
    save = tmp_path / "save"
    save.mkdir()
    cmd = [sys.executable, "-m", "coordinator.main", "rotate-audit-key", "--config", str(lay.coordinator_config)]
    r = subprocess.run(
        ["unshare", "-rm", "bash", "-c", _SHELL, "full", str(lay.coordinator_dir), str(save), str(leave_kb), "rw", *cmd],
        capture_output=True, text=True, timeout=60, env=child_env(), check=False,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(
        f"mpc-coordinator rotate-audit-key: cannot rotate the audit key: data dir {lay.coordinator_dir}: disk full: "
    ), r.stderr


def test_probe_files_of_killed_processes_are_swept_at_start(tmp_path: Path) -> None:
    """A process killed between creating its probe file and removing it left the file behind."""
    import subprocess
    import sys

    from mpcnet.common.datadir_check import PROBE_PREFIX

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    gone = tmp_path / f"{PROBE_PREFIX}{int(dead.stdout)}-0a0b0c0d"
    gone.write_bytes(b"x" * 100)
    alive = tmp_path / f"{PROBE_PREFIX}1-0a0b0c0d"  # pid 1 runs: not ours to remove
    alive.write_bytes(b"")
    other = tmp_path / "store.db"
    other.write_bytes(b"")
    check_data_dirs([tmp_path])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])


def test_the_probe_sweep_removes_only_this_users_stale_probe_files(tmp_path: Path) -> None:
    """A name that only looks like a stale probe is left: a non-ASCII "digit" (``²`` made the
    start fail with a ValueError traceback; full-width digits named a pid), a symlink (and so
    never its target), a directory. The probe files this program writes are regular files with
    an ASCII pid."""
    from mpcnet.common.datadir_check import PROBE_PREFIX, sweep_probes

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    pid = int(dead.stdout)
    stale = tmp_path / f"{PROBE_PREFIX}{pid}-00000000"
    stale.write_bytes(b"x")
    superscript = tmp_path / f"{PROBE_PREFIX}\u00b2-00000000"
    superscript.write_bytes(b"")
    wide = tmp_path / f"{PROBE_PREFIX}{''.join(chr(0xFF10 + int(d)) for d in str(pid))}-00000000"
    wide.write_bytes(b"")
    target = tmp_path / "keep" / "precious"
    target.parent.mkdir()
    target.write_bytes(b"precious")
    link = tmp_path / f"{PROBE_PREFIX}{pid}-11111111"
    link.symlink_to(target)
    directory = tmp_path / f"{PROBE_PREFIX}{pid}-22222222"
    directory.mkdir()
    assert sweep_probes(tmp_path) == 1
    check_data_dirs([tmp_path])  # no traceback either
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([superscript.name, wide.name, "keep", link.name, directory.name])
    assert link.is_symlink() and target.read_bytes() == b"precious"
