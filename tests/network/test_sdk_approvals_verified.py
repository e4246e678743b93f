"""What the approver's view claims is verified, not the coordinator's word (issue 10 item 2, a
sibling found in review).

A compromised coordinator lists approvals (``SignRequestInfo.approvals[]``) and policy-change
signatures (``signed_by``) of its choice to push the last approver or admin. The SDK keeps each
approval's signature and checks it against the canonical request and the admin-signed policy the
request names; the CLI shows only verified names as "approved by" / "signed by", everything else
on an UNVERIFIED row. A fake coordinator (in-process, no server) serves the lies."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.approval import Decision, SigningRequest, sign_approval
from governance.policy import DEFAULT_SCOPE, AdminSignature, KeyPolicy, SignedPolicyChange, sign_policy_change
from mpcnet.client import cli
from mpcnet.client.identities import Identity
from mpcnet.client.sdk import MpcClient
from mpcnet.wire.mpc.v1 import coordinator_pb2, governance_pb2
from tests.governance.gov_util import ADMIN_KEYS, APPROVER_KEYS, KEY_ID, admin_set, change, policy

S = coordinator_pb2
GOOD = policy()  # approvers alice, bert, carol; quorum 2
OTHER = policy(quorum=1)  # what a lying coordinator would rather show


def signed(p: KeyPolicy, admins: tuple[str, ...] = ("ada", "bob")) -> SignedPolicyChange:
    ch = change(p, None, scope=KEY_ID)
    return SignedPolicyChange(ch, tuple(sign_policy_change(ch, n, ADMIN_KEYS[n]) for n in admins))


def request(rid: str = "r-1", under: KeyPolicy = GOOD) -> SigningRequest:
    return SigningRequest(
        rid, KEY_ID, b"\x02" * 32, (), "req-1", "payroll", 1, 2**62, under.version, under.digest(),
    )


def approval(q: SigningRequest, name: str, *, key: str | None = None, decision: Decision = Decision.APPROVE,
             shown: Any = S.DECISION_APPROVE) -> coordinator_pb2.ApprovalInfo:
    sig = sign_approval(q, name, APPROVER_KEYS[key or name], decision).signature
    return coordinator_pb2.ApprovalInfo(approver=name, decision=shown, signature=sig, decided_unix_ms=5)


def info(q: SigningRequest, *approvals: coordinator_pb2.ApprovalInfo) -> coordinator_pb2.SignRequestInfo:
    return S.SignRequestInfo(
        request_id=q.request_id, state=S.SIGN_REQUEST_STATE_PENDING_APPROVAL, request=q.encode(), approvals=list(approvals),
        approval_quorum=1, approvers=9,  # the coordinator's word: "yours is the last approval needed"
        updated_unix_ms=1,
    )


class Coordinator:
    """Answers with ``answers`` (one SignRequestInfo per request id) and ``policy``; counts policy fetches."""

    def __init__(self, answers: list[coordinator_pb2.SignRequestInfo], policy: SignedPolicyChange,
                 proposal: SignedPolicyChange | None = None) -> None:
        self.answers = {a.request_id: a for a in answers}
        self.policy = policy
        self.proposal = proposal
        self.policy_calls = 0

    def GetSignRequest(self, req: Any, timeout: float | None = None) -> coordinator_pb2.SignRequestInfo:
        return self.answers[req.request_id]

    def DecideSignRequest(self, req: Any, timeout: float | None = None) -> coordinator_pb2.SignRequestInfo:
        return self.answers[req.request_id]  # the caller's approval "recorded", the lies kept

    def ListSignRequests(self, req: Any, timeout: float | None = None) -> Any:
        return S.ListSignRequestsResponse(requests=list(self.answers.values()))

    def WatchSignRequest(self, req: Any, timeout: float | None = None) -> Any:
        answer = self.answers[req.request_id]
        done = S.SignRequestInfo()
        done.CopyFrom(answer)
        done.state = S.SIGN_REQUEST_STATE_REJECTED

        class _Stream:
            def __iter__(s) -> Any:
                yield answer
                yield done

            def cancel(s) -> None:
                pass

        return _Stream()

    def GetPolicy(self, req: Any, timeout: float | None = None) -> coordinator_pb2.PolicyInfo:
        self.policy_calls += 1
        return S.PolicyInfo(scope=KEY_ID, policy=governance_pb2.PolicyState(signed_change=self.policy.to_bytes()), inherited=False)

    def GetPolicyHistory(self, req: Any, timeout: float | None = None) -> Any:
        self.policy_calls += 1
        own = bytes(req.key_id) == KEY_ID
        return S.PolicyHistory(scope=req.key_id or b"default", signed_changes=[self.policy.to_bytes()] if own else [])

    def _proposal(self) -> coordinator_pb2.PolicyProposal:
        assert self.proposal is not None
        return S.PolicyProposal(
            proposal_id=self.proposal.change.digest()[:16].hex(), state=S.PROPOSAL_STATE_PENDING,
            signed_change=self.proposal.to_bytes(), proposer="ada", admin_quorum=1,
        )

    def ListPolicyProposals(self, req: Any, timeout: float | None = None) -> Any:
        return S.ListPolicyProposalsResponse(proposals=[self._proposal()])

    def GetPolicyProposal(self, req: Any, timeout: float | None = None) -> Any:
        return self._proposal()


def client(coord: Coordinator, *, with_admin_set: bool = True) -> MpcClient:
    c = MpcClient.__new__(MpcClient)
    c.timeout = 5.0
    c._stub = coord  # type: ignore[assignment]
    c._channel = SimpleNamespace(close=lambda: None)  # type: ignore[assignment]
    c._node_channels = {}
    c.node_endpoints = {}
    c.identity = Identity("alice", "approver", None, APPROVER_KEYS["alice"])  # type: ignore[arg-type]
    c.admin_set = admin_set() if with_admin_set else None
    return c


def lies(q: SigningRequest) -> coordinator_pb2.SignRequestInfo:
    """alice approved (true); bert "approved" with alice's signature; dave (not an approver of
    the policy) approved with his own valid key; carol's REJECT shown as an approval."""
    return info(
        q, approval(q, "alice"), approval(q, "bert", key="alice"), approval(q, "dave"),
        approval(q, "carol", decision=Decision.REJECT, shown=S.DECISION_APPROVE),
    )


