"""A host's private directory (``mpc-node init|join``, ``mpc-coordinator init|join``): checks that
it and the files it holds are this user's own, before anything in it is trusted or reused.

``init`` reuses the keys it finds (it is safe to re-run), so a directory prepared by someone
else would hand the host keys that someone knows. :func:`check_private_dir` refuses, naming the
path (:class:`mpcnet.common.enrolment.EnrolmentError`, field ``dir`` or the file's name):

* the directory a symbolic link, not a directory, or owned by another user;
* any of ``files`` present as a symbolic link or not a regular file, or owned by another user;
* any of ``secrets`` present and readable or writable by group or others (mode & 0o077);
* except ``mounted`` secrets (the passphrase: the container entrypoint links it to a mounted
  Secret, deploy/entrypoint.sh), which may be a symbolic link: its target must then be a regular
  file owned by this user or root, not writable by group or others nor readable by others.

It never follows a symbolic link (``lstat``) and changes nothing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from governance.text import quote
from mpcnet.common.enrolment import EnrolmentError


def _owner_check(st: os.stat_result, field: str, path: Path) -> None:
    if st.st_uid != os.geteuid():
        raise EnrolmentError(field, f"{quote(str(path), 200)} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})")


def _check_mounted(path: Path, name: str) -> None:
    try:
        st = path.stat()
    except OSError as e:
        raise EnrolmentError(name, f"{quote(str(path), 200)} links to nothing readable ({e.strerror or type(e).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        raise EnrolmentError(name, f"{quote(str(path), 200)} does not link to a regular file")
    if st.st_uid not in (os.geteuid(), 0):
        raise EnrolmentError(name, f"{quote(str(path), 200)} links to a file owned by uid {st.st_uid}, not by this user or root")
    if st.st_mode & 0o026:
        raise EnrolmentError(
            name, f"{quote(str(path), 200)} links to a file writable by others or readable by everyone "
            f"(mode {stat.S_IMODE(st.st_mode):o})",
        )


def check_private_dir(directory: Path, files: Iterable[str], secrets: Iterable[str], mounted: Iterable[str] = ()) -> None:
    """Refuse a hostile ``directory`` (see the module docstring); a missing directory or file is
    fine (it will be created). EnrolmentError naming ``dir`` or the file."""
    directory = Path(directory)
    try:
        st = directory.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise EnrolmentError("dir", f"{quote(str(directory), 200)} is a symbolic link: give the real directory")
    if not stat.S_ISDIR(st.st_mode):
        raise EnrolmentError("dir", f"{quote(str(directory), 200)} is not a directory")
    _owner_check(st, "dir", directory)
    secret_names, mounted_names = frozenset(secrets), frozenset(mounted)
    for name in (*files, *secret_names):
        path = directory / name
        try:
            fst = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(fst.st_mode) and name in mounted_names:
            _check_mounted(path, name)
            continue
        if stat.S_ISLNK(fst.st_mode):
            raise EnrolmentError(name, f"{quote(str(path), 200)} is a symbolic link: refused (a host's files live in its directory)")
        if not stat.S_ISREG(fst.st_mode):
            raise EnrolmentError(name, f"{quote(str(path), 200)} is not a regular file")
        _owner_check(fst, name, path)
        if name in secret_names and fst.st_mode & 0o077:
            raise EnrolmentError(
                name, f"{quote(str(path), 200)} is readable or writable by others (mode {stat.S_IMODE(fst.st_mode):o}): "
                "its key may be known; make new keys in a fresh directory",
            )
