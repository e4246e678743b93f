"""Issue 15 gap: requests the coordinator's restart recovery settles are counted in
``mpcnet_requests_total{state}`` like the live paths count them, exactly once (by the process that
commits the move), over real SQLite files (``tests/coordinator/lifecycle_util``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from governance.approval import Decision, SigningRequest, sign_approval
from mpcnet.common.metrics import Metrics

from ..coordinator.lifecycle_util import APPROVER_KEYS, TTL_S, World


class MeteredWorld(World):
    """A World whose every (re)started process has fresh metrics, wired before ``recover``."""

    metrics: Metrics

    def _open(self) -> None:
        super()._open()
        self.metrics = Metrics("coordinator")
        self.requests.metrics = self.metrics

    def count(self, state: str) -> float:
        v = self.metrics.registry.get_sample_value("mpcnet_requests_total", {"state": state})
        return 0.0 if v is None else v

    def counts(self) -> dict[str, float]:
        return {s: self.count(s) for s in ("created", "approved", "done", "rejected", "expired", "failed") if self.count(s)}


@pytest.fixture
def world(tmp_path: Path):
    w = MeteredWorld(tmp_path)
    yield w
    w.close()


def _store_decision_only(w: World, rid: str, approver: str, decision: Decision) -> None:
    """What a process killed between storing a decision and moving the request leaves behind."""
    rec = w.db.get_sign_request(rid)
    assert rec is not None
    a = sign_approval(SigningRequest.from_bytes(rec.request), approver, APPROVER_KEYS[approver], decision)
    with w.db._tx() as c:
        c.execute(
            "INSERT INTO approvals (request_id, approver, decision, signature, decided_ms, seq) VALUES (?, ?, ?, ?, ?, ?)",
            (rid, approver, decision.value, a.signature, w.clock(), 1),
        )


def test_a_quorum_settled_at_the_restart_counts_approved_once_then_done(world: MeteredWorld) -> None:
    world.submit("q1")
    world.decide("q1", "alice", Decision.APPROVE)
    _store_decision_only(world, "q1", "bert", Decision.APPROVE)
    world.restart()
    assert world.db.get_sign_request("q1").state == "signing"
    assert world.counts() == {"approved": 1.0}
    assert world.sign_next() == "q1"
    assert world.counts() == {"approved": 1.0, "done": 1.0}
    assert world.metrics.registry.get_sample_value("mpcnet_signatures_total") == 1.0
    world.restart()  # nothing left to settle: the next process counts nothing again
    assert world.counts() == {}


def test_a_rejection_settled_at_the_restart_counts_rejected_once(world: MeteredWorld) -> None:
    world.submit("r1")
    world.decide("r1", "alice", Decision.REJECT)
    _store_decision_only(world, "r1", "bert", Decision.REJECT)
    world.restart()
    assert world.db.get_sign_request("r1").state == "rejected"  # 2 of 3 approvals no longer possible
    assert world.counts() == {"rejected": 1.0}
    world.restart()
    assert world.counts() == {}


def test_a_request_left_signing_ends_after_the_restart_counted_once(world: MeteredWorld) -> None:
    world.submit("s1")
    world.decide("s1", "alice", Decision.APPROVE)
    world.decide("s1", "bert", Decision.APPROVE)  # SIGNING; the process dies before it signs
    assert world.counts() == {"created": 1.0, "approved": 1.0}
    world.restart()
    assert world.counts() == {}  # resumed, not yet ended
    assert world.sign_next() == "s1"
    assert world.counts() == {"done": 1.0}


def test_requests_expired_or_timed_out_after_the_restart_are_counted(world: MeteredWorld) -> None:
    world.submit("e1")  # pending: expires by the sweep
    world.submit("e2")
    world.decide("e2", "alice", Decision.APPROVE)
    world.decide("e2", "bert", Decision.APPROVE)  # signing: expires when resumed too late
    world.restart()
    world.clock.ms += (TTL_S + 1) * 1000
    world.requests.expire_due()
    assert world.sign_next() == "e2"
    assert world.db.get_sign_request("e1").state == "expired" and world.db.get_sign_request("e2").state == "expired"
    assert world.counts() == {"expired": 2.0}
    world.requests.expire_due()
    assert world.counts() == {"expired": 2.0}
