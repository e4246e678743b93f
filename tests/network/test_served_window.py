"""The node store's memo of served times (mpc_node/served_window.py): every rate-limit count
answers exactly what the SQL ``COUNT(*)`` answers, through commits, rollbacks, writes it does not
track, other connections, windows that grow and shrink, out-of-order and later-than-now times,
and concurrent threads; and a count no longer grows with the requests in the window."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from mpc_node.served_window import ServedWindows, sql_count
from mpc_node.storage import NodeStore, RateLimited, ServedRequest, _record_served
from tests.conftest import scaled

from .test_storage import KEY_ID, _id, _open

OTHER = _id(77)
T = 1_800_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    s = _open(tmp_path / "node.db")
    yield s
    s.close()


def _sql(s: NodeStore, key_id: bytes, since: int) -> int:
    with s._read() as c:
        return sql_count(c, key_id, since)


def _serve(s: NodeStore, rid: str, at: int, key_id: bytes = KEY_ID, limit: tuple[int, int] | None = None) -> None:
    """Record ``rid`` served at ``at`` (Unix ms) through the consume path's transaction kind."""
    with s._write(tracked=True) as c:
        _record_served(c, ServedRequest(rid, key_id, b"\x01" * 32, at, limit), s._served, lambda at=at: at)


def test_counts_follow_commits_and_the_window(store: NodeStore) -> None:
    for i in range(10):
        _serve(store, f"r{i}", T + i * 1000)
    assert store.count_served(KEY_ID, T + 4500) == 5 == _sql(store, KEY_ID, T + 4500)
    _serve(store, "late", T + 10**7)  # later than now: counts
    _serve(store, "early", T + 4700)  # out of order, inside the window
    assert store.count_served(KEY_ID, T + 4500) == 7 == _sql(store, KEY_ID, T + 4500)
    assert store.count_served(KEY_ID, T + 5000) == 5  # the window moves on
    assert store.count_served(KEY_ID, T - 1) == 12 == _sql(store, KEY_ID, T - 1)  # a longer window: reloaded
    assert store.count_served(OTHER, T - 1) == 0
    assert store._served.hits >= 1 and store._served.loads >= 2


def test_concurrent_clocks_a_little_apart_do_not_reload(store: NodeStore) -> None:
    for i in range(100):
        _serve(store, f"r{i}", T + i * 1000)
    assert store.count_served(KEY_ID, T + 50_500) == 49
    loads = store._served.loads
    assert store.count_served(KEY_ID, T + 90_500) == 9  # the window moves on
    assert store.count_served(KEY_ID, T + 40_500) == 59 == _sql(store, KEY_ID, T + 40_500)  # an earlier clock
    assert store._served.loads == loads  # within SLACK_MS: no reload
    assert store.count_served(KEY_ID, T + 500) == 99 == _sql(store, KEY_ID, T + 500)  # further back: reloaded
    assert store._served.loads == loads + 1


def test_a_rolled_back_insert_never_counts_and_its_own_transaction_sees_it(store: NodeStore) -> None:
    _serve(store, "a", T)
    assert store.count_served(KEY_ID, T - 1) == 1
    with pytest.raises(RuntimeError), store._write(tracked=True) as c:
        _record_served(c, ServedRequest("b", KEY_ID, b"\x02" * 32, T + 1), store._served, lambda: T + 1)
        assert store._served.count(c, KEY_ID, T - 1) == 2 == sql_count(c, KEY_ID, T - 1)  # as SQL sees it
        raise RuntimeError("the consume failed after the insert")
    assert store.count_served(KEY_ID, T - 1) == 1 == _sql(store, KEY_ID, T - 1)


def test_the_rate_limit_in_the_transaction_uses_it_exactly(store: NodeStore) -> None:
    for i in range(3):
        _serve(store, f"r{i}", T + i, limit=(3, 10_000))
    with pytest.raises(RateLimited):
        _serve(store, "r3", T + 3, limit=(3, 10_000))
    _serve(store, "r4", T + 10_001, limit=(3, 10_000))  # r0 at T left the window (served_ms > T + 1 counts)
    assert store.count_served(KEY_ID, T + 1) == 2 == _sql(store, KEY_ID, T + 1)


def test_writes_it_does_not_track_and_other_connections_are_seen(store: NodeStore, tmp_path: Path) -> None:
    _serve(store, "a", T)
    assert store.count_served(KEY_ID, T - 1) == 1
    with store._write() as c:  # an untracked writer inserting directly
        c.execute("INSERT INTO requests (request_id, key_id, digest, served_at, served_ms) VALUES ('b', ?, ?, 0, ?)",
                  (KEY_ID, b"\x03" * 32, T + 5))
    assert store.count_served(KEY_ID, T - 1) == 2
    other = sqlite3.connect(tmp_path / "node.db")  # another process or tool writing the file
    other.execute("INSERT INTO requests (request_id, key_id, digest, served_at, served_ms) VALUES ('c', ?, ?, 0, ?)",
                  (KEY_ID, b"\x04" * 32, T + 6))
    other.commit()
    assert store.count_served(KEY_ID, T - 1) == 3
    other.execute("DELETE FROM requests WHERE request_id = 'a'")
    other.commit()
    other.close()
    assert store.count_served(KEY_ID, T - 1) == 2 == _sql(store, KEY_ID, T - 1)


