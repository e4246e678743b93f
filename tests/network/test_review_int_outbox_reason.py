"""Review of the merged issue-14 branch as an operator: a node whose audit log cannot be written
(a full disk, a read-only audit directory) refuses signing sessions until an outbox flush
succeeds. What it says must tell the operator why: the node's log and the refusal name the
log's own reason (``database: database or disk is full``), escaped, not just an exception
class (``GovernanceError``), and the node's log says when the flushes work again."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from governance.errors import GovernanceError
from mpc_node.audit_outbox import AuditFlusher
from mpc_node.storage import NodeStore
from mpcnet.common.stores.audit import AuditLog

from .test_audit_outbox import AUDIT_KEY, _entry, _grant
from .test_storage import N


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[NodeStore, AuditLog]]:
    store = NodeStore.open(tmp_path / "node.db", b"pw", 1, scrypt_n=N)
    audit = AuditLog.open(tmp_path / "audit.db", component="node-1", signing_key=AUDIT_KEY)
    yield store, audit
    audit.close()
    store.close()


def _full_disk(audit: AuditLog, monkeypatch: pytest.MonkeyPatch, reason: str = "database or disk is full") -> None:
    def refuse(items: object) -> int:
        raise GovernanceError("database", reason)

    monkeypatch.setattr(audit, "append_queued", refuse)


def test_a_failed_flush_names_the_logs_reason(parts: tuple[NodeStore, AuditLog], monkeypatch: pytest.MonkeyPatch) -> None:
    store, audit = parts
    assert store.reserve_attempt(_grant("r1"), audit=lambda new: _entry("r1"))
    _full_disk(audit, monkeypatch)
    flusher = AuditFlusher(store, audit)
    with pytest.raises(GovernanceError):
        flusher.flush()
    assert "disk is full" in flusher.problem, flusher.problem  # what the node's refusal quotes


def test_the_problem_text_is_escaped_and_bounded(parts: tuple[NodeStore, AuditLog], monkeypatch: pytest.MonkeyPatch) -> None:
    store, audit = parts
    assert store.reserve_attempt(_grant("r1"), audit=lambda new: _entry("r1"))
    _full_disk(audit, monkeypatch, "bad\x1b[31m\nline " + "x" * 2000)
    flusher = AuditFlusher(store, audit)
    with pytest.raises(GovernanceError):
        flusher.flush()
    assert "\x1b" not in flusher.problem and "\n" not in flusher.problem
    assert len(flusher.problem) <= 300


def test_the_background_flusher_logs_the_reason_and_the_recovery(
    parts: tuple[NodeStore, AuditLog], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store, audit = parts
    real = audit.append_queued
    _full_disk(audit, monkeypatch)
    flusher = AuditFlusher(store, audit, linger_s=0.0)
    caplog.set_level(logging.INFO, logger="mpc_node.audit_outbox")
    flusher.start()
    try:
        assert store.reserve_attempt(_grant("r1"), audit=lambda new: _entry("r1"))
        flusher.notify()
        deadline = time.monotonic() + 5
        while not flusher.problem and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "disk is full" in caplog.text, caplog.text
        monkeypatch.setattr(audit, "append_queued", real)  # space again
        flusher.notify()
        while flusher.problem and time.monotonic() < deadline + 5:
            time.sleep(0.01)
        assert not flusher.problem
        deadline = time.monotonic() + 5
        while "flushed again" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "flushed again" in caplog.text, caplog.text
    finally:
        flusher.stop()
    assert [e.request_id for e in audit.entries()] == ["r1"]  # nothing lost
