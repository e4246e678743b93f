"""Removing the temporary files a killed writer left next to a program's own files.

:func:`mpcnet.common.fsutil.write_atomic` and
:func:`mpcnet.common.keystore_lock.replace_keystore` write ``.<name>.<8 random>.tmp`` in the
target's directory and rename it over ``<name>``; a process killed between the two leaves the
temporary file behind for good (a keystore's one is a sealed copy of the keystore). A server
calls :func:`sweep_stale_temps` at start, holding its data-directory and keystore locks (no
other process of its own writes those files then), with the files it writes.

Only what a killed write of one of the given files leaves is removed: a directory entry whose
name is exactly ``.<name>.<8 characters of [a-z0-9_]>.tmp`` (what :func:`tempfile.mkstemp`
makes with that prefix and suffix) for a target ``<name>`` in that directory, that is a regular
file (never a symlink, which is not followed) owned by this process's effective user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from mpcnet.common.fsutil import fsync_dir

log = logging.getLogger("mpcnet.common.tempsweep")

_TEMP_RE = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")  # tempfile.mkstemp(prefix=".<target>.", suffix=".tmp")


def stale_temp_target(name: str) -> str | None:
    """The target file name whose killed atomic write leaves a file named ``name``, or None."""
    m = _TEMP_RE.fullmatch(name)
    return None if m is None else m.group("target")


def sweep_stale_temps(targets: Iterable[Path]) -> list[Path]:
    """Remove the temporary files killed atomic writes of ``targets`` (file paths) left (see
    the module docstring); returns those removed. A directory that is missing or unreadable is
    skipped, as is a file that vanished or cannot be removed (logged): the start goes on."""
    by_dir: dict[Path, set[str]] = {}
    for t in targets:
        p = Path(os.path.abspath(t))
        by_dir.setdefault(p.parent, set()).add(p.name)
    uid = os.geteuid()
    removed: list[Path] = []
    for directory, names in sorted(by_dir.items()):
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if stale_temp_target(entry.name) not in names:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
                continue
            path = directory / entry.name
            try:
                os.unlink(path)  # removes the name itself (a symlink swapped in meanwhile is not followed)
            except FileNotFoundError:
                continue
            except OSError as e:
                log.warning("cannot remove the stale temporary file %s (%s)", path, e.strerror or type(e).__name__)
                continue
            removed.append(path)
    if removed:
        for d in sorted({p.parent for p in removed}):
            with contextlib.suppress(OSError):
                fsync_dir(d)
        log.warning("removed %d temporary file(s) a killed write left: %s", len(removed), ", ".join(str(p) for p in removed))
    return removed
