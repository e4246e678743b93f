"""``tally_verified`` (the coordinator's live tally, issue 14 R5) agrees with the full ``tally``
on approvals whose signatures were vetted: same state, same approvers, same error field."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from governance.approval import Approval, Decision, tally, tally_verified
from governance.errors import GovernanceError
from tests.test_suite_settings import scaled

from .gov_util import APPROVER_KEYS, OUTSIDER_KEY, approve, policy, request

NAMES = sorted(APPROVER_KEYS)


def _outcome(fn: object, *args: object) -> object:
    try:
        t = fn(*args)  # type: ignore[operator]
    except GovernanceError as e:
        return ("error", e.field)
    return (t.state, t.approved, t.rejected)


@settings(max_examples=scaled(60), deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(list(Decision))), max_size=6),
    st.integers(1, 3),
    st.sampled_from([("alice", "bert", "carol"), ("alice", "bert", "carol", "dave"), ("bert", "dave")]),
)
def test_tally_verified_equals_tally_on_vetted_input(
    decisions: list[tuple[str, Decision]], quorum: int, approvers: tuple[str, ...]
) -> None:
    pol = policy(quorum=min(quorum, len(approvers)), approvers=approvers)
    req = request(policy_digest=pol.digest())
    # vetted: genuine signatures (a non-member's is still genuine: both refuse it by membership)
    approvals = [approve(req, name, decision=d)[0] for name, d in decisions]
    assert _outcome(tally_verified, pol, req, approvals) == _outcome(tally, pol, req, approvals)


def test_tally_verified_skips_only_the_signature_check() -> None:
    pol = policy()
    req = request()
    good = approve(req, "alice", "bert")
    forged = [good[0], Approval("bert", Decision.APPROVE, OUTSIDER_KEY.sign(b"x"))]
    with pytest.raises(GovernanceError) as e:
        tally(pol, req, forged)
    assert e.value.field == "approvals[1].signature"
    assert tally_verified(pol, req, forged).state == "approved"  # why it is only for vetted input
    for bad, field in (
        ([good[0], good[0]], "approvals[1].approver"),
        (approve(req, "dave"), "approvals[0].approver"),
        (["alice"], "approvals[0]"),
    ):
        with pytest.raises(GovernanceError) as e:
            tally_verified(pol, req, bad)  # type: ignore[arg-type]
        assert e.value.field == field
    with pytest.raises(GovernanceError) as e:
        tally_verified(pol, request(requester="nobody"), good)
    assert e.value.field == "requester"