def test_a_count_is_flat_in_the_requests_of_the_window(store: NodeStore, tmp_path: Path) -> None:
    c = sqlite3.connect(tmp_path / "node.db")
    c.executemany("INSERT INTO requests (request_id, key_id, digest, served_at, served_ms) VALUES (?, ?, ?, 0, ?)",
                  [(f"bulk{i}", KEY_ID, b"\0" * 32, T + i) for i in range(50_000)])
    c.commit()
    c.close()
    assert store.count_served(KEY_ID, T - 1) == 50_000  # one load
    t0 = time.perf_counter()
    for k in range(200):
        assert store.count_served(KEY_ID, T + k) == 50_000 - k - 1
    per_count = (time.perf_counter() - t0) / 200
    assert per_count < 0.0005, per_count  # SQL's COUNT(*) over 50,000 index entries takes ~2 ms


def test_the_memo_is_bounded_and_cleared_on_close(store: NodeStore) -> None:
    memo = ServedWindows()
    with store._read() as c:
        for n in range(1030):
            memo.count(c, _id(n + 1000), T)
    assert len(memo) <= 1024
    _serve(store, "a", T)
    store.count_served(KEY_ID, T - 1)
    store.close()
    assert len(store._served) == 0


OPS = st.one_of(
    st.tuples(st.just("serve"), st.sampled_from([KEY_ID, OTHER]), st.integers(-50, 50)),
    st.tuples(st.just("count"), st.sampled_from([KEY_ID, OTHER]), st.integers(-60, 60)),
    st.tuples(st.just("rollback"), st.sampled_from([KEY_ID, OTHER]), st.integers(-50, 50)),
    st.tuples(st.just("untracked"), st.sampled_from([KEY_ID, OTHER]), st.integers(-50, 50)),
    st.tuples(st.just("external"), st.sampled_from([KEY_ID, OTHER]), st.integers(-50, 50)),
)


@settings(max_examples=scaled(60), deadline=None)
@given(st.lists(OPS, min_size=1, max_size=40))
def test_every_count_is_the_sql_count(tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, bytes, int]]) -> None:
    path = tmp_path_factory.mktemp("sw") / "node.db"
    with _open(path) as s:
        for n, (op, key_id, dt) in enumerate(ops):
            at = T + dt
            if op == "serve":
                _serve(s, f"s{n}", at, key_id)
            elif op == "rollback":
                with pytest.raises(RuntimeError), s._write(tracked=True) as c:
                    _record_served(c, ServedRequest(f"x{n}", key_id, b"\x05" * 32, at), s._served, lambda at=at: at)
                    raise RuntimeError
            elif op == "untracked":
                with s._write() as c:
                    c.execute("INSERT INTO requests (request_id, key_id, digest, served_at, served_ms) VALUES (?, ?, ?, 0, ?)",
                              (f"u{n}", key_id, b"\x06" * 32, at))
            elif op == "external":
                other = sqlite3.connect(path)
                other.execute("INSERT INTO requests (request_id, key_id, digest, served_at, served_ms) VALUES (?, ?, ?, 0, ?)",
                              (f"e{n}", key_id, b"\x07" * 32, at))
                other.commit()
                other.close()
            else:
                assert s.count_served(key_id, at) == _sql(s, key_id, at)
            for k in (KEY_ID, OTHER):
                assert s.count_served(k, T + dt) == _sql(s, k, T + dt)


def test_concurrent_servers_and_counters_always_agree_with_sql(store: NodeStore) -> None:
    stop = threading.Event()
    errors: list[str] = []

    def counter() -> None:
        while not stop.is_set():
            with store._read() as c:  # both under the store's lock: the same database state
                memo, sql = store._served.count(c, KEY_ID, T + 100), sql_count(c, KEY_ID, T + 100)
            if memo != sql:
                errors.append(f"memo {memo} != sql {sql}")

    def server(base: int) -> None:
        for i in range(150):
            _serve(store, f"w{base}-{i}", T + 50 + (i * 7 + base) % 200)

    counters = [threading.Thread(target=counter) for _ in range(3)]
    servers = [threading.Thread(target=server, args=(b,)) for b in range(3)]
    for t in counters + servers:
        t.start()
    for t in servers:
        t.join()
    stop.set()
    for t in counters:
        t.join()
    assert not errors, errors[:3]
    assert store.count_served(KEY_ID, T + 100) == _sql(store, KEY_ID, T + 100)
