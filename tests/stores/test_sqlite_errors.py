"""One classifier of storage failures (mpcnet/common/sqlite_errors.py), used by the coordinator's
store_failure and the node's store errors: by SQLite's result code when the error has one (real
errors from a real database below), else by errno, else by SQLite's fixed texts."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import ssl
import stat
from pathlib import Path

import pytest

from coordinator.store_failure import failure_advice, store_failure
from mpc_node.storage import StoreError
from mpcnet.common.sqlite_errors import ADVICE, Fault, Kind, classify, classify_text, describe, operator_message


def _coded(text: str, code: int, cls: type[sqlite3.Error] = sqlite3.OperationalError) -> sqlite3.Error:
    e = cls(text)
    e.sqlite_errorcode = code
    return e


@pytest.mark.parametrize(("code", "kind"), [
    (13, Kind.FULL), (8, Kind.READ_ONLY), (8 | (1 << 8), Kind.READ_ONLY), (10, Kind.IO), (10 | (13 << 8), Kind.IO),
    (5, Kind.LOCKED), (6, Kind.LOCKED), (11, Kind.CORRUPT), (26, Kind.CORRUPT), (14, Kind.DENIED),
    (1, Kind.PROGRAM), (19, Kind.PROGRAM), (21, Kind.PROGRAM), (25, Kind.PROGRAM), (7, Kind.UNKNOWN),
    (4, Kind.PROGRAM), (9, Kind.PROGRAM), (17, Kind.PROGRAM),
])
def test_by_result_code_primary_byte(code: int, kind: Kind) -> None:
    f = classify(_coded("whatever the text says: database or disk is full", code))
    assert f == Fault(kind, code & 0xFF)
    assert f.host is (kind is not Kind.PROGRAM)


@pytest.mark.parametrize(("text", "kind"), [
    ("database or disk is full", Kind.FULL), ("attempt to write a readonly database", Kind.READ_ONLY),
    ("disk I/O error (TEST MODE: injected store fault)", Kind.IO), ("database is locked", Kind.LOCKED),
    ("database disk image is malformed", Kind.CORRUPT), ("file is not a database", Kind.CORRUPT),
    ("unable to open database file", Kind.DENIED), ("no such table: nope", Kind.UNKNOWN),
])
def test_hand_raised_by_text(text: str, kind: Kind) -> None:
    assert classify(sqlite3.OperationalError(text)) == Fault(kind)


def test_codeless_statement_errors_are_the_program() -> None:
    assert classify(sqlite3.IntegrityError("UNIQUE constraint failed")) == Fault(Kind.PROGRAM)
    assert classify(sqlite3.ProgrammingError("Cannot operate on a closed database.")) == Fault(Kind.PROGRAM)


@pytest.mark.parametrize(("err", "kind"), [
    (errno.ENOSPC, Kind.FULL), (errno.EDQUOT, Kind.FULL), (errno.EFBIG, Kind.FULL), (errno.EROFS, Kind.READ_ONLY),
    (errno.EIO, Kind.IO), (errno.EACCES, Kind.DENIED), (errno.ENOENT, Kind.DENIED), (errno.EXDEV, Kind.UNKNOWN),
    (errno.EBADF, Kind.PROGRAM), (errno.EINVAL, Kind.PROGRAM), (errno.EFAULT, Kind.PROGRAM), (errno.ESPIPE, Kind.PROGRAM),
])
def test_os_errors_by_errno(err: int, kind: Kind) -> None:
    assert classify(OSError(err, os.strerror(err))) == Fault(kind, err)


def test_not_storage_errors() -> None:
    assert classify(ConnectionResetError()) is None and classify(TimeoutError()) is None
    assert classify(ValueError("database or disk is full")) is None
    assert store_failure(ConnectionRefusedError()) is None and store_failure(RuntimeError("x")) is None
    # network errors that are OSErrors but no ConnectionError: not the store's failure (never "store failing")
    assert classify(ssl.SSLError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")) is None
    assert classify(socket.gaierror(socket.EAI_NONAME, "Name or service not known")) is None
    for err in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        assert classify(OSError(err, os.strerror(err))) is None, err
    assert classify(sqlite3.NotSupportedError("not supported")) == Fault(Kind.PROGRAM)


def test_real_errors_from_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
    conn.commit()
    with pytest.raises(sqlite3.Error) as e:
        conn.execute("SELECT * FROM nope")
    assert classify(e.value) == Fault(Kind.PROGRAM, 1) and store_failure(e.value) is None
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as e2:
        conn.execute("INSERT INTO t VALUES (1)")
    assert classify(e2.value) == Fault(Kind.PROGRAM, 19)
    conn.close()
    ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as e3:
        ro.execute("INSERT INTO t VALUES (2)")
    assert classify(e3.value) == Fault(Kind.READ_ONLY, 8) and store_failure(e3.value) == "database"
    ro.close()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database file at all" * 100)
    with pytest.raises(sqlite3.DatabaseError) as e4:
        sqlite3.connect(junk).execute("SELECT * FROM sqlite_master")
    assert classify(e4.value) == Fault(Kind.CORRUPT, 26) and store_failure(e4.value) == "database"
    a = sqlite3.connect(db, timeout=0)
    a.execute("BEGIN IMMEDIATE")
    b = sqlite3.connect(db, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as e5:
        b.execute("BEGIN IMMEDIATE")
    assert classify(e5.value) == Fault(Kind.LOCKED, 5)
    a.rollback()
    a.close()
    b.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory modes")
def test_real_cannot_open(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(sqlite3.OperationalError) as e:
            sqlite3.connect(d / "x.db").execute("CREATE TABLE t (a)")
        assert classify(e.value) is not None and classify(e.value).kind in (Kind.DENIED, Kind.READ_ONLY)  # type: ignore[union-attr]
    finally:
        d.chmod(stat.S_IRWXU)


def test_the_node_store_error_carries_its_cause() -> None:
    err = StoreError.of_database(_coded("database or disk is full", 13))
    assert str(err) == "database: database or disk is full" and classify(err) == Fault(Kind.FULL, 13)
    assert classify(StoreError("key_id: must be 32 bytes")) is None


def test_operator_lines_are_one_bounded_escaped_line() -> None:
    e = _coded("database or disk is full\n\x1b[31m" + "x" * 900, 13)
    line = operator_message("data dir /var/lib/x\n\x1b[2J", e)
    assert line.startswith("data dir /var/lib/x [2J: disk full: " + ADVICE[Kind.FULL])
    assert "\n" not in line and "\x1b" not in line and len(line) <= 400
    d = describe(e)
    assert d.startswith("disk full: database or disk is full") and "\x1b" not in d and len(d) <= 300
    assert describe(ValueError("plain")) == "plain"
    assert operator_message("x", ValueError("a\nb")) == "x: a b"
    assert failure_advice(_coded("disk I/O error", 10)) == "I/O error: " + ADVICE[Kind.IO]
    assert failure_advice(sqlite3.OperationalError("no such table: x")) == "" and failure_advice(ValueError()) == ""
    assert classify_text("cannot append: database or disk is full") == Fault(Kind.FULL)
    assert classify_text("something") == Fault(Kind.UNKNOWN)
    assert all(ADVICE[k] and "\n" not in ADVICE[k] for k in Kind)
