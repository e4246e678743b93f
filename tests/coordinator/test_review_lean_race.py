"""Review of the lean request path (issue 14): the quorum decision hands its request and final
decisions to the signing thread (no re-read). Two approvers deciding at the same time: alice's
decision commits (still pending), bert's commits the move to SIGNING, and alice's thread
reaches ``_start_signing`` first. The signing must still get the decisions that made the quorum,
not alice's view before bert's (a bundle the nodes would refuse: a failed request)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from coordinator.db import ApprovalRecord
from governance.approval import ApprovalBundle, Decision
from tests.coordinator.signreq_util import Harness


def test_the_signing_gets_the_quorum_when_the_other_approver_moved_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    spawned: list[str] = []
    h.sr._spawn = spawned.append  # type: ignore[method-assign,assignment]  # run the signing below, by hand
    real_record = h.db.record_decision
    real_start = h.sr._start_signing
    alice_committed, bert_committed, alice_started = threading.Event(), threading.Event(), threading.Event()

    def record(rid: str, approval: ApprovalRecord, *args: Any, **kwargs: Any) -> str:
        out = real_record(rid, approval, *args, **kwargs)
        if approval.approver == "alice":
            alice_committed.set()
            assert bert_committed.wait(10)  # bert moves it to SIGNING before alice reads it back
        else:
            bert_committed.set()
            alice_started.wait(2)  # alice's thread starts the signing first
        return out

    def start(rid: str, known: Any = None) -> None:
        real_start(rid, known)
        if threading.current_thread().name == "alice":
            alice_started.set()

    h.db.record_decision = record  # type: ignore[method-assign,assignment]
    h.sr._start_signing = start  # type: ignore[method-assign]
    try:
        sreq = h.submit("r-race")
        errors: list[BaseException] = []

        def decide(who: str) -> None:
            try:
                if who == "bert":
                    assert alice_committed.wait(10)
                h.decide(sreq, who)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=decide, args=(w,), name=w) for w in ("alice", "bert")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert not errors, errors
        assert spawned == ["r-race"]
        h.sr._signing_thread("r-race")
        bundle = ApprovalBundle.from_bytes(h.bundles["r-race"])
        assert sorted(a.approver for a in bundle.approvals if a.decision is Decision.APPROVE) == ["alice", "bert"]
    finally:
        h.close()
