"""The coordinator's durable record of backup and recovery (issue 12; a mixin of
:class:`coordinator.db.CoordinatorDb`, tables of schema step 6). Public data only: the
coordinator never holds a plaintext piece or share.

* ``recovery_config_changes(version, signed_change)``: the admin-signed recovery configuration
  chain (canonical ``SignedRecoveryConfigChange``, version 1 first), append-only.
* ``backup_bundles``: every bundle file collected, by digest (SHA-256 of the file), with its
  key, epoch and configuration version; a new bundle of a key marks the older ones superseded
  in the same transaction.
* ``ceremonies``: drills, restores and break-glass exports: kind, key, epoch, bundle, state
  (``collecting`` -> ``running`` -> [``follow-up`` ->] ``done`` | ``failed``), the quorum m, the
  signed order (restore/export), the follow-up key operation, and the targets (JSON: share
  index, node, recipient, state, error, the node's judgement of every officer's piece).
* ``ceremony_pieces``: the officers' ciphertexts (age files to the targets), one submission per
  officer per ceremony (primary key).
* ``key_drills``: per key, the last drill and the last successful one.

Every state change is one transaction with its audit entry (queued in the outbox like every
state change of this database).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coordinator.db import AuditEvent
    from mpcnet.common.steadyclock import SteadyClock

BACKUP_MIGRATION: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS recovery_config_changes (version INTEGER PRIMARY KEY CHECK (version >= 1),"
    " signed_change BLOB NOT NULL, applied_ms INTEGER NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS recovery_config_is_final BEFORE UPDATE ON recovery_config_changes"
    " BEGIN SELECT RAISE(ABORT, 'a recovery configuration change is final'); END",
    "CREATE TABLE IF NOT EXISTS backup_bundles (digest BLOB PRIMARY KEY CHECK (length(digest) = 32),"
    " key_id BLOB NOT NULL CHECK (length(key_id) = 32), epoch INTEGER NOT NULL, config_version INTEGER NOT NULL,"
    " bundle BLOB NOT NULL, created_ms INTEGER NOT NULL, superseded INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS backup_bundles_by_key ON backup_bundles (key_id, created_ms)",
    "CREATE TABLE IF NOT EXISTS ceremonies (ceremony_id BLOB PRIMARY KEY CHECK (length(ceremony_id) = 16),"
    " kind TEXT NOT NULL CHECK (kind IN ('drill', 'restore', 'export')), key_id BLOB NOT NULL, epoch INTEGER NOT NULL,"
    " bundle_digest BLOB NOT NULL, config_version INTEGER NOT NULL, quorum INTEGER NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('collecting', 'running', 'follow-up', 'done', 'failed')),"
    " signed_order BLOB NOT NULL DEFAULT x'', follow_up TEXT NOT NULL DEFAULT '', targets TEXT NOT NULL,"
    " error TEXT NOT NULL DEFAULT '', started_by TEXT NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ceremonies_by_key ON ceremonies (key_id, created_ms)",
    "CREATE TABLE IF NOT EXISTS ceremony_pieces (ceremony_id BLOB NOT NULL, officer TEXT NOT NULL,"
    " officer_index INTEGER NOT NULL, share_index INTEGER NOT NULL, ciphertext BLOB NOT NULL, created_ms INTEGER NOT NULL,"
    " PRIMARY KEY (ceremony_id, officer, share_index))",
    "CREATE TABLE IF NOT EXISTS key_drills (key_id BLOB PRIMARY KEY CHECK (length(key_id) = 32), last_ms INTEGER NOT NULL,"
    " last_outcome TEXT NOT NULL, last_ok_ms INTEGER NOT NULL DEFAULT 0, last_ok_epoch INTEGER NOT NULL DEFAULT 0)",
)


class AlreadySubmitted(Exception):
    """The officer already gave pieces for this ceremony."""


@dataclass(frozen=True)
class BundleRecord:
    digest: bytes
    key_id: bytes
    epoch: int
    config_version: int
    created_ms: int
    superseded: bool
    size: int
    bundle: bytes = b""  # empty in listings


@dataclass(frozen=True)
class Outcome:
    """One officer's piece as a target node judged it."""

    officer: int
    name: str
    outcome: str


