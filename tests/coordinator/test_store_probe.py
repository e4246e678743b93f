"""The coordinator's store-failing state clears itself (coordinator/store_health.py: StoreProbe):
before, "database failing" set by one failed write stayed -- in ``mpc status``, the
``mpcnet_coordinator_store_healthy`` gauge and the watch -- until some other write happened to
succeed, so an idle coordinator looked broken long after the disk was fixed. The background pass
now probes each failing store first (the database: a row rewritten in ``store_probe``; the audit
log: a small fsynced file in its directory when the outbox is empty) and clears it once the probe
succeeds; ``mpc status --watch`` shows a store line (ok / FAILING since ...)."""

from __future__ import annotations

import dataclasses
import errno
import io
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator import store_health
from coordinator.config import load_coordinator_config
from coordinator.db import CoordinatorDb
from coordinator.service import CoordinatorService
from coordinator.store_health import StoreHealth, StoreProbe
from mpcnet.cluster.launcher import Layout, prepare

FULL = "database or disk is full"


def _full() -> sqlite3.OperationalError:
    e = sqlite3.OperationalError(FULL)
    e.sqlite_errorcode = 13
    return e


def _fail_a_write(db: CoordinatorDb) -> None:
    with pytest.raises(sqlite3.OperationalError), db._tx() as c:
        c.execute("SELECT 1")
        raise _full()


