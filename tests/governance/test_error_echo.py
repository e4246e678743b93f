"""Issue 10 item 5 in the pure layer: a governance error quotes at most a short, escaped prefix
of a caller's value, even in the field path (a 500 000-character approver name or audit detail
key in a 1 MiB policy change must not come back whole in the error, where it would overflow a
client's status message)."""

from __future__ import annotations

import pytest

from governance.audit import check_details
from governance.errors import GovernanceError
from governance.policy import KeyPolicy, RateLimit

from .gov_util import APPROVER_KEYS, raw

HUGE = "a\x1b[2J" + "x" * 500_000


def test_a_huge_member_name_is_quoted_short_and_escaped() -> None:
    with pytest.raises(GovernanceError) as e:
        KeyPolicy(
            version=1, approvers={HUGE: raw(APPROVER_KEYS["alice"])}, approval_quorum=1, requesters=frozenset({"r"}),
            ttl_seconds=60, rate_limit=RateLimit(max_signatures=1, window_seconds=60),
        )
    msg = str(e.value)
    assert len(msg) < 400 and "500005 characters" in msg and "\x1b" not in msg, msg[:400]


def test_a_huge_audit_detail_key_is_quoted_short() -> None:
    with pytest.raises(GovernanceError) as e:
        check_details({HUGE: 1})
    assert len(str(e.value)) < 400 and "\x1b" not in str(e.value)
