"""The node store's memo of key epochs (mpc_node/key_epoch_cache.py): what ``key_epoch`` answers
is always what the database holds, through refresh/reshare commits, leaving, activation,
any other write, rollbacks, closing, and concurrent readers and writers."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from mpc_node.epoch_store import PendingEpoch, _key_epoch
from mpc_node.key_epoch_cache import MAX_KEYS, KeyEpochCache
from mpc_node.storage import NodeStore, StoreError
from tests.conftest import scaled

from .test_storage import KEY_ID, PASS, PUB, RECORD, _open


def _put_active(store: NodeStore) -> None:
    """An active 2-of-2 key with its epoch row (committee 1,2 at epoch 0)."""
    store.put_key_share(KEY_ID, RECORD, label="treasury", public_key=PUB, threshold=2, parties=2, committee=(1, 2))
    store.activate_key(KEY_ID)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    s = _open(tmp_path / "node.db")
    yield s
    s.close()


def _db_epoch(s: NodeStore, key_id: bytes = KEY_ID) -> object:
    with s._read() as c:
        return _key_epoch(c, key_id)


def _pending(epoch: int, session: bytes, committee: tuple[int, ...] = (1, 2)) -> PendingEpoch:
    return PendingEpoch(KEY_ID, session, epoch, 2, committee, b"d" * 32, b"receipt", False, True, False)


def test_a_read_is_kept_and_answered_again(store: NodeStore) -> None:
    _put_active(store)
    first = store.key_epoch(KEY_ID)
    assert first is not None and first.status == "active" and first.epoch == 0
    misses = store._epoch_cache.misses
    assert store.key_epoch(KEY_ID) is first  # the memo's instance, no query
    assert store._epoch_cache.misses == misses and store._epoch_cache.hits >= 1
    assert store.key_epoch(b"\x07" * 32) is None and len(store._epoch_cache) == 1  # absence is not kept


def test_a_refresh_commit_and_a_reshare_commit_are_seen_at_once(store: NodeStore) -> None:
    _put_active(store)
    assert store.key_epoch(KEY_ID).epoch == 0  # type: ignore[union-attr]
    store.put_pending_epoch(_pending(1, b"a" * 32), b"share of epoch 1")
    assert store.key_epoch(KEY_ID).epoch == 0  # type: ignore[union-attr]  # a pending outcome changes nothing yet
    store.commit_epoch(KEY_ID, b"a" * 32, label="treasury", public_key=PUB, epoch=1)
    held = store.key_epoch(KEY_ID)
    assert held == _db_epoch(store) and held is not None and (held.epoch, held.committee) == (1, (1, 2))
    store.put_pending_epoch(_pending(2, b"b" * 32, (1, 2, 3)), b"share of epoch 2")  # a reshare: a new committee
    store.commit_epoch(KEY_ID, b"b" * 32, label="treasury", public_key=PUB, epoch=2)
    held = store.key_epoch(KEY_ID)
    assert held == _db_epoch(store) and held is not None and (held.epoch, held.committee) == (2, (1, 2, 3))


def test_leaving_the_committee_is_seen_at_once(store: NodeStore) -> None:
    _put_active(store)
    assert store.key_epoch(KEY_ID).status == "active"  # type: ignore[union-attr]
    assert store.leave_key(KEY_ID, epoch=1, threshold=2, committee=(2, 3))
    held = store.key_epoch(KEY_ID)
    assert held == _db_epoch(store) and held is not None and (held.status, held.epoch, held.committee) == ("left", 1, (2, 3))


def test_activation_and_a_discarded_pending_key_are_seen_at_once(store: NodeStore) -> None:
    store.put_key_share(KEY_ID, RECORD, label="treasury", public_key=PUB, threshold=2, parties=2)
    assert store.key_epoch(KEY_ID).status == "pending"  # type: ignore[union-attr]
    store.activate_key(KEY_ID)
    assert store.key_epoch(KEY_ID).status == "active"  # type: ignore[union-attr]
    other = b"\x05" * 32
    store.put_key_share(other, RECORD, label="other", public_key=PUB, threshold=2, parties=2)
    assert store.key_epoch(other) is not None
    store.discard_pending_key(other)
    assert store.key_epoch(other) is None


def test_any_other_write_clears_it_and_the_hot_writers_keep_it(store: NodeStore) -> None:
    _put_active(store)
    store.key_epoch(KEY_ID)
    with store._write() as c:  # any writer that does not say otherwise (here: what a future one might do)
        c.execute("UPDATE key_epochs SET epoch = 9 WHERE key_id = ?", (KEY_ID,))
    assert store.key_epoch(KEY_ID).epoch == 9  # type: ignore[union-attr]
    assert len(store._epoch_cache) == 1
    store.probe_write(1)
    store.drop_audit(0)
    store.record_request("r-1", KEY_ID, b"\x01" * 32)
    assert len(store._epoch_cache) == 1  # writes of other tables keep it
    with store._write() as c:  # a plain write, whatever it does: cleared (the safe default)
        c.execute("INSERT OR REPLACE INTO health_probe (id, written_ms) VALUES (1, 2)")
    assert len(store._epoch_cache) == 0


def test_a_read_inside_a_write_is_not_kept_and_a_rollback_leaves_the_committed_state(store: NodeStore) -> None:
    _put_active(store)
    assert store.key_epoch(KEY_ID).epoch == 0  # type: ignore[union-attr]
    with pytest.raises(RuntimeError), store._write() as c:
        c.execute("UPDATE key_epochs SET epoch = 5 WHERE key_id = ?", (KEY_ID,))
        assert store.key_epoch(KEY_ID).epoch == 5  # type: ignore[union-attr]  # its own uncommitted row...
        raise RuntimeError("rolled back")
    assert store.key_epoch(KEY_ID).epoch == 0  # type: ignore[union-attr]  # ...never kept


def test_a_failed_write_and_closing_clear_it(tmp_path: Path) -> None:
    s = _open(tmp_path / "node.db")
    _put_active(s)
    s.key_epoch(KEY_ID)
    s.write_fault = lambda: "disk I/O error"
    with pytest.raises(StoreError):
        s.activate_key(KEY_ID)
    s.write_fault = None
    assert len(s._epoch_cache) == 0
    s.key_epoch(KEY_ID)
    s.close()
    assert len(s._epoch_cache) == 0
    with pytest.raises(StoreError, match="closed"):
        s.key_epoch(KEY_ID)
    # a write by another connection while the store is closed is seen after reopening
    c = sqlite3.connect(tmp_path / "node.db")
    c.execute("UPDATE key_epochs SET epoch = 3 WHERE key_id = ?", (KEY_ID,))
    c.commit()
    c.close()
    with NodeStore.open(tmp_path / "node.db", PASS, 1, scrypt_n=2**10) as s2:
        assert s2.key_epoch(KEY_ID).epoch == 3  # type: ignore[union-attr]


def test_a_commit_by_another_connection_is_seen_at_once(store: NodeStore, tmp_path: Path) -> None:
    _put_active(store)
    assert store.key_epoch(KEY_ID).epoch == 0  # type: ignore[union-attr]
    other = sqlite3.connect(tmp_path / "node.db")  # a tool writing the file while the store is open
    other.execute("UPDATE key_epochs SET epoch = 4, committee = '2,3' WHERE key_id = ?", (KEY_ID,))
    other.commit()
    other.close()
    held = store.key_epoch(KEY_ID)
    assert held == _db_epoch(store) and held is not None and (held.epoch, held.committee) == (4, (2, 3))


def test_the_memo_is_bounded() -> None:
    cache = KeyEpochCache()
    reads: list[bytes] = []

    def read(_c: object, key_id: bytes) -> object:
        reads.append(key_id)
        return ("held", key_id)

    c = sqlite3.connect(":memory:")
    for n in range(MAX_KEYS + 3):
        cache.get(c, n.to_bytes(32, "big"), read)  # type: ignore[arg-type]
    assert len(cache) <= MAX_KEYS and len(reads) == MAX_KEYS + 3


@settings(max_examples=scaled(40), deadline=None)
@given(st.lists(st.sampled_from(["read", "bump", "other-write", "kept-write", "served", "rollback"]), min_size=1, max_size=25))
def test_every_read_answers_the_database(tmp_path_factory: pytest.TempPathFactory, ops: list[str]) -> None:
    with _open(tmp_path_factory.mktemp("kec") / "node.db") as s:
        _put_active(s)
        s.key_epoch(KEY_ID)
        for n, op in enumerate(ops):
            if op == "bump":
                with s._write() as c:
                    c.execute("UPDATE key_epochs SET epoch = epoch + 1 WHERE key_id = ?", (KEY_ID,))
            elif op == "other-write":
                with s._write() as c:
                    c.execute("INSERT OR REPLACE INTO health_probe (id, written_ms) VALUES (1, ?)", (n,))
            elif op == "served":
                s.record_request(f"r-{n}", KEY_ID, b"\x02" * 32)
            elif op == "kept-write":
                s.probe_write(7)
            elif op == "rollback":
                with pytest.raises(RuntimeError), s._write() as c:
                    c.execute("UPDATE key_epochs SET epoch = epoch + 100 WHERE key_id = ?", (KEY_ID,))
                    s.key_epoch(KEY_ID)
                    raise RuntimeError
            assert s.key_epoch(KEY_ID) == _db_epoch(s)


def test_concurrent_readers_never_see_an_epoch_older_than_a_finished_commit(store: NodeStore) -> None:
    _put_active(store)
    committed = [0]  # the last epoch whose commit returned
    stop = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        seen = 0
        while not stop.is_set():
            floor = committed[0]
            held = store.key_epoch(KEY_ID)
            assert held is not None
            if held.epoch < floor or held.epoch < seen:
                errors.append(f"read epoch {held.epoch} after commit {floor} / read {seen}")
            seen = held.epoch

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for e in range(1, 200):
            with store._write() as c:
                c.execute("UPDATE key_epochs SET epoch = ? WHERE key_id = ?", (e, KEY_ID))
            committed[0] = e
            if e % 3 == 0:
                store.probe_write(e)  # a write that keeps the memo, between commits
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert store.key_epoch(KEY_ID).epoch == 199  # type: ignore[union-attr]
