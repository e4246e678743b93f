"""Crash-safe file writes: a killed process leaves either the old file or the new one.

The data goes to a temporary file in the same directory, which is fsynced and then renamed over
the target (or, with ``overwrite=False``, hard-linked to it: ``link`` fails if the target
exists, so two concurrent creators cannot clobber each other); finally the directory is fsynced
so the new name itself is durable.
"""

from __future__ import annotations

import contextlib
import os
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
