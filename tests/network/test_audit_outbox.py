"""The node's audit outbox (issue 14, R3): an entry is committed with its state change, appended
to the hash-chained log once (never lost, never doubled) by the batched flusher, also across a
SIGKILL at any point (real processes)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from governance.audit import EVENT_KEY
from governance.errors import GovernanceError
from mpc_node.audit_outbox import AuditFlusher, OutboxEntry
from mpc_node.storage import NodeStore, RateLimited, Reservation as StoredReservation, ReservationConflict, ServedRequest
from mpcnet.common.stores.audit import AuditLog, QueuedEntry, verify_audit

from ..conftest import scaled
from .test_storage import KEY_ID, N, _put_active

ROOT = Path(__file__).resolve().parents[2]
AUDIT_KEY = Ed25519PrivateKey.generate()
AUDIT_PUB = AUDIT_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _grant(rid: str, session: bytes = b"\x01" * 32, attempt: int = 1) -> StoredReservation:
    return StoredReservation(rid, attempt, KEY_ID, b"\x02" * 32, (1, 2), session, 1_750_000_000_000)


def _entry(rid: str, outcome: str = "granted") -> OutboxEntry:
    return OutboxEntry("req-1", "sign-reserve", rid, outcome, {"attempt": 1, "by": "coordinator"})


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[NodeStore, AuditLog]]:
    store = NodeStore.open(tmp_path / "node.db", b"pw", 1, scrypt_n=N)
    audit = AuditLog.open(tmp_path / "audit.db", component="node-1", signing_key=AUDIT_KEY)
    yield store, audit
    audit.close()
    store.close()


def _actions(audit: AuditLog) -> list[tuple[str, str, str]]:
    return [(e.action, e.request_id, e.outcome) for e in audit.entries()]


def test_the_entry_is_committed_with_the_reservation_or_not_at_all(parts: tuple[NodeStore, AuditLog]) -> None:
    store, audit = parts
    assert store.reserve_attempt(_grant("r1"), audit=lambda new: _entry("r1", "granted" if new else "granted-again"))
    assert not store.reserve_attempt(_grant("r1"), audit=lambda new: _entry("r1", "granted" if new else "granted-again"))
    with pytest.raises(ReservationConflict):
        store.reserve_attempt(_grant("r1", session=b"\x09" * 32), audit=lambda new: _entry("r1", "never"))
    assert [(e.request_id, e.outcome) for e in store.pending_audit()] == [("r1", "granted"), ("r1", "granted-again")]
    flusher = AuditFlusher(store, audit)
    assert flusher.flush(drop=False) == 2 and flusher.batches == 1
    assert _actions(audit) == [("sign-reserve", "r1", "granted"), ("sign-reserve", "r1", "granted-again")]
    assert len(store.pending_audit()) == 2 and store.pending_audit(after_seq=store.audit_appended_seq) == []
    # the next outbox write deletes the appended rows in its own transaction (no commit of its own)
    store.reserve_attempt(_grant("r2"), audit=lambda new: _entry("r2"))
    assert [e.request_id for e in store.pending_audit()] == ["r2"]
    assert flusher.flush() == 1 and store.pending_audit() == [] and flusher.flush() == 0


def test_a_refused_share_queues_no_released_entry(parts: tuple[NodeStore, AuditLog]) -> None:
    store, _audit = parts
    _put_active(store)
    now = 1_750_000_000_000
    released = OutboxEntry("req-1", "sign-share", "a", "released", {"attempt": 1})
    store.put_used_presignature(b"\x10" * 32, KEY_ID, b"tomb", request=ServedRequest("a", KEY_ID, b"\0" * 32, now, (1, 60_000)),
                                audit=released)
    with pytest.raises(RateLimited):
        store.put_used_presignature(b"\x11" * 32, KEY_ID, b"tomb", request=ServedRequest("b", KEY_ID, b"\0" * 32, now, (1, 60_000)),
                                    audit=OutboxEntry("req-1", "sign-share", "b", "released", {"attempt": 1}))
    assert [(e.action, e.request_id) for e in store.pending_audit()] == [("sign-share", "a")]
    assert store.get_presignature(b"\x11" * 32) is None


def test_entries_are_checked_when_queued() -> None:
    with pytest.raises(GovernanceError) as e:
        OutboxEntry("req 1", "sign-share", "a", "released", {})
    assert e.value.field == "actor"
    with pytest.raises(GovernanceError) as e:
        OutboxEntry("req-1", "sign-share", "a", "released", {EVENT_KEY: "x"})
    assert "event" in e.value.field
    with pytest.raises(GovernanceError):
        OutboxEntry("req-1", "sign-share", "a", "released", {"Not A Token": 1})
    with pytest.raises(GovernanceError) as e:
        OutboxEntry("req-1", "sign-share", "a\n", "released", {})
    assert e.value.field == "request_id"


def test_a_crash_between_append_and_drop_appends_nothing_twice(parts: tuple[NodeStore, AuditLog], tmp_path: Path) -> None:
    store, audit = parts
    for i in range(5):
        store.queue_audit(_entry(f"r{i}"))
    flusher = AuditFlusher(store, audit, batch=2)

    def crash(n: int) -> None:
        if flusher.batches == 2:
            raise OSError("killed after the append, before the drop")

    flusher.on_batch = crash
    with pytest.raises(OSError):
        flusher.flush()
    assert len(audit.entries()) == 4 and len(store.pending_audit()) == 5  # nothing deleted yet: r2, r3 appended
    store.audit_appended_seq = 0  # a restarted process knows nothing of the appends
    assert AuditFlusher(store, audit).flush() == 1  # only r4 is new
    assert store.pending_audit() == []
    assert [rid for _a, rid, _o in _actions(audit)] == ["r0", "r1", "r2", "r3", "r4"]
    assert verify_audit(tmp_path / "audit.db", AUDIT_PUB).ok


def test_readers_and_direct_appends_see_the_queued_entries_first(parts: tuple[NodeStore, AuditLog]) -> None:
    store, audit = parts
    flusher = AuditFlusher(store, audit)
    flusher.attach()
    store.queue_audit(_entry("r1"))
    assert _actions(audit) == [("sign-reserve", "r1", "granted")]  # the read flushed first
    store.queue_audit(_entry("r2"))
    audit.append("node-1", "sign-share", request_id="r2", outcome="refused")
    assert [a[1:] for a in _actions(audit)] == [("r1", "granted"), ("r2", "granted"), ("r2", "refused")]


def test_append_many_once_checks_every_item_first(parts: tuple[NodeStore, AuditLog]) -> None:
    _store, audit = parts
    good = QueuedEntry("n1", "req-1", "sign-share", "r1", "released", {})
    bad = QueuedEntry("N-bad", "req-1", "sign-share", "r1", "released", {})
    with pytest.raises(GovernanceError) as e:
        audit.append_queued([good, bad])
    assert e.value.field == "entries[1].event" and audit.entries() == []
    assert audit.append_queued([good, good]) == 1 and audit.append_queued([good]) == 0
    assert audit.entries()[0].details[EVENT_KEY] == "n1"


def test_the_background_flusher_batches_concurrent_commits(parts: tuple[NodeStore, AuditLog]) -> None:
    store, audit = parts
    flusher = AuditFlusher(store, audit, linger_s=0.05)
    flusher.start()
    try:
        for i in range(20):
            store.queue_audit(_entry(f"r{i}"))
            flusher.notify()
        deadline = time.monotonic() + 10
        while store.pending_audit() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        flusher.stop()
    assert len(audit.entries()) == 20 and flusher.batches < 20


def test_concurrent_commits_flushes_and_readers_append_each_entry_once(parts: tuple[NodeStore, AuditLog]) -> None:
    """Concurrency: writers queue with their grants while the background flusher runs and
    readers flush through the hook; every grant ends up in the log exactly once, in seq order."""
    store, audit = parts
    flusher = AuditFlusher(store, audit, batch=7, linger_s=0.001)
    flusher.attach()
    flusher.start()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for j in range(40):
                entry = _entry(f"w{w}-{j}")
                store.reserve_attempt(_grant(entry.request_id), audit=lambda _new: entry)  # noqa: B023 (called at once)
                flusher.notify()
        except BaseException as e:  # reported below
            errors.append(e)

    def reader() -> None:
        try:
            for _ in range(30):
                audit.entries()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flusher.stop()
    flusher.flush()
    assert errors == []
    logged = Counter(e.request_id for e in audit.entries())
    assert set(logged) == {f"w{w}-{j}" for w in range(4) for j in range(40)} and set(logged.values()) == {1}
    assert store.pending_audit() == []


# --- real processes killed with SIGKILL --------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, random, signal, sys, time
    from pathlib import Path
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from mpc_node.audit_outbox import AuditFlusher, OutboxEntry
    from mpc_node.storage import NodeStore, Reservation

    d = Path(sys.argv[1]); mode = sys.argv[2]; start = int(sys.argv[3])
    key = load_pem_private_key((d / "audit.pem").read_bytes(), None)
    from mpcnet.common.stores.audit import AuditLog
    store = NodeStore.open(d / "node.db", b"pw", 1, scrypt_n=2**10)
    audit = AuditLog.open(d / "audit.db", component="node-1", signing_key=key)
    flusher = AuditFlusher(store, audit, batch=int(os.environ.get("BATCH", "8")), linger_s=0.001)
    flusher.flush()  # at start
    flusher.attach()
    if mode == "between":  # killed after a batch is appended, before it leaves the outbox
        flusher.on_batch = lambda n: os.kill(os.getpid(), signal.SIGKILL)
    flusher.start()
    print("ready", flush=True)
    for i in range(start, start + 100000):
        rid = f"r{i}"
        store.reserve_attempt(
            Reservation(rid, 1, b"\\x07" * 32, b"\\x02" * 32, (1, 2), os.urandom(32), 1),
            audit=lambda new, rid=rid: OutboxEntry("req-1", "sign-reserve", rid, "granted", {"attempt": 1}),
        )
        flusher.notify()
        print(f"ack {i}", flush=True)
    """
)


