"""A config or keystore path that is a FIFO, a device or a huge file is refused at once with one
line (``read_small_file``): before, a FIFO was waited on for ever and ``/dev/zero`` read until
the process ran out of memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mpcnet.common.fsutil import read_small_file
from mpcnet.common.keystore import KeystoreError, load_keystore


def test_a_regular_file_is_read_whole_up_to_the_limit(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    assert read_small_file(p, limit=100) == b"x" * 100
    with pytest.raises(OSError, match="larger than 99 bytes"):
        read_small_file(p, limit=99)


def test_a_fifo_a_device_and_a_directory_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    with pytest.raises(OSError, match=r"not a regular file \(a FIFO\)"):
        read_small_file(tmp_path / "fifo")
    with pytest.raises(OSError, match=r"not a regular file \(a character device\)"):
        read_small_file(tmp_path / "zero")
    with pytest.raises(IsADirectoryError):
        read_small_file(tmp_path)


def test_a_keystore_that_is_a_fifo_is_a_keystore_error_not_a_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "keystore.json")
    with pytest.raises(KeystoreError, match=r"keystore: cannot read .* \(not a regular file \(a FIFO\)\)"):
        load_keystore(tmp_path / "keystore.json", b"passphrase-of-enough-length")


def test_a_tls_file_that_is_a_fifo_is_a_pki_error_not_a_hang(tmp_path: Path) -> None:
    from mpcnet.common.pki import PkiError, _read

    os.mkfifo(tmp_path / "node.crt")
    with pytest.raises(PkiError, match=r"cert: cannot read .* \(not a regular file \(a FIFO\)\)"):
        _read(tmp_path / "node.crt", "cert")
