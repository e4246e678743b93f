"""The coordinator's request path without redundant work (issue 14 R1, R5, R8, R9): a decision
verifies only its own approval (the ones this process vetted are tallied without their
signatures; after a restart the stored ones are verified again), the quorum decision hands its
record and decisions to the signer without reading them again, every state change's audit
entry lands once, and watchers share one info per change."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import governance.approval as approval_module
from coordinator.info_cache import InfoCache
from governance.approval import ApprovalBundle
from tests.coordinator.signreq_util import Harness


@pytest.fixture
def h(tmp_path: Path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def _count_verifies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = approval_module.ed25519_verify

    def counting(*a: object) -> bool:
        calls[0] += 1
        return real(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(approval_module, "ed25519_verify", counting)
    return calls


def test_a_quorum_decision_verifies_only_its_own_approval(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    sreq = h.submit("lean-1")
    calls = _count_verifies(monkeypatch)
    assert h.decide(sreq, "alice").state == h.decide(sreq, "alice").state  # a retry changes nothing
    first = calls[0]
    reads = [0]
    real_approvals = h.db.approvals

    def approvals(rid: str) -> list:  # type: ignore[type-arg]
        reads[0] += 1
        return real_approvals(rid)

    monkeypatch.setattr(h.db, "approvals", approvals)
    calls[0] = 0
    h.decide(sreq, "bert")  # the quorum: SIGNING, then (inline here) signed
    assert calls[0] == 1  # check_approval of bert's decision; alice's (vetted) is not verified again
    assert first == 1  # alice's first decision: its own check (the retry is answered from the store)
    assert reads[0] == 2  # the duplicate check before, the answer's info after (not the log line, not the signer)
    assert h.db.get_sign_request("lean-1").state == "done"  # type: ignore[union-attr]
    bundle = ApprovalBundle.from_bytes(h.bundles["lean-1"])
    assert [a.approver for a in bundle.approvals] == ["alice", "bert"]
    h.sr.flush_audit()
    log = [(e.action, e.details.get("event")) for e in h.audit.entries() if e.request_id == "lean-1"]
    assert [a for a, _ in log] == ["sign-request", "sign-decision", "sign-decision", "sign-approved", "sign-done"]
    assert len({ev for _, ev in log}) == len(log)  # every entry once
    assert h.db.pending_audit() == []


def test_after_a_restart_the_stored_approvals_are_verified_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(tmp_path)
    sreq = h.submit("lean-2")
    h.decide(sreq, "alice")
    h.close()
    h = Harness(tmp_path)  # a new process: nothing vetted
    try:
        calls = _count_verifies(monkeypatch)
        h.decide(sreq, "bert")
        assert calls[0] == 3  # bert's check, then the full tally of both stored decisions
        assert h.db.get_sign_request("lean-2").state == "done"  # type: ignore[union-attr]
        calls[0] = 0
        sreq3 = h.submit("lean-3")
        h.decide(sreq3, "alice")
        h.decide(sreq3, "carol")
        assert calls[0] == 2  # both vetted here: one verification per decision
    finally:
        h.close()


def test_watchers_share_one_info_per_change(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    sreq = h.submit("lean-4")
    reads = [0]
    real = h.db.approvals

    def approvals(rid: str) -> list:  # type: ignore[type-arg]
        reads[0] += 1
        return real(rid)

    monkeypatch.setattr(h.db, "approvals", approvals)
    first = h.sr._watched("lean-4")
    for _ in range(5):  # five watchers (or backstop wakes) of one unchanged request
        assert h.sr._watched("lean-4") is first
    assert reads[0] == 1
    h.decide(sreq, "alice")  # a change: _notify drops the cached info
    reads[0] = 0
    _rec, info, data = h.sr._watched("lean-4")
    assert [a.approver for a in info.approvals] == ["alice"] and data != first[2] and reads[0] == 1
    stream = h.sr.watch("lean-4", "req-1", "requester", None, lifetime_s=0.0)
    assert next(stream).approvals[0].approver == "alice" and reads[0] == 1


def test_the_info_cache_never_keeps_a_read_that_raced_with_a_change() -> None:
    cache: InfoCache[str] = InfoCache(capacity=2)
    t = cache.token("a")
    cache.invalidate("a")  # the request changed while "a" was being read
    assert not cache.put("a", t, "stale") and cache.get("a") is None
    t = cache.token("a")
    assert cache.put("a", t, "fresh") and cache.get("a") == "fresh"
    t_b = cache.token("b")
    cache.invalidate(None)  # everything (recovery)
    assert not cache.put("b", t_b, "stale") and cache.get("a") is None
    t_a = cache.token("a")
    cache.token("b")
    cache.token("c")  # evicts "a" (capacity 2): its token is refused
    assert not cache.put("a", t_a, "late") and cache.get("a") is None and len(cache) == 0


def test_the_request_path_does_not_wait_for_the_audit_log(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the flusher running, a stuck audit log (here: an append that blocks) delays the
    entries, not the requests; they land, each once, when it is released."""
    gate = threading.Event()
    real = h.audit.append_many_once

    def slow(entries):  # type: ignore[no-untyped-def]
        gate.wait(30)
        return real(entries)

    monkeypatch.setattr(h.audit, "append_many_once", slow)
    h.sr.flusher.start()
    t0 = time.monotonic()
    sreq = h.submit("lean-5")
    h.decide(sreq, "alice")
    h.decide(sreq, "bert")
    assert h.db.get_sign_request("lean-5").state == "done"  # type: ignore[union-attr]
    assert time.monotonic() - t0 < 10 and h.audit.entries() == []  # nothing appended yet, nothing waited for
    gate.set()
    deadline = time.monotonic() + 10
    while len(h.audit.entries()) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e.action for e in h.audit.entries()] == ["sign-request", "sign-decision", "sign-decision", "sign-approved", "sign-done"]


def test_one_commit_between_the_quorum_approval_and_the_start_of_signing(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quorum decision's transaction (approval, move to SIGNING, both outbox entries) is the
    only commit the request's thread makes before the signer runs: the audit appends and the
    outbox drop are the flusher's (before issue 14: 4 commits, 2 appends and a drop added)."""
    import coordinator.db as cdb
    import mpcnet.common.stores.audit as caudit

    h.sr.flusher.start()
    sreq = h.submit("lean-6")
    h.decide(sreq, "alice")
    me, commits = threading.get_ident(), []
    for module in (cdb, caudit):
        real = module.write_transaction

        @contextlib.contextmanager
        def counting(conn: Any, real: Any = real) -> Iterator[Any]:
            if threading.get_ident() == me:
                commits.append(1)
            with real(conn) as c:
                yield c

        monkeypatch.setattr(module, "write_transaction", counting)
    at_sign: list[int] = []
    sign = h.sr.signer
    h.sr.signer = lambda *a: (at_sign.append(len(commits)), sign(*a))[1]  # type: ignore[assignment]
    h.decide(sreq, "bert")
    assert at_sign == [1]
