"""A keygen whose coordinator cannot write its database (disk full) while the DKG runs answers
UNAVAILABLE; recording and auditing its failure then fail the same way. Those two follow-ups were
logged with a traceback each (three per keygen, found on a real cluster with a full tmpfs as the
coordinator's data directory); a full disk is the host's condition and gets one line naming the
store, while anything else keeps its traceback (:func:`coordinator.store_failure.log_failure`,
also used by the ceremonies, the background passes and the expiry sweep, which a full disk
made repeat a traceback per pass)."""

from __future__ import annotations

import logging
import sqlite3
import threading

import pytest

from coordinator.store_failure import log_failure
from governance.errors import GovernanceError


@pytest.mark.parametrize(("error", "store"), [
    (sqlite3.OperationalError("database or disk is full"), "database"),
    (OSError(28, "No space left on device"), "database"),
    (GovernanceError("database", "database or disk is full"), "audit log"),
])
def test_a_store_failure_is_one_line_naming_the_store(caplog, error, store) -> None:
    caplog.set_level(logging.ERROR, logger="coordinator")
    try:
        raise error
    except Exception as e:
        log_failure(logging.getLogger("coordinator.service"), e, "request kg-1: cannot record its failure")
    (rec,) = caplog.records
    assert rec.exc_info is None and "\n" not in rec.getMessage()
    assert rec.getMessage().startswith(f"request kg-1: cannot record its failure: the coordinator cannot use its {store} (")


def test_anything_else_keeps_its_traceback(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="coordinator")
    try:
        raise RuntimeError("a bug")
    except Exception as e:
        log_failure(logging.getLogger("coordinator.service"), e, "request kg-1: cannot audit its failure")
    (rec,) = caplog.records
    assert rec.exc_info is not None and rec.getMessage() == "request kg-1: cannot audit its failure"


def test_a_ceremony_run_stopped_by_a_full_disk_is_one_line_and_retried(tmp_path, caplog, monkeypatch) -> None:
    from tests.coordinator.recovery_util import World

    w = World(tmp_path)
    try:
        def full(cid: bytes) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(w.ceremonies, "_run", full)
        caplog.set_level(logging.ERROR, logger="coordinator")
        w.ceremonies.run(b"\x07" * 16)
        (rec,) = [r for r in caplog.records if "ceremony" in r.getMessage()]
        assert rec.exc_info is None and "cannot use its database (database or disk is full)" in rec.getMessage()
        assert w.ceremonies._retry_at[b"\x07" * 16] > 0  # the background pass tries it again
    finally:
        w.close()


def test_the_refill_loop_and_the_schedule_pass_log_a_full_disk_in_one_line(caplog) -> None:
    """The presignature refiller runs every few seconds and the scheduler every health pass: a
    full disk made each pass a traceback."""
    from types import SimpleNamespace

    from coordinator.pool import PresignPools
    from coordinator.schedule import RefreshScheduler

    caplog.set_level(logging.ERROR, logger="coordinator")

    def step() -> None:
        raise sqlite3.OperationalError("database or disk is full")

    from coordinator.store_health import StoreHealth

    wake = SimpleNamespace(wait=lambda s: None, clear=lambda: None)
    pools_health, sched_health = StoreHealth(), StoreHealth()  # each pass also tells the store health (mpc status)
    PresignPools._run(SimpleNamespace(_stop=_OnePass(), step=step, _wake=wake,  # type: ignore[arg-type]
                                      deps=SimpleNamespace(db=SimpleNamespace(health=pools_health))))
    key = SimpleNamespace(key_id=b"\x01" * 32)
    sched = SimpleNamespace(db=SimpleNamespace(list_keys=lambda state: [key], health=sched_health), clock=lambda: 0,
                            due=lambda k, now: step(), _lock=threading.Lock(), _unanswered=set(), nodes={},
                            _fresh_answers=frozenset, _asking=frozenset())
    assert RefreshScheduler.check(sched) == []  # type: ignore[arg-type]
    msgs = [r for r in caplog.records if "cannot use its database" in r.getMessage()]
    assert len(msgs) == 2 and all(r.exc_info is None for r in msgs), [r.getMessage() for r in caplog.records]
    assert pools_health.problems() == sched_health.problems() == {"database": "database or disk is full"}


class _OnePass:
    """A stop event clear for one pass of the loop (its condition and its except clause)."""

    def __init__(self) -> None:
        self.checks = 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks > 2


def test_real_sqlite_errors_are_classified_by_their_result_code(tmp_path) -> None:
    """A locked or read-only database is the store (retried); the program's own SQL error is not
    (review of f81816a: it was, and work retrying store failures retried it for ever)."""
    from coordinator.store_failure import store_failure

    path = tmp_path / "t.db"
    a = sqlite3.connect(path, isolation_level=None)
    a.execute("CREATE TABLE t (x)")
    with pytest.raises(sqlite3.OperationalError) as e:
        a.execute("SELECT y FROM t")
    assert store_failure(e.value) is None
    a.execute("BEGIN EXCLUSIVE")
    b = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as e:
        b.execute("INSERT INTO t VALUES (1)")
    assert "locked" in str(e.value) and store_failure(e.value) == "database"
    a.execute("ROLLBACK")
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as e:
        ro.execute("INSERT INTO t VALUES (1)")
    assert "readonly" in str(e.value) and store_failure(e.value) == "database"
    for c in (a, b, ro):
        c.close()
    assert store_failure(TimeoutError()) is None and store_failure(ConnectionResetError()) is None
    assert store_failure(OSError(28, "No space left on device")) == "database"
