"""The audit log (chain: governance.audit; SQLite store: mpcnet.common.stores.audit): appends,
concurrency, rate limiting, and tamper detection on the raw SQLite file."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, strategies as st

from governance.audit import entry_hash, genesis_hash, signed_message, verify_entries
from governance.errors import GovernanceError
from governance.policy import RateLimit
from mpcnet.common.stores.audit import AuditLog, export_jsonl, verify_audit

from .gov_util import NOW_MS, raw

KEY = Ed25519PrivateKey.generate()
PUB = raw(KEY)
N = 6


class Clock:
    """A settable millisecond clock."""

    def __init__(self, now: int = NOW_MS) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self.now += 1
            return self.now


def _fill(log: AuditLog, n: int = N) -> None:
    for i in range(n):
        log.append(
            "coordinator" if i % 2 else "node-1",
            ["request", "approve", "sign"][i % 3],
            request_id=f"r{i}",
            outcome="ok" if i % 2 else "",
            details={"index": i, "key_id": "ab" * 32, "final": i == n - 1},
        )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "template.db"
    with AuditLog.open(path, component="node-1", signing_key=KEY, clock=Clock()) as log:
        _fill(log)
    return path


@pytest.fixture
def log_path(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "audit.db"
    shutil.copy(template, path)
    return path


@pytest.fixture
def raw_db(log_path: Path) -> Iterator[sqlite3.Connection]:
    """A direct sqlite3 connection with the append-only triggers dropped, as an attacker would."""
    conn = sqlite3.connect(str(log_path), isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    yield conn
    conn.close()


def _row(conn: sqlite3.Connection, seq: int) -> tuple[object, ...]:
    row: tuple[object, ...] = conn.execute("SELECT * FROM audit WHERE seq = ?", (seq,)).fetchone()
    return row


def _insert(conn: sqlite3.Connection, row: tuple[object, ...]) -> None:
    conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)


# --- normal operation -----------------------------------------------------------------------


def test_append_entries_head_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    clock = Clock()
    with AuditLog.open(path, component="coordinator", signing_key=KEY, clock=clock) as log:
        assert log.head() is None and log.entries() == []
        e1 = log.append("alice", "approve", request_id="req_1", outcome="approved", details={"n": 1, "ok": True})
        e2 = log.append("coordinator", "sign")
        assert (e1.seq, e2.seq) == (1, 2)
        assert e1.prev_hash == genesis_hash("coordinator", PUB) and e2.prev_hash == e1.entry_hash
        assert log.entries() == [e1, e2]
        assert log.head() == (2, e2.entry_hash)
        assert dict(e1.details) == {"n": 1, "ok": True} and e1.timestamp_ms == NOW_MS + 1
    report = verify_audit(path, PUB)
    assert (report.ok, report.entries, report.first_broken, report.reason) == (True, 2, None, "")
    with AuditLog.open(path, component="coordinator", signing_key=KEY) as log:  # reopen and continue
        e3 = log.append("coordinator", "sign")
        assert e3.seq == 3 and e3.prev_hash == e2.entry_hash
        head = log.head()
    assert head == (3, e3.entry_hash)
    assert verify_audit(path, PUB, expected_head=head).ok
    assert not verify_audit(path, PUB, expected_head=(4, e3.entry_hash)).ok


def test_open_refuses_another_component_or_key(log_path: Path) -> None:
    with pytest.raises(GovernanceError) as e:
        AuditLog.open(log_path, component="node-2", signing_key=KEY)
    assert e.value.field == "component"
    with pytest.raises(GovernanceError) as e:
        AuditLog.open(log_path, component="node-1", signing_key=Ed25519PrivateKey.generate())
    assert e.value.field == "signing_key"


def test_append_validates_and_refuses_secrets(log_path: Path) -> None:
    with AuditLog.open(log_path, component="node-1", signing_key=KEY) as log:
        for kwargs, field in [
            ({"details": {"private_key": "00"}}, "details['private_key']"),
            ({"details": {"passphrase": "x"}}, "details['passphrase']"),
            ({"details": {"blob": b"\x00"}}, "details['blob']"),
            ({"details": {"ratio": 0.5}}, "details['ratio']"),
            ({"details": {"Big": 1}}, "details['Big']"),
            ({"details": {"n": 2**63}}, "details['n']"),
            ({"details": [("a", 1)]}, "details"),
            ({"request_id": "bad id"}, "request_id"),
            ({"outcome": "Not OK"}, "outcome"),
        ]:
            with pytest.raises(GovernanceError) as e:
                log.append("node-1", "sign", **kwargs)  # type: ignore[arg-type]
            assert e.value.field == field
        with pytest.raises(GovernanceError) as e:
            log.append("node 1", "sign")
        assert e.value.field == "actor"
        with pytest.raises(GovernanceError) as e:
            log.append("node-1", "Sign")
        assert e.value.field == "action"
    with pytest.raises(GovernanceError):
        log.append("node-1", "sign")  # closed
    assert verify_audit(log_path, PUB).entries == N


def test_database_refuses_update_delete_and_out_of_sequence_insert(log_path: Path) -> None:
    conn = sqlite3.connect(str(log_path), isolation_level=None)
    try:
        for sql in (
            "UPDATE audit SET outcome = 'x' WHERE seq = 2",
            "DELETE FROM audit WHERE seq = 6",
            "UPDATE meta SET value = 'node-9' WHERE name = 'component'",
        ):
            with pytest.raises(sqlite3.DatabaseError):
                conn.execute(sql)
        row = list(_row(conn, N))
        row[0] = N + 2
        with pytest.raises(sqlite3.DatabaseError):
            _insert(conn, tuple(row))
    finally:
        conn.close()
    assert verify_audit(log_path, PUB).ok


def test_export_jsonl(log_path: Path) -> None:
    out = io.StringIO()
    assert export_jsonl(log_path, out) == N
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [x["seq"] for x in lines] == list(range(1, N + 1))
    assert lines[0]["details"] == {"final": False, "index": 0, "key_id": "ab" * 32}
    assert lines[1]["prev_hash"] == lines[0]["entry_hash"] and len(lines[0]["signature"]) == 128
    with AuditLog.open(log_path, component="node-1", signing_key=KEY) as log:
        assert [e.to_dict() for e in log.entries()] == lines


# --- concurrency and rate limits ------------------------------------------------------------


def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    logs = [AuditLog.open(path, component="node-1", signing_key=KEY) for _ in range(2)]  # two connections
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(15):
                logs[i % 2].append(f"t{i}", "sign", details={"j": j})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in logs:
        log.close()
    assert errors == []
    report = verify_audit(path, PUB)
    assert report.ok and report.entries == 90


def test_rate_limit_holds_under_concurrent_appends(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    clock = Clock()
    limit = RateLimit(max_signatures=7, window_seconds=60)
    granted: list[int] = []
    lock = threading.Lock()
    with AuditLog.open(path, component="node-1", signing_key=KEY, clock=clock) as log:
        log.append("node-1", "sign", details={"subject": "other-key"})

        def worker() -> None:
            for _ in range(5):
                e = log.append_rate_limited("node-1", "sign", subject="key-a", limit=limit, request_id="r1")
                if e is not None:
                    with lock:
                        granted.append(e.seq)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(granted) == 7
        # another subject has its own budget; another action is not counted
        assert log.append_rate_limited("node-1", "sign", subject="key-b", limit=limit) is not None
        assert log.append_rate_limited("node-1", "presign", subject="key-a", limit=limit) is not None
        assert log.append_rate_limited("node-1", "sign", subject="key-a", limit=limit) is None
        clock.now += 60_000  # the window slides past the granted entries
        assert log.append_rate_limited("node-1", "sign", subject="key-a", limit=limit) is not None
        with pytest.raises(GovernanceError) as e:
            log.append_rate_limited("node-1", "sign", subject="key-a", limit=limit, details={"subject": "x"})
        assert e.value.field == "details['subject']"
    assert verify_audit(path, PUB).ok


# --- tampering ------------------------------------------------------------------------------


def test_edited_field_is_named(log_path: Path, raw_db: sqlite3.Connection) -> None:
    raw_db.execute("UPDATE audit SET outcome = 'denied' WHERE seq = 3")
    report = verify_audit(log_path, PUB)
    assert (report.ok, report.first_broken, report.entries) == (False, 3, N)
    assert "edited" in report.reason


def test_deleted_entry_is_named(log_path: Path, raw_db: sqlite3.Connection) -> None:
    raw_db.execute("DELETE FROM audit WHERE seq = 4")
    report = verify_audit(log_path, PUB)
    assert (report.ok, report.first_broken) == (False, 4)
    assert "missing" in report.reason


def test_deleted_and_renumbered_entry_is_named(log_path: Path, raw_db: sqlite3.Connection) -> None:
    raw_db.execute("DELETE FROM audit WHERE seq = 2")
    for seq in range(3, N + 1):
        raw_db.execute("UPDATE audit SET seq = ? WHERE seq = ?", (seq - 1, seq))
    report = verify_audit(log_path, PUB)
    assert (report.ok, report.first_broken) == (False, 2)


def test_reordered_entries_are_named(log_path: Path, raw_db: sqlite3.Connection) -> None:
    raw_db.execute("UPDATE audit SET seq = 1000 WHERE seq = 4")
    raw_db.execute("UPDATE audit SET seq = 4 WHERE seq = 5")
    raw_db.execute("UPDATE audit SET seq = 5 WHERE seq = 1000")
    report = verify_audit(log_path, PUB)
    assert (report.ok, report.first_broken) == (False, 4)


def test_inserted_entry_is_named(log_path: Path, raw_db: sqlite3.Connection) -> None:
    # a well-formed entry linked into the chain at seq 3, signed with someone else's key
    prev = _row(raw_db, 2)[8]
    assert isinstance(prev, bytes)
    forged_hash = entry_hash(3, NOW_MS + 3, "eve", "sign", "evil", "ok", {}, prev)
    forged_sig = Ed25519PrivateKey.generate().sign(signed_message(forged_hash))
    for seq in range(N, 2, -1):
        raw_db.execute("UPDATE audit SET seq = ? WHERE seq = ?", (seq + 1, seq))
    _insert(raw_db, (3, NOW_MS + 3, "eve", "sign", "evil", "ok", "{}", prev, forged_hash, forged_sig))
    report = verify_audit(log_path, PUB)
    assert (report.ok, report.first_broken, report.entries) == (False, 3, N + 1)
    assert "signature" in report.reason


def test_appended_forgery_is_named(log_path: Path, raw_db: sqlite3.Connection) -> None:
    last = _row(raw_db, N)
    _insert(raw_db, (N + 1, *last[1:8], last[8], last[9]))  # a copy of the last entry
    report = verify_audit(log_path, PUB)
    assert (report.ok, report.first_broken) == (False, N + 1)


def test_truncation_needs_the_published_head(log_path: Path, raw_db: sqlite3.Connection) -> None:
    head = (N, _row(raw_db, N)[8])
    assert isinstance(head[1], bytes)
    assert verify_audit(log_path, PUB, expected_head=(head[0], head[1])).ok
    raw_db.execute("DELETE FROM audit WHERE seq >= ?", (N - 1,))
    report = verify_audit(log_path, PUB)
    assert report.ok and report.entries == N - 2  # a shorter valid chain: undetectable alone
    report = verify_audit(log_path, PUB, expected_head=(head[0], head[1]))
    assert (report.ok, report.first_broken) == (False, N - 1)
    assert "truncated" in report.reason


def test_rewrite_by_the_key_holder_is_caught_by_the_head(log_path: Path, raw_db: sqlite3.Connection) -> None:
    _, ts, actor, action, rid, _, details, prev, old_hash, _ = _row(raw_db, N)
    assert isinstance(prev, bytes) and isinstance(old_hash, bytes)
    new_hash = entry_hash(N, int(ts), str(actor), str(action), str(rid), "rewritten", json.loads(str(details)), prev)  # type: ignore[call-overload]
    raw_db.execute(
        "UPDATE audit SET outcome = 'rewritten', entry_hash = ?, signature = ? WHERE seq = ?",
        (new_hash, KEY.sign(signed_message(new_hash)), N),
    )
    assert verify_audit(log_path, PUB).ok  # the key holder can rewrite history...
    report = verify_audit(log_path, PUB, expected_head=(N, old_hash))
    assert (report.ok, report.first_broken) == (False, N)  # ...but not the published head


def test_meta_and_key_tampering(log_path: Path, raw_db: sqlite3.Connection) -> None:
    other = raw(Ed25519PrivateKey.generate())
    report = verify_audit(log_path, other)
    assert not report.ok and report.first_broken is None and "another public key" in report.reason
    raw_db.execute("UPDATE meta SET value = 'node-9' WHERE name = 'component'")
    report = verify_audit(log_path, PUB)
    assert (report.ok, report.first_broken) == (False, 1)
    assert "genesis" in report.reason


def test_open_refuses_to_extend_a_damaged_log(log_path: Path, raw_db: sqlite3.Connection) -> None:
    raw_db.execute("UPDATE audit SET actor = 'eve' WHERE seq = ?", (N,))
    with pytest.raises(GovernanceError) as e:
        AuditLog.open(log_path, component="node-1", signing_key=KEY)
    assert e.value.field == "path" and str(N) in e.value.reason


def test_unusable_files(tmp_path: Path) -> None:
    assert not verify_audit(tmp_path / "missing.db", PUB).ok
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    report = verify_audit(junk, PUB)
    assert not report.ok and report.first_broken is None
    with pytest.raises(GovernanceError) as e:
        verify_audit(junk, b"\x00" * 32)
    assert e.value.field == "public_key"


_EDITS: dict[str, object] = {
    "timestamp_ms": 1,
    "actor": "eve",
    "action": "export",
    "request_id": "other",
    "outcome": "tampered",
    "details": '{"index":99}',
    "prev_hash": b"\x11" * 32,
    "entry_hash": b"\x22" * 32,
    "signature": b"\x33" * 64,
}


@given(st.integers(1, N), st.sampled_from(sorted(_EDITS)))
def test_any_edited_field_of_any_entry_is_named(template: Path, seq: int, column: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "audit.db"
        shutil.copy(template, path)
        conn = sqlite3.connect(str(path), isolation_level=None)
        try:
            conn.execute("DROP TRIGGER audit_append_only_update")
            conn.execute(f"UPDATE audit SET {column} = ? WHERE seq = ?", (_EDITS[column], seq))
        finally:
            conn.close()
        report = verify_audit(path, PUB)
        assert (report.ok, report.first_broken, report.entries) == (False, seq, N)


# --- remote verification (rows relayed by an untrusted party) -------------------------------


def test_raw_rows_pages_and_verify_entries(log_path: Path) -> None:
    with AuditLog.open(log_path, component="node-1", signing_key=KEY, clock=Clock(NOW_MS + 100)) as log:
        page1 = log.raw_rows(0, 4)
        page2 = log.raw_rows(4, 4)
        assert [r[0] for r in page1] == [1, 2, 3, 4] and [r[0] for r in page2] == [5, 6]
        assert log.raw_rows(6, 4) == []
        head = log.head()
    rows = page1 + page2
    assert verify_entries("node-1", PUB, rows).ok
    assert verify_entries("node-1", PUB, rows, expected_head=head).ok
    # the genesis binds the component: node-1's log is not node-2's
    report = verify_entries("node-2", PUB, rows)
    assert (report.ok, report.first_broken) == (False, 1)
    assert not verify_entries("node-1", raw(Ed25519PrivateKey.generate()), rows).ok


def test_relayed_rows_that_were_dropped_reordered_or_altered_are_named(log_path: Path) -> None:
    with AuditLog.open(log_path, component="node-1", signing_key=KEY, clock=Clock(NOW_MS + 100)) as log:
        rows = log.raw_rows()
        head = log.head()
    altered = list(rows)
    altered[2] = (*altered[2][:5], "denied", *altered[2][6:])
    cases = {
        "dropped": (rows[:2] + rows[3:], 3),
        "reordered": (rows[:3] + [rows[4], rows[3]] + rows[5:], 4),
        "altered": (altered, 3),
        "renumbered": (rows[:2] + [(3, *r[1:]) for r in rows[3:4]] + rows[4:], 3),
    }
    for name, (relayed, broken) in cases.items():
        report = verify_entries("node-1", PUB, relayed)
        assert (report.ok, report.first_broken) == (False, broken), name
    report = verify_entries("node-1", PUB, rows[:-2], expected_head=head)  # the tail held back
    assert (report.ok, report.first_broken) == (False, N - 1) and "truncated" in report.reason
    with pytest.raises(GovernanceError) as e:
        verify_entries("node-1", PUB, [rows[0][:5]])
    assert e.value.field == "rows[0]"


def test_export_jsonl_is_ascii_so_an_unverified_file_cannot_drive_a_terminal(tmp_path: Path) -> None:
    """``mpc audit export --jsonl --db FILE`` writes an unverified file's entries, often to a
    terminal: JSON escapes C0 controls but not DEL, C1 controls (U+009B is CSI), bidi overrides
    or line separators, so the export is ASCII (like the cluster export), the text unchanged."""
    path = tmp_path / "a.db"
    hostile = "x\u009b2J\u202e\u2028\x7fy"
    with AuditLog.open(path, component="node-1", signing_key=KEY) as log:
        log.append("node-1", "test", outcome="ok", details={"reason": hostile})
    out = io.StringIO()
    assert export_jsonl(path, out) == 1
    text = out.getvalue()
    assert text.isascii(), repr(text)
    assert json.loads(text)["details"]["reason"] == hostile
