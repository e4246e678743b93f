"""R10 (issue 14): the pool assignment and attempt 1 commit in the transaction that moves a
request to SIGNING, so the signing thread only sends; a decision that does not reach the quorum
assigns nothing, and a failing assignment rolls the decision back whole."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.pool_store import PresigRow
from governance.approval import Decision
from governance.reservation import MAX_SIGN_ATTEMPTS

from .signreq_util import KEY_ID, Harness

R = bytes([2]) + bytes(32)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    x = Harness(tmp_path)
    x.db.add_ready_presigs(
        [PresigRow(hashlib.sha256(b"%d" % i).digest(), KEY_ID, 0, (), (1, 2), R, R) for i in range(3)], 1
    )
    seen: dict[str, Any] = {}
    real = x._sign

    def sign(rid: str, *a: Any) -> Any:
        seen[rid] = (x.db.presig_assigned_to(rid), x.db.sign_attempts_taken(rid))  # what the signing thread finds
        return real(rid, *a)

    x.sr.signer = sign
    x.seen = seen  # type: ignore[attr-defined]
    yield x
    x.close()


def _hook(h: Harness, calls: list[str]) -> None:
    def presig_assign(rid: str, key_id: bytes, path: tuple[int, ...]) -> Any:
        def assign(c: sqlite3.Connection) -> object:
            calls.append(rid)
            return h.db.assign_presig_in(c, rid, key_id, 0, path, [(1, 2)], MAX_SIGN_ATTEMPTS, 5)

        return assign

    h.sr.presig_assign = presig_assign


def test_the_assignment_commits_with_the_quorum(h: Harness) -> None:
    calls: list[str] = []
    _hook(h, calls)
    sreq = h.submit("r10-1")
    h.decide(sreq, "alice")
    assert calls == [] and h.db.presig_assigned_to("r10-1") is None  # no quorum yet: nothing assigned
    h.decide(sreq, "bert")
    assert calls == ["r10-1"]
    a, taken = h.seen["r10-1"]  # type: ignore[attr-defined]
    assert a is not None and (a.request_id, a.attempt, a.state) == ("r10-1", 1, "assigned") and taken == 1


def test_a_rejection_assigns_nothing(h: Harness) -> None:
    calls: list[str] = []
    _hook(h, calls)
    sreq = h.submit("r10-2")
    h.decide(sreq, "alice", Decision.REJECT)
    h.decide(sreq, "bert", Decision.REJECT)
    assert calls == [] and len(h.db.ready_presigs()) == 3


def test_a_failing_assignment_rolls_the_decision_back(h: Harness) -> None:
    def broken(rid: str, key_id: bytes, path: tuple[int, ...]) -> Any:
        def assign(c: sqlite3.Connection) -> object:
            raise sqlite3.OperationalError("disk I/O error")

        return assign

    h.sr.presig_assign = broken
    sreq = h.submit("r10-3")
    h.decide(sreq, "alice")
    with pytest.raises(sqlite3.OperationalError):
        h.decide(sreq, "bert")
    rec = h.db.get_sign_request("r10-3")
    assert rec is not None and rec.state == "pending_approval"
    assert [a.approver for a in h.db.approvals("r10-3")] == ["alice"]  # bert's decision is not stored either
    assert h.db.sign_attempts_taken("r10-3") == 0


def _counting(h: Harness, prepared: list[str]) -> None:
    calls: list[str] = []
    _hook(h, calls)
    inner = h.sr.presig_assign

    def presig_assign(rid: str, key_id: bytes, path: tuple[int, ...]) -> Any:
        prepared.append(rid)
        return inner(rid, key_id, path)

    h.sr.presig_assign = presig_assign


def test_an_approval_short_of_the_quorum_prepares_no_assignment(h: Harness) -> None:
    # issue 14: the key read and the signer sets of the assignment are made only for an approval
    # that can complete the quorum (quorum 2: the second approval, not the first)
    prepared: list[str] = []
    _counting(h, prepared)
    sreq = h.submit("r10-4")
    h.decide(sreq, "alice")
    assert prepared == []
    h.decide(sreq, "alice")  # a retry of the same approval: still one approver
    assert prepared == []
    h.decide(sreq, "bert")
    assert prepared == ["r10-4"]
    a, taken = h.seen["r10-4"]  # type: ignore[attr-defined]
    assert a is not None and (a.attempt, a.state) == (1, "assigned") and taken == 1


def test_a_rejection_first_still_counts_only_approvals(h: Harness) -> None:
    prepared: list[str] = []
    _counting(h, prepared)
    sreq = h.submit("r10-5")
    h.decide(sreq, "carol", Decision.REJECT)
    h.decide(sreq, "alice")  # one approval (and one rejection) of the 2 needed: none prepared
    assert prepared == []
    h.decide(sreq, "bert")
    assert prepared == ["r10-5"]


def test_a_decision_recorded_after_the_read_still_reaches_signing(h: Harness) -> None:
    # the race the pre-check allows: bert's decision read no approval (alice's was recorded
    # after that read), so it prepared no assignment; it completes the quorum all the same and
    # the request goes to SIGNING, where the signing thread assigns (none is left assigned here)
    prepared: list[str] = []
    _counting(h, prepared)
    sreq = h.submit("r10-6")
    h.decide(sreq, "alice")
    real = h.db.approvals
    reads: list[str] = []

    def approvals(rid: str) -> Any:
        reads.append(rid)
        return [] if len(reads) == 1 else real(rid)  # the first read (bert's check) misses alice's

    h.db.approvals = approvals  # type: ignore[method-assign,assignment]
    h.decide(sreq, "bert")
    assert prepared == []
    rec = h.db.get_sign_request("r10-6")
    assert rec is not None and rec.state in ("signing", "done")
    assert "r10-6" in h.seen  # type: ignore[attr-defined]
    a, taken = h.seen["r10-6"]  # type: ignore[attr-defined]
    assert a is None and taken == 0  # nothing assigned in the quorum transaction: the signing thread does it
