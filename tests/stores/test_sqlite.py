"""The one SQLite helper every store opens its file with: permissions, durability settings,
write transactions and versioned schema migrations."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpcnet.common.stores import sqlite as store_sqlite
from mpcnet.common.stores.sqlite import (
    AddColumn,
    DatabaseError,
    Migration,
    migrate,
    open_database,
    schema_version,
    write_transaction,
)

LOG: tuple[Migration, ...] = (
    ("CREATE TABLE log (n INTEGER PRIMARY KEY AUTOINCREMENT, step TEXT NOT NULL)", "INSERT INTO log (step) VALUES ('one')"),
    ("INSERT INTO log (step) VALUES ('two')",),
    ("CREATE TABLE extra (x INTEGER)", "INSERT INTO log (step) VALUES ('three')"),
)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_database(tmp_path / "s.db")
    try:
        yield c
    finally:
        c.close()


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _steps(c: sqlite3.Connection) -> list[str]:
    return [str(r[0]) for r in c.execute("SELECT step FROM log ORDER BY n")]


def _tables(c: sqlite3.Connection) -> set[str]:
    return {str(r[0]) for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# --- opening ---------------------------------------------------------------------------------


def test_a_new_file_is_0600_whatever_the_umask_and_its_directory_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(store_sqlite, "fsync_dir", lambda d: synced.append(Path(d)))
    path = tmp_path / "new.db"
    old_umask = os.umask(0)
    try:
        c = open_database(path)
    finally:
        os.umask(old_umask)
    try:
        with write_transaction(c):
            c.execute("CREATE TABLE t (x INTEGER)")
        sidecars = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
        assert all(p.exists() for p in sidecars)
        assert [_mode(p) for p in (path, *sidecars)] == [0o600] * 3
    finally:
        c.close()
    assert synced == [tmp_path]
    open_database(path).close()  # an existing file: nothing new to make durable
    assert synced == [tmp_path]


def test_wider_permissions_of_an_existing_file_and_its_sidecars_are_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    legacy = sqlite3.connect(path)  # as a store without the helper left it: 0644 under umask 022
    legacy.execute("PRAGMA journal_mode = WAL")
    legacy.execute("CREATE TABLE t (x INTEGER)")
    legacy.commit()
    files = [path, path.with_name("old.db-wal"), path.with_name("old.db-shm")]
    for p in files:
        os.chmod(p, 0o644)
    try:
        open_database(path).close()
        assert [_mode(p) for p in files] == [0o600] * 3  # the sidecars still exist: legacy is open
    finally:
        legacy.close()


def test_a_file_that_cannot_be_made_private_or_is_not_a_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o666)
    os.chmod(path, 0o666)  # noqa: S103 (the test needs a world-writable file to refuse)

    def refuse(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    with monkeypatch.context() as m:
        m.setattr(os, "fchmod", refuse)
        with pytest.raises(DatabaseError) as e:
            open_database(path)
    assert e.value.field == "path" and "cannot be made 0600" in e.value.reason
    assert _mode(path) == 0o666  # refused, not half-opened
    for not_a_file in (tmp_path / "a-directory", tmp_path / "a-fifo"):
        if not_a_file.name == "a-directory":
            not_a_file.mkdir()
        else:
            os.mkfifo(not_a_file)  # must not block the open
        with pytest.raises(DatabaseError) as e:
            open_database(not_a_file)
        assert e.value.field == "path" and "not a regular file" in e.value.reason


def test_durability_settings(tmp_path: Path) -> None:
    c = open_database(tmp_path / "a.db", secure_delete=True)
    try:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert c.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
        assert c.execute("PRAGMA secure_delete").fetchone()[0] == 1
        assert c.isolation_level is None  # autocommit: writes go through write_transaction
    finally:
        c.close()


def test_not_a_database_and_an_uncreatable_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(DatabaseError) as e:
        open_database(junk)
    assert e.value.field == "database" and "not a usable SQLite database" in e.value.reason
    with pytest.raises(DatabaseError) as e:
        open_database(tmp_path / "missing-dir" / "a.db")
    assert e.value.field == "path" and str(e.value).startswith("path: cannot create")


# --- write transactions ----------------------------------------------------------------------


def test_write_transaction_commits_or_rolls_back_everything(conn: sqlite3.Connection) -> None:
    with write_transaction(conn):
        conn.execute("CREATE TABLE t (x INTEGER UNIQUE)")
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("the caller's own error")
    with pytest.raises(sqlite3.IntegrityError), write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (3)")
        conn.execute("INSERT INTO t VALUES (1)")
    assert not conn.in_transaction
    assert [r[0] for r in conn.execute("SELECT x FROM t")] == [1]


# --- migrations ------------------------------------------------------------------------------


def test_migrations_are_applied_once_and_in_order(conn: sqlite3.Connection) -> None:
    assert schema_version(conn) == 0
    assert migrate(conn, LOG[:2]) == 2
    assert _steps(conn) == ["one", "two"] and "extra" not in _tables(conn)
    assert migrate(conn, LOG[:2]) == 2  # nothing again
    assert migrate(conn, LOG) == 3  # only the new step
    assert _steps(conn) == ["one", "two", "three"] and "extra" in _tables(conn)
    assert migrate(conn, LOG) == 3 and _steps(conn) == ["one", "two", "three"]
    assert schema_version(conn) == 3


def test_a_failing_migration_rolls_back_and_names_the_step(conn: sqlite3.Connection) -> None:
    broken = (*LOG[:2], ("CREATE TABLE extra (x INTEGER)", "INSERT INTO log (step) VALUES ('three')", "INSERT INTO nowhere VALUES (1)"))
    with pytest.raises(DatabaseError) as e:
        migrate(conn, broken)
    assert e.value.field == "database" and "migration 3 failed" in e.value.reason and "nowhere" in e.value.reason
    assert schema_version(conn) == 2  # steps 1 and 2 stay applied, none of step 3
    assert _steps(conn) == ["one", "two"] and "extra" not in _tables(conn)
    assert not conn.in_transaction
    assert migrate(conn, LOG) == 3 and _steps(conn) == ["one", "two", "three"]  # the fixed step applies


def test_a_script_is_not_a_statement(conn: sqlite3.Connection) -> None:
    # a step holds single statements: a ';'-joined script (which a trigger body breaks) is refused
    with pytest.raises(DatabaseError) as e:
        migrate(conn, (("CREATE TABLE a (x INTEGER); CREATE TABLE b (x INTEGER)",),))
    assert "migration 1 failed" in e.value.reason
    assert schema_version(conn) == 0 and not _tables(conn)
    with pytest.raises(TypeError):
        migrate(conn, ("CREATE TABLE a (x INTEGER)",))  # type: ignore[arg-type]  # a step is a tuple
    with pytest.raises(TypeError):
        migrate(conn, ((),))


def test_a_newer_database_is_refused(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA user_version = 4")
    with pytest.raises(DatabaseError) as e:
        migrate(conn, LOG)
    assert "schema version 4 is newer than this program knows (3)" in e.value.reason
    assert "log" not in _tables(conn)


def test_an_old_unversioned_database_upgrades_in_place(tmp_path: Path) -> None:
    # made before versioning: user_version 0, the first layout already there, a column missing
    path = tmp_path / "old.db"
    legacy = sqlite3.connect(path)
    legacy.execute("CREATE TABLE requests (request_id TEXT PRIMARY KEY, served_at INTEGER NOT NULL)")
    legacy.execute("INSERT INTO requests VALUES ('old', 5)")
    legacy.commit()
    legacy.close()
    steps: tuple[Migration, ...] = (
        (
            "CREATE TABLE IF NOT EXISTS requests (request_id TEXT PRIMARY KEY, served_at INTEGER NOT NULL)",
            AddColumn("requests", "served_ms", "INTEGER NOT NULL DEFAULT 0"),
            "CREATE INDEX IF NOT EXISTS requests_by_time ON requests (served_ms)",
        ),
    )
    c = open_database(path)
    try:
        assert migrate(c, steps) == 1
        assert c.execute("SELECT request_id, served_at, served_ms FROM requests").fetchall() == [("old", 5, 0)]
        assert c.execute("SELECT 1 FROM sqlite_master WHERE name = 'requests_by_time'").fetchone()
    finally:
        c.close()
    fresh = open_database(tmp_path / "fresh.db")  # the same steps build the same table from nothing
    try:
        migrate(fresh, steps)
        assert [r[1] for r in fresh.execute("PRAGMA table_info(requests)")] == ["request_id", "served_at", "served_ms"]
        fresh.execute("PRAGMA user_version = 0")  # an AddColumn whose column exists is a no-op
        assert migrate(fresh, steps) == 1
    finally:
        fresh.close()


def test_add_column_checks_its_identifiers(conn: sqlite3.Connection) -> None:
    for bad in ({"table": "t; DROP TABLE x"}, {"column": "Served"}, {"definition": "INTEGER; DROP TABLE x"}):
        with pytest.raises(ValueError):
            AddColumn(**{"table": "t", "column": "c", "definition": "INTEGER", **bad})
    with pytest.raises(DatabaseError) as e:
        migrate(conn, ((AddColumn("missing", "c", "INTEGER"),),))
    assert "no such table: missing" in e.value.reason


def test_concurrent_openers_apply_each_step_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    conns = [open_database(path) for _ in range(4)]
    barrier = threading.Barrier(len(conns))
    errors: list[BaseException] = []

    def run(c: sqlite3.Connection) -> None:
        try:
            barrier.wait()
            migrate(c, LOG)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert _steps(conns[0]) == ["one", "two", "three"]
        assert all(schema_version(c) == 3 for c in conns)
    finally:
        for c in conns:
            c.close()
