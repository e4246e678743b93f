"""Clock tolerance: the expiry checks allow the verifier's configured tolerance, no more."""

from __future__ import annotations

import pytest

from governance.approval import (
    MAX_CLOCK_SKEW_MS,
    MAX_CLOCK_TOLERANCE_MS,
    ApprovalBundle,
    check_request,
    verify_approvals,
)
from governance.errors import GovernanceError

from .gov_util import NOW_MS, approve, policy, request

TOL = 5_000


def test_expiry_allows_the_tolerance_and_not_a_millisecond_more() -> None:
    req = request()
    ok = approve(req, "alice", "bert")
    assert verify_approvals(policy(), req, ok, now_ms=req.expires_at_ms + TOL, tolerance_ms=TOL)
    with pytest.raises(GovernanceError) as e:
        verify_approvals(policy(), req, ok, now_ms=req.expires_at_ms + TOL + 1, tolerance_ms=TOL)
    assert e.value.field == "expires_at_ms"
    # without a tolerance the old rule holds exactly
    with pytest.raises(GovernanceError):
        check_request(policy(), req, now_ms=req.expires_at_ms + 1)
    bundle = ApprovalBundle(req, ok)
    assert bundle.verify(policy(), now_ms=req.expires_at_ms + TOL, tolerance_ms=TOL)


def test_created_in_the_future_allows_the_tolerance_on_top_of_the_fixed_allowance() -> None:
    edge = NOW_MS + MAX_CLOCK_SKEW_MS + TOL
    ahead = request(created_at_ms=edge, expires_at_ms=edge + 60_000)
    check_request(policy(), ahead, now_ms=NOW_MS, tolerance_ms=TOL)
    too_far = request(created_at_ms=edge + 1, expires_at_ms=edge + 60_000)
    with pytest.raises(GovernanceError) as e:
        check_request(policy(), too_far, now_ms=NOW_MS, tolerance_ms=TOL)
    assert e.value.field == "created_at_ms"
    # a node 6 minutes behind refuses a fresh request even with the default 5 s tolerance
    fresh = request(created_at_ms=NOW_MS, expires_at_ms=NOW_MS + 60_000)
    with pytest.raises(GovernanceError) as e:
        check_request(policy(), fresh, now_ms=NOW_MS - 360_000, tolerance_ms=TOL)
    assert e.value.field == "created_at_ms"


@pytest.mark.parametrize("bad", [-1, MAX_CLOCK_TOLERANCE_MS + 1, True, 1.5])
def test_tolerance_out_of_range_names_the_field(bad: object) -> None:
    with pytest.raises(GovernanceError) as e:
        check_request(policy(), request(), now_ms=NOW_MS, tolerance_ms=bad)  # type: ignore[arg-type]
    assert e.value.field == "tolerance_ms"
