"""mpcnet.common.stores.commit_count: every successful write_transaction COMMIT is counted once
(N writes count N commits; a rolled-back one none), the metric exports the count, and the opt-in
commit log writes one sanitised line per commit."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpcnet.common.metrics import Metrics, exported_families
from mpcnet.common.stores import commit_count
from mpcnet.common.stores.commit_count import commits_total
from mpcnet.common.stores.sqlite import migrate, open_database, write_transaction


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_database(tmp_path / "store.db")
    migrate(c, (("CREATE TABLE t (x INTEGER NOT NULL)",),))
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _no_log() -> Iterator[None]:
    yield
    commit_count.close_log()


def test_n_writes_count_n_commits(conn: sqlite3.Connection) -> None:
    before = commits_total()
    for i in range(7):
        with write_transaction(conn) as c:
            c.execute("INSERT INTO t VALUES (?)", (i,))
    assert commits_total() - before == 7


def test_a_rolled_back_or_failed_transaction_is_not_counted(conn: sqlite3.Connection) -> None:
    before = commits_total()
    with pytest.raises(RuntimeError), write_transaction(conn) as c:
        c.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("body fails")
    with pytest.raises(sqlite3.IntegrityError), write_transaction(conn) as c:
        c.execute("INSERT INTO t VALUES (NULL)")
    assert commits_total() == before
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0


def test_a_migration_step_is_a_commit(tmp_path: Path) -> None:
    c = open_database(tmp_path / "m.db")
    before = commits_total()
    migrate(c, (("CREATE TABLE a (x)",), ("CREATE TABLE b (x)",)))
    c.close()
    assert commits_total() - before == 2


def test_concurrent_writers_lose_no_count(tmp_path: Path) -> None:
    paths = [tmp_path / f"w{i}.db" for i in range(4)]
    conns = [open_database(p) for p in paths]
    for c in conns:
        migrate(c, (("CREATE TABLE t (x)",),))
    before = commits_total()

    def write(c: sqlite3.Connection) -> None:
        for i in range(10):
            with write_transaction(c) as tx:
                tx.execute("INSERT INTO t VALUES (?)", (i,))

    threads = [threading.Thread(target=write, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    assert commits_total() - before == 40


def test_the_metric_is_exported_only_when_asked(conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commit_count, "_metric_on", False)
    assert "mpcnet_store_commits" not in Metrics("node").render().decode()
    assert "mpcnet_store_commits" not in exported_families("coordinator")


def test_the_metric_exports_the_count(conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commit_count, "_metric_on", True)
    for component in ("node", "coordinator"):
        m = Metrics(component)
        with write_transaction(conn) as c:
            c.execute("INSERT INTO t VALUES (1)")
        (line,) = [x for x in m.render().decode().splitlines() if x.startswith("mpcnet_store_commits_total ")]
        assert float(line.split()[1]) == commits_total()


def test_the_commit_log_has_one_sanitised_line_per_commit(conn: sqlite3.Connection, tmp_path: Path) -> None:
    logdir = tmp_path / "log"
    logdir.mkdir()
    commit_count.open_log(logdir)
    done = threading.Event()

    def write() -> None:
        with write_transaction(conn) as c:
            c.execute("INSERT INTO t VALUES (2)")
        done.set()

    with write_transaction(conn) as c:
        c.execute("INSERT INTO t VALUES (1)")
    t = threading.Thread(target=write, name="sign-ab cd\n$(x)")  # a hostile thread name
    t.start()
    t.join()
    assert done.is_set()
    commit_count.close_log()
    with write_transaction(conn) as c:  # after close: counted, not logged
        c.execute("INSERT INTO t VALUES (3)")
    log = logdir / f"commits-{os.getpid()}.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert re.fullmatch(r"[0-9]{19} store\.db [A-Za-z0-9._-]{1,64}", line), line
    assert lines[1].split()[2] == "sign-ab_cd___x_"
    assert int(lines[0].split()[0]) <= int(lines[1].split()[0])


def test_an_unwritable_log_never_fails_a_commit(conn: sqlite3.Connection, tmp_path: Path) -> None:
    logdir = tmp_path / "log"
    logdir.mkdir()
    commit_count.open_log(logdir)
    assert commit_count._log_fd is not None
    os.close(commit_count._log_fd)
    commit_count._log_fd = os.open(os.devnull, os.O_RDONLY)  # writes to it fail (EBADF)
    bad = commit_count._log_fd
    before = commits_total()
    with write_transaction(conn) as c:
        c.execute("INSERT INTO t VALUES (1)")
    assert commits_total() == before + 1
    assert commit_count._log_fd is None  # switched off
    os.close(bad)


def test_the_environment_variable_turns_on_metric_and_log(tmp_path: Path) -> None:
    code = (
        "from mpcnet.common.stores import commit_count as c; from mpcnet.common.metrics import Metrics; "
        "print(c.metric_enabled(), c._log_fd is not None, 'mpcnet_store_commits_total' in Metrics('node').render().decode())"
    )
    env = {k: v for k, v in os.environ.items() if k != commit_count.ENV}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    on = subprocess.run([sys.executable, "-c", code], env={**env, commit_count.ENV: str(tmp_path)},
                        capture_output=True, text=True, check=True)
    assert off.stdout.split() == ["False", "False", "False"]
    assert on.stdout.split() == ["True", "True", "True"]


def _log_lines(logdir: Path) -> list[str]:
    return (logdir / f"commits-{os.getpid()}.log").read_text().splitlines()


def test_the_database_name_is_read_once_per_connection(tmp_path: Path) -> None:
    logdir = tmp_path / "log"
    logdir.mkdir()
    commit_count.open_log(logdir)
    a = open_database(tmp_path / "a.db")
    b = open_database(tmp_path / "b.db")
    pragmas: list[str] = []
    for c in (a, b):
        c.set_trace_callback(lambda sql: pragmas.append(sql) if "database_list" in sql else None)
    for _ in range(3):
        for c in (a, b):
            with write_transaction(c):
                pass
    assert len(pragmas) == 2  # one per connection, not one per commit
    assert [line.split()[1] for line in _log_lines(logdir)] == ["a.db", "b.db"] * 3
    a.close()
    b.close()


def test_a_new_connection_is_never_named_after_a_closed_one(tmp_path: Path) -> None:
    # a plain id() cache could give a new connection at a reused address the old one's name; the
    # cache holds each named connection, so its id stays taken while the entry lives
    logdir = tmp_path / "log"
    logdir.mkdir()
    commit_count.open_log(logdir)
    expected = []
    for i in range(commit_count._NAMES_MAX + 8):  # more than the cache holds: entries are evicted
        c = open_database(tmp_path / f"db{i}.db")
        with write_transaction(c):
            pass
        c.close()
        del c
        expected.append(f"db{i}.db")
    assert [line.split()[1] for line in _log_lines(logdir)] == expected
    assert len(commit_count._names) <= commit_count._NAMES_MAX
    commit_count.close_log()
    assert not commit_count._names  # closing the log releases the connections


def test_concurrent_commits_on_many_connections_name_each_right(tmp_path: Path) -> None:
    logdir = tmp_path / "log"
    logdir.mkdir()
    commit_count.open_log(logdir)
    conns = [open_database(tmp_path / f"c{i}.db") for i in range(6)]

    def work(i: int) -> None:
        for _ in range(20):
            with write_transaction(conns[i]):
                pass

    threads = [threading.Thread(target=work, args=(i,), name=f"w{i}") for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = _log_lines(logdir)
    assert len(lines) == 120
    for line in lines:
        _, db, thread = line.split()
        assert db == f"c{thread[1:]}.db"
    for c in conns:
        c.close()
