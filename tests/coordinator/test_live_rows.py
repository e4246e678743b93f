"""The coordinator's periodic and per-signature queries over ``presigs`` and ``frost_nonces``
(issue 14, coordinator/live_rows.py) cost what the live rows cost, not the history (used,
discarded, assigned-and-spent rows are kept for ever), and find exactly what the queries before
schema step 9 found.

Cost is counted in SQLite virtual-machine steps (``set_progress_handler`` with N = 1) on both of
the database's connections: a scan's steps grow with the table, a partial index's do not."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from coordinator.db import _MIGRATIONS, CoordinatorDb
from coordinator.frost_nonce_sync import NonceSync
from coordinator.live_rows import NONCE_LIVE, PRESIG_LIVE
from mpcnet.common.stores.sqlite import migrate
from tests.test_suite_settings import scaled

KEYS = (hashlib.sha256(b"live key 1").digest(), hashlib.sha256(b"live key 2").digest())
R = bytes([2]) + bytes(32)
PK = bytes([3]) + bytes(32)
ENDED = ("done", "rejected", "expired", "failed")
SR_STATES = ("pending_approval", "signing", *ENDED)


def _pid(tag: str, i: int) -> bytes:
    return hashlib.sha256(f"{tag}-{i}".encode()).digest()


def _presig(c: sqlite3.Connection, pid: bytes, key: bytes, state: str, request_id: str = "", signers: str = "1,2",
            epoch: int = 0, created: int = 1) -> None:
    c.execute(
        "INSERT INTO presigs (presig_id, key_id, epoch, path, signers, big_r, public_key, state, request_id, attempt,"
        " created_ms, updated_ms) VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?)",
        (pid, key, epoch, signers, R, PK, state, request_id, 1 if request_id else 0, created, created),
    )


def _nonce(c: sqlite3.Connection, nid: bytes, key: bytes, node: int, state: str, request_id: str = "", epoch: int = 0,
           created: int = 1) -> None:
    c.execute(
        "INSERT INTO frost_nonces (nonce_id, key_id, epoch, node, hiding, binding, state, request_id, attempt, created_ms,"
        " updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (nid, key, epoch, node, R, PK, state, request_id, 1 if request_id else 0, created, created),
    )


def _request(c: sqlite3.Connection, request_id: str, state: str) -> None:
    c.execute(
        "INSERT INTO sign_requests (request_id, key_id, digest, requester, request, scope, state, created_ms, expires_ms,"
        " updated_ms) VALUES (?, ?, ?, 'alice', x'', x'', ?, 1, 2, 1)",
        (request_id, KEYS[0], bytes(32), state),
    )


def _history(db: CoordinatorDb, n: int, tag: str) -> None:
    """``n`` signatures' worth of history: per signature an ended request with a used
    presignature and two spent nonce commitments, plus a discarded presignature and nonce."""
    with db._tx() as c:
        for i in range(n):
            rid = f"{tag}-{i}"
            _request(c, rid, ENDED[i % len(ENDED)])
            _presig(c, _pid(tag + "u", i), KEYS[i % 2], "used", rid)
            _presig(c, _pid(tag + "d", i), KEYS[i % 2], "discarded")
            for node in (1, 2):
                _nonce(c, _pid(f"{tag}n{node}", i), KEYS[i % 2], node, "assigned", rid)
            _nonce(c, _pid(tag + "nd", i), KEYS[i % 2], 3, "discarded")


def _live(db: CoordinatorDb) -> None:
    """A fixed set of live rows: ready and assigned presignatures (one of an ended request),
    fresh commitments of three nodes."""
    with db._tx() as c:
        for i in range(6):
            _presig(c, _pid("ready", i), KEYS[i % 2], "ready", created=10 + i)
        _request(c, "live-signing", "signing")
        _presig(c, _pid("assigned", 0), KEYS[0], "assigned", "live-signing")
        _request(c, "live-ended", "expired")
        _presig(c, _pid("assigned", 1), KEYS[0], "assigned", "live-ended")
        for i in range(9):
            _nonce(c, _pid("fresh", i), KEYS[i % 2], 1 + i % 3, "fresh", created=10 + i)


@contextmanager
def _steps(db: CoordinatorDb) -> Iterator[list[int]]:
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    for conn in (db._conn, db._rconn):
        conn.set_progress_handler(tick, 1)
    try:
        yield count
    finally:
        for conn in (db._conn, db._rconn):
            conn.set_progress_handler(None, 1)


def _cost(db: CoordinatorDb, call: Callable[[], object]) -> int:
    with _steps(db) as count:
        call()
    return count[0]


def _calls(db: CoordinatorDb) -> dict[str, Callable[[], object]]:
    """Every periodic or per-signature query over the two tables; none changes the live rows
    (an assignment is tried for a request that has one, a discard for an epoch with none)."""
    sync = NonceSync(db, dict)
    return {
        "pool_counts (refiller pass)": db.pool_counts,
        "presigs_of_ended_requests (housekeeping)": db.presigs_of_ended_requests,
        "ready_presigs() (housekeeping, reconcile)": db.ready_presigs,
        "ready_presigs(key)": lambda: db.ready_presigs(KEYS[0]),
        "presigs_ready_of_key": lambda: db.presigs_ready_of_key(KEYS[1]),
        "assign_presig (quorum)": lambda: db.assign_presig("live-signing", KEYS[0], 0, (), [(1, 2)], 3, 5),
        "fresh_nonce_counts (FROST refill)": lambda: db.fresh_nonce_counts(KEYS[0], 0),
        "NonceSync.held (probe)": sync.held,
        "NonceSync.drop (node without fresh)": lambda: sync.drop(7),
        "discard_fresh_nonces (no fresh of epoch)": lambda: db.discard_fresh_nonces(KEYS[0], epoch=5, now=5),
        "assign_nonces (signer without fresh)": lambda: db.assign_nonces("nobody", KEYS[0], 0, [1, 7], 3, 5),
        "due_for_expiry (sign_requests, by state)": lambda: db.due_for_expiry(10),
    }


def test_the_queries_do_not_grow_with_the_history(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    try:
        _live(db)
        _history(db, 30, "a")
        small = {name: _cost(db, call) for name, call in _calls(db).items()}
        _history(db, 600, "b")  # 21x the history, the same live rows
        large = {name: _cost(db, call) for name, call in _calls(db).items()}
        for name in small:
            assert large[name] <= small[name] + 5, (name, small[name], large[name])  # a scan: ~20x
    finally:
        db.close()


def test_the_plans_use_the_live_indexes(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    seen: list[str] = []
    try:
        for conn in (db._conn, db._rconn):
            conn.set_trace_callback(seen.append)
        for call in _calls(db).values():
            call()
        for conn in (db._conn, db._rconn):
            conn.set_trace_callback(None)
        queries = {q for q in seen if q.lstrip().upper().startswith(("SELECT", "UPDATE"))
                   and (" presigs " in q or " frost_nonces " in q) and "request_id = " not in q}
        assert len(queries) >= 10
        for q in queries:
            plan = " ".join(str(r[3]) for r in db._conn.execute("EXPLAIN QUERY PLAN " + q))
            want = "presigs_live" if " presigs " in q else "frost_nonces_live"
            assert want in plan, (q, plan)
    finally:
        db.close()


_OLD_ENDED = (  # the queries as they were before schema step 9 (and before presigs_live)
    "SELECT presig_id FROM presigs WHERE state = 'assigned' AND request_id IN"
    " (SELECT request_id FROM sign_requests WHERE state IN ('done', 'rejected', 'expired', 'failed'))"
)
_OLD_COUNTS = (
    "SELECT key_id, epoch, path, signers, state, COUNT(*) FROM presigs WHERE state IN ('ready', 'assigned')"
    " GROUP BY key_id, epoch, path, signers, state"
)

presig_rows = st.lists(
    st.tuples(st.sampled_from(("ready", "assigned", "used", "discarded")), st.integers(0, 1), st.integers(0, 2),
              st.sampled_from(("1,2", "1,3", "2,3")), st.integers(0, 5), st.integers(0, 4)),
    max_size=25,
)
nonce_rows = st.lists(
    st.tuples(st.sampled_from(("fresh", "assigned", "discarded")), st.integers(0, 1), st.integers(0, 2), st.integers(1, 3),
              st.integers(0, 4)),
    max_size=25,
)


@settings(max_examples=scaled(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(presigs=presig_rows, nonces=nonce_rows, requests=st.lists(st.sampled_from(SR_STATES), min_size=5, max_size=5))
def test_the_results_equal_the_old_queries(tmp_path_factory: pytest.TempPathFactory, presigs: list[tuple[str, int, int, str, int, int]],
                                           nonces: list[tuple[str, int, int, int, int]], requests: list[str]) -> None:
    db = CoordinatorDb(tmp_path_factory.mktemp("eq") / "c.db")
    try:
        with db._tx() as c:
            for i, state in enumerate(requests):
                _request(c, f"r{i}", state)
            for i, (state, k, epoch, signers, req, created) in enumerate(presigs):
                rid = f"r{req}" if state in ("assigned", "used") else ""  # r5: a request the table does not have
                _presig(c, _pid("p", i), KEYS[k], state, rid, signers, epoch, created)
            for i, (state, k, epoch, node, created) in enumerate(nonces):
                _nonce(c, _pid("n", i), KEYS[k], node, state, f"r{i % 5}" if state == "assigned" else "", epoch, created)
        old = db._query
        assert sorted(r.presig_id for r in db.presigs_of_ended_requests()) == sorted(bytes(r[0]) for r in old(_OLD_ENDED))
        got_counts = {(*pool, state): n for pool, d in db.pool_counts().items() for state, n in d.items() if n}
        assert got_counts == {
            (bytes(k), int(e), tuple(int(x) for x in p.split(",") if x), tuple(int(x) for x in s.split(",")), state): int(n)
            for k, e, p, s, state, n in old(_OLD_COUNTS)}
        for key in (None, *KEYS):
            want = old("SELECT presig_id FROM presigs WHERE state = 'ready'" + (" AND key_id = ?" if key else "")
                       + " ORDER BY created_ms, presig_id", (key,) if key else ())
            assert [r.presig_id for r in db.ready_presigs(key)] == [bytes(r[0]) for r in want]
        for key in KEYS:
            ((n,),) = old("SELECT COUNT(*) FROM presigs WHERE key_id = ? AND state = 'ready'", (key,))
            assert db.presigs_ready_of_key(key) == n
            for epoch in range(3):
                want_counts = {int(a): int(b) for a, b in old(
                    "SELECT node, COUNT(*) FROM frost_nonces WHERE key_id = ? AND epoch = ? AND state = 'fresh' GROUP BY node",
                    (key, epoch))}
                assert db.fresh_nonce_counts(key, epoch) == want_counts
        held = {int(a): int(b) for a, b in old("SELECT node, COUNT(*) FROM frost_nonces WHERE state = 'fresh' GROUP BY node")}
        assert NonceSync(db, dict).held() == held
        # the assignment takes the oldest ready one of the first signer set that has one, as before
        for key in KEYS:
            for epoch in range(3):
                for signers in ("1,2", "1,3"):
                    want = old("SELECT presig_id FROM presigs WHERE key_id = ? AND epoch = ? AND path = '' AND signers = ?"
                               " AND state = 'ready' ORDER BY created_ms, presig_id LIMIT 1", (key, epoch, signers))
                    got = db.assign_presig(f"new-{key.hex()[:4]}-{epoch}-{signers}", key, epoch, (),
                                           [tuple(int(x) for x in signers.split(","))], 3, 9)
                    assert (got.presig_id if got else None) == (bytes(want[0][0]) if want else None)
                want_n = {node: old("SELECT nonce_id FROM frost_nonces WHERE key_id = ? AND epoch = ? AND node = ?"
                                    " AND state = 'fresh' ORDER BY created_ms, nonce_id LIMIT 1", (key, epoch, node))
                          for node in (1, 2)}
                got_n = db.assign_nonces(f"nn-{key.hex()[:4]}-{epoch}", key, epoch, [1, 2], 3, 9)
                if any(not w for w in want_n.values()):
                    assert got_n is None
                else:
                    assert got_n is not None and {n: r.nonce_id for n, r in got_n[1].items()} == {
                        n: bytes(w[0][0]) for n, w in want_n.items()}
        # discarding: the same rows as the old term
        for key in KEYS:
            (want_d,) = old("SELECT COUNT(*) FROM frost_nonces WHERE key_id = ? AND state = 'fresh' AND node = 3", (key,))[0]
            assert db.discard_fresh_nonces(key, node=3, now=9) == want_d
        ((fresh_1,),) = old("SELECT COUNT(*) FROM frost_nonces WHERE node = 1 AND state = 'fresh'")
        assert NonceSync(db, dict).drop(1) == fresh_1
    finally:
        db.close()


def test_the_terms_are_the_index_conditions(tmp_path: Path) -> None:
    """A query uses a partial index only with its condition verbatim: the constants are it."""
    db = CoordinatorDb(tmp_path / "c.db")
    try:
        sql = dict(db._query("SELECT name, sql FROM sqlite_master WHERE name IN ('presigs_live', 'frost_nonces_live')"))
        assert str(sql["presigs_live"]).endswith(f"WHERE {PRESIG_LIVE}")
        assert str(sql["frost_nonces_live"]).endswith(f"WHERE {NONCE_LIVE}")
    finally:
        db.close()


def test_a_version_8_database_migrates_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v8.db"
    conn = sqlite3.connect(path)
    try:
        assert migrate(conn, _MIGRATIONS[:8]) == 8
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'presigs_by_pool'").fetchone()
        with conn:
            _presig(conn, _pid("old", 0), KEYS[0], "ready")
            _presig(conn, _pid("old", 1), KEYS[0], "used", "gone")
            _nonce(conn, _pid("old", 2), KEYS[0], 1, "fresh")
    finally:
        conn.close()
    db = CoordinatorDb(path)
    try:
        assert db._query("PRAGMA user_version") == [(len(_MIGRATIONS),)]
        names = {r[0] for r in db._query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"presigs_live", "frost_nonces_live"} <= names and not {"presigs_by_pool", "frost_nonces_fresh"} & names
        assert [r.presig_id for r in db.ready_presigs()] == [_pid("old", 0)]
        assert db.fresh_nonce_counts(KEYS[0], 0) == {1: 1}
        assert db.pool_counts() == {(KEYS[0], 0, (), (1, 2)): {"ready": 1, "assigned": 0}}
    finally:
        db.close()
