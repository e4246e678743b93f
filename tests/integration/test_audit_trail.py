"""The audit trail of real processes: editing, deleting, reordering or inserting an entry in a
component's SQLite audit file (as an attacker with file access would, after dropping the
append-only triggers) is detected by ``mpc audit verify``, which names the component and the
first broken entry and exits non-zero; dropping the newest entries is detected against the head
verified last time."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.audit import entry_hash, signed_message
from mpcnet.client import MpcClient, SigningTeam

from .cli_util import cli
from .conftest import make_cluster
from .outbox_util import outbox_drained
from .pool_util import pools_settled


@pytest.fixture(scope="module")
def ac(tmp_path_factory):
    c = make_cluster(tmp_path_factory, "audit-2of3", 3, 2)
    try:
        c.start_all()
        with MpcClient.from_cluster(c.lay.dir, identity="admin1") as admin, SigningTeam.from_cluster(c.lay.dir) as team:
            key = admin.create_key("audited")
            for j in range(2):
                team.sign(key.key_id, hashlib.sha256(b"audited %d" % j).digest())
        pools_settled(c)  # pools on: no presign session may still append entries
        for i in (1, 2, 3):  # the tests edit the files of live nodes: no entry may still be on its way
            assert outbox_drained(c.lay.node_dir(i))
        yield c
    finally:
        c.stop()


def verify(ac, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("--cluster", str(ac.lay.dir), "--as", "auditor1", "audit", "verify", *extra, check=False)


def line(out: str, component: str) -> str:
    return [x for x in out.splitlines() if x.startswith(component + " ")][0]


def audit_db(ac, component: str) -> Path:
    return ac.lay.coordinator_dir / "audit.db" if component == "coordinator" else ac.lay.node_dir(int(component[-1])) / "audit.db"


@contextlib.contextmanager
def attacker(db: Path) -> Iterator[sqlite3.Connection]:
    """Raw write access to a live audit file, triggers dropped; the triggers come back afterwards."""
    conn = sqlite3.connect(str(db), isolation_level=None, timeout=30)
    triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    for name, _ in triggers:
        conn.execute(f"DROP TRIGGER {name}")
    try:
        yield conn
    finally:
        for _, sql in triggers:
            conn.execute(sql)
        conn.close()


def row(conn: sqlite3.Connection, seq: int) -> tuple:
    return conn.execute("SELECT * FROM audit WHERE seq = ?", (seq,)).fetchone()


def count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0]


def shift(conn: sqlite3.Connection, start: int, by: int) -> None:
    seqs = [r[0] for r in conn.execute("SELECT seq FROM audit WHERE seq >= ? ORDER BY seq", (start,)).fetchall()]
    for s in sorted(seqs, reverse=by > 0):
        conn.execute("UPDATE audit SET seq = ? WHERE seq = ?", (s + by, s))


def edit(conn: sqlite3.Connection) -> Iterator[None]:
    old = row(conn, 3)[5]
    conn.execute("UPDATE audit SET outcome = 'denied' WHERE seq = 3")
    yield
    conn.execute("UPDATE audit SET outcome = ? WHERE seq = 3", (old,))


def delete(conn: sqlite3.Connection) -> Iterator[None]:
    saved = row(conn, 3)
    conn.execute("DELETE FROM audit WHERE seq = 3")
    yield
    conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", saved)


def reorder(conn: sqlite3.Connection) -> Iterator[None]:
    def swap() -> None:
        conn.execute("UPDATE audit SET seq = 1000000 WHERE seq = 3")
        conn.execute("UPDATE audit SET seq = 3 WHERE seq = 4")
        conn.execute("UPDATE audit SET seq = 4 WHERE seq = 1000000")

    swap()
    yield
    swap()


def insert(conn: sqlite3.Connection) -> Iterator[None]:
    """A well-formed entry linked into the chain at seq 3, signed with someone else's key."""
    prev = row(conn, 2)[8]
    forged_hash = entry_hash(3, row(conn, 2)[1] + 1, "eve", "sign-share", "", "released", {}, prev)
    forged_sig = Ed25519PrivateKey.generate().sign(signed_message(forged_hash))
    shift(conn, 3, +1)
    conn.execute(
        "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (3, row(conn, 2)[1] + 1, "eve", "sign-share", "", "released", "{}", prev, forged_hash, forged_sig),
    )
    yield
    conn.execute("DELETE FROM audit WHERE seq = 3")
    shift(conn, 4, -1)


TAMPERS = {
    "edit": (edit, "entry_hash does not match the entry's fields (edited or moved)"),
    "delete": (delete, "entry 3 is missing (the next entry is 4)"),
    "reorder": (reorder, "entry_hash does not match the entry's fields"),
    "insert": (insert, "signature does not verify (forged or inserted entry)"),
}


def test_clean_trail_verifies(ac) -> None:
    p = verify(ac)
    assert p.returncode == 0, p.stdout + p.stderr
    for c in ("coordinator", "node-1", "node-2", "node-3"):
        assert " ok " in line(p.stdout, c)
    assert "audit trail verified" in p.stdout


@pytest.mark.parametrize("component", ["coordinator", "node-2"])
@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampering_with_an_audit_file_is_named(ac, component: str, tamper: str) -> None:
    how, reason = TAMPERS[tamper]
    with attacker(audit_db(ac, component)) as conn:
        n = count(conn)
        assert n >= 5
        gen = how(conn)
        next(gen)
        try:
            p = verify(ac)
        finally:
            next(gen, None)
        assert count(conn) == n
    assert p.returncode == 1, p.stdout
    broken = line(p.stdout, component)
    assert "BROKEN" in broken and "entry 3: " in broken and reason in broken, broken
    others = [c for c in ("coordinator", "node-1", "node-2", "node-3") if c != component]
    assert all(" ok " in line(p.stdout, c) for c in others)
    assert "audit trail NOT verified" in p.stdout
    again = verify(ac)  # restored: clean again
    assert again.returncode == 0, again.stdout


def test_dropping_the_newest_entries_is_caught_against_the_last_verified_head(ac) -> None:
    assert verify(ac).returncode == 0  # remembers every component's head
    with attacker(audit_db(ac, "node-3")) as conn:
        n = count(conn)
        tail = [row(conn, s) for s in (n - 1, n)]
        conn.execute("DELETE FROM audit WHERE seq >= ?", (n - 1,))
        try:
            p = verify(ac)
        finally:
            for r in tail:
                conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", r)
    assert p.returncode == 1
    broken = line(p.stdout, "node-3")
    assert f"entry {n - 1}: truncated: the log ends at entry {n - 2}, the published head is entry {n}" in broken, broken
    assert verify(ac).returncode == 0


def test_local_database_mode_names_the_entry(ac, tmp_path) -> None:
    info = json.loads(ac.lay.info_path.read_text())
    copy = tmp_path / "node-1-audit.db"
    src = sqlite3.connect(str(audit_db(ac, "node-1")))
    dst = sqlite3.connect(str(copy))
    src.backup(dst)
    src.close()
    dst.close()
    key = info["audit"]["node-1"]["public_key"]
    ok = cli("audit", "verify", "--db", str(copy), "--public-key", key, "--json", check=False)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"]
    with attacker(copy) as conn:
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    p = cli("audit", "verify", "--db", str(copy), "--public-key", key, check=False)
    assert p.returncode == 1 and "BROKEN at entry 2: entry_hash does not match" in p.stdout, p.stdout
