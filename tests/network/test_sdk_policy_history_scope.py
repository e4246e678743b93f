"""A compromised coordinator answers a key's policy history with another scope's changes
(second attacker round, issue 10): each change is admin-signed and chains, so without a scope
check a request for key A naming key B's policy had its approvals verified against B's
approvers and quorum. The SDK takes only changes of the scope it asked for."""

from __future__ import annotations

from typing import Any

import pytest

from governance.approval import Decision, SigningRequest, sign_approval
from governance.policy import DEFAULT_SCOPE, KeyPolicy, SignedPolicyChange, sign_policy_change
from mpcnet.client.errors import MpcError
from mpcnet.wire.mpc.v1 import coordinator_pb2
from tests.governance.gov_util import ADMIN_KEYS, APPROVER_KEYS, KEY_ID, OTHER_KEY_ID, change, policy
from tests.network.test_sdk_approvals_verified import Coordinator, client, info, signed

S = coordinator_pb2
B_POLICY = policy(quorum=1, approvers=("dave",))  # key B: dave alone may approve


def signed_for(p: KeyPolicy, scope: bytes) -> SignedPolicyChange:
    ch = change(p, None, scope=scope)
    return SignedPolicyChange(ch, tuple(sign_policy_change(ch, n, ADMIN_KEYS[n]) for n in ("ada", "bob")))


class Liar(Coordinator):
    """Key A's policy is the honest one; asked for key A's (or the default's) history it sends
    ``history`` (another scope's admin-signed changes)."""

    def __init__(self, answers: list[coordinator_pb2.SignRequestInfo], history: SignedPolicyChange) -> None:
        super().__init__(answers, signed(policy()))
        self.history = history

    def GetPolicyHistory(self, req: Any, timeout: float | None = None) -> Any:
        return S.PolicyHistory(scope=req.key_id, signed_changes=[self.history.to_bytes()])


@pytest.mark.parametrize("served", ["key B's history", "the default's history for the key's"])
def test_a_request_naming_another_scopes_policy_is_not_verified(served: str) -> None:
    q = SigningRequest("r-1", KEY_ID, b"\x02" * 32, (), "req-1", "x", 1, 2**62, B_POLICY.version, B_POLICY.digest())
    dave = S.ApprovalInfo(
        approver="dave", decision=S.DECISION_APPROVE, decided_unix_ms=5,
        signature=sign_approval(q, "dave", APPROVER_KEYS["dave"], Decision.APPROVE).signature,
    )
    other = signed_for(B_POLICY, OTHER_KEY_ID if served == "key B's history" else DEFAULT_SCOPE)
    c = client(Liar([info(q, dave)], other))
    if served == "key B's history":
        r = c.get_sign_request("r-1")
        assert not r.approvals_verified and r.approved_by == []
        assert "scope" in r.approvals_note
        with pytest.raises(MpcError) as e:
            c.policy_history(KEY_ID)
        assert e.value.code.name == "DATA_LOSS" and "scope" in e.value.message
    else:  # the default scope's changes, sent as the key's own history
        with pytest.raises(MpcError) as e:
            c.policy_history(KEY_ID)
        assert e.value.code.name == "DATA_LOSS" and "scope" in e.value.message
        with pytest.raises(MpcError) as e:  # and a key's changes sent as the default's
            client(Liar([], signed_for(B_POLICY, OTHER_KEY_ID))).policy_history(None)
        assert "scope" in e.value.message
