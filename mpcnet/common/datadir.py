"""One process per data directory: ``mpc-node`` and ``mpc-coordinator`` hold an exclusive
``fcntl.flock`` on ``DIR/mpcnet.lock`` in every directory they write (their database's and their
audit log's) from before they open anything there until they exit.

They also hold a ``flock`` on each store file (:func:`_lock_file`), so a second
process whose configuration reaches the same store through another path (a symlinked file, a
hard link, a file bind-mounted into two containers) fails the same way.

A second process started with the same configuration fails at once with
:class:`DataDirBusy` ("data directory D is in use by pid P"), before it has read or written a
store or appended to an audit log. The holder writes its pid into the lock file (for that
message only; the lock is the ``flock``, which the kernel drops when the holder dies, so a
killed process never leaves a stale lock behind, only a stale pid that the next holder
overwrites).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

LOCK_NAME = "mpcnet.lock"
_PID_RE = re.compile(r"([1-9][0-9]{0,9})\n?")


class DataDirBusy(RuntimeError):
    """Another process holds the lock; the message names the directory and its pid."""


def _holder(fd: int) -> str:
    try:
        m = _PID_RE.fullmatch(os.pread(fd, 16, 0).decode("ascii", "replace"))
    except OSError:
        m = None
    return f"pid {m.group(1)}" if m else "another process (pid unknown)"


def _lock_one(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _holder(fd)
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DataDirBusy(f"data directory {directory} is in use by {holder} (lock file {path})") from None
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock_file(path: Path) -> int:
    """An exclusive ``flock`` on the store file ``path`` itself, created empty (mode 0600, its
    directory fsynced: what SQLite would create at the first open) if it does not exist yet, so
    that a first start holds it too. The directory lock cannot see a store shared through another path: a symlinked file, a hard
    link or a file bind-mounted into two containers lives in two directories but is one inode, and
    the ``flock`` of two processes on one inode conflicts. The descriptor must stay open while the
    store is open (closing any descriptor of a file drops this process's POSIX locks on it, which
    SQLite uses): :func:`hold_data_dirs` closes it only at the end of its block."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # not O_EXCL: a racing start made it
        try:
            os.fchmod(fd, 0o600)  # exactly, whatever the umask
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except BaseException:
            os.close(fd)
            raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DataDirBusy(
                f"{path} is in use by another process (the same file through another path: a symlink, a hard link or "
                f"a bind mount; one process per store)"
            ) from None
        raise
    return fd


@contextlib.contextmanager
def hold_data_dirs(directories: Iterable[Path], files: Iterable[Path] = ()) -> Iterator[tuple[Path, ...]]:
    """Lock every directory in ``directories`` (deduplicated, in sorted order), then every file in
    ``files`` (the stores themselves, created empty if missing: :func:`_lock_file`), for the duration of the
    ``with`` block; yields the directories. :class:`DataDirBusy` if one is held (the ones already
    taken are released); :class:`OSError` if a lock file cannot be created."""
    dirs = tuple(sorted({Path(d).resolve() for d in directories}))
    fds: list[int] = []
    try:
        for d in dirs:
            fds.append(_lock_one(d))
        for f in sorted({Path(f).resolve() for f in files}):
            fds.append(_lock_file(f))
        yield dirs
    finally:
        for fd in reversed(fds):
            os.close(fd)  # closing the last descriptor releases the flock


def lock_holder(directory: Path) -> int | None:
    """The pid of the live process that holds ``directory``'s lock (0 if it holds it but its pid
    is unreadable), or None if nobody holds it (or there is no lock file). Takes the lock for an
    instant to find out, so call it only when no process is expected to be starting there."""
    path = Path(directory) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                m = _PID_RE.fullmatch(os.pread(fd, 16, 0).decode("ascii", "replace"))
                return int(m.group(1)) if m else 0
            raise
        return None
    finally:
        os.close(fd)  # releases our shared lock, if we took it
