"""NodeStore: encryption at rest, durability across SIGKILL, one-time presignatures, threads."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from crypto_core.keyshare import KeyShare
from mpc_node.storage import (
    KeyRow,
    NodeStore,
    PolicyConflict,
    PresignatureAlreadyUsed,
    RateLimited,
    RequestAlreadyServed,
    ServedRequest,
    StoreError,
)
from tests.steady_fake import FakeSteady

N = 2**10
PASS = b"store passphrase"
REPO = Path(__file__).resolve().parents[2]
VECTOR = REPO / "tests" / "crypto" / "vectors" / "keyshare_v1_2of2_party1.hex"
RECORD = bytes.fromhex(VECTOR.read_text().strip())  # a real KeyShare.to_bytes() record
SHARE = KeyShare.from_bytes(RECORD)
KEY_ID = SHARE.key_id
PUB = SHARE.public_key.encode()


def _id(n: int) -> bytes:
    return n.to_bytes(32, "big")


def _open(path: Path, node_id: int = 1, passphrase: bytes = PASS) -> NodeStore:
    return NodeStore.open(path, passphrase, node_id, scrypt_n=N)


def _put_active(store: NodeStore, key_id: bytes = KEY_ID, record: bytes = RECORD) -> None:
    store.put_key_share(key_id, record, label="treasury", public_key=PUB, threshold=2, parties=2)
    store.activate_key(key_id)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "node.db"


@pytest.fixture
def store(db: Path) -> Iterator[NodeStore]:
    s = _open(db)
    yield s
    s.close()


def _raw_files(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


# --- key shares ------------------------------------------------------------------------------


def test_key_share_lifecycle(store: NodeStore) -> None:
    store.put_key_share(KEY_ID, RECORD, label="treasury", public_key=PUB, threshold=2, parties=2)
    assert store.get_key_share(KEY_ID) is None  # pending is not usable
    assert store.get_key_share(KEY_ID, require_active=False) == RECORD
    [row] = store.list_keys()
    assert (row.key_id, row.label, row.public_key, row.threshold, row.parties, row.status) == (
        KEY_ID, "treasury", PUB, 2, 2, "pending",
    )  # fmt: skip
    store.activate_key(KEY_ID)
    store.activate_key(KEY_ID)  # idempotent
    assert KeyShare.from_bytes(store.get_key_share(KEY_ID) or b"") == SHARE
    assert store.list_keys()[0].status == "active"
    with pytest.raises(StoreError, match="^key_id: .* already exists"):
        store.put_key_share(KEY_ID, b"other", label="x", public_key=PUB, threshold=2, parties=2)
    assert store.get_key_share(KEY_ID) == RECORD
    with pytest.raises(StoreError, match="is active"):
        store.discard_pending_key(KEY_ID)


def test_discard_pending(store: NodeStore) -> None:
    store.put_key_share(_id(7), b"r", label="", public_key=PUB, threshold=2, parties=3)
    store.discard_pending_key(_id(7))
    store.discard_pending_key(_id(7))  # idempotent
    assert store.get_key_share(_id(7), require_active=False) is None
    assert store.list_keys() == []
    with pytest.raises(StoreError, match="^key_id: no key"):
        store.activate_key(_id(7))


def test_key_row_has_no_secret(store: NodeStore) -> None:
    _put_active(store)
    row = store.list_keys()[0]
    assert isinstance(row, KeyRow)
    assert RECORD not in repr(row).encode() and not any(v == RECORD for v in vars(row).values())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"key_id": b"short"}, "key_id"),
        ({"record": b""}, "record"),
        ({"record": "text"}, "record"),
        ({"label": 5}, "label"),
        ({"label": "x" * 300}, "label"),
        ({"public_key": b"\x02" * 32}, "public_key"),
        ({"threshold": 1}, "threshold"),
        ({"threshold": 3, "parties": 2}, "parties"),
        ({"parties": True}, "parties"),
    ],
)
def test_put_key_share_rejects_bad_input(store: NodeStore, kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"key_id": KEY_ID, "record": RECORD, "label": "l", "public_key": PUB, "threshold": 2, "parties": 2}
    args.update(kwargs)
    key_id, record = args.pop("key_id"), args.pop("record")
    with pytest.raises(StoreError, match=f"^{field}"):
        store.put_key_share(key_id, record, **args)  # type: ignore[arg-type]


# --- at rest ---------------------------------------------------------------------------------


def test_data_is_on_disk_encrypted_and_survives_reopen(db: Path) -> None:
    fresh = os.urandom(200)
    with _open(db) as s:
        _put_active(s)
        s.put_presignature(_id(1), KEY_ID, fresh)
        s.add_ban(KEY_ID, 2, "OT-extension check failed")
        s.record_request("req-1", KEY_ID, _id(9))
        # while open, committed data sits in the WAL: it must be ciphertext there too
        raw = _raw_files(db)
        assert RECORD[-64:] not in raw and fresh not in raw
        files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
        assert len(files) == 3  # db, -wal, -shm
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600

    raw = _raw_files(db)
    assert RECORD[-64:] not in raw and RECORD[:64] not in raw and fresh not in raw
    direct = sqlite3.connect(db)
    try:
        (n_keys,) = direct.execute("SELECT count(*) FROM keys").fetchone()
        (blob,) = direct.execute("SELECT record FROM keys").fetchone()
        (journal,) = direct.execute("PRAGMA journal_mode").fetchone()
    finally:
        direct.close()
    assert n_keys == 1 and RECORD not in blob and len(blob) == len(RECORD) + 12 + 16
    assert journal == "wal"

    with _open(db) as s:
        assert s.get_key_share(KEY_ID) == RECORD
        assert s.get_presignature(_id(1)) == (fresh, False)
        assert s.banned(KEY_ID) == frozenset({2})
        assert s.request_served("req-1") and not s.request_served("req-2")
        assert [r.key_id for r in s.list_keys()] == [KEY_ID]


def test_wrong_passphrase_and_wrong_node(db: Path) -> None:
    _open(db).close()
    with pytest.raises(StoreError, match="^passphrase"):
        _open(db, passphrase=b"wrong")
    with pytest.raises(StoreError, match="^node_id"):
        _open(db, node_id=2)
    with pytest.raises(StoreError, match="^passphrase"):
        NodeStore.open(db, b"", 1, scrypt_n=N)


def test_not_a_database(tmp_path: Path) -> None:
    p = tmp_path / "junk.db"
    p.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match="^database"):
        _open(p)


def _sql(db: Path, statement: str, *params: object) -> None:
    c = sqlite3.connect(db)
    try:
        c.execute(statement, params)
        c.commit()
    finally:
        c.close()


def test_blob_moved_to_another_row_fails(db: Path) -> None:
    with _open(db) as s:
        _put_active(s)
        _put_active(s, _id(2), b"second record")
    _sql(db, "UPDATE keys SET record = (SELECT record FROM keys WHERE key_id = ?) WHERE key_id = ?", KEY_ID, _id(2))
    with _open(db) as s:
        assert s.get_key_share(KEY_ID) == RECORD
        with pytest.raises(StoreError, match="does not decrypt"):
            s.get_key_share(_id(2))


def test_blob_moved_to_another_kind_fails(db: Path) -> None:
    with _open(db) as s:
        _put_active(s)
        s.put_presignature(KEY_ID, KEY_ID, b"presig record")  # sigid == key_id: only the kind differs
        s.put_presignature(_id(5), KEY_ID, b"presig 5")
        s.consume_presignature(_id(5), b"tomb 5")
    _sql(db, "UPDATE presignatures SET record = (SELECT record FROM keys WHERE key_id = ?) WHERE sigid = ?", KEY_ID, KEY_ID)
    with _open(db) as s:
        with pytest.raises(StoreError, match="does not decrypt"):
            s.get_presignature(KEY_ID)
    # a tombstone is not a fresh record: flipping used back is refused by the schema itself
    with pytest.raises(sqlite3.IntegrityError, match="already used"):
        _sql(db, "UPDATE presignatures SET used = 0 WHERE sigid = ?", _id(5))
    with pytest.raises(sqlite3.IntegrityError, match="already used"):
        _sql(db, "DELETE FROM presignatures WHERE sigid = ?", _id(5))


def test_blob_moved_to_another_node_fails(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with _open(a, node_id=1) as s:
        _put_active(s)
    with _open(b, node_id=2) as s:
        _put_active(s, record=b"node two's share")
    c = sqlite3.connect(b)
    try:
        c.execute("ATTACH DATABASE ? AS other", (str(a),))
        c.execute("UPDATE keys SET record = (SELECT record FROM other.keys WHERE key_id = ?) WHERE key_id = ?", (KEY_ID, KEY_ID))
        c.commit()
    finally:
        c.close()
    with _open(b, node_id=2) as s:
        with pytest.raises(StoreError, match="does not decrypt"):
            s.get_key_share(KEY_ID)


def test_flipped_ciphertext_fails(db: Path) -> None:
    with _open(db) as s:
        _put_active(s)
    _sql(db, "UPDATE keys SET record = CAST(substr(record, 1, 40) || x'00' || substr(record, 42) AS BLOB)")
    with _open(db) as s:
        with pytest.raises(StoreError, match="does not decrypt"):
            s.get_key_share(KEY_ID)


# --- presignatures ---------------------------------------------------------------------------


def test_presignature_one_time_use(store: NodeStore) -> None:
    _put_active(store)
    store.put_presignature(_id(1), KEY_ID, b"fresh")
    assert store.get_presignature(_id(1)) == (b"fresh", False)
    store.consume_presignature(_id(1), b"tomb")
    assert store.get_presignature(_id(1)) == (b"tomb", True)
    with pytest.raises(PresignatureAlreadyUsed, match="already used"):
        store.consume_presignature(_id(1), b"tomb")
    with pytest.raises(PresignatureAlreadyUsed, match="no presignature"):
        store.consume_presignature(_id(2), b"tomb")
    with pytest.raises(StoreError, match="^sigid: .* already exists"):
        store.put_presignature(_id(1), KEY_ID, b"fresh again")  # a used sigid cannot be refilled
    assert store.get_presignature(_id(1)) == (b"tomb", True)
    assert store.get_presignature(_id(3)) is None
    assert issubclass(PresignatureAlreadyUsed, StoreError)


def test_presignature_needs_an_active_key(store: NodeStore) -> None:
    with pytest.raises(StoreError, match="^key_id: no active key"):
        store.put_presignature(_id(1), KEY_ID, b"fresh")
    store.put_key_share(KEY_ID, RECORD, label="", public_key=PUB, threshold=2, parties=2)
    with pytest.raises(StoreError, match="^key_id: no active key"):
        store.put_presignature(_id(1), KEY_ID, b"fresh")


@given(records=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=8, unique=True))
def test_presignatures_round_trip(tmp_path_factory: pytest.TempPathFactory, records: list[bytes]) -> None:
    with _open(tmp_path_factory.mktemp("h") / "n.db") as s:
        _put_active(s)
        for i, r in enumerate(records):
            s.put_presignature(_id(i), KEY_ID, r)
        for i, r in enumerate(records):
            assert s.get_presignature(_id(i)) == (r, False)
            s.consume_presignature(_id(i), b"t" + r)
            assert s.get_presignature(_id(i)) == (b"t" + r, True)


# --- bans and requests -----------------------------------------------------------------------


def test_bans(store: NodeStore) -> None:
    assert store.banned(KEY_ID) == frozenset()
    store.add_ban(KEY_ID, 3, "RVOLE check failed")
    store.add_ban(KEY_ID, 3, "again")  # first reason kept, no error
    store.add_ban(KEY_ID, 5, "Gamma check failed")
    store.add_ban(_id(1), 4, "other key")
    assert store.banned(KEY_ID) == frozenset({3, 5})
    assert store.banned(_id(1)) == frozenset({4})
    with pytest.raises(StoreError, match="^peer"):
        store.add_ban(KEY_ID, 0, "x")
    with pytest.raises(StoreError, match="^reason"):
        store.add_ban(KEY_ID, 1, "")


def test_requests(store: NodeStore) -> None:
    store.record_request("r-1", KEY_ID, _id(1))
    assert store.request_served("r-1")
    with pytest.raises(RequestAlreadyServed, match="^request_id"):
        store.record_request("r-1", KEY_ID, _id(2))
    with pytest.raises(StoreError, match="^digest"):
        store.record_request("r-2", KEY_ID, b"short")
    with pytest.raises(StoreError, match="^request_id"):
        store.record_request("", KEY_ID, _id(1))
    assert not store.request_served("r-2")


def test_request_is_recorded_with_the_presignature_it_uses(tmp_path: Path) -> None:
    now = 1_750_000_000_000
    steady = FakeSteady(now)  # the rate limit counts the store's steady clock, here moved with `now`
    store = NodeStore.open(tmp_path / "steady.db", PASS, 1, scrypt_n=N, steady=steady.source())
    _put_active(store)
    for i in range(4):
        store.put_presignature(_id(i), KEY_ID, b"fresh")
    limit = (2, 60_000)
    store.consume_presignature(_id(0), b"tomb", request=ServedRequest("a", KEY_ID, _id(9), now, limit))
    assert store.request_served("a") and store.get_presignature(_id(0)) == (b"tomb", True)
    # a replayed request id: nothing is consumed
    with pytest.raises(RequestAlreadyServed, match="^request_id: 'a' was already served"):
        store.consume_presignature(_id(1), b"tomb", request=ServedRequest("a", KEY_ID, _id(9), now + 1, limit))
    assert store.get_presignature(_id(1)) == (b"fresh", False)
    steady.ms = now + 2
    store.consume_presignature(_id(1), b"tomb", request=ServedRequest("b", KEY_ID, _id(9), now + 2, limit))
    # the third signature within the window exceeds 2 per minute: refused, nothing consumed
    with pytest.raises(RateLimited, match="^rate_limit: 2 signature"):
        store.consume_presignature(_id(2), b"tomb", request=ServedRequest("c", KEY_ID, _id(9), now + 3, limit))
    assert not store.request_served("c") and store.get_presignature(_id(2)) == (b"fresh", False)
    # another key is not counted; after the window the key may sign again
    assert store.served_times(KEY_ID, now - 1) == [now, now + 2]
    steady.ms = now + 60_001
    store.consume_presignature(_id(2), b"tomb", request=ServedRequest("c", KEY_ID, _id(9), now + 60_001, limit))
    # a clock stepped back does not reset the window
    with pytest.raises(RateLimited):
        store.consume_presignature(_id(3), b"tomb", request=ServedRequest("d", KEY_ID, _id(9), now + 3, limit))
    with pytest.raises(StoreError, match="^rate_limit"):
        store.consume_presignature(_id(3), b"tomb", request=ServedRequest("d", KEY_ID, _id(9), now, (0, 1)))
    store.close()


def test_rate_limit_holds_under_concurrent_consumers(db: Path) -> None:
    first, second = _open(db), _open(db)
    try:
        _put_active(first)
        sigids = [_id(i) for i in range(24)]
        for sid in sigids:
            first.put_presignature(sid, KEY_ID, b"fresh")
        served: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(6)

        def worker(n: int) -> None:
            s = first if n % 2 else second
            barrier.wait()
            for k in range(4):
                sid = sigids[n * 4 + k]
                rid = f"r-{n}-{k}"
                try:
                    s.consume_presignature(sid, b"tomb", request=ServedRequest(rid, KEY_ID, sid, 1_000_000 + n, (5, 3_600_000)))
                except RateLimited:
                    continue
                with lock:
                    served.append(rid)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(served) == 5 and all(first.request_served(r) for r in served)
        assert sum(1 for sid in sigids if first.get_presignature(sid) == (b"tomb", True)) == 5
    finally:
        first.close()
        second.close()


def test_policy_changes_are_stored_per_scope_with_compare_and_set(store: NodeStore) -> None:
    store.put_policy_change(b"default", 1, b"change-1", previous_version=None)
    store.put_policy_change(b"default", 2, b"change-2", previous_version=1)
    store.put_policy_change(KEY_ID, 1, b"key-change-1", previous_version=None)
    with pytest.raises(PolicyConflict, match="^scope: stored version is 2, expected 1"):
        store.put_policy_change(b"default", 2, b"other-2", previous_version=1)
    with pytest.raises(PolicyConflict):
        store.put_policy_change(KEY_ID, 1, b"again", previous_version=None)
    assert store.policy_changes() == {b"default": [b"change-1", b"change-2"], KEY_ID: [b"key-change-1"]}


def test_store_of_an_older_version_is_upgraded(db: Path) -> None:
    with _open(db) as s:
        s.record_request("old", KEY_ID, _id(1))
    direct = sqlite3.connect(db)  # as schema version 1 left it: no served_ms, no policy table
    direct.execute("DROP INDEX requests_by_key_time")
    for statement in ("DROP TRIGGER requests_steady_default", "DROP INDEX requests_by_key_steady",
                      "DROP INDEX requests_by_steady", "ALTER TABLE requests DROP COLUMN steady_ms", "DROP TABLE steady_anchors"):
        direct.execute(statement)  # and none of step 12 (steady times)
    direct.execute("ALTER TABLE requests DROP COLUMN served_ms")
    direct.execute("DROP TABLE policy_changes")
    direct.execute("PRAGMA user_version = 0")  # stores made before versioned migrations
    direct.commit()
    direct.close()
    with _open(db) as s:
        assert s.request_served("old")
        s.record_request("new", KEY_ID, _id(2))
        assert len(s.served_times(KEY_ID, 0)) == 1  # the old row has no time: counted from 0
        s.put_policy_change(b"default", 1, b"c", previous_version=None)


def test_closed_store_and_repr(db: Path) -> None:
    s = _open(db)
    assert "node_id=1" in repr(s) and PASS.decode() not in repr(s)
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.list_keys()


# --- durability under SIGKILL ----------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mpc_node.storage import NodeStore
    db, action, key_id, record = Path(sys.argv[1]), sys.argv[2], bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])
    s = NodeStore.open(db, b"store passphrase", 1, scrypt_n=2**10)
    if action == "put_key_share":
        s.put_key_share(key_id, record, label="k", public_key=b"\\x02" * 33, threshold=2, parties=2)
    else:
        s.consume_presignature(key_id, record)
    print("done", flush=True)
    time.sleep(60)
    """
)


