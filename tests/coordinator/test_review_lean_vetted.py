"""Review of the lean request path (issue 14): the live tally skips re-verifying approvals this
process vetted (coordinator/vetted.py). A vetted approval must not help anything a fresh check
would refuse: replayed under another request id, with its decision flipped, under another
approver's name, or under a superseded policy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from coordinator.db import ApprovalRecord
from governance.approval import SigningRequest
from tests.coordinator.signreq_util import Harness


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def _settle(h: Harness, sreq: SigningRequest, stored: list[ApprovalRecord]) -> str | None:
    signed = h.sr.policies.policy_for(sreq.key_id)
    move = h.sr._settlement(signed.change.new_policy, sreq)(stored)
    return None if move is None else move.to_state


def test_vetted_approvals_do_not_carry_over(h: Harness) -> None:
    try:
        r1, r2 = h.submit("r-vet-1"), h.submit("r-vet-2")
        h.decide(r1, "alice")
        h.decide(r1, "bert")
        stored = h.db.approvals("r-vet-1")
        assert len(stored) == 2
        assert _settle(h, r1, stored) == "signing"  # the control: vetted, tallied without verifying
        assert _settle(h, r2, stored) is None  # replayed under another request id
        flipped = [dataclasses.replace(a, decision="reject") for a in stored]
        assert _settle(h, r1, flipped) is None  # the signatures cover "approve"
        renamed = [stored[0], dataclasses.replace(stored[1], approver="carol")]
        assert _settle(h, r1, renamed) is None  # bert's signature under carol's name
        other = dataclasses.replace(h.sr.policies.policy_for(r1.key_id).change.new_policy, approval_quorum=1)
        assert h.sr._settlement(other, r1)(stored) is None  # not the policy the request names
    finally:
        h.close()