def test_a_probe_write_clears_the_database_once_it_succeeds(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    try:
        _fail_a_write(db)
        assert db.health.problems() == {"database": FULL} and "database" in db.health.failing_since()
        since = db.health.failing_since()["database"]
        real = db.probe_write
        calls: list[int] = []

        def still_full(now_ms: int) -> None:  # the disk is still full: the probe's own write fails
            calls.append(now_ms)
            with db._tx():
                raise _full()

        probe = StoreProbe(db.health, still_full, tmp_path, lambda: not db.pending_audit(1), healthy_every_s=3600)
        assert probe.run() == {"database": FULL} and len(calls) == 1
        assert db.health.failing_since()["database"] == since  # the streak's first failure is kept
        caplog.set_level(logging.INFO, logger="coordinator.store_health")
        probe = StoreProbe(db.health, real, tmp_path, lambda: not db.pending_audit(1), healthy_every_s=3600)
        assert probe.run() == {}  # the disk was fixed: nothing else wrote, the probe cleared it
        assert db.health.healthy() and db.health.failing_since() == {}
        assert any("database can be written again" in r.getMessage() for r in caplog.records)
        row = db._query("SELECT written_ms FROM store_probe")
        assert len(row) == 1 and row[0][0] > 0
        # healthy: the database is probed again only every healthy_every_s
        monkeypatch.setattr(db, "probe_write", lambda now_ms: (_ for _ in ()).throw(AssertionError("probed")))
        probe._write_db = db.probe_write
        assert probe.run() == {}
    finally:
        db.close()


def test_a_healthy_database_is_probed_periodically_and_a_failure_is_seen(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    try:
        clock = [0.0]

        def ro(now_ms: int) -> None:
            e = sqlite3.OperationalError("attempt to write a readonly database")
            e.sqlite_errorcode = 8
            with db._tx():
                raise e

        probe = StoreProbe(db.health, ro, tmp_path, lambda: True, healthy_every_s=60, clock=lambda: clock[0])
        assert probe.run() == {"database": "attempt to write a readonly database"}  # the first pass probes
        probe._write_db = db.probe_write
        clock[0] = 1.0
        assert probe.run() == {}  # failing: probed at every pass, whatever the period
    finally:
        db.close()


def test_the_audit_log_clears_by_a_probe_file_only_with_an_empty_outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = StoreHealth()
    h.failed("audit log", "database: database or disk is full")
    empty = [False]
    probe = StoreProbe(h, lambda now_ms: None, tmp_path, lambda: empty[0])
    assert probe.run() == {"audit log": "database: database or disk is full"}  # queued entries: the flusher's job
    empty[0] = True

    def ro(directory: Path, size: int) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(store_health, "probe_write", ro)
    assert probe.run() == {"audit log": "[Errno 30] Read-only file system"}
    monkeypatch.undo()
    assert probe.run() == {}
    assert list(tmp_path.iterdir()) == []  # the probe file is removed


def test_a_read_only_audit_file_is_not_cleared_by_a_probe_file_beside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe file in the audit log's directory succeeds while the log's own file cannot be
    written (a read-only mode; root ignores modes, so its open is refused here by hand): the
    audit log stays failing until the file itself opens for writing."""
    h = StoreHealth()
    h.failed("audit log", "attempt to write a readonly database")
    audit_db = tmp_path / "audit.db"
    audit_db.write_bytes(b"")
    (tmp_path / "audit.db-wal").write_bytes(b"")
    real_open = os.open
    refused = {str(audit_db), str(tmp_path / "audit.db-wal")}

    def open_(path: str | os.PathLike[str], flags: int, *a: int) -> int:
        if str(path) in refused and flags & os.O_RDWR:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *a)

    monkeypatch.setattr(store_health.os, "open", open_)
    probe = StoreProbe(h, lambda now_ms: None, tmp_path, lambda: True, audit_db=audit_db)
    assert "audit log" in probe.run()
    refused.discard(str(audit_db))
    assert "audit log" in probe.run()  # its WAL too
    refused.clear()
    assert probe.run() == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.db", "audit.db-wal"]  # nothing left beside them


def test_the_probe_never_raises(tmp_path: Path) -> None:
    h = StoreHealth()
    h.failed("database", "x")

    def bug(now_ms: int) -> None:
        raise ValueError("a bug")

    assert StoreProbe(h, bug, tmp_path, lambda: True).run() == {"database": "x"}


# --- the coordinator's background pass runs it -------------------------------------------------


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("store-probe"), 3, 2, scrypt_n=2**10, test_mode=True, policy_max_age_s=0)


@pytest.fixture
def svc(lay: Layout, tmp_path: Path) -> Iterator[CoordinatorService]:
    cfg = load_coordinator_config(lay.coordinator_config)
    s = CoordinatorService(
        dataclasses.replace(cfg, db=tmp_path / "c.db", audit_db=tmp_path / "a.db", health_interval_s=0.05),
        Ed25519PrivateKey.generate(),
    )
    yield s
    s.stop()


def test_the_background_pass_clears_it_with_no_other_write(svc: CoordinatorService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(svc, "probe", lambda: None)  # no nodes run here: no health calls
    err = svc.storage_failure(_full())  # an RPC met the full disk
    assert err is not None and svc.db.health.problems() == {"database": FULL}
    svc.db.health.failed("audit log", "database: database or disk is full")
    from mpcnet.wire.mpc.v1 import coordinator_pb2 as cpb

    assert {f.store for f in svc.ClusterStatus(cpb.ClusterStatusRequest(), None).store_failures} == {"database", "audit log"}
    t = threading.Thread(target=svc._background, daemon=True)
    t.start()
    end = time.monotonic() + 10
    while not svc.db.health.healthy():
        assert time.monotonic() < end, svc.db.health.problems()
        time.sleep(0.02)
    assert list(svc.ClusterStatus(cpb.ClusterStatusRequest(), None).store_failures) == []
    svc._stop.set()
    t.join(5)


# --- mpc status --watch: a store line ------------------------------------------------------------


def _watch_status(*failures: tuple[str, str]) -> Any:
    from mpcnet.wire.mpc.v1 import coordinator_pb2 as cpb

    st = cpb.ClusterStatusResponse(threshold=2, parties=3, roster_version=1)
    for store, reason in failures:
        st.store_failures.add(store=store, reason=reason)
    return st


def test_the_watch_shows_a_store_line_failing_since_its_first_snapshot_until_ok() -> None:
    from mpcnet.client import cli_watch

    statuses = [
        _watch_status(), _watch_status(("database", "disk \x1b[2Jfull\n")), None,
        _watch_status(("database", "still full")), _watch_status(),
    ]
    walls = iter([1_700_000_000.0 + 10 * i for i in range(len(statuses))])

    class Client:
        def __init__(self) -> None:
            self.i = 0

        def cluster_status(self) -> Any:
            st = statuses[self.i]
            self.i += 1
            if st is None:
                import grpc

                from mpcnet.client.sdk import MpcError
                raise MpcError(grpc.StatusCode.UNAVAILABLE, "down")
            return st

        def list_keys(self) -> list[Any]:
            return []

    c = Client()
    out = io.StringIO()
    rc = cli_watch.watch(lambda: cli_watch.take(c, {}, "", lambda e, t: b"", 1.0, wall=lambda: next(walls)), 0, out,
                         tty=False, count=len(statuses), sleep=lambda s: None)
    assert rc == 0
    stores = [ln.strip() for ln in out.getvalue().splitlines() if ln.strip().startswith("store:")]
    assert stores[0] == "store: ok"
    assert stores[1].startswith("store: database FAILING since 22:13:30 UTC (disk") and "\x1b" not in stores[1]
    assert stores[2] == "store: database FAILING since 22:13:30 UTC (still full)"  # since the first snapshot that saw it
    assert stores[3] == "store: ok" and len(stores) == 4  # the unanswered snapshot has no store line


def test_the_watch_json_names_the_failing_stores() -> None:
    from mpcnet.client import cli_watch

    cur = cli_watch.Snapshot(0.0, 1_700_000_100.0, _watch_status(("audit log", "read-only")))
    prev = cli_watch.Snapshot(0.0, 1_700_000_000.0, _watch_status(("audit log", "full")), store_since={"audit log": 1_700_000_000.0})
    doc = cli_watch.snapshot_doc(prev, cli_watch.with_store_since(prev, cur))
    assert doc["store_failures"] == [{"store": "audit log", "reason": "read-only", "failing_since_unix_ms": 1_700_000_000_000}]
    assert cli_watch.snapshot_doc(None, cli_watch.Snapshot(0.0, 1.0, _watch_status()))["store_failures"] == []