@dataclass(frozen=True)
class Target:
    """Who receives the pieces of one share: node (0: an export's off-line recipient) and the
    X25519 key the officers encrypt to."""

    share_index: int
    node: int
    recipient: bytes
    state: str = "waiting"  # "waiting" | "ok" | "failed"
    error: str = ""
    outcomes: tuple[Outcome, ...] = ()
    attestation: bytes = b""  # a drill: the node's signed EpochAttestation for the ceremony (b"": none)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "share_index": self.share_index, "node": self.node, "recipient": self.recipient.hex(), "state": self.state,
            "error": self.error, "outcomes": [[o.officer, o.name, o.outcome] for o in self.outcomes],
        }
        if self.attestation:
            out["attestation"] = self.attestation.hex()
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Target:
        return cls(
            int(d["share_index"]), int(d["node"]), bytes.fromhex(d["recipient"]), str(d["state"]), str(d["error"]),
            tuple(Outcome(int(o[0]), str(o[1]), str(o[2])) for o in d["outcomes"]), bytes.fromhex(d.get("attestation", "")),
        )


@dataclass(frozen=True)
class CeremonyRecord:
    ceremony_id: bytes
    kind: str  # "drill" | "restore" | "export"
    key_id: bytes
    epoch: int
    bundle_digest: bytes
    config_version: int
    quorum: int
    state: str
    signed_order: bytes
    follow_up: str
    targets: tuple[Target, ...]
    error: str
    started_by: str
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class PieceRecord:
    officer: str
    officer_index: int
    share_index: int
    ciphertext: bytes


@dataclass(frozen=True)
class DrillRecord:
    key_id: bytes
    last_ms: int
    last_outcome: str  # "ok" | "failed: ..."
    last_ok_ms: int
    last_ok_epoch: int


_CEREMONY_COLS = (
    "ceremony_id, kind, key_id, epoch, bundle_digest, config_version, quorum, state, signed_order, follow_up, targets, error,"
    " started_by, created_ms, updated_ms"
)


def _targets_text(targets: tuple[Target, ...]) -> str:
    return json.dumps([t.to_json() for t in targets], sort_keys=True)


def _ceremony(r: Any) -> CeremonyRecord:
    return CeremonyRecord(
        bytes(r[0]), r[1], bytes(r[2]), int(r[3]), bytes(r[4]), int(r[5]), int(r[6]), r[7], bytes(r[8]), r[9],
        tuple(Target.from_json(d) for d in json.loads(r[10])), r[11], r[12], int(r[13]), int(r[14]),
    )