def test_only_approvals_that_verify_count() -> None:
    q = request()
    r = client(Coordinator([lies(q)], signed(GOOD))).get_sign_request("r-1")
    assert r.approvals_verified and r.approved_by == ["alice"] and r.rejected_by == []
    assert (r.approval_quorum, r.approvers) == (2, 3)  # the policy's, not the coordinator's 1 of 9
    why = {a.approver: a.why for a in r.unverified}
    assert set(why) == {"bert", "dave", "carol"}
    assert "does not verify" in why["bert"] and "not an approver" in why["dave"] and "does not verify" in why["carol"]
    d = r.as_dict()
    assert d["approvals_verified"] is True and [a["verified"] for a in d["approvals"]] == [True, False, False, False]
    assert d["approvals"][0]["signature"] == sign_approval(q, "alice", APPROVER_KEYS["alice"], Decision.APPROVE).signature.hex()


@pytest.mark.parametrize("case", ["no admin quorum", "another digest", "no admin set"])
def test_nothing_counts_when_the_policy_cannot_be_checked(case: str) -> None:
    q = request()
    honest = info(q, approval(q, "alice"), approval(q, "bert"))
    pol = {"no admin quorum": signed(GOOD, ("ada",)), "another digest": signed(OTHER)}.get(case, signed(GOOD))
    r = client(Coordinator([honest], pol), with_admin_set=case != "no admin set").get_sign_request("r-1")
    assert not r.approvals_verified and r.approved_by == [] and len(r.unverified) == 2
    assert r.as_dict()["approvals_unverified_reason"] and all(not a["verified"] for a in r.as_dict()["approvals"])
    word = {"no admin quorum": "admin quorum", "another digest": "no admin-signed policy version 1", "no admin set": "admin_set"}[case]
    assert word in r.approvals_note


