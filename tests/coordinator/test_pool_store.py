"""The coordinator's presigs table (issue 14, coordinator/pool_store.py): the assignment is a
compare-and-set taken with the request's attempt number; a presig_id is assigned at most once,
ever (two concurrent assigners on separate connections, a restart, a direct write)."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest

from coordinator.db import CoordinatorDb
from coordinator.pool_store import PresigRow
from governance.reservation import MAX_SIGN_ATTEMPTS

KEY = hashlib.sha256(b"pool key").digest()
R = bytes([2]) + bytes(32)
PK = bytes([3]) + bytes(32)


def _rows(n: int, signers: tuple[int, ...] = (1, 2), tag: bytes = b"p", epoch: int = 0, path: tuple[int, ...] = ()) -> list[PresigRow]:
    return [PresigRow(hashlib.sha256(tag + b"%d" % i).digest(), KEY, epoch, path, signers, R, PK) for i in range(n)]


def test_assign_takes_the_attempt_number_in_the_same_transaction(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    db.add_ready_presigs(_rows(3), 1)
    a = db.assign_presig("req-1", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 2)
    assert a is not None and (a.state, a.request_id, a.attempt) == ("assigned", "req-1", 1)
    assert db.sign_attempts_taken("req-1") == 1
    assert db.next_sign_attempt("req-1") == 2  # the full protocol continues after it
    assert db.presig_assigned_to("req-1") == a
    assert db.assign_presig("req-1", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 3) is None  # one at a time per request
    db.discard_presigs([a.presig_id], "failed", 3)  # it fell back
    b = db.assign_presig("req-1", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 3)
    assert b is not None and b.attempt == 3 and b.presig_id != a.presig_id
    db.discard_presigs([b.presig_id], "failed", 4)
    assert db.assign_presig("req-1", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 4) is None  # attempts exhausted
    assert db.sign_attempts_taken("req-1") == MAX_SIGN_ATTEMPTS
    assert len(db.ready_presigs()) == 1  # nothing taken by the refused one


def test_assign_matches_key_epoch_path_and_signer_set_in_preference_order(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    db.add_ready_presigs(_rows(1, (1, 2), b"a") + _rows(1, (2, 3), b"b") + _rows(1, (1, 3), b"c", path=(5,)), 1)
    assert db.assign_presig("r1", KEY, 1, (), [(1, 2), (2, 3)], MAX_SIGN_ATTEMPTS, 2) is None  # another epoch
    assert db.assign_presig("r1", KEY, 0, (7,), [(1, 3)], MAX_SIGN_ATTEMPTS, 2) is None  # another path
    a = db.assign_presig("r1", KEY, 0, (), [(1, 3), (2, 3), (1, 2)], MAX_SIGN_ATTEMPTS, 2)
    assert a is not None and a.signers == (2, 3)  # the first set that has one
    b = db.assign_presig("r2", KEY, 0, (5,), [(1, 3)], MAX_SIGN_ATTEMPTS, 2)
    assert b is not None and b.path == (5,)
    assert db.sign_attempts_taken("r1") == 1 and db.sign_attempts_taken("r2") == 1


def test_two_concurrent_assigners_never_get_the_same_presignature(tmp_path: Path) -> None:
    """Two coordinator processes' connections (an old and a new one) assign from one pool at
    once: every presignature goes to at most one request, and each request gets at most one."""
    path = tmp_path / "c.db"
    CoordinatorDb(path).add_ready_presigs(_rows(40), 1)
    dbs = [CoordinatorDb(path), CoordinatorDb(path)]
    got: dict[str, bytes] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def assigner(w: int) -> None:
        barrier.wait()
        for i in range(30):
            for _ in range(50):  # the other connection may hold the write lock: retry
                try:
                    a = dbs[w].assign_presig(f"req-{i}", KEY, 0, (), [(1, 2)], 1, 2)
                    break
                except sqlite3.OperationalError:
                    continue
            if a is not None:
                with lock:
                    assert f"req-{i}" not in got  # one attempt per request: the other got None
                    got[f"req-{i}"] = a.presig_id

    threads = [threading.Thread(target=assigner, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 30 and len(set(got.values())) == 30
    rows = dbs[0]._query("SELECT request_id, COUNT(*) FROM presigs WHERE state = 'assigned' GROUP BY request_id")
    assert all(n == 1 for _, n in rows) and len(rows) == 30
    assert len(dbs[0].ready_presigs()) == 10


def test_a_presig_id_is_assigned_at_most_once_across_restarts_and_direct_writes(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = CoordinatorDb(path)
    rows = _rows(2)
    db.add_ready_presigs(rows, 1)
    a = db.assign_presig("req-1", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 2)
    assert a is not None
    db.close()
    db = CoordinatorDb(path)  # a restart: the assignment is durable, resent, never given again
    assert db.presig_assigned_to("req-1") == a
    b = db.assign_presig("req-2", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 3)
    assert b is not None and b.presig_id != a.presig_id
    assert db.assign_presig("req-3", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 3) is None
    with pytest.raises(sqlite3.IntegrityError):  # re-inserting a known id (as ready again) fails
        db.add_ready_presigs([rows[0]], 4)
    for sql in (
        "UPDATE presigs SET request_id = 'req-9', attempt = 1 WHERE presig_id = ?",  # reassign
        "UPDATE presigs SET state = 'ready' WHERE presig_id = ?",  # back to ready ...
        "DELETE FROM presigs WHERE presig_id = ?",  # ... or gone, to be inserted again
    ):
        with pytest.raises(sqlite3.IntegrityError, match="presignature"), db._tx() as c:
            c.execute(sql, (a.presig_id,))
    assert db.discard_presigs([a.presig_id], "failed", 5) == 1
    with pytest.raises(sqlite3.IntegrityError), db._tx() as c:  # discarded is final
        c.execute("UPDATE presigs SET state = 'assigned' WHERE presig_id = ?", (a.presig_id,))
    with db._tx() as c:  # a discarded one is never marked used
        assert not db.mark_presig_used(c, a.presig_id, "req-1", 6)


def test_used_is_marked_in_the_done_transaction_and_counted(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    db.add_ready_presigs(_rows(3) + _rows(1, (2, 3), b"q"), 1)
    a = db.assign_presig("req-1", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 2)
    assert a is not None
    assert db.presigs_ready_of_key(KEY) == 3
    assert db.pool_counts() == {(KEY, 0, (), (1, 2)): {"ready": 2, "assigned": 1}, (KEY, 0, (), (2, 3)): {"ready": 1, "assigned": 0}}
    with db._tx() as c:
        assert not db.mark_presig_used(c, a.presig_id, "req-2", 3)  # not its request
        assert db.mark_presig_used(c, a.presig_id, "req-1", 3)
    assert db.signed_presigned("req-1") and not db.signed_presigned("req-2")
    assert db.presig_assigned_to("req-1") is None
    b = db.ready_presigs()[0]
    assert db.presigs_live([a.presig_id, b.presig_id, b"x" * 32]) == {b.presig_id}  # used: not live


def test_a_discard_leaves_used_ones(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    rows = _rows(2)
    db.add_ready_presigs(rows, 1)
    a = db.assign_presig("req-1", KEY, 0, (), [(1, 2)], MAX_SIGN_ATTEMPTS, 2)
    assert a is not None
    with db._tx() as c:
        db.mark_presig_used(c, a.presig_id, "req-1", 3)
    assert db.discard_presigs([r.presig_id for r in rows], "epoch", 4) == 1
    assert db.signed_presigned("req-1") and db.ready_presigs() == []
