"""Review of issue 14's audit outbox (mpc_node/audit_outbox.py): what a queued entry must
satisfy so that it can always be appended, two flushers on one data directory, and what an
entry says about when its state change happened."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from governance.audit import EVENT_KEY, MAX_DETAILS
from governance.errors import GovernanceError
from mpc_node.audit_outbox import AuditFlusher, OutboxEntry
from mpc_node.storage import NodeStore
from mpcnet.common.stores.audit import AuditLog, verify_audit

from .test_audit_outbox import AUDIT_KEY, AUDIT_PUB, _entry, _grant
from .test_storage import N


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[NodeStore, AuditLog]]:
    store = NodeStore.open(tmp_path / "node.db", b"pw", 1, scrypt_n=N)
    audit = AuditLog.open(tmp_path / "audit.db", component="node-1", signing_key=AUDIT_KEY)
    yield store, audit
    audit.close()
    store.close()


def test_an_entry_that_could_not_be_appended_is_refused_when_queued(parts: tuple[NodeStore, AuditLog]) -> None:
    """An entry with MAX_DETAILS details passes the log's own checks, but the flusher adds the
    ``event`` and ``committed_ms`` keys: queued, it would fail every flush and hold every later entry back for good
    (and, with the outbox's problem, stop signing). It must be refused at construction, before
    its state change is written."""
    store, audit = parts
    full = {f"k{i}": i for i in range(MAX_DETAILS)}
    with pytest.raises(GovernanceError) as e:
        OutboxEntry("req-1", "sign-reserve", "r1", "granted", full)
    assert "details" in e.value.field
    most = OutboxEntry("req-1", "sign-reserve", "r1", "granted", {f"k{i}": i for i in range(MAX_DETAILS - 2)})
    assert store.reserve_attempt(_grant("r1"), audit=lambda new: most)
    assert AuditFlusher(store, audit).flush() == 1  # the largest entry accepted is appended
    assert [len(e.details) for e in audit.entries()] == [MAX_DETAILS]


def test_two_flushers_on_one_data_directory_append_each_entry_once(tmp_path: Path) -> None:
    """A restart while the old process still flushes (the data-dir lock aside): two stores and
    two logs on the same files, writers and both flushers racing; every entry once, in a chain
    that verifies."""
    a_store = NodeStore.open(tmp_path / "node.db", b"pw", 1, scrypt_n=N)
    b_store = NodeStore.open(tmp_path / "node.db", b"pw", 1, scrypt_n=N)
    a_log = AuditLog.open(tmp_path / "audit.db", component="node-1", signing_key=AUDIT_KEY)
    b_log = AuditLog.open(tmp_path / "audit.db", component="node-1", signing_key=AUDIT_KEY)
    flushers = [AuditFlusher(a_store, a_log, batch=3, linger_s=0.0), AuditFlusher(b_store, b_log, batch=3, linger_s=0.0)]
    errors: list[BaseException] = []

    def writer(store: NodeStore, w: int) -> None:
        try:
            for j in range(30):
                store.reserve_attempt(_grant(f"w{w}-{j}", bytes([w + 1]) * 32), audit=lambda new, w=w, j=j: _entry(f"w{w}-{j}"))
        except BaseException as e:
            errors.append(e)

    def flushing(f: AuditFlusher, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                f.flush()
            except GovernanceError as e:  # "database is locked" under contention: retried
                if "locked" not in e.reason:
                    errors.append(e)
            except BaseException as e:
                errors.append(e)

    stop = threading.Event()
    fl = [threading.Thread(target=flushing, args=(f, stop)) for f in flushers]
    ws = [threading.Thread(target=writer, args=(s, w)) for w, s in enumerate((a_store, b_store))]
    for t in fl + ws:
        t.start()
    for t in ws:
        t.join()
    stop.set()
    for t in fl:
        t.join()
    flushers[0].flush()
    flushers[1].flush()
    try:
        assert errors == []
        logged = Counter(e.request_id for e in a_log.entries())
        assert set(logged) == {f"w{w}-{j}" for w in range(2) for j in range(30)} and set(logged.values()) == {1}
        assert len({e.details[EVENT_KEY] for e in a_log.entries()}) == 60
        assert a_store.pending_audit() == []
    finally:
        for x in (a_log, b_log, a_store, b_store):
            x.close()
    report = verify_audit(tmp_path / "audit.db", AUDIT_PUB)
    assert report.ok, report


def test_an_entry_flushed_after_a_restart_says_when_its_state_change_committed(tmp_path: Path) -> None:
    """The log stamps an entry when it is appended; an entry queued before a SIGKILL is
    appended at the next start, perhaps hours later. It carries ``committed_ms``, when its
    state change (and the entry) committed to the store, so the trail still says when the
    share was released."""
    store = NodeStore.open(tmp_path / "node.db", b"pw", 1, scrypt_n=N)
    before = time.time_ns() // 1_000_000
    store.reserve_attempt(_grant("r1"), audit=lambda new: _entry("r1"))
    after = time.time_ns() // 1_000_000
    store.close()  # killed before any flush
    later = after + 3_600_000
    store = NodeStore.open(tmp_path / "node.db", b"pw", 1, scrypt_n=N)
    audit = AuditLog.open(tmp_path / "audit.db", component="node-1", signing_key=AUDIT_KEY, clock=lambda: later)
    try:
        AuditFlusher(store, audit).flush()  # what the next start does
        (e,) = audit.entries()
        assert e.timestamp_ms == later
        assert isinstance(e.details["committed_ms"], int) and before <= e.details["committed_ms"] <= after
    finally:
        audit.close()
        store.close()
    with pytest.raises(GovernanceError):
        OutboxEntry("req-1", "sign-reserve", "r1", "granted", {"committed_ms": 1})  # the outbox's


def test_a_flusher_whose_store_was_closed_stops_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A stopping node closes its store under the background flusher: the flusher ends without an
    ERROR (the queued entries stay in the database file; the next start flushes them), and a
    failure while the store is open is still an ERROR."""
    import logging

    store = NodeStore.open(tmp_path / "node.db", b"pw", 1, scrypt_n=N)
    audit = AuditLog.open(tmp_path / "audit.db", component="node-1", signing_key=AUDIT_KEY)
    f = AuditFlusher(store, audit, linger_s=0.0)
    with caplog.at_level(logging.INFO, logger="mpc_node.audit_outbox"):
        t = f.start()
        store.close()
        assert store.closed
        f.notify()
        t.join(5)
        assert not t.is_alive()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    audit.close()
