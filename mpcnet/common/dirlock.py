"""One writer at a time in a host's private directory during ``init`` (issue 13, R2).

:func:`exclusive_directory` takes an exclusive ``fcntl.flock`` on the directory itself (its open
descriptor: no lock file is added to the directory), waiting for a holder to finish. Two
``mpc-node init`` runs of the same directory (two operators, a supervisor's retry) therefore run
one after the other: the second finds the first's keys and returns the same request, instead of
both generating a key pair in the token under one label (which no later open could choose
between). The kernel drops the lock when its holder dies, so a killed ``init`` never blocks the
next. It is a different lock from the running process's ``DIR/mpcnet.lock``
(:mod:`mpcnet.common.datadir`): re-running ``init`` next to a running node stays allowed (it
writes only missing files).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive_directory(directory: Path) -> Iterator[Path]:
    """Hold an exclusive flock on ``directory`` (which must exist) for the ``with`` block, waiting
    for another holder. Raises :class:`OSError` if it cannot be opened."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield Path(directory)
    finally:
        os.close(fd)  # releases the flock
