"""Issue 14 (client CPU): a decision a client just signed is remembered as verified for that
client only (:class:`mpcnet.client.approval_cache.OwnApprovals`), and only when the policy names
the client's own public key for its approver; any other approval, the same one under another
policy, another request or another key, and the same one checked by another client, still gets
the full Ed25519 check."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.approval import Approval, Decision, sign_approval
from governance.errors import GovernanceError
from mpcnet.client import approval_cache
from tests.governance.gov_util import APPROVER_KEYS, policy, raw, request


@pytest.fixture(autouse=True)
def checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    approval_cache.forget()
    calls: list[str] = []
    real = approval_cache.check_approval  # type: ignore[attr-defined]

    def counted(p: Any, q: Any, a: Approval) -> None:
        calls.append(a.approver)
        real(p, q, a)

    monkeypatch.setattr(approval_cache, "check_approval", counted)
    yield calls
    approval_cache.forget()


def test_own_approval_under_own_key_is_not_verified_again(checks: list[str]) -> None:
    pol, req = policy(), request()
    mine = sign_approval(req, "alice", APPROVER_KEYS["alice"], Decision.APPROVE)
    own = approval_cache.OwnApprovals()
    assert own.remember(pol, req, mine, raw(APPROVER_KEYS["alice"]))
    approval_cache.check_approval_once(pol, req, mine, own)
    assert checks == []
    # another client of the process (another approver) verifies it, as another process would
    approval_cache.check_approval_once(pol, req, mine, approval_cache.OwnApprovals())
    assert checks == ["alice"]


def test_a_key_the_policy_does_not_name_is_not_remembered(checks: list[str]) -> None:
    pol, req = policy(), request()
    other = Ed25519PrivateKey.generate()  # e.g. a rotated identity key the policy does not list yet
    mine = sign_approval(req, "alice", other, Decision.APPROVE)
    own = approval_cache.OwnApprovals()
    assert not own.remember(pol, req, mine, raw(other))
    with pytest.raises(GovernanceError, match="does not verify"):
        approval_cache.check_approval_once(pol, req, mine, own)
    assert checks == ["alice"]


def test_an_approver_the_policy_does_not_name_is_not_remembered(checks: list[str]) -> None:
    pol, req = policy(approvers=("bert", "carol")), request()
    mine = sign_approval(req, "alice", APPROVER_KEYS["alice"], Decision.APPROVE)
    own = approval_cache.OwnApprovals()
    assert not own.remember(pol, req, mine, raw(APPROVER_KEYS["alice"]))
    with pytest.raises(GovernanceError, match="not an approver"):
        approval_cache.check_approval_once(pol, req, mine, own)


def test_remembered_only_for_that_policy_request_decision_and_signature(checks: list[str]) -> None:
    pol, req = policy(), request()
    mine = sign_approval(req, "alice", APPROVER_KEYS["alice"], Decision.APPROVE)
    own = approval_cache.OwnApprovals()
    own.remember(pol, req, mine, raw(APPROVER_KEYS["alice"]))
    # another request: same signature does not verify over it
    with pytest.raises(GovernanceError):
        approval_cache.check_approval_once(pol, request(request_id="req_0002"), mine, own)
    # the same signature claimed as a rejection
    with pytest.raises(GovernanceError):
        approval_cache.check_approval_once(pol, req, Approval("alice", Decision.REJECT, mine.signature), own)
    # another policy naming the same key: checked in full (and valid)
    approval_cache.check_approval_once(policy(version=2), req, mine, own)
    assert checks == ["alice", "alice", "alice"]


def test_concurrent_remember_and_check(checks: list[str]) -> None:
    pol = policy()
    reqs = [request(request_id=f"req_{i:04d}") for i in range(32)]
    errors: list[BaseException] = []
    own = approval_cache.OwnApprovals(limit=40)  # one client's, shared by its threads; evicts under way

    def run(name: str) -> None:
        try:
            for q in reqs:
                a = sign_approval(q, name, APPROVER_KEYS[name], Decision.APPROVE)
                own.remember(pol, q, a, raw(APPROVER_KEYS[name]))
                approval_cache.check_approval_once(pol, q, a, own)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("alice", "bert", "carol")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(checks) <= 3 * 32 - 40  # at most the evicted ones were checked (in full, and valid)


def test_bounded_least_recently_used_first(checks: list[str]) -> None:
    pol = policy()
    own = approval_cache.OwnApprovals(limit=2)
    reqs = [request(request_id=f"req_{i:04d}") for i in range(3)]
    mine = [sign_approval(q, "alice", APPROVER_KEYS["alice"], Decision.APPROVE) for q in reqs]
    for q, a in zip(reqs, mine, strict=True):
        own.remember(pol, q, a, raw(APPROVER_KEYS["alice"]))
    approval_cache.check_approval_once(pol, reqs[0], mine[0], own)  # evicted: checked in full
    approval_cache.check_approval_once(pol, reqs[2], mine[2], own)
    assert checks == ["alice"]


# --- through the SDK: MpcClient.decide ------------------------------------------------------------
class Decided:
    """A fake coordinator (``inner``) whose ``GetSignRequest`` answers ``before`` (the request
    before this client's decision); every other call goes to ``inner``."""

    def __init__(self, inner: Any, before: Any) -> None:
        self.inner, self.before = inner, before

    def GetSignRequest(self, req: Any, timeout: float | None = None) -> Any:
        return self.before

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_decide_skips_only_the_check_of_its_own_fresh_approval(checks: list[str]) -> None:
    from tests.network.test_sdk_approvals_verified import GOOD, Coordinator, approval, client, info, request as sdk_request, signed

    q = sdk_request()
    answer = info(q, approval(q, "bert"), approval(q, "alice"))  # bert decided before; alice is this client
    c = client(Decided(Coordinator([answer], signed(GOOD)), info(q, approval(q, "bert"))))  # type: ignore[arg-type]
    got = c.approve("r-1")
    assert [(a.approver, a.verified) for a in got.approvals] == [("bert", True), ("alice", True)]
    assert checks == ["bert"]  # alice's own signature, under the key the policy names for her, not verified again
    # another client of the same process (bert's, say) reading the same answer verifies alice's approval
    other = client(Coordinator([answer], signed(GOOD)))
    other.identity = None
    assert all(a.verified for a in other.get_sign_request("r-1").approvals)
    assert checks == ["bert", "alice"]


def test_decide_with_a_key_the_policy_does_not_name_is_checked_and_refused(checks: list[str]) -> None:
    from mpcnet.client.identities import Identity
    from mpcnet.wire.mpc.v1 import coordinator_pb2
    from tests.network.test_sdk_approvals_verified import GOOD, Coordinator, client, info, request as sdk_request, signed

    q = sdk_request()
    other = Ed25519PrivateKey.generate()  # alice's new key, not (yet) the policy's
    mine = sign_approval(q, "alice", other, Decision.APPROVE)
    answer = info(q, coordinator_pb2.ApprovalInfo(
        approver="alice", decision=coordinator_pb2.DECISION_APPROVE, signature=mine.signature, decided_unix_ms=5,
    ))
    c = client(Decided(Coordinator([answer], signed(GOOD)), info(q)))  # type: ignore[arg-type]
    c.identity = Identity("alice", "approver", None, other)  # type: ignore[arg-type]
    got = c.approve("r-1")
    assert [(a.approver, a.verified) for a in got.approvals] == [("alice", False)]
    assert "does not verify" in got.approvals[0].why
    assert checks == ["alice"]
