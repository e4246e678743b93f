"""One process per keystore: a node or coordinator holds an exclusive ``fcntl.flock`` on its
keystore file while it runs, so a second process whose configuration names the same keystore
(a copied config with other data directories, the same file bind-mounted into two containers)
refuses to start -- it would sign as the same identity -- instead of running beside it.

The lock is taken on the keystore file itself, opened read-only (it works on a read-only secrets
mount; no file is added), after the data-directory locks (:mod:`mpcnet.common.datadir`: a second
start of the *same* configuration is still reported as its busy data directory). The kernel drops
it when the holder dies. The holder's pid is read from ``/proc/locks`` where there is one. A key
rotation replaces the keystore by a rename (a new inode, which the lock on the old one does not
cover): the process replacing it does so with :func:`replace_keystore`, which locks the new file
*before* renaming it into place, so no other process can take the new inode in between (the older
:func:`relock`, after the rename, left that window open).
A keystore path that is (or lies under) a dangling symlink is refused first, naming the link.

Errors: :class:`KeystoreBusy` (exit code :data:`EXIT_BUSY` at start), and
:class:`mpcnet.common.datadir_check.DataDirUnusable` for a dangling symlink.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from mpcnet.common.cliutil import EXIT_BUSY
from mpcnet.common.datadir import DataDirBusy
from mpcnet.common.datadir_check import refuse_dangling
from mpcnet.common.fsutil import fsync_dir, write_atomic

log = logging.getLogger("mpcnet.keystore_lock")
_held: dict[Path, int] = {}  # keystore path (absolute) -> the descriptor holding its flock in this process
_held_lock = threading.Lock()
_LOCK_TRIES = 5  # opens of a keystore replaced (renamed over) while it was being locked


class KeystoreBusy(DataDirBusy):
    """Another process holds the keystore; the message names the file and the holder's pid."""

    exit_code = EXIT_BUSY


def flock_holder(fd: int, locks: Path = Path("/proc/locks")) -> int | None:
    """The pid of the process holding a ``flock`` on the file open as ``fd`` (from ``/proc/locks``,
    matching its device and inode), or None when it cannot be told."""
    st = os.fstat(fd)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        text = locks.read_text("ascii", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF" (a "->" marks a blocked waiter)
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        if parts[5] == dev and parts[4].isdigit():
            return int(parts[4])
    return None


@contextlib.contextmanager
def hold_keystore(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the keystore ``path`` for the ``with`` block.
    :class:`KeystoreBusy` when another process holds it; nothing is locked when the file does
    not exist (the keystore's loader reports that)."""
    path = Path(path)
    refuse_dangling(path, "keystore")
    fd = _lock_current(path)
    if fd is None:
        yield
        return
    try:
        key = Path(os.path.abspath(path))
        with _held_lock:
            outer = _held.get(key)  # a hold of this path around this one (tests): restored at the end
            _held[key] = fd
        try:
            yield
        finally:
            with _held_lock:
                fd = _held.get(key, fd)  # the descriptor now holding it (relock may have moved it)
                if outer is None:
                    _held.pop(key, None)
                else:
                    _held[key] = outer
    finally:
        os.close(fd)  # releases the flock


def _lock_current(path: Path) -> int | None:
    """Open and exclusively ``flock`` the file now at ``path``; the descriptor, or None when there
    is no file. Once locked, the descriptor's inode must still be the one at ``path``: a rotation
    of the process holding the keystore (:func:`replace_keystore`) may have renamed a new file over
    the one opened here and released the old inode's lock in between -- locking that replaced inode
    would let this process run beside the holder. Then the file now at ``path`` is opened again
    (at most :data:`_LOCK_TRIES` times). :class:`KeystoreBusy` when another process holds it."""
    for _ in range(_LOCK_TRIES):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    pid = flock_holder(fd)
                    holder = f"pid {pid}" if pid is not None else "another process (pid unknown)"
                    raise KeystoreBusy(
                        f"keystore {path} is in use by {holder}: one process per keystore (two would sign as one identity)"
                    ) from None
                raise
            locked = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (locked.st_dev, locked.st_ino):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # a replaced file: lock the one now at the path
    raise KeystoreBusy(f"keystore {path} is being replaced by another process (a key rotation): try again")


def relock(path: Path) -> bool:
    """Move this process's lock on the keystore ``path`` to the file now at ``path`` (after this
    process replaced it atomically: a key rotation). True when it holds the new file's lock; False
    when it held none (nothing to do) or the new file is already locked by another process
    (logged: a process started in between; it is refused at its next start)."""
    key = Path(os.path.abspath(path))
    with _held_lock:
        old = _held.get(key)
        if old is None:
            return False
        fd = os.open(key, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            log.error("keystore %s: cannot lock the replaced file (%s): another process holds it", key, e.strerror or e)
            return False
        _held[key] = fd
    if old != fd:
        os.close(old)
    return True


def replace_keystore(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace the keystore ``path`` by ``data`` atomically and durably (like
    :func:`mpcnet.common.fsutil.write_atomic`); when this process holds the keystore's lock, the
    new file is locked before the rename puts it in place and the lock then moves to it, so the
    keystore is never unlocked while this process runs. Raises :class:`OSError` from the writes
    (nothing replaced then)."""
    key = Path(os.path.abspath(path))
    with _held_lock:
        old = _held.get(key)
        if old is None:
            write_atomic(key, data, mode)
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{key.name}.", suffix=".tmp", dir=key.parent)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new inode nobody else has open: never busy
            os.replace(tmp, key)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _held[key] = fd
    os.close(old)
    fsync_dir(key.parent)


__all__ = ["EXIT_BUSY", "KeystoreBusy", "flock_holder", "hold_keystore", "relock", "replace_keystore"]
