"""Policy attestations: canonical encoding, signature and root checks, and the node's freshness rule."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, strategies as st

from governance.attestation import (
    STALE,
    UNCONFIRMED,
    AttestationRefusal,
    PolicyAttestation,
    PolicyHead,
    SignedPolicyAttestation,
    check_confirms,
    sign_attestation,
    verify_attestation,
)
from governance.encoding import Encoder
from governance.errors import GovernanceError
from governance.policy import DEFAULT_SCOPE

from .gov_util import ADMIN_KEYS, KEY_ID, NOW_MS, OTHER_CLUSTER_ID, OTHER_KEY_ID, OUTSIDER_KEY, admin_set, policy

P1, P2 = policy(version=1), policy(version=2, quorum=3)
DEFAULT_V1 = PolicyHead(DEFAULT_SCOPE, 1, P1.digest())
KEY_V1 = PolicyHead(KEY_ID, 1, P1.digest())
KEY_V2 = PolicyHead(KEY_ID, 2, P2.digest())
HOUR_MS = 3_600_000


def attestation(*heads: PolicyHead, issued: int = NOW_MS, admin: str = "ada", root: bytes | None = None) -> PolicyAttestation:
    return PolicyAttestation.build(root or admin_set().digest(), issued, admin, heads or (DEFAULT_V1,))


def signed(att: PolicyAttestation, key: object = None) -> SignedPolicyAttestation:
    return sign_attestation(att, key or ADMIN_KEYS[att.admin])  # type: ignore[arg-type]


def confirm(att: PolicyAttestation | None, held: dict[bytes, PolicyHead | None], now: int = NOW_MS) -> None:
    check_confirms(att, held, now_ms=now, max_age_ms=HOUR_MS, future_tolerance_ms=60_000)


# --- encoding ----------------------------------------------------------------------------------


def test_round_trip_and_sorted_heads() -> None:
    att = attestation(KEY_V1, DEFAULT_V1)
    assert [h.scope for h in att.heads] == sorted([KEY_ID, DEFAULT_SCOPE])
    s = signed(att)
    back = SignedPolicyAttestation.from_bytes(s.to_bytes())
    assert back == s and back.attestation.head(KEY_ID) == KEY_V1 and back.attestation.head(OTHER_KEY_ID) is None
    assert s.to_bytes().startswith(b"\x00" * 7 + bytes([len(b"MPCNET/v1/gov/signed-policy-attestation")]))


def test_encoding_is_strict() -> None:
    data = signed(attestation(KEY_V1, DEFAULT_V1)).to_bytes()
    with pytest.raises(GovernanceError) as e:
        SignedPolicyAttestation.from_bytes(data + b"\x00")
    assert e.value.field == "encoding"
    with pytest.raises(GovernanceError):
        SignedPolicyAttestation.from_bytes(data[:-1])
    # unsorted heads are not canonical
    root = admin_set().digest()
    enc = Encoder("MPCNET/v1/gov/policy-attestation").raw(root).uint(NOW_MS).text("ada").count(2)
    for h in sorted((KEY_V1, DEFAULT_V1), key=lambda h: h.scope, reverse=True):
        enc.raw(h.encode())
    with pytest.raises(GovernanceError) as e:
        PolicyAttestation.from_bytes(enc.finish())
    assert e.value.field == "heads[1].scope"
    with pytest.raises(GovernanceError) as e:
        PolicyAttestation.build(root, NOW_MS, "ada", (KEY_V1,))  # the default head is required
    assert e.value.field == "heads"
    with pytest.raises(GovernanceError) as e:
        PolicyAttestation.build(root, NOW_MS, "ada", (DEFAULT_V1, DEFAULT_V1))
    assert e.value.field == "heads[1].scope"
    with pytest.raises(GovernanceError) as e:
        PolicyHead(b"x" * 31, 1, P1.digest())
    assert e.value.field == "scope"


@given(st.binary(max_size=300))
def test_decoding_garbage_raises_only_governance_errors(data: bytes) -> None:
    try:
        SignedPolicyAttestation.from_bytes(data)
    except GovernanceError:
        pass


def test_a_policy_change_encoding_never_decodes_as_an_attestation() -> None:
    with pytest.raises(GovernanceError) as e:
        SignedPolicyAttestation.from_bytes(P1.encode())
    assert e.value.field == "tag"


# --- verification ------------------------------------------------------------------------------


def test_verifies_for_its_admin_set_only() -> None:
    att = attestation(KEY_V1, DEFAULT_V1)
    assert verify_attestation(admin_set(), signed(att)) == att
    with pytest.raises(GovernanceError) as e:
        verify_attestation(admin_set(cluster_id=OTHER_CLUSTER_ID), signed(att))
    assert e.value.field == "attestation.governance_root"


def test_forged_or_foreign_signatures_are_refused() -> None:
    att = attestation()
    with pytest.raises(GovernanceError) as e:
        verify_attestation(admin_set(), signed(att, OUTSIDER_KEY))
    assert e.value.field == "signature" and e.value.subject == "ada"
    with pytest.raises(GovernanceError) as e:  # bob's signature re-attributed to ada
        verify_attestation(admin_set(), signed(att, ADMIN_KEYS["bob"]))
    assert e.value.field == "signature"
    with pytest.raises(GovernanceError) as e:
        verify_attestation(admin_set(), signed(attestation(admin="eve"), OUTSIDER_KEY))
    assert e.value.field == "attestation.admin"
    s = signed(att)
    altered = SignedPolicyAttestation(attestation(issued=NOW_MS + 1), s.signature)
    with pytest.raises(GovernanceError) as e:
        verify_attestation(admin_set(), altered)
    assert e.value.field == "signature"


# --- the node's rule ---------------------------------------------------------------------------


def test_confirms_exactly_the_held_heads() -> None:
    confirm(attestation(KEY_V1, DEFAULT_V1), {KEY_ID: KEY_V1, DEFAULT_SCOPE: DEFAULT_V1})
    confirm(attestation(DEFAULT_V1), {KEY_ID: None, DEFAULT_SCOPE: DEFAULT_V1})
    confirm(attestation(DEFAULT_V1, issued=NOW_MS - HOUR_MS), {DEFAULT_SCOPE: DEFAULT_V1})  # exactly at the bound
    confirm(attestation(DEFAULT_V1, issued=NOW_MS + 60_000), {DEFAULT_SCOPE: DEFAULT_V1})  # within the skew


def refusal(att: PolicyAttestation | None, held: dict[bytes, PolicyHead | None], now: int = NOW_MS) -> AttestationRefusal:
    with pytest.raises(AttestationRefusal) as e:
        confirm(att, held, now)
    return e.value


def test_missing_old_or_future_attestations_are_unconfirmed() -> None:
    held: dict[bytes, PolicyHead | None] = {DEFAULT_SCOPE: DEFAULT_V1}
    e = refusal(None, held)
    assert (e.kind, e.field) == (UNCONFIRMED, "policy_attestation") and "mpc policy attest" in e.reason
    e = refusal(attestation(issued=NOW_MS - HOUR_MS - 1), held)
    assert (e.kind, e.field) == (UNCONFIRMED, "policy_attestation.issued_at_ms")
    assert "more than the 3600 s allowed" in e.reason
    e = refusal(attestation(issued=NOW_MS + 60_001), held)
    assert (e.kind, e.field) == (UNCONFIRMED, "policy_attestation.issued_at_ms") and "future" in e.reason


def test_a_newer_named_head_means_the_node_is_stale() -> None:
    e = refusal(attestation(KEY_V2, DEFAULT_V1), {KEY_ID: KEY_V1, DEFAULT_SCOPE: DEFAULT_V1})
    assert (e.kind, e.field) == (STALE, f"policy_attestation.heads[{KEY_ID.hex()}]")
    e = refusal(attestation(KEY_V1, DEFAULT_V1), {KEY_ID: None, DEFAULT_SCOPE: DEFAULT_V1})  # the key got its own policy
    assert e.kind == STALE


def test_an_older_or_different_named_head_is_unconfirmed() -> None:
    held: dict[bytes, PolicyHead | None] = {KEY_ID: KEY_V2, DEFAULT_SCOPE: DEFAULT_V1}
    assert refusal(attestation(KEY_V1, DEFAULT_V1), held).kind == UNCONFIRMED
    assert refusal(attestation(DEFAULT_V1), held).kind == UNCONFIRMED  # says: no policy of its own
    fork = PolicyHead(KEY_ID, 2, hashlib.sha256(b"another v2").digest())
    e = refusal(attestation(fork, DEFAULT_V1), held)
    assert e.kind == UNCONFIRMED and e.field == f"policy_attestation.heads[{KEY_ID.hex()}]"
    default_v2 = PolicyHead(DEFAULT_SCOPE, 2, P2.digest())
    e = refusal(attestation(KEY_V2, default_v2), held)
    assert (e.kind, e.field) == (STALE, "policy_attestation.heads[default]")
