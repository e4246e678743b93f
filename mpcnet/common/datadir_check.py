"""Is a data directory usable at start: one clear line instead of a traceback or a misleading
message when the host's storage fails (disk full, read-only, I/O error, a dangling symlink).

:func:`check_data_dirs` runs before a node or coordinator locks or opens anything: it refuses a
data directory that is (or lies under) a dangling symlink, and writes, fsyncs and removes a probe
file of :data:`PROBE_BYTES` in each existing one, so that a full or read-only file system is
named as such (SQLite would report a full disk met while creating its WAL index as "disk I/O
error", read as a damaged database). :func:`start_failure` turns a storage failure met later in
the start (the store's own writes) into the same kind of line, naming the data directory; it
reads an I/O error in a directory with less than :data:`LOW_SPACE_BYTES` free as a full disk.

Errors: :class:`DataDirUnusable` (a :class:`RuntimeError`, so a server's start reports it as
``cannot start: data dir D: disk full: ...`` and exits non-zero).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from mpcnet.common.sqlite_errors import Fault, Kind, classify, classify_text, fault_message

PROBE_BYTES = 64 * 1024  # written and fsynced at start: room for a transaction and its WAL frames
LOW_SPACE_BYTES = 256 * 1024  # an I/O error with less free than this (bytes) is read as a full disk
PROBE_PREFIX = ".mpcnet-probe-"


class DataDirUnusable(RuntimeError):
    """A data directory cannot be used; the message is one line naming it, the kind of failure
    and what to do."""


def free_bytes(directory: Path) -> int | None:
    """Bytes available to this process in ``directory``'s file system (None if unknown)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def dangling_link(path: Path) -> Path | None:
    """The first component of ``path`` (itself or a parent) that is a symlink whose target does
    not exist, or None."""
    p = Path(os.path.abspath(path))
    for part in (p, *p.parents):
        if part.is_symlink() and not part.exists():
            return part
    return None


def refuse_dangling(path: Path, what: str) -> None:
    """:class:`DataDirUnusable` naming ``what`` and the link when ``path`` or a parent of it is a
    dangling symlink (its target was removed or not mounted)."""
    link = dangling_link(path)
    if link is None:
        return
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    raise DataDirUnusable(fault_message(
        f"{what} {path}", Fault(Kind.DENIED),
        FileNotFoundError(f"{link} is a dangling symlink to {target} (the target does not exist: not mounted or removed)"),
    ))


def probe_write(directory: Path, size: int = PROBE_BYTES) -> None:
    """Create, write ``size`` bytes to, fsync and remove a probe file in ``directory``; the
    :class:`OSError` of the first step that fails (the probe file removed)."""
    path = directory / f"{PROBE_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            block = bytes(min(size, 1 << 16))
            left = size
            while left > 0:
                left -= os.write(fd, block[:left])
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def sweep_probes(directory: Path) -> int:
    """Remove the probe files a killed process left in ``directory`` (``.mpcnet-probe-<pid>-*``
    whose pid no longer runs); returns how many. Only what :func:`probe_write` creates is removed:
    a regular file (never a symlink, so never its target, nor a directory) owned by this user,
    whose pid is ASCII digits; names are read and removed relative to one open descriptor of the
    directory. Errors are ignored (the probe itself reports)."""
    removed = 0
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        try:
            names = [n for n in os.listdir(dfd) if n.startswith(PROBE_PREFIX)]
        except OSError:
            return 0
        for name in names:
            pid_text = name[len(PROBE_PREFIX):].split("-", 1)[0]
            if not (pid_text.isascii() and pid_text.isdigit()) or len(pid_text) > 10:
                continue  # not a name probe_write gives ("²", full-width digits: no pid of ours)
            pid = int(pid_text)
            if pid == os.getpid():
                continue  # this process's own probe, in progress in another thread
            try:
                os.kill(pid, 0)
                continue  # still running (or not ours to signal): its probe is its own
            except ProcessLookupError:
                pass
            except (PermissionError, OverflowError):
                continue
            with contextlib.suppress(OSError):
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                    continue  # a symlink, a directory, another user's file: not a probe of ours
                os.unlink(name, dir_fd=dfd)
                removed += 1
    finally:
        os.close(dfd)
    return removed


