"""Signing requests, approvals, the quorum rule, bundles and the rate-limit check."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
from hypothesis import given, strategies as st

from governance.approval import (
    MAX_CLOCK_SKEW_MS,
    Approval,
    ApprovalBundle,
    Decision,
    SigningRequest,
    check_approval,
    check_request,
    rate_limit_ok,
    sign_approval,
    tally,
    verify_approvals,
)
from governance.errors import GovernanceError
from governance.policy import RateLimit
from governance.text import FORBIDDEN_CATEGORIES, REQUEST_ID_RE

from .gov_util import APPROVER_KEYS, NOW_MS, OTHER_KEY_ID, OUTSIDER_KEY, approve, policy, request

# --- requests -------------------------------------------------------------------------------


def test_request_validation_names_the_field() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"request_id": ""}, "request_id"),
        ({"request_id": "a" * 65}, "request_id"),
        ({"request_id": "has space"}, "request_id"),
        ({"request_id": "kid-X\n"}, "request_id"),  # a trailing newline (re.match with "$" accepted it)
        ({"request_id": "sp ace"}, "request_id"),
        ({"key_id": b"\x00" * 31}, "key_id"),
        ({"digest": "00" * 32}, "digest"),
        ({"derivation_path": (0, 2**32)}, "derivation_path[1]"),
        ({"derivation_path": (-1,)}, "derivation_path[0]"),
        ({"derivation_path": tuple(range(256))}, "derivation_path"),
        ({"requester": "-x"}, "requester"),
        ({"description": "x" * 1025}, "description"),
        ({"description": "pay \u202eeviL"}, "description"),  # right-to-left override
        ({"description": "bell\x07"}, "description"),
        ({"description": "\ud800"}, "description"),
        ({"created_at_ms": -1}, "created_at_ms"),
        ({"expires_at_ms": NOW_MS - 1000}, "expires_at_ms"),  # == created_at_ms
        ({"policy_version": 0}, "policy_version"),
        ({"policy_version": True}, "policy_version"),
    ]
    for overrides, field in cases:
        with pytest.raises(GovernanceError) as e:
            request(**overrides)
        assert e.value.field == field, overrides
    assert request(description="x" * 1024, derivation_path=tuple(range(255)), request_id="A" * 64)


requests = st.builds(
    lambda rid, key, dig, path, who, text, created, life, ver, pdig: SigningRequest(
        rid, key, dig, tuple(path), who, text, created, created + life, ver, pdig
    ),
    st.from_regex(REQUEST_ID_RE, fullmatch=True),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.lists(st.integers(0, 2**32 - 1), max_size=6),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True),
    st.text(st.characters(blacklist_categories=tuple(sorted(FORBIDDEN_CATEGORIES))), max_size=60),
    st.integers(0, 2**62),
    st.integers(1, 2**40),
    st.integers(1, 2**63 - 1),
    st.binary(min_size=32, max_size=32),
)


@given(requests, st.lists(st.sampled_from(sorted(APPROVER_KEYS)), max_size=4), st.randoms())
def test_request_and_bundle_round_trip(req: SigningRequest, names: list[str], rnd: random.Random) -> None:
    assert SigningRequest.from_bytes(req.to_bytes()) == req
    assert SigningRequest.from_dict(json.loads(json.dumps(req.to_dict()))) == req
    assert SigningRequest.from_bytes(req.to_bytes()).request_digest() == req.request_digest()
    approvals = [sign_approval(req, n, APPROVER_KEYS[n], rnd.choice(list(Decision))) for n in names]
    bundle = ApprovalBundle(req, tuple(approvals))
    assert ApprovalBundle.from_bytes(bundle.to_bytes()) == bundle
    assert ApprovalBundle.from_dict(json.loads(json.dumps(bundle.to_dict()))) == bundle


def test_bundle_decoding_is_strict() -> None:
    req = request()
    bundle = ApprovalBundle(req, tuple(approve(req, "alice", "bert")))
    data = bundle.to_bytes()
    for cut in range(0, len(data), 5):
        with pytest.raises(GovernanceError):
            ApprovalBundle.from_bytes(data[:cut])
    with pytest.raises(GovernanceError) as e:
        ApprovalBundle.from_bytes(data + b"\x00")
    assert e.value.field == "encoding"
    with pytest.raises(GovernanceError) as e:
        ApprovalBundle.from_bytes(req.to_bytes())
    assert e.value.field == "tag"
    # decision code 3 is not a decision
    idx = data.rfind(b"bert") + 4 + 8
    bad = data[:idx] + (3).to_bytes(8, "big") + data[idx + 8 :]
    with pytest.raises(GovernanceError) as e:
        ApprovalBundle.from_bytes(bad)
    assert e.value.field == "approvals[1].decision"


# --- quorum ---------------------------------------------------------------------------------


def test_quorum_reached() -> None:
    req = request()
    result = verify_approvals(policy(), req, approve(req, "alice", "carol"), now_ms=NOW_MS)
    assert result.approved == {"alice", "carol"} and result.rejected == frozenset()
    assert result.request_digest == req.request_digest() and result.policy_version == 1
    assert ApprovalBundle(req, tuple(approve(req, "bert", "carol"))).verify(policy(), now_ms=NOW_MS)


def _fails(req: SigningRequest, approvals: list[Approval], **kw: object) -> GovernanceError:
    now = kw.pop("now_ms", NOW_MS)
    pol = kw.pop("pol", policy())
    with pytest.raises(GovernanceError) as e:
        verify_approvals(pol, req, approvals, now_ms=now)  # type: ignore[arg-type]
    return e.value


def test_quorum_minus_one_is_refused() -> None:
    req = request()
    e = _fails(req, approve(req, "alice"))
    assert e.field == "approvals" and "1 valid approval(s), 2 required" in e.reason
    e = _fails(req, [])
    assert e.field == "approvals"
    q3 = request(policy_digest=policy(quorum=3).digest())
    e = _fails(q3, approve(q3, "alice", "bert"), pol=policy(quorum=3))
    assert e.field == "approvals"


def test_duplicate_approver_is_refused_not_counted_twice() -> None:
    req = request()
    a = approve(req, "alice")[0]
    e = _fails(req, [a, a])
    assert (e.field, e.subject) == ("approvals[1].approver", "alice")
    # even when the duplicate would be surplus to the quorum
    e = _fails(req, [*approve(req, "alice", "bert"), a])
    assert e.field == "approvals[2].approver"
    # and when it changes its mind
    flip = approve(req, "alice", decision=Decision.REJECT)
    e = _fails(req, [a, *flip, *approve(req, "bert")])
    assert e.field == "approvals[1].approver"


def test_unknown_approver_is_refused() -> None:
    req = request()
    stranger = sign_approval(req, "mallory", OUTSIDER_KEY, Decision.APPROVE)
    e = _fails(req, [*approve(req, "alice", "bert"), stranger])
    assert (e.field, e.subject) == ("approvals[2].approver", "mallory")
    # an approver of another policy
    dave = approve(req, "dave")
    e = _fails(req, [*approve(req, "alice"), *dave])
    assert (e.field, e.subject) == ("approvals[1].approver", "dave")


def test_forged_signatures_name_the_approver() -> None:
    req = request()
    good = approve(req, "alice")[0]
    for forged in (
        Approval("bert", Decision.APPROVE, bytes(64)),
        Approval("bert", Decision.APPROVE, good.signature),  # alice's signature under bert's name
        sign_approval(req, "bert", OUTSIDER_KEY, Decision.APPROVE),  # bert's name, wrong key
        dataclasses.replace(approve(req, "bert", decision=Decision.REJECT)[0], decision=Decision.APPROVE),
    ):
        e = _fails(req, [good, forged])
        assert (e.field, e.subject) == ("approvals[1].signature", "bert")
        assert "bert" in str(e)


@pytest.mark.parametrize(
    "overrides",
    [
        {"request_id": "req_0002"},
        {"digest": b"\x01" * 32},
        {"key_id": OTHER_KEY_ID},
        {"derivation_path": (0, 1, 3)},
        {"derivation_path": (0, 1)},
        {"expires_at_ms": NOW_MS + 600_001},
        {"created_at_ms": NOW_MS - 999},
        {"description": "Pay supplier invoice #43, second line"},
        {"requester": "req-2"},
        {"policy_version": 2},
        {"policy_digest": b"\x02" * 32},
    ],
    ids=lambda o: next(iter(o)),
)
def test_approvals_of_another_request_do_not_count(overrides: dict[str, object]) -> None:
    presented = request()
    signed_over = request(**overrides)
    e = _fails(presented, approve(signed_over, "alice", "bert"))
    assert (e.field, e.subject) == ("approvals[0].signature", "alice")


def test_request_checks_against_policy_and_clock() -> None:
    req = request()
    ok = approve(req, "alice", "bert")
    assert verify_approvals(policy(), req, ok, now_ms=req.expires_at_ms)  # the last valid instant
    assert _fails(req, ok, now_ms=req.expires_at_ms + 1).field == "expires_at_ms"
    future = request(created_at_ms=NOW_MS + MAX_CLOCK_SKEW_MS + 1, expires_at_ms=NOW_MS + 3_000_000)
    assert _fails(future, approve(future, "alice", "bert")).field == "created_at_ms"
    skewed = request(created_at_ms=NOW_MS + MAX_CLOCK_SKEW_MS, expires_at_ms=NOW_MS + 3_000_000)
    assert verify_approvals(policy(), skewed, approve(skewed, "alice", "bert"), now_ms=NOW_MS)
    long = request(expires_at_ms=NOW_MS - 1000 + 3600 * 1000 + 1)
    assert _fails(long, approve(long, "alice", "bert")).field == "expires_at_ms"
    exact = request(expires_at_ms=NOW_MS - 1000 + 3600 * 1000)
    assert verify_approvals(policy(), exact, approve(exact, "alice", "bert"), now_ms=NOW_MS)
    stranger = request(requester="someone")
    e = _fails(stranger, approve(stranger, "alice", "bert"))
    assert (e.field, e.subject) == ("requester", "someone")
    v2 = request(policy_version=2, policy_digest=policy(version=2).digest())
    assert _fails(v2, approve(v2, "alice", "bert")).field == "policy_version"
    assert verify_approvals(policy(version=2), v2, approve(v2, "alice", "bert"), now_ms=NOW_MS)
    # same version number, another policy (e.g. a key's own v1 against the default v1)
    other = policy(quorum=1)
    assert other.version == policy().version
    e = _fails(req, ok, pol=other)
    assert e.field == "policy_digest" and "another policy" in e.reason
    made_under_other = request(policy_digest=other.digest())
    assert _fails(made_under_other, approve(made_under_other, "alice", "bert")).field == "policy_digest"
    with pytest.raises(GovernanceError) as info:
        check_request(policy(), req, now_ms=-5)
    assert info.value.field == "now_ms"


def test_check_approval_vets_one_decision() -> None:
    req = request()
    check_approval(policy(), req, approve(req, "carol", decision=Decision.REJECT)[0])
    with pytest.raises(GovernanceError) as e:
        check_approval(policy(), req, Approval("carol", Decision.APPROVE, bytes(64)))
    assert (e.value.field, e.value.subject) == ("approval.signature", "carol")


def test_rejection_rule() -> None:
    req = request()  # k = 3, m = 2

    def rej(*names: str) -> list[Approval]:
        return approve(req, *names, decision=Decision.REJECT)
    assert tally(policy(), req, []).state == "pending"
    assert tally(policy(), req, rej("alice")).state == "pending"  # 2 approvals still possible
    t = tally(policy(), req, [*rej("alice"), *approve(req, "bert")])
    assert t.state == "pending" and t.approved == {"bert"} and t.rejected == {"alice"}
    t = tally(policy(), req, [*rej("alice", "carol")])
    assert t.state == "rejected"
    e = _fails(req, [*rej("alice", "carol")])
    assert e.field == "approvals" and "rejected by alice, carol" in e.reason
    # a rejection is not a veto once the quorum is reached
    result = verify_approvals(policy(), req, [*approve(req, "alice", "bert"), *rej("carol")], now_ms=NOW_MS)
    assert result.rejected == {"carol"} and result.approved == {"alice", "bert"}
    # m = k: a single rejection makes the quorum unreachable
    q3 = request(policy_digest=policy(quorum=3).digest())
    assert tally(policy(quorum=3), q3, approve(q3, "bert", decision=Decision.REJECT)).state == "rejected"
    # m = 1: rejected only when everyone rejected
    q1 = request(policy_digest=policy(quorum=1).digest())

    def rej1(*names: str) -> list[Approval]:
        return approve(q1, *names, decision=Decision.REJECT)
    assert tally(policy(quorum=1), q1, rej1("alice", "bert")).state == "pending"
    assert tally(policy(quorum=1), q1, rej1("alice", "bert", "carol")).state == "rejected"


@given(
    st.integers(1, 4).flatmap(lambda m: st.tuples(st.just(m), st.integers(m, 4))),
    st.lists(st.sampled_from([None, Decision.APPROVE, Decision.REJECT]), min_size=4, max_size=4),
    st.randoms(),
)
def test_tally_is_order_free_and_subsets_never_exceed_the_full_set(
    mk: tuple[int, int], decisions: list[Decision | None], rnd: random.Random
) -> None:
    m, k = mk
    names = sorted(APPROVER_KEYS)[:k]
    pol = policy(quorum=m, approvers=names)
    req = request(policy_digest=pol.digest())
    approvals = [sign_approval(req, n, APPROVER_KEYS[n], d) for n, d in zip(names, decisions[:k], strict=True) if d is not None]
    full = tally(pol, req, approvals)
    a = sum(1 for n, d in zip(names, decisions[:k], strict=True) if d is Decision.APPROVE)
    r = sum(1 for n, d in zip(names, decisions[:k], strict=True) if d is Decision.REJECT)
    expected = "approved" if a >= m else "rejected" if k - r < m else "pending"
    assert full.state == expected
    shuffled = approvals[:]
    rnd.shuffle(shuffled)
    assert tally(pol, req, shuffled) == full
    subset = [x for x in approvals if rnd.random() < 0.5]
    part = tally(pol, req, subset)
    if part.state != "pending":
        assert part.state == full.state  # what the coordinator forwards cannot flip the outcome


_TAMPERS: dict[str, object] = {
    "request_id": "req_9999",
    "key_id": OTHER_KEY_ID,
    "digest": b"\xee" * 32,
    "derivation_path": (0, 1, 2, 0),
    "requester": "req-2",
    "description": "Pay supplier invoice #42 (and more)",
    "created_at_ms": NOW_MS - 2000,
    "expires_at_ms": NOW_MS + 500_000,
    "policy_version": 2,
}
# the field a tampered value may be caught by before the signatures are checked
_OWN_CHECK = {"policy_version": "policy_version"}


@given(st.sampled_from(sorted(_TAMPERS)), st.permutations(["alice", "bert", "carol"]))
def test_tampering_any_signed_request_field_is_refused(field: str, order: list[str]) -> None:
    req = request()
    approvals = approve(req, *order)
    tampered = dataclasses.replace(req, **{field: _TAMPERS[field]})  # type: ignore[arg-type]
    e = _fails(tampered, approvals)
    if field in _OWN_CHECK:
        assert e.field == _OWN_CHECK[field]
    else:
        assert (e.field, e.subject) == ("approvals[0].signature", order[0])


@given(st.data())
def test_byte_flips_in_a_bundle_never_pass(data: st.DataObject) -> None:
    req = request()
    wire = ApprovalBundle(req, tuple(approve(req, "alice", "bert"))).to_bytes()
    i = data.draw(st.integers(0, len(wire) - 1))
    mutated = bytearray(wire)
    mutated[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(GovernanceError):
        ApprovalBundle.from_bytes(bytes(mutated)).verify(policy(), now_ms=NOW_MS)


def test_signature_is_bound_to_the_approver_name_and_decision() -> None:
    req = request()
    a = approve(req, "alice")[0]
    assert a.signature != approve(req, "alice", decision=Decision.REJECT)[0].signature
    e = _fails(req, [Approval("alice", Decision.REJECT, a.signature), *approve(req, "bert")])
    assert e.field == "approvals[0].signature"


# --- rate limit -----------------------------------------------------------------------------


def test_rate_limit_window() -> None:
    limit = RateLimit(max_signatures=3, window_seconds=60)
    now = NOW_MS
    assert rate_limit_ok(limit, [], now)
    assert rate_limit_ok(limit, [now - 1, now - 2], now)
    assert not rate_limit_ok(limit, [now - 1, now - 2, now - 59_999], now)
    assert rate_limit_ok(limit, [now - 1, now - 2, now - 60_000], now)  # just left the window
    assert not rate_limit_ok(limit, [now - 1, now - 2, now + 10_000_000], now)  # future times count
    assert rate_limit_ok(limit, [now - 10**7] * 100, now)
    with pytest.raises(GovernanceError) as e:
        rate_limit_ok(limit, [now, -1], now)
    assert e.value.field == "recent_signature_times_ms[1]"
    with pytest.raises(GovernanceError):
        rate_limit_ok((3, 60), [], now)  # type: ignore[arg-type]


def test_sign_approval_checks_arguments() -> None:
    req = request()
    with pytest.raises(GovernanceError) as e:
        sign_approval(req, "alice", APPROVER_KEYS["alice"], "approve")  # type: ignore[arg-type]
    assert e.value.field == "decision"
    with pytest.raises(GovernanceError) as e:
        sign_approval(req, "alice", b"k" * 32, Decision.APPROVE)  # type: ignore[arg-type]
    assert e.value.field == "private_key"
    with pytest.raises(GovernanceError) as e:
        verify_approvals(policy(), req, "alice", now_ms=NOW_MS)  # type: ignore[arg-type]
    assert e.value.field == "approvals"