class BackupStore:
    """Mixin of :class:`coordinator.db.CoordinatorDb` (the tables above)."""

    if TYPE_CHECKING:
        def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]: ...
        @staticmethod
        def _enqueue(c: sqlite3.Connection, ev: AuditEvent) -> None: ...
        steady: SteadyClock

    # --- the recovery configuration chain ------------------------------------------------------
    def put_recovery_config(self, version: int, signed_change: bytes, audit: AuditEvent, now: int) -> None:
        """Append verified change ``version`` with its audit entry (one transaction);
        ValueError unless the latest stored version is ``version - 1``."""
        with self._tx() as c:
            row = c.execute("SELECT MAX(version) FROM recovery_config_changes").fetchone()
            latest = 0 if row is None or row[0] is None else int(row[0])
            if latest != version - 1:
                raise ValueError(f"recovery configuration: stored version is {latest}, expected {version - 1}")
            c.execute(
                "INSERT INTO recovery_config_changes (version, signed_change, applied_ms) VALUES (?, ?, ?)",
                (version, signed_change, now),
            )
            self._enqueue(c, audit)

    def recovery_config_changes(self) -> list[bytes]:
        """Every stored change, version 1 first."""
        return [bytes(r[0]) for r in self._query("SELECT signed_change FROM recovery_config_changes ORDER BY version")]

    # --- bundles -------------------------------------------------------------------------------
    def add_bundle(self, rec: BundleRecord, audit: AuditEvent) -> bool:
        """Store a bundle (``rec.bundle``), marking the key's other bundles superseded, with its
        audit entry; False (nothing changes) if a bundle with this digest is already stored."""
        with self._tx() as c:
            if c.execute("SELECT 1 FROM backup_bundles WHERE digest = ?", (rec.digest,)).fetchone():
                return False
            c.execute("UPDATE backup_bundles SET superseded = 1 WHERE key_id = ?", (rec.key_id,))
            c.execute(
                "INSERT INTO backup_bundles (digest, key_id, epoch, config_version, bundle, created_ms, superseded)"
                " VALUES (?, ?, ?, ?, ?, ?, 0)",
                (rec.digest, rec.key_id, rec.epoch, rec.config_version, rec.bundle, rec.created_ms),
            )
            self._enqueue(c, audit)
            return True

    def get_bundle(self, digest: bytes) -> BundleRecord | None:
        rows = self._query(
            "SELECT digest, key_id, epoch, config_version, created_ms, superseded, length(bundle), bundle FROM backup_bundles"
            " WHERE digest = ?", (digest,),
        )
        return _bundle(rows[0], with_bytes=True) if rows else None

    def newest_bundle(self, key_id: bytes) -> BundleRecord | None:
        """The key's bundle recorded last (the one not superseded). Bundles and ceremonies are
        ordered by rowid (rows are only inserted), never by ``created_ms``: that is the wall
        clock, and after it was stepped back a superseded bundle dated ahead would be "the newest"
        (a collection every pass, drills of the wrong bundle)."""
        rows = self._query(
            "SELECT digest, key_id, epoch, config_version, created_ms, superseded, length(bundle), bundle FROM backup_bundles"
            " WHERE key_id = ? ORDER BY rowid DESC LIMIT 1", (key_id,),
        )
        return _bundle(rows[0], with_bytes=True) if rows else None

    def list_bundles(self, key_id: bytes | None = None, limit: int = -1) -> list[BundleRecord]:
        """Bundles (without their bytes), newest (recorded last) first; at most ``limit`` (-1: all)."""
        sql = "SELECT digest, key_id, epoch, config_version, created_ms, superseded, length(bundle) FROM backup_bundles"
        rows = self._query(sql + " WHERE key_id = ? ORDER BY rowid DESC LIMIT ?", (key_id, limit)) if key_id else (
            self._query(sql + " ORDER BY rowid DESC LIMIT ?", (limit,))
        )
        return [_bundle(r, with_bytes=False) for r in rows]

    # --- ceremonies ----------------------------------------------------------------------------
    def add_ceremony(self, rec: CeremonyRecord, audit: AuditEvent) -> bool:
        """Open a ceremony with its audit entry; False if the id exists (nothing changes)."""
        with self._tx() as c:
            if c.execute("SELECT 1 FROM ceremonies WHERE ceremony_id = ?", (rec.ceremony_id,)).fetchone():
                return False
            c.execute(
                f"INSERT INTO ceremonies ({_CEREMONY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.ceremony_id, rec.kind, rec.key_id, rec.epoch, rec.bundle_digest, rec.config_version, rec.quorum, rec.state,
                 rec.signed_order, rec.follow_up, _targets_text(rec.targets), rec.error, rec.started_by, rec.created_ms,
                 rec.updated_ms),
            )
            # its steady creation time (CoordinatorDb.ceremony_clock_ms): a step back across a restart revives none
            c.execute(
                "INSERT OR REPLACE INTO ceremony_steady (ceremony_id, created_steady_ms) VALUES (?, ?)",
                (rec.ceremony_id, self.steady.now_ms()),
            )
            self._enqueue(c, audit)
            return True

    def get_ceremony(self, ceremony_id: bytes) -> CeremonyRecord | None:
        rows = self._query(f"SELECT {_CEREMONY_COLS} FROM ceremonies WHERE ceremony_id = ?", (ceremony_id,))
        return _ceremony(rows[0]) if rows else None

    def list_ceremonies(
        self, key_id: bytes | None = None, states: tuple[str, ...] | None = None, limit: int = -1
    ) -> list[CeremonyRecord]:
        """Ceremonies, newest (recorded last: rowid, see :meth:`newest_bundle`) first; at most ``limit`` (-1: all)."""
        sql, args, where = f"SELECT {_CEREMONY_COLS} FROM ceremonies", list[object](), []
        if key_id is not None:
            where.append("key_id = ?")
            args.append(key_id)
        if states is not None:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args.extend(states)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_ceremony(r) for r in self._query(sql + " ORDER BY rowid DESC LIMIT ?", (*args, limit))]

    def add_pieces(
        self, ceremony_id: bytes, officer: str, officer_index: int, pieces: list[tuple[int, bytes]], audit: AuditEvent, now: int
    ) -> int:
        """Store one officer's pieces (share index, ciphertext) of a collecting ceremony with the
        audit entry; returns how many officers have submitted now. ValueError naming why if the
        ceremony is not collecting, :class:`AlreadySubmitted` if the officer already submitted
        (nothing changes either way)."""
        with self._tx() as c:
            row = c.execute("SELECT state FROM ceremonies WHERE ceremony_id = ?", (ceremony_id,)).fetchone()
            if row is None or row[0] != "collecting":
                raise ValueError(f"the ceremony is {'unknown' if row is None else row[0]}, not collecting")
            if c.execute("SELECT 1 FROM ceremony_pieces WHERE ceremony_id = ? AND officer = ?", (ceremony_id, officer)).fetchone():
                raise AlreadySubmitted(officer)
            c.executemany(
                "INSERT INTO ceremony_pieces (ceremony_id, officer, officer_index, share_index, ciphertext, created_ms)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(ceremony_id, officer, officer_index, s, ct, now) for s, ct in pieces],
            )
            c.execute("UPDATE ceremonies SET updated_ms = ? WHERE ceremony_id = ?", (now, ceremony_id))
            self._enqueue(c, audit)
            (n,) = c.execute("SELECT COUNT(DISTINCT officer) FROM ceremony_pieces WHERE ceremony_id = ?", (ceremony_id,)).fetchone()
            return int(n)

    def ceremony_pieces(self, ceremony_id: bytes) -> list[PieceRecord]:
        """The pieces of a ceremony, by officer index then share index."""
        rows = self._query(
            "SELECT officer, officer_index, share_index, ciphertext FROM ceremony_pieces WHERE ceremony_id = ?"
            " ORDER BY officer_index, share_index", (ceremony_id,),
        )
        return [PieceRecord(r[0], int(r[1]), int(r[2]), bytes(r[3])) for r in rows]

    def update_ceremony(
        self, ceremony_id: bytes, *, from_states: tuple[str, ...], state: str, now: int, targets: tuple[Target, ...] | None = None,
        error: str | None = None, follow_up: str | None = None, audit: AuditEvent | None = None,
        drill: tuple[bool, str] | None = None,
    ) -> bool:
        """Compare-and-set the ceremony's state (from one of ``from_states``), with its targets,
        error and follow-up operation if given, its audit entry and (a drill that ended:
        ``drill`` = (ok, outcome)) the key's drill record, in one transaction. False if the
        ceremony was not in one of ``from_states`` (nothing changes)."""
        with self._tx() as c:
            row = c.execute("SELECT state, key_id, epoch FROM ceremonies WHERE ceremony_id = ?", (ceremony_id,)).fetchone()
            if row is None or row[0] not in from_states:
                return False
            sets, args = ["state = ?", "updated_ms = ?"], list[object]([state, now])
            if targets is not None:
                sets.append("targets = ?")
                args.append(_targets_text(targets))
            if error is not None:
                sets.append("error = ?")
                args.append(error[:1000])
            if follow_up is not None:
                sets.append("follow_up = ?")
                args.append(follow_up)
            c.execute(f"UPDATE ceremonies SET {', '.join(sets)} WHERE ceremony_id = ?", (*args, ceremony_id))
            if drill is not None:
                ok, outcome = drill
                key_id, epoch = bytes(row[1]), int(row[2])
                c.execute(
                    "INSERT INTO key_drills (key_id, last_ms, last_outcome, last_ok_ms, last_ok_epoch) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (key_id) DO UPDATE SET last_ms = excluded.last_ms, last_outcome = excluded.last_outcome,"
                    " last_ok_ms = CASE WHEN ? THEN excluded.last_ok_ms ELSE key_drills.last_ok_ms END,"
                    " last_ok_epoch = CASE WHEN ? THEN excluded.last_ok_epoch ELSE key_drills.last_ok_epoch END",
                    (key_id, now, outcome[:300], now if ok else 0, epoch if ok else 0, ok, ok),
                )
            if audit is not None:
                self._enqueue(c, audit)
            return True

    def drill_record(self, key_id: bytes) -> DrillRecord | None:
        rows = self._query(
            "SELECT key_id, last_ms, last_outcome, last_ok_ms, last_ok_epoch FROM key_drills WHERE key_id = ?", (key_id,)
        )
        return DrillRecord(bytes(rows[0][0]), int(rows[0][1]), rows[0][2], int(rows[0][3]), int(rows[0][4])) if rows else None


def _bundle(r: Any, *, with_bytes: bool) -> BundleRecord:
    return BundleRecord(
        bytes(r[0]), bytes(r[1]), int(r[2]), int(r[3]), int(r[4]), bool(r[5]), int(r[6]), bytes(r[7]) if with_bytes else b"",
    )
