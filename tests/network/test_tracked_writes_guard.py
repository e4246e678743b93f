"""Issue 14 (review): the node store's memos (mpc_node/key_epoch_cache.py, mpc_node/served_window.py)
stay exact for writers added later. ``_record_served`` takes the memo as a required argument (the
pre-memo two-argument call is a TypeError, not a silent undercount), and in the test suite a
transaction opened ``tracked`` runs under an authorizer that refuses writes to ``keys``,
``key_epochs`` and ``requests`` other than ``_record_served``'s insert (``GUARD_TRACKED_WRITES``,
turned on in tests/conftest.py), so a writer wrongly marked tracked fails here, not in production."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import mpc_node.storage
from mpc_node.storage import NodeStore, RateLimited, ServedRequest, StoreError, _record_served
from tests.network.test_key_epoch_cache import _put_active
from tests.network.test_storage import KEY_ID, _open

T = 1_800_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    s = _open(tmp_path / "node.db")
    yield s
    s.close()


def test_the_guard_is_on_in_the_suite() -> None:
    assert mpc_node.storage.GUARD_TRACKED_WRITES is True


def test_the_memo_cannot_be_left_out(store: NodeStore) -> None:
    with pytest.raises(TypeError):
        with store._write(tracked=True) as c:
            _record_served(c, ServedRequest("r0", KEY_ID, b"\x01" * 32, T, (3, 3_600_000)))  # type: ignore[call-arg]


def test_tracked_inserts_count_and_the_limit_holds(store: NodeStore) -> None:
    limit = (3, 3_600_000)
    for i in range(3):
        with store._write(tracked=True) as c:
            _record_served(c, ServedRequest(f"r{i}", KEY_ID, b"\x01" * 32, T + i, limit), store._served, lambda i=i: T + i)
    assert store.count_served(KEY_ID, T - 3_600_000) == 3
    with pytest.raises(RateLimited):
        with store._write(tracked=True) as c:
            _record_served(c, ServedRequest("r3", KEY_ID, b"\x01" * 32, T + 3, limit), store._served, lambda: T + 3)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE keys SET status = 'pending' WHERE key_id = ?",
        "DELETE FROM key_epochs WHERE key_id = ?",
        "DELETE FROM requests WHERE key_id = ?",
        "INSERT INTO requests (request_id, key_id, digest, served_at, served_ms) VALUES ('x', ?, x'00', 0, 0)",
    ],
)
def test_a_writer_wrongly_marked_tracked_is_refused(store: NodeStore, sql: str) -> None:
    _put_active(store)
    assert store.key_epoch(KEY_ID).status == "active"  # now in the memo
    with pytest.raises((StoreError, mpc_node.storage.sqlite3.DatabaseError)):
        with store._write(tracked=True) as c:
            c.execute(sql, (KEY_ID,))
    assert store.key_epoch(KEY_ID).status == "active"  # nothing was written


def test_the_same_write_untracked_is_seen(store: NodeStore) -> None:
    _put_active(store)
    assert store.key_epoch(KEY_ID).status == "active"
    with store._write() as c:
        c.execute("UPDATE keys SET status = 'pending' WHERE key_id = ?", (KEY_ID,))
    assert store.key_epoch(KEY_ID).status == "pending"
