"""The coordinator's durable record of keys and requests (SQLite, WAL, synchronous=FULL).

Only public information is stored: key ids, public keys, chain codes, labels, digests,
finished signatures and error messages. Never a share, a presignature or a protocol payload.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key_id      BLOB PRIMARY KEY CHECK (length(key_id) = 32),
    label       TEXT NOT NULL,
    public_key  BLOB NOT NULL,
    chain_code  BLOB NOT NULL,
    threshold   INTEGER NOT NULL,
    parties     INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'active', 'discarded')),
    created_ms  INTEGER NOT NULL,
    request_id  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    request_id    TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('keygen', 'sign')),
    state         TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    key_id        BLOB,
    digest        BLOB,
    path          TEXT NOT NULL DEFAULT '',
    label         TEXT NOT NULL DEFAULT '',
    signature     BLOB,
    signers       TEXT NOT NULL DEFAULT '',
    error_code    INTEGER NOT NULL DEFAULT 0,
    error_message TEXT NOT NULL DEFAULT '',
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);
"""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class KeyRecord:
    key_id: bytes
    label: str
    public_key: bytes
    chain_code: bytes
    threshold: int
    parties: int
    status: str
    created_ms: int
    request_id: str


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    kind: str
    state: str
    key_id: bytes | None
    digest: bytes | None
    path: tuple[int, ...]
    label: str
    signature: bytes | None  # serialized mpc.v1.Signature
    signers: tuple[int, ...]
    error_code: int
    error_message: str
    attempts: int
    created_ms: int
    updated_ms: int


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _text(xs: Any) -> str:
    return ",".join(str(int(x)) for x in xs)


class CoordinatorDb:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"db: {path} cannot use WAL journaling")
        self._conn.execute("PRAGMA synchronous = FULL")
        with self._tx() as c:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _tx(self) -> Any:
        db = self

        class Tx:
            def __enter__(self) -> sqlite3.Connection:
                db._lock.acquire()
                db._conn.execute("BEGIN IMMEDIATE")
                return db._conn

            def __exit__(self, t: Any, v: Any, tb: Any) -> None:
                try:
                    db._conn.execute("COMMIT" if t is None else "ROLLBACK")
                finally:
                    db._lock.release()

        return Tx()

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # --- keys --------------------------------------------------------------------------------
    def add_key(self, k: KeyRecord) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (k.key_id, k.label, k.public_key, k.chain_code, k.threshold, k.parties, k.status, k.created_ms, k.request_id),
            )

    def set_key_status(self, key_id: bytes, status: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE keys SET status = ? WHERE key_id = ?", (status, key_id))

    def get_key(self, key_id: bytes) -> KeyRecord | None:
        rows = self._query("SELECT * FROM keys WHERE key_id = ?", (key_id,))
        return KeyRecord(*rows[0]) if rows else None

    def list_keys(self, status: str | None = None) -> list[KeyRecord]:
        if status is None:
            rows = self._query("SELECT * FROM keys ORDER BY created_ms, rowid")
        else:
            rows = self._query("SELECT * FROM keys WHERE status = ? ORDER BY created_ms, rowid", (status,))
        return [KeyRecord(*r) for r in rows]

    # --- requests ----------------------------------------------------------------------------
    def create_request(
        self, request_id: str, kind: str, *, key_id: bytes | None = None, digest: bytes | None = None,
        path: tuple[int, ...] = (), label: str = "",
    ) -> None:
        t = now_ms()
        with self._tx() as c:
            c.execute(
                "INSERT INTO requests (request_id, kind, state, key_id, digest, path, label, created_ms, updated_ms)"
                " VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (request_id, kind, key_id, digest, _text(path), label, t, t),
            )

    def restart_request(self, request_id: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE requests SET state = 'running', error_code = 0, error_message = '', updated_ms = ? WHERE request_id = ?",
                (now_ms(), request_id),
            )

    def update_request(self, request_id: str, **fields: Any) -> None:
        if "signers" in fields:
            fields["signers"] = _text(fields["signers"])
        fields["updated_ms"] = now_ms()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as c:
            c.execute(f"UPDATE requests SET {cols} WHERE request_id = ?", (*fields.values(), request_id))

    def get_request(self, request_id: str) -> RequestRecord | None:
        rows = self._query("SELECT * FROM requests WHERE request_id = ?", (request_id,))
        return self._req(rows[0]) if rows else None

    def requests_in_state(self, state: str) -> list[RequestRecord]:
        return [self._req(r) for r in self._query("SELECT * FROM requests WHERE state = ?", (state,))]

    @staticmethod
    def _req(r: Any) -> RequestRecord:
        return RequestRecord(
            request_id=r[0], kind=r[1], state=r[2], key_id=r[3], digest=r[4], path=_ints(r[5]), label=r[6],
            signature=r[7], signers=_ints(r[8]), error_code=r[9], error_message=r[10], attempts=r[11],
            created_ms=r[12], updated_ms=r[13],
        )