def _reservations(store: NodeStore) -> set[str]:
    with store._read() as c:
        return {str(r[0]) for r in c.execute("SELECT request_id FROM reservations")}


@pytest.mark.parametrize("mode", ["anywhere", "between"])
def test_a_sigkill_at_any_point_loses_no_entry_and_doubles_none(tmp_path: Path, mode: str) -> None:
    (tmp_path / "audit.pem").write_bytes(AUDIT_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    rng = random.SystemRandom()
    acked: set[str] = set()
    start = 0
    for _round in range(scaled(4)):
        p = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), mode, str(start)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        if mode == "anywhere":
            time.sleep(rng.uniform(0.05, 0.4))
            p.send_signal(signal.SIGKILL)
        out, _ = p.communicate(timeout=60)
        assert p.returncode == -signal.SIGKILL
        got = [int(line.split()[1]) for line in out.splitlines() if line.startswith("ack ")]
        acked |= {f"r{i}" for i in got}
        start = (max(got) + 1 if got else start) + 1000  # request ids never reused across runs
    assert acked  # the runs committed grants before they were killed
    store = NodeStore.open(tmp_path / "node.db", b"pw", 1, scrypt_n=N)
    audit = AuditLog.open(tmp_path / "audit.db", component="node-1", signing_key=AUDIT_KEY)
    try:
        AuditFlusher(store, audit).flush()  # what the next start does
        granted = _reservations(store)
        logged = Counter(e.request_id for e in audit.entries() if e.action == "sign-reserve")
        assert acked <= granted  # acknowledged writes survive
        assert set(logged) == granted  # every committed grant has its entry, and only those
        assert max(logged.values()) == 1  # none twice
        assert store.pending_audit() == []
        assert len({e.details[EVENT_KEY] for e in audit.entries()}) == len(audit.entries())
    finally:
        audit.close()
        store.close()
    report = verify_audit(tmp_path / "audit.db", AUDIT_PUB)
    assert report.ok, report
    assert json.dumps(sorted(logged))  # sanity: request ids are plain text
