"""Admin sets, key policies and admin-signed policy changes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, strategies as st

from governance._checks import NAME_RE
from governance.encoding import Encoder
from governance.errors import GovernanceError
from governance.policy import (
    DEFAULT_SCOPE,
    KEY_POLICY_TAG,
    MAX_TTL_SECONDS,
    AdminSet,
    AdminSignature,
    KeyPolicy,
    PolicyChange,
    RateLimit,
    SignedPolicyChange,
    check_admin_signature,
    sign_policy_change,
    verify_policy_change,
)

from .gov_util import (
    ADMIN_KEYS,
    APPROVER_KEYS,
    CLUSTER_ID,
    KEY_ID,
    OTHER_CLUSTER_ID,
    OTHER_KEY_ID,
    OUTSIDER_KEY,
    admin_set,
    change,
    policy,
    raw,
)

P = 2**255 - 19
SMALL_ORDER_KEYS = [
    (0).to_bytes(32, "little"),
    (1).to_bytes(32, "little"),
    (P - 1).to_bytes(32, "little"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    (P + 1).to_bytes(32, "little"),  # non-canonical encoding of y = 1
    ((1 << 255) | 1).to_bytes(32, "little"),  # sign bit set on the identity
]

# --- strategies -----------------------------------------------------------------------------

names = st.from_regex(NAME_RE, fullmatch=True)
PUBKEYS = [raw(k) for k in list(ADMIN_KEYS.values()) + list(APPROVER_KEYS.values())] + [
    bytes([i]) * 32 for i in range(2, 40)
]


@st.composite
def members(draw: st.DrawFn, max_size: int = 6) -> dict[str, bytes]:
    ns = draw(st.lists(names, min_size=1, max_size=max_size, unique=True))
    keys = draw(st.lists(st.sampled_from(PUBKEYS), min_size=len(ns), max_size=len(ns), unique=True))
    return dict(zip(ns, keys, strict=True))


@st.composite
def key_policies(draw: st.DrawFn) -> KeyPolicy:
    approvers = draw(members())
    return KeyPolicy(
        version=draw(st.integers(1, 2**63 - 1)),
        approvers=approvers,
        approval_quorum=draw(st.integers(1, len(approvers))),
        requesters=frozenset(draw(st.lists(names, max_size=4))),
        ttl_seconds=draw(st.integers(1, MAX_TTL_SECONDS)),
        rate_limit=RateLimit(draw(st.integers(1, 1_000_000)), draw(st.integers(1, 366 * 86400))),
    )


@st.composite
def admin_sets(draw: st.DrawFn) -> AdminSet:
    admins = draw(members())
    return AdminSet(admins, draw(st.integers(1, len(admins))), draw(st.binary(min_size=32, max_size=32)))


@st.composite
def policy_changes(draw: st.DrawFn) -> PolicyChange:
    scope = draw(st.sampled_from([DEFAULT_SCOPE, KEY_ID, OTHER_KEY_ID]))
    previous = draw(st.none() | st.binary(min_size=32, max_size=32))
    return PolicyChange(scope, draw(key_policies()), previous, draw(st.binary(min_size=32, max_size=32)))


# --- validation -----------------------------------------------------------------------------


def test_admin_set_validation_names_the_field() -> None:
    keys = {n: raw(k) for n, k in ADMIN_KEYS.items()}
    cases: list[tuple[object, object, str]] = [
        (keys, 0, "quorum"),
        (keys, 4, "quorum"),
        (keys, True, "quorum"),
        ({}, 1, "admins"),
        ({"-bad": keys["ada"]}, 1, "admins['-bad']"),
        ({"a" * 65: keys["ada"]}, 1, f"admins[{'a' * 65!r}]"),
        ({"ada": keys["ada"][:31]}, 1, "admins['ada']"),
        ({"ada": keys["ada"], "bob": keys["ada"]}, 1, "admins['bob']"),
        ({"ada": "00" * 32}, 1, "admins['ada']"),
        ([("ada", keys["ada"])], 1, "admins"),
    ]
    for admins, quorum, field in cases:
        with pytest.raises(GovernanceError) as e:
            AdminSet(admins, quorum, CLUSTER_ID)  # type: ignore[arg-type]
        assert e.value.field == field, (admins, quorum)
    for bad in (b"", b"\x00" * 31, "00" * 32):
        with pytest.raises(GovernanceError) as e:
            AdminSet(keys, 1, bad)  # type: ignore[arg-type]
        assert e.value.field == "cluster_id"


@pytest.mark.parametrize("key", SMALL_ORDER_KEYS, ids=lambda k: k.hex()[:8])
def test_small_order_public_keys_are_refused(key: bytes) -> None:
    with pytest.raises(GovernanceError) as e:
        AdminSet({"ada": key}, 1, CLUSTER_ID)
    assert e.value.field == "admins['ada']" and "small-order" in e.value.reason


def test_admin_set_is_immutable_and_sorted() -> None:
    source = {"cyd": raw(ADMIN_KEYS["cyd"]), "ada": raw(ADMIN_KEYS["ada"])}
    s = AdminSet(source, 1, CLUSTER_ID)
    source["zed"] = raw(ADMIN_KEYS["bob"])
    assert list(s.admins) == ["ada", "cyd"]
    with pytest.raises(TypeError):
        s.admins["zed"] = b"x" * 32  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.quorum = 2  # type: ignore[misc]
    assert hash(s) == hash(AdminSet(dict(reversed(list(s.admins.items()))), 1, CLUSTER_ID))
    assert s.digest() != AdminSet(s.admins, 1, OTHER_CLUSTER_ID).digest()


def test_key_policy_validation_names_the_field() -> None:
    good = policy()
    cases: list[tuple[dict[str, object], str]] = [
        ({"version": 0}, "version"),
        ({"approval_quorum": 0}, "approval_quorum"),
        ({"approval_quorum": 4}, "approval_quorum"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": MAX_TTL_SECONDS + 1}, "ttl_seconds"),
        ({"requesters": frozenset({"ok", "not ok"})}, "requesters['not ok']"),
        ({"requesters": ["a"]}, "requesters"),
        ({"rate_limit": (1, 1)}, "rate_limit"),
        ({"approvers": {}}, "approvers"),
    ]
    for overrides, field in cases:
        with pytest.raises(GovernanceError) as e:
            dataclasses.replace(good, **overrides)  # type: ignore[arg-type]
        assert e.value.field == field, overrides
    with pytest.raises(GovernanceError) as e:
        RateLimit(0, 10)
    assert e.value.field == "max_signatures"
    with pytest.raises(GovernanceError) as e:
        RateLimit(1, 0)
    assert e.value.field == "window_seconds"


def test_policy_change_validation() -> None:
    with pytest.raises(GovernanceError) as e:
        PolicyChange(b"x" * 31, policy(), None, admin_set().digest())
    assert e.value.field == "scope"
    with pytest.raises(GovernanceError) as e:
        PolicyChange(KEY_ID, policy(), b"\x00" * 31, admin_set().digest())
    assert e.value.field == "previous_digest"
    with pytest.raises(GovernanceError) as e:
        PolicyChange(KEY_ID, policy(), None, b"\x00" * 31)
    assert e.value.field == "governance_root"
    with pytest.raises(GovernanceError) as e:
        AdminSignature("ada", b"\x00" * 63)
    assert e.value.field == "signature"


# --- round trips ----------------------------------------------------------------------------


@given(admin_sets())
def test_admin_set_round_trips(s: AdminSet) -> None:
    assert AdminSet.from_bytes(s.to_bytes()) == s
    assert AdminSet.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert s.digest() == AdminSet.from_bytes(s.to_bytes()).digest()


@given(key_policies())
def test_key_policy_round_trips(p: KeyPolicy) -> None:
    assert KeyPolicy.from_bytes(p.to_bytes()) == p
    assert KeyPolicy.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert KeyPolicy.from_bytes(p.to_bytes()).digest() == p.digest()


@given(policy_changes(), st.lists(st.sampled_from(sorted(ADMIN_KEYS)), max_size=4))
def test_signed_policy_change_round_trips(c: PolicyChange, signers: list[str]) -> None:
    assert PolicyChange.from_bytes(c.to_bytes()) == c
    assert PolicyChange.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    signed = SignedPolicyChange(c, tuple(sign_policy_change(c, n, ADMIN_KEYS[n]) for n in signers))
    assert SignedPolicyChange.from_bytes(signed.to_bytes()) == signed
    assert SignedPolicyChange.from_dict(json.loads(json.dumps(signed.to_dict()))) == signed


@given(key_policies())
def test_truncated_or_extended_policy_bytes_are_refused(p: KeyPolicy) -> None:
    data = p.to_bytes()
    for cut in range(0, len(data), 7):
        with pytest.raises(GovernanceError):
            KeyPolicy.from_bytes(data[:cut])
    with pytest.raises(GovernanceError):
        KeyPolicy.from_bytes(data + b"\x00")


def test_non_canonical_policy_bytes_are_refused() -> None:
    p = policy()
    enc = Encoder(KEY_POLICY_TAG).uint(1).count(2)
    enc.text("bert").raw(p.approvers["bert"]).text("alice").raw(p.approvers["alice"])
    enc.uint(1).count(0).uint(60).uint(1).uint(60)
    with pytest.raises(GovernanceError) as e:
        KeyPolicy.from_bytes(enc.finish())
    assert e.value.field == "approvers[1].name"


def test_nested_errors_carry_the_path() -> None:
    c = change(policy(), None)
    data = bytearray(c.to_bytes())
    # corrupt the version inside the nested policy: find it right after the nested policy's tag
    idx = data.find(KEY_POLICY_TAG.encode()) + len(KEY_POLICY_TAG) + 8
    data[idx : idx + 8] = (0).to_bytes(8, "big")
    with pytest.raises(GovernanceError) as e:
        PolicyChange.from_bytes(bytes(data))
    assert e.value.field == "new_policy.version"


def test_from_dict_is_strict() -> None:
    d = policy().to_dict()
    mutations: list[tuple[Callable[[dict[str, Any]], object], str]] = [
        (lambda x: x.update(extra=1), "extra"),
        (lambda x: x.pop("ttl_seconds"), "ttl_seconds"),
        (lambda x: x.update(version="1"), "version"),
        (lambda x: x.update(version=True), "version"),
        (lambda x: x.update(requesters=["req-1", "req-1"]), "requesters"),
        (lambda x: x.update(approvers={"alice": "zz" * 32}), "approvers['alice']"),
        (lambda x: x["rate_limit"].update(window_seconds=0), "rate_limit.window_seconds"),
    ]
    for mutate, field in mutations:
        copy = json.loads(json.dumps(d))
        mutate(copy)
        with pytest.raises(GovernanceError) as e:
            KeyPolicy.from_dict(copy)
        assert e.value.field == field


# --- policy changes -------------------------------------------------------------------------


def _sign(c: PolicyChange, *admins: str) -> list[AdminSignature]:
    return [sign_policy_change(c, a, ADMIN_KEYS[a]) for a in admins]


def test_first_change_with_admin_quorum_is_accepted() -> None:
    c = change(policy(), None)
    assert verify_policy_change(admin_set(), None, c, _sign(c, "ada", "cyd")) == policy()
    assert SignedPolicyChange(c, tuple(_sign(c, "bob", "cyd"))).verify(admin_set(), None) == policy()


def test_change_without_admin_quorum_is_refused() -> None:
    c = change(policy(), None)
    for sigs in ([], _sign(c, "ada"), _sign(c, "ada", "ada", "ada")):
        with pytest.raises(GovernanceError) as e:
            verify_policy_change(admin_set(), None, c, sigs)
        assert e.value.field == "signatures"
    q3 = admin_set(quorum=3)
    c3 = change(policy(), None, admins=q3)
    with pytest.raises(GovernanceError) as e:
        verify_policy_change(q3, None, c3, _sign(c3, "ada", "bob"))
    assert e.value.field == "signatures" and "2 distinct admin(s) signed, 3 required" in e.value.reason
    assert verify_policy_change(q3, None, c3, _sign(c3, "ada", "bob", "cyd", "bob"))


def test_change_is_bound_to_its_cluster_and_admin_set() -> None:
    """A change signed by every admin for one cluster is refused by another cluster with the
    very same admins, and by the same cluster after its admin set changed."""
    c = change(policy(), None)
    sigs = _sign(c, "ada", "bob", "cyd")
    assert verify_policy_change(admin_set(), None, c, sigs) == policy()
    for other in (admin_set(cluster_id=OTHER_CLUSTER_ID), admin_set(quorum=3)):
        with pytest.raises(GovernanceError) as e:
            verify_policy_change(other, None, c, sigs)
        assert e.value.field == "governance_root" and "another cluster" in e.value.reason
    # and the root is signed: re-labelling a change for another cluster breaks every signature
    moved = dataclasses.replace(c, governance_root=admin_set(cluster_id=OTHER_CLUSTER_ID).digest())
    with pytest.raises(GovernanceError) as e:
        verify_policy_change(admin_set(cluster_id=OTHER_CLUSTER_ID), None, moved, sigs)
    assert e.value.field == "signatures[0].signature"


def test_unknown_admin_and_bad_signature_name_the_admin() -> None:
    c = change(policy(), None)
    outsider = sign_policy_change(c, "mallory", OUTSIDER_KEY)
    with pytest.raises(GovernanceError) as e:
        verify_policy_change(admin_set(), None, c, [*_sign(c, "ada", "bob"), outsider])
    assert (e.value.field, e.value.subject) == ("signatures[2].admin", "mallory")
    # an admin's name with someone else's key
    forged = sign_policy_change(c, "bob", OUTSIDER_KEY)
    with pytest.raises(GovernanceError) as e:
        verify_policy_change(admin_set(), None, c, [*_sign(c, "ada"), forged, *_sign(c, "cyd")])
    assert (e.value.field, e.value.subject) == ("signatures[1].signature", "bob")
    # a valid signature of another change
    other = change(policy(quorum=1), None)
    with pytest.raises(GovernanceError) as e:
        verify_policy_change(admin_set(), None, c, [*_sign(c, "ada"), *_sign(other, "bob")])
    assert (e.value.field, e.value.subject) == ("signatures[1].signature", "bob")
    # a duplicate that does not verify is still an error
    dup = AdminSignature("ada", bytes(64))
    with pytest.raises(GovernanceError) as e:
        verify_policy_change(admin_set(), None, c, [*_sign(c, "ada", "bob"), dup])
    assert e.value.field == "signatures[2].signature"


def test_policy_history_and_replays() -> None:
    admins = admin_set()
    v1 = policy(version=1)
    c1 = change(v1, None)
    assert verify_policy_change(admins, None, c1, _sign(c1, "ada", "bob")) == v1
    v2 = policy(version=2, quorum=3)
    c2 = change(v2, v1)
    assert verify_policy_change(admins, v1, c2, _sign(c2, "ada", "bob")) == v2
    v3 = policy(version=3, quorum=1)
    c3 = change(v3, v2)
    assert verify_policy_change(admins, v2, c3, _sign(c3, "bob", "cyd")) == v3

    cases: list[tuple[KeyPolicy | None, PolicyChange, str]] = [
        (v1, c1, "previous_digest"),  # replay of the first change onto an existing scope
        (v2, c2, "previous_digest"),  # replay of an applied change
        (v3, c2, "previous_digest"),  # rollback to an old change
        (None, c2, "previous_digest"),  # a later change as the first of a scope
        (v1, change(policy(version=3), v1), "new_policy.version"),  # version skip
        (v1, change(policy(version=1, quorum=1), v1), "new_policy.version"),  # same version, new content
        (None, change(policy(version=2), None), "new_policy.version"),
    ]
    for current, c, field in cases:
        with pytest.raises(GovernanceError) as e:
            verify_policy_change(admins, current, c, _sign(c, "ada", "bob", "cyd"))
        assert e.value.field == field, (current, c)


def test_change_is_bound_to_its_scope() -> None:
    c = change(policy(), None, scope=KEY_ID)
    moved = dataclasses.replace(c, scope=OTHER_KEY_ID)
    with pytest.raises(GovernanceError) as e:
        verify_policy_change(admin_set(), None, moved, _sign(c, "ada", "bob"))
    assert e.value.field == "signatures[0].signature"


_POLICY_TAMPERS = {
    "version": lambda p: dataclasses.replace(p, version=p.version + 1),
    "approvers": lambda p: dataclasses.replace(p, approvers={**p.approvers, "dave": raw(APPROVER_KEYS["dave"])}),
    "approval_quorum": lambda p: dataclasses.replace(p, approval_quorum=1 if p.approval_quorum != 1 else 2),
    "requesters": lambda p: dataclasses.replace(p, requesters=p.requesters | {"intruder"}),
    "ttl_seconds": lambda p: dataclasses.replace(p, ttl_seconds=p.ttl_seconds + 1),
    "rate_limit": lambda p: dataclasses.replace(p, rate_limit=RateLimit(p.rate_limit.max_signatures + 1, 60)),
}


@given(
    st.sampled_from(["scope", "previous_digest", *(f"new_policy.{k}" for k in _POLICY_TAMPERS)]),
    st.permutations(sorted(ADMIN_KEYS)),
)
def test_tampering_any_signed_field_is_refused(field: str, signers: list[str]) -> None:
    v1 = policy(version=1)
    c = change(policy(version=2), v1)
    sigs = _sign(c, *signers)
    if field == "scope":
        tampered = dataclasses.replace(c, scope=DEFAULT_SCOPE)
    elif field == "previous_digest":
        tampered = dataclasses.replace(c, previous_digest=bytes(32))
    else:
        tampered = dataclasses.replace(c, new_policy=_POLICY_TAMPERS[field.split(".")[1]](c.new_policy))
    with pytest.raises(GovernanceError) as e:
        verify_policy_change(admin_set(), v1, tampered, sigs)
    assert (e.value.field, e.value.subject) == ("signatures[0].signature", signers[0])


@given(st.data())
def test_byte_flips_in_a_signed_change_never_pass(data: st.DataObject) -> None:
    v1 = policy(version=1)
    c = change(policy(version=2), v1)
    wire = SignedPolicyChange(c, tuple(_sign(c, "ada", "bob"))).to_bytes()
    i = data.draw(st.integers(0, len(wire) - 1))
    flip = data.draw(st.integers(1, 255))
    mutated = bytearray(wire)
    mutated[i] ^= flip
    with pytest.raises(GovernanceError):
        SignedPolicyChange.from_bytes(bytes(mutated)).verify(admin_set(), v1)


def test_check_admin_signature_vets_one_signature() -> None:
    c = change(policy(), None)
    check_admin_signature(admin_set(), c, sign_policy_change(c, "ada", ADMIN_KEYS["ada"]))
    cases = [
        (admin_set(), sign_policy_change(c, "mallory", OUTSIDER_KEY), "admin"),
        (admin_set(), sign_policy_change(c, "bob", OUTSIDER_KEY), "signature"),
        (admin_set(cluster_id=OTHER_CLUSTER_ID), sign_policy_change(c, "ada", ADMIN_KEYS["ada"]), "governance_root"),
    ]
    for admins, sig, field in cases:
        with pytest.raises(GovernanceError) as e:
            check_admin_signature(admins, c, sig)
        assert e.value.field == field
