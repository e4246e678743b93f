"""Node store step 11 (issue 16): ``restored_shares`` takes the 32-byte public key of an ed25519
key; a store at step 10 keeps its restored rows byte for byte through the upgrade."""

from __future__ import annotations

import sqlite3

import pytest

from mpc_node.storage import _MIGRATIONS
from mpcnet.common.stores.sqlite import migrate

ROW = (b"k" * 32, 0, 2, "1,2,3", b"\x02" + b"p" * 32, "treasury", b"o" * 16, b"sealed record", b"receipt", 123)
COLUMNS = "key_id, epoch, threshold, committee, public_key, label, order_id, record, receipt, created_ms"


def _insert(conn: sqlite3.Connection, row: tuple[object, ...]) -> None:
    with conn:
        conn.execute(f"INSERT INTO restored_shares ({COLUMNS}) VALUES ({', '.join('?' * len(row))})", row)


def test_step_11_keeps_restored_rows_and_takes_32_byte_keys() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    assert migrate(conn, _MIGRATIONS[:10]) == 10
    _insert(conn, ROW)
    with pytest.raises(sqlite3.IntegrityError):  # before step 11: a 32-byte key is refused
        _insert(conn, (b"e" * 32, *ROW[1:4], b"e" * 32, *ROW[5:]))
    assert migrate(conn, _MIGRATIONS) == len(_MIGRATIONS) == 13  # and steps 12, 13 (steady times)
    assert conn.execute(f"SELECT {COLUMNS} FROM restored_shares").fetchall() == [ROW]
    _insert(conn, (b"e" * 32, *ROW[1:4], b"e" * 32, *ROW[5:]))
    with pytest.raises(sqlite3.IntegrityError):
        _insert(conn, (b"f" * 32, *ROW[1:4], b"f" * 31, *ROW[5:]))
    assert conn.execute("SELECT count(*) FROM restored_shares").fetchone() == (2,)
