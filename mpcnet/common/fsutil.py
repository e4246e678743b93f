"""Crash-safe file writes: a killed process leaves either the old file or the new one; and
bounded reads of small files (:func:`read_small_file`: configs, keystores).

The data goes to a temporary file in the same directory, which is fsynced and then renamed over
the target (or, with ``overwrite=False``, hard-linked to it: ``link`` fails if the target
exists, so two concurrent creators cannot clobber each other); finally the directory is fsynced
so the new name itself is durable.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` with permissions ``mode``, atomically and durably.

    With ``overwrite=False`` an existing ``path`` is left alone and :class:`FileExistsError`
    is raised.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)


MAX_SMALL_FILE = 16 * 1024 * 1024  # bytes: the most of a config or keystore read into memory
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))  # fmt: skip


def read_small_file(path: Path, limit: int = MAX_SMALL_FILE) -> bytes:
    """The whole content of the regular file at ``path`` (a symbolic link is followed), at most
    ``limit`` bytes. Never blocks on a FIFO nor reads a device without end (``/dev/zero``): opened
    non-blocking and checked with ``fstat`` on the open descriptor (no race with a rename).

    Raises OSError with a one-line ``strerror``: what ``open`` raises (missing, no permission),
    ``Is a directory``, ``not a regular file (a FIFO)`` and the like, or ``larger than N bytes``
    (also if the file grows past ``limit`` while it is read)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "a special file")
            raise OSError(errno.EINVAL, f"not a regular file ({kind})")
        too_big = OSError(errno.EFBIG, f"larger than {limit} bytes")
        if st.st_size > limit:
            raise too_big
        chunks: list[bytes] = []
        got = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - got)):
            chunks.append(chunk)
            got += len(chunk)
            if got > limit:
                raise too_big
        return b"".join(chunks)
    finally:
        os.close(fd)
