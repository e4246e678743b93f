"""The coordinator's own store health (coordinator/store_health.py): a write that fails as a store
failure (disk full, read-only, I/O error) sets it, from the database's write transaction, the RPC
layer's ``storage_failure``, a background pass's ``log_failure`` and the audit outbox flush; the
next successful write of that store clears it. ``ClusterStatus`` (``mpc status``) names the store
and the reason; ``mpcnet_coordinator_store_healthy`` exports it."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.audit_flush import AuditFlusher
from coordinator.config import load_coordinator_config
from coordinator.db import CoordinatorDb, KeyRecord
from coordinator.service import CoordinatorService
from coordinator.store_failure import log_failure
from coordinator.store_health import StoreHealth
from governance.errors import GovernanceError
from mpcnet.client import cli_render
from mpcnet.client.cli import _store_doc, _store_text
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.metrics import Metrics
from mpcnet.wire.mpc.v1 import coordinator_pb2 as cpb

FULL = "database or disk is full"


def _key(i: int) -> KeyRecord:
    return KeyRecord(bytes([i]) * 32, f"k{i}", b"\x02" + bytes([i]) * 32, b"", 2, 3, "active", 0, f"kg-{i}")


def _fail_a_write(db: CoordinatorDb, e: BaseException) -> None:
    with pytest.raises(type(e)), db._tx() as c:
        c.execute("SELECT 1")
        raise e


def test_a_failed_database_write_sets_it_and_the_next_write_clears_it(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    assert db.health.healthy() and db.health.problems() == {}
    _fail_a_write(db, sqlite3.OperationalError(FULL))
    assert not db.health.healthy() and db.health.problems() == {"database": FULL}
    db.add_key(_key(1))  # the next successful write
    assert db.health.healthy()
    db.close()


def test_a_refusal_that_is_no_store_failure_leaves_it_alone(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    db.add_key(_key(1))
    _fail_a_write(db, sqlite3.IntegrityError("UNIQUE constraint failed"))  # the statement's own refusal, not the disk
    assert db.health.healthy()
    _fail_a_write(db, ValueError("a bug"))
    _fail_a_write(db, sqlite3.OperationalError("no such table: nope"))  # hand-raised: no error code, counted
    assert db.health.problems() == {"database": "no such table: nope"}
    db.add_key(_key(2))
    e = sqlite3.OperationalError("no such column")  # a program error by its SQLite code: never the store
    e.sqlite_errorcode = 1  # type: ignore[attr-defined]
    _fail_a_write(db, e)
    assert db.health.healthy()
    db.close()


def test_log_failure_and_the_reason_is_one_bounded_line(caplog: pytest.LogCaptureFixture) -> None:
    h = StoreHealth()
    log = logging.getLogger("test.store_health")
    try:
        raise GovernanceError("database", "cannot append:\n\x1b[31m" + "x" * 500)
    except GovernanceError as e:
        log_failure(log, e, "background check failed", h.saw)
    (store, reason), = h.problems().items()
    assert store == "audit log" and "\n" not in reason and len(reason) <= 300
    try:
        raise RuntimeError("not a store")
    except RuntimeError as e:
        log_failure(log, e, "background check failed", h.saw)
    assert set(h.problems()) == {"audit log"}
    h.wrote("audit log")
    assert h.healthy()
    with pytest.raises(ValueError):
        h.failed("disk", "x")


class _Outbox:
    def __init__(self) -> None:
        self.rows: list[Any] = []

    def pending_audit(self, limit: int) -> list[Any]:
        return self.rows[:limit]

    def drop_audit(self, events: list[bytes]) -> None:
        self.rows = [r for r in self.rows if r.event not in events]


class _Log:
    def __init__(self) -> None:
        self.full = True

    def append_many_once(self, entries: list[Any]) -> None:
        if self.full:
            raise GovernanceError("database", FULL)


def test_the_audit_flush_sets_and_clears_the_audit_log(tmp_path: Path) -> None:
    from coordinator.db import AuditEvent, OutboxEntry

    outbox, audit, h = _Outbox(), _Log(), StoreHealth()
    flusher = AuditFlusher(outbox, audit, linger_s=0)  # type: ignore[arg-type]
    flusher.health = h
    outbox.rows = [OutboxEntry(1, "ev-1", AuditEvent("coordinator", "test", "", "ok", {}))]
    assert not flusher.flush()
    assert h.problems() == {"audit log": f"database: {FULL}"}
    audit.full = False
    assert flusher.flush() and h.healthy()


def test_the_gauge_follows_it_and_is_absent_until_wired() -> None:
    m = Metrics("coordinator")
    assert "mpcnet_coordinator_store_healthy" not in m.render().decode()  # no unset 0 meaning "failing"
    h = StoreHealth()
    m.watch_coordinator_store(h.healthy)
    m.watch_coordinator_store(h.healthy)  # registered once
    assert "mpcnet_coordinator_store_healthy 1.0" in m.render().decode()
    h.failed("database", FULL)
    assert "mpcnet_coordinator_store_healthy 0.0" in m.render().decode()
    n = Metrics("node")
    n.watch_coordinator_store(h.healthy)  # not a node's metric: a no-op
    assert "coordinator_store_healthy" not in n.render().decode()


def test_the_status_line_names_the_store_and_escapes_the_reason() -> None:
    st = cpb.ClusterStatusResponse()
    assert _store_text(st) == "ok" and _store_doc(st) == []
    st.store_failures.add(store="database", reason="disk \x1b[2Jfull\n")
    lines = cli_render.render([("store", _store_text(st))])
    assert len(lines) == 1 and "\x1b" not in lines[0] and "database cannot be written" in lines[0]
    assert _store_doc(st) == [{"store": "database", "reason": "disk \x1b[2Jfull\n"}]  # JSON escapes it


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("store-health"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture
def svc(lay: Layout, tmp_path: Path) -> Iterator[CoordinatorService]:
    cfg = load_coordinator_config(lay.coordinator_config)
    s = CoordinatorService(dataclasses.replace(cfg, db=tmp_path / "c.db", audit_db=tmp_path / "a.db"), Ed25519PrivateKey.generate())
    yield s
    s.stop()


def test_cluster_status_shows_a_store_failure_from_the_rpc_layer_until_a_write(svc: CoordinatorService) -> None:
    assert list(svc.ClusterStatus(cpb.ClusterStatusRequest(), None).store_failures) == []
    err = svc.storage_failure(sqlite3.OperationalError(FULL))  # what the RPC layer does with a handler's failure
    assert err is not None and err.code.name == "UNAVAILABLE"
    st = svc.ClusterStatus(cpb.ClusterStatusRequest(), None)
    assert [(f.store, f.reason) for f in st.store_failures] == [("database", FULL)]
    assert svc.storage_failure(ValueError("a bug")) is None
    svc.db.add_key(_key(3))  # the next successful write clears it
    assert list(svc.ClusterStatus(cpb.ClusterStatusRequest(), None).store_failures) == []