def test_one_policy_fetch_per_policy() -> None:
    qs = [request(f"r-{i}") for i in range(5)]
    coord = Coordinator([info(q, approval(q, "alice")) for q in qs], signed(GOOD))
    c = client(coord)
    assert all(r.approved_by == ["alice"] for r in c.list_sign_requests())
    c.get_sign_request("r-1")
    assert coord.policy_calls == 1
    bad = Coordinator([info(q, approval(q, "alice")) for q in qs], signed(GOOD, ("ada",)))
    assert all(not r.approvals_verified for r in client(bad).list_sign_requests())
    assert bad.policy_calls == 1  # a policy that failed is not fetched again within one view


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], c: MpcClient, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(cli, "_client", lambda ap, opts: c)
    code = cli.main(["--cluster", "unused", "--as", "alice", *argv])
    return code, capsys.readouterr().out


def test_the_cli_views_never_show_a_lie_as_approved(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    q = request()
    c = client(Coordinator([lies(q)], signed(GOOD)))
    _, out = _cli(monkeypatch, capsys, c, "request", "show", "r-1")
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert rows["approved by"].split()[-1] == "alice" and "2 of 3 approvers" in rows["policy"]
    assert all(n in rows["UNVERIFIED"] for n in ("bert", "dave", "carol"))
    _, out = _cli(monkeypatch, capsys, c, "requests")
    assert " 1/2 +3 UNVERIFIED " in out
    _, out = _cli(monkeypatch, capsys, c, "request", "watch", "r-1")
    assert all("approved by: alice UNVERIFIED: bert" in line for line in out.splitlines())
    _, out = _cli(monkeypatch, capsys, c, "approve", "r-1")
    assert "approved by  alice" in out and "UNVERIFIED" in out
    _, out = _cli(monkeypatch, capsys, c, "--json", "request", "show", "r-1")
    assert [a["approver"] for a in json.loads(out)["approvals"] if a["verified"]] == ["alice"]
    # without a way to check the policy: names shown, none counted, the quorum marked as the coordinator's word
    c = client(Coordinator([lies(q)], signed(GOOD)), with_admin_set=False)
    _, out = _cli(monkeypatch, capsys, c, "request", "show", "r-1")
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert rows["approved by"].split()[-1] == "-"
    assert "UNVERIFIED: the request's policy could not be checked: admin_set" in rows["approvals"]
    assert "not verified" in rows["policy"] and "alice approve" in rows["UNVERIFIED"]


def test_policy_proposal_signatures_are_verified(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ch = change(policy(version=2), GOOD, scope=KEY_ID)
    forged = SignedPolicyChange(ch, (
        sign_policy_change(ch, "ada", ADMIN_KEYS["ada"]),
        AdminSignature("bob", sign_policy_change(ch, "ada", ADMIN_KEYS["ada"]).signature),  # ada's signature as bob's
        sign_policy_change(ch, "mallory", Ed25519PrivateKey.generate()),  # not an admin
    ))
    c = client(Coordinator([], signed(GOOD), proposal=forged))
    (p,) = c.list_proposals()
    assert p.signers == ["ada"] and p.unverified_signers == ["bob", "mallory"] and p.admin_quorum == 2
    d = p.as_dict()
    assert d["signed_by"] == ["ada"] and d["signatures_verified"] is True
    _, out = _cli(monkeypatch, capsys, c, "policy", "proposals")
    assert "signed by ada  UNVERIFIED: bob, mallory" in out
    c.admin_set = None
    assert c.get_proposal(p.proposal_id).signers == [] and c.get_proposal(p.proposal_id).as_dict()["signatures_verified"] is False
    _, out = _cli(monkeypatch, capsys, c, "policy", "proposals")
    assert "signed by -  UNVERIFIED: ada, bob, mallory" in out


def test_policy_show_lists_verified_admins_only() -> None:
    pol = signed(GOOD)
    pol = SignedPolicyChange(pol.change, (*pol.signatures, AdminSignature("cyd", pol.signatures[0].signature)))
    v = client(Coordinator([], pol)).get_policy(KEY_ID)
    assert v.as_dict()["signed_by"] == ["ada", "bob"] and v.as_dict()["unverified_signers"] == ["cyd"]
    assert hashlib.sha256(v.policy.to_bytes()).digest()  # the policy itself is shown unchanged


def test_a_flood_of_listed_approvals_is_checked_at_bounded_cost() -> None:
    q = request()
    flood = info(q, approval(q, "alice"), *[approval(q, "bert", key="alice")] * 500)
    r = client(Coordinator([flood], signed(GOOD))).get_sign_request("r-1")
    assert r.approved_by == ["alice"] and len(r.unverified) == 500
    assert sum("more than 6 listed for 3 approvers" in a.why for a in r.unverified) == 495  # 6 checked, the rest not
    from mpcnet.client.cli_render import unverified_text

    assert unverified_text(r).endswith("and 492 more")


def test_an_approval_listed_twice_is_verified_once() -> None:
    """Second attacker round: a compromised coordinator lists alice's genuine approval twice (and
    her genuine reject after it): each entry verified, so a script counting the JSON view's
    ``verified`` approvals saw a quorum of 2 from one approver. Only an approver's first decision
    counts (as the nodes' tally refuses a repeat); later ones are UNVERIFIED, saying why."""
    q = request()
    alice = approval(q, "alice")
    r = client(Coordinator([info(q, alice, alice, approval(q, "alice", decision=Decision.REJECT, shown=S.DECISION_REJECT))],
                           signed(GOOD))).get_sign_request("r-1")
    d = r.as_dict()
    assert [a["verified"] for a in d["approvals"]] == [True, False, False]
    assert all("already" in a["unverified_reason"] for a in d["approvals"][1:])
    assert r.approved_by == ["alice"] and r.rejected_by == []


class Superseding(Coordinator):
    """KEY_ID's own policy history ``own`` (the last one in force; none: the default's is
    inherited) and the default scope's ``default``, as an honest coordinator reports them."""

    def __init__(self, answers: list[coordinator_pb2.SignRequestInfo], own: list[SignedPolicyChange],
                 default: list[SignedPolicyChange]) -> None:
        super().__init__(answers, (own or default)[-1])
        self.own, self.default = own, default

    def GetPolicy(self, req: Any, timeout: float | None = None) -> coordinator_pb2.PolicyInfo:
        self.policy_calls += 1
        own = bool(self.own) and bytes(req.key_id) == KEY_ID
        state = governance_pb2.PolicyState(signed_change=(self.own if own else self.default)[-1].to_bytes())
        return S.PolicyInfo(scope=KEY_ID if own else DEFAULT_SCOPE, policy=state, inherited=bool(req.key_id) and not own)

    def GetPolicyHistory(self, req: Any, timeout: float | None = None) -> Any:
        self.policy_calls += 1
        changes = self.own if bytes(req.key_id) == KEY_ID else self.default
        return S.PolicyHistory(scope=req.key_id or DEFAULT_SCOPE, signed_changes=[c.to_bytes() for c in changes])


def chain(*policies: KeyPolicy, scope: bytes = KEY_ID) -> list[SignedPolicyChange]:
    """``policies`` as an admin-signed history of ``scope``, each change naming the one before."""
    out = []
    for prev, p in zip((None, *policies[:-1]), policies, strict=True):
        ch = change(p, prev, scope=scope)
        out.append(SignedPolicyChange(ch, tuple(sign_policy_change(ch, n, ADMIN_KEYS[n]) for n in ("ada", "bob"))))
    return out


def _pending_with_quorum(q: SigningRequest) -> coordinator_pb2.SignRequestInfo:
    return info(q, approval(q, "alice"), approval(q, "bert"))  # 2 of the policy's quorum 2: "ready"


def test_approvals_under_a_superseded_version_do_not_look_ready(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review of issue 10: a request made under policy v1, approved by a v1 quorum, after v2
    came into force: the nodes will sign only under v2, but the view showed the approvals as
    verified and the quorum as met. The signatures still verify; the view says the policy is
    SUPERSEDED, ``approved_by`` is empty while the request is open, the JSON says
    ``policy_in_force: false``."""
    q = request()  # under GOOD = v1
    coord = Superseding([_pending_with_quorum(q)], chain(GOOD, policy(version=2)), [])
    c = client(coord)
    r = c.get_sign_request("r-1")
    assert r.approvals_verified and r.policy_in_force is False and r.policy_in_force_version == 2
    assert r.approved_by == [] and r.verified("approve") == ["alice", "bert"] and r.superseded_while_open
    d = r.as_dict()
    assert d["policy_in_force"] is False and d["policy_in_force_version"] == 2 and d["policy_in_force_scope"] == "key"
    assert [a["verified"] for a in d["approvals"]] == [True, True]  # the signatures are genuine
    _, out = _cli(monkeypatch, capsys, c, "request", "show", "r-1")
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert rows["approved by"].split()[-1] == "-"
    assert rows["approvals"].endswith(
        "verified under policy v1, SUPERSEDED by v2 (the key's own policy): the nodes will not sign this request "
        "(approvals by alice, bert do not count)"
    )
    _, out = _cli(monkeypatch, capsys, c, "requests")
    assert " 0/2 SUPERSEDED: will not sign " in out
    _, out = _cli(monkeypatch, capsys, c, "--json", "request", "show", "r-1")
    assert json.loads(out)["policy_in_force"] is False
    # once the request ended, its approvals are what they were (the request was signed, or not)
    done = _pending_with_quorum(q)
    done.state = S.SIGN_REQUEST_STATE_DONE
    r = client(Superseding([done], chain(GOOD, policy(version=2)), [])).get_sign_request("r-1")
    assert r.approved_by == ["alice", "bert"] and not r.superseded_while_open
    from mpcnet.client.cli_render import superseded_text

    assert superseded_text(r) == "verified under policy v1 (since SUPERSEDED by v2 (the key's own policy))"


def test_approvals_under_the_default_policy_of_a_key_with_its_own(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The request names the default scope's policy (v1), the key has since been given its own
    (also v1): the default's approvals do not make the request signable."""
    default = chain(GOOD, scope=DEFAULT_SCOPE)
    q = request()  # GOOD's version and digest: the default's policy
    c = client(Superseding([_pending_with_quorum(q)], chain(policy(quorum=3)), default))
    r = c.get_sign_request("r-1")
    assert r.approvals_verified and r.policy_in_force is False and (r.policy_in_force_version, r.policy_in_force_scope) == (1, "key")
    assert r.approved_by == []
    _, out = _cli(monkeypatch, capsys, c, "request", "show", "r-1")
    assert "SUPERSEDED by v1 (the key's own policy): the nodes will not sign this request" in out
    # the same request while the key inherits the default: in force, ready
    r = client(Superseding([_pending_with_quorum(q)], [], default)).get_sign_request("r-1")
    assert r.policy_in_force is True and r.approved_by == ["alice", "bert"] and r.as_dict()["policy_in_force"] is True
    assert r.policy_in_force_scope == "default"


def test_in_force_is_checked_again_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    """'In force' is cached briefly (a list view costs one fetch); a wait that outlives the
    cache notices a policy change that supersedes the request's."""
    from mpcnet.client import sdk

    q = request()
    coord = Superseding([_pending_with_quorum(q)], chain(GOOD), [])
    c = client(coord)
    assert c.get_sign_request("r-1").policy_in_force is True
    coord.own = chain(GOOD, policy(version=2))
    assert c.get_sign_request("r-1").policy_in_force is True  # within the cache's life
    monkeypatch.setattr(sdk, "_IN_FORCE_TTL_S", 0.0)
    r = c.get_sign_request("r-1")
    assert r.policy_in_force is False and r.approved_by == [] and r.policy_in_force_version == 2
    calls = coord.policy_calls
    assert c.get_sign_request("r-1").policy_in_force is False and coord.policy_calls == calls  # superseded for good