def _run_and_kill(db: Path, action: str, ident: bytes, record: bytes) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(db), action, ident.hex(), record.hex()],
        stdout=subprocess.PIPE, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"done"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_sigkill_after_put_key_share_keeps_it(db: Path) -> None:
    _open(db).close()
    _run_and_kill(db, "put_key_share", _id(42), b"acknowledged share")
    with _open(db) as s:
        assert s.get_key_share(_id(42), require_active=False) == b"acknowledged share"


def test_sigkill_after_consume_keeps_it_used(db: Path) -> None:
    with _open(db) as s:
        _put_active(s)
        s.put_presignature(_id(1), KEY_ID, b"fresh presignature")
    _run_and_kill(db, "consume", _id(1), b"tombstone")
    with _open(db) as s:
        assert s.get_presignature(_id(1)) == (b"tombstone", True)
        with pytest.raises(PresignatureAlreadyUsed):
            s.consume_presignature(_id(1), b"tombstone")


# --- threads ---------------------------------------------------------------------------------


def test_concurrent_threads_consume_each_presignature_once(db: Path) -> None:
    """Threads over one store, plus a second store object on the same file (another connection)."""
    first = _open(db)
    second = _open(db)
    try:
        _put_active(first)
        sigids = [_id(i) for i in range(40)]
        for sid in sigids:
            first.put_presignature(sid, KEY_ID, b"fresh" + sid)
        wins: list[bytes] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        barrier = threading.Barrier(6)

        def worker(n: int) -> None:
            s = first if n % 2 else second
            barrier.wait()
            for sid in sigids:
                try:
                    s.consume_presignature(sid, b"tomb")
                except PresignatureAlreadyUsed:
                    continue
                except BaseException as e:  # pragma: no cover - reported below
                    with lock:
                        errors.append(e)
                    continue
                with lock:
                    wins.append(sid)
                s.record_request(f"req-{n}-{sid.hex()}", KEY_ID, sid)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sorted(wins) == sigids  # each consumed exactly once
        assert all(first.get_presignature(sid) == (b"tomb", True) for sid in sigids)
    finally:
        first.close()
        second.close()