def check_data_dirs(directories: Iterable[Path]) -> None:
    """Refuse (:class:`DataDirUnusable`) a data directory under a dangling symlink or one where
    :func:`probe_write` fails; one that does not exist yet is created later by the lock
    (:func:`mpcnet.common.datadir.hold_data_dirs`) and checked by its own writes."""
    for d in _unique(directories):
        refuse_dangling(d, "data dir")
        if not d.is_dir():
            continue
        sweep_probes(d)  # a probe file of a process killed mid-probe
        try:
            probe_write(d)
        except OSError as e:
            raise DataDirUnusable(fault_message(f"data dir {d}", _refined(classify(e), d), e)) from None


def _unique(directories: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for d in directories:
        p = Path(os.path.abspath(d))
        if p not in out:
            out.append(p)
    return out


def _refined(fault: Fault | None, directory: Path) -> Fault | None:
    """A full disk reported as an I/O (or unknown) error: SQLite's WAL index, a short write."""
    if fault is not None and fault.kind in (Kind.IO, Kind.UNKNOWN):
        free = free_bytes(directory)
        if free is not None and free < LOW_SPACE_BYTES:
            return Fault(Kind.FULL, fault.code)
    return fault


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        # a cause hidden on purpose (``raise ... from None``: the message already says it) is not followed
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)


def _under(path: str, directory: Path) -> bool:
    p = os.path.abspath(path)
    return p == str(directory) or p.startswith(str(directory) + os.sep)


def start_failure(directories: Iterable[Path], e: BaseException) -> DataDirUnusable | None:
    """The line for a start that failed with ``e`` when ``e`` -- or an exception it was raised
    from, or while handling unless it hid that (``from None``), or its text -- is the host's
    storage failing in one of ``directories``; None for anything else (a bad passphrase, a port
    in use, a file outside the data directories, a busy data directory: its own line)."""
    if isinstance(e, DataDirUnusable):
        return e
    dirs = _unique(directories)
    for cause in _chain(e):
        fault = classify(cause)
        if isinstance(cause, OSError) and cause.filename is not None:
            named = [d for d in dirs if _under(str(cause.filename), d)]
            if not named:
                continue  # a file elsewhere (a certificate, a log): not a data directory's failure
        if fault is None:
            continue
        if not fault.host or (fault.kind is Kind.UNKNOWN and not _sqlite_like(cause)):
            continue
        return _line(dirs, cause, fault, e)
    text_fault = classify_text(str(e))
    if text_fault.kind is not Kind.UNKNOWN and text_fault.host:
        return _line(dirs, e, text_fault, e)
    return None


def _sqlite_like(e: BaseException) -> bool:
    return isinstance(e, sqlite3.Error) or getattr(e, "storage_fault", None) is not None


def _line(dirs: list[Path], cause: BaseException, fault: Fault, outer: BaseException) -> DataDirUnusable:
    where = dirs[0] if dirs else Path(".")
    filename = getattr(cause, "filename", None)
    low = [d for d in dirs if (free_bytes(d) or 0) < LOW_SPACE_BYTES and d.is_dir()]
    if isinstance(filename, str) and any(_under(filename, d) for d in dirs):
        where = next(d for d in dirs if _under(filename, d))
    elif low and fault.kind in (Kind.FULL, Kind.IO, Kind.UNKNOWN):
        where = low[0]
    else:
        where = next((d for d in dirs if str(d) in str(outer)), where)
    return DataDirUnusable(fault_message(f"data dir {where}", _refined(fault, where), cause))


__all__ = [
    "LOW_SPACE_BYTES", "PROBE_BYTES", "DataDirUnusable", "check_data_dirs", "dangling_link", "free_bytes",
    "probe_write", "refuse_dangling", "start_failure", "sweep_probes",
]
