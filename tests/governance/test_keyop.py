"""governance.keyop: key operations (refresh, reshare), their authorization, epoch receipts and
the commit certificate (issue 11)."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.errors import GovernanceError
from governance.keyop import (
    EpochReceipt,
    KeyOperation,
    KeyOpKind,
    SignedKeyOperation,
    check_authorized,
    roster_implied,
    sign_epoch_receipt,
    sign_key_operation,
    verify_commit_certificate,
)
from governance.roster import Roster, RosterEntry, add_node, revoke_node
from tests.governance.gov_util import ADMIN_KEYS, OTHER_CLUSTER_ID, OUTSIDER_KEY, admin_set, raw

ADMINS = admin_set()
ROOT = ADMINS.digest()
PK = bytes.fromhex("02" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
CC = bytes(range(32))
KEY_ID = hashlib.sha256(b"key").digest()
SID = bytes([7] * 32)
NODE_KEYS = {i: Ed25519PrivateKey.generate() for i in range(1, 7)}


def _x25519(i: int) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return X25519PrivateKey.from_private_bytes(bytes([0x30 + i]) * 32).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _entry(i: int) -> RosterEntry:
    return RosterEntry(i, f"node-{i}", raw(NODE_KEYS[i]), _x25519(i), hashlib.sha256(b"cert %d" % i).digest(), f"localhost:{7000 + i}")


ROSTER_1 = Roster(1, 0, tuple(_entry(i) for i in range(1, 6)))
ROSTER_2 = revoke_node(ROSTER_1, 3)  # active 1, 2, 4, 5


def op(**kw: Any) -> KeyOperation:
    base: dict[str, Any] = dict(
        governance_root=ROOT, op_id=bytes(16), kind=KeyOpKind.RESHARE, key_id=KEY_ID, public_key=PK, chain_code=CC,
        old_epoch=0, old_threshold=3, old_committee=(1, 2, 3, 4, 5), new_threshold=3, new_committee=(1, 2, 4, 5),
        roster_version=2, reason="node 3 revoked",
    )
    base.update(kw)
    return KeyOperation(**base)


def signed(o: KeyOperation, *admins: str) -> SignedKeyOperation:
    return SignedKeyOperation(o, tuple(sign_key_operation(o, a, ADMIN_KEYS[a]) for a in admins))


# --- the object -----------------------------------------------------------------------------


def test_round_trips_and_properties() -> None:
    o = op()
    assert KeyOperation.from_bytes(o.encode()) == o == KeyOperation.from_dict(o.to_dict())
    s = signed(o, "ada", "bob")
    assert SignedKeyOperation.from_bytes(s.to_bytes()) == s == SignedKeyOperation.from_dict(s.to_dict())
    assert (o.new_epoch, o.kept, o.dropped, o.joining) == (1, (1, 2, 4, 5), (3,), ())
    assert o.share_index(4, new=True) == 3 and o.share_index(4, new=False) == 4
    with pytest.raises(GovernanceError):
        o.share_index(3, new=True)
    assert len(o.proposal_id) == 32


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"kind": KeyOpKind.REFRESH}, "new_committee"),  # a refresh keeps the committee
        ({"new_committee": (1, 2, 3, 4, 5)}, "new_committee"),  # a reshare changes something
        ({"new_committee": (2, 1, 4)}, "new_committee"),  # increasing
        ({"new_committee": (1, 1, 4)}, "new_committee"),  # distinct
        ({"new_committee": (1,), "new_threshold": 2}, "new_committee"),
        ({"new_threshold": 5}, "new_threshold"),  # t' <= n'
        ({"new_threshold": 1}, "new_threshold"),
        ({"old_threshold": 6}, "old_threshold"),
        ({"old_committee": (0, 1, 2)}, "old_committee[0]"),
        ({"old_committee": (1, 2, 256)}, "old_committee[2]"),
        ({"public_key": b"\x04" + bytes(32)}, "public_key"),
        ({"public_key": PK[:32]}, "public_key"),
        ({"chain_code": bytes(31)}, "chain_code"),
        ({"op_id": bytes(15)}, "op_id"),
        ({"old_epoch": 2**32 - 1}, "old_epoch"),
        ({"old_epoch": -1}, "old_epoch"),
        ({"roster_version": 0}, "roster_version"),
        ({"reason": "line\nbreak"}, "reason"),
        ({"reason": "x" * 201}, "reason"),
        ({"kind": 3}, "kind"),
        ({"kind": True}, "kind"),
    ],
)
def test_invalid_operations_are_refused_naming_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(GovernanceError) as e:
        op(**kw)
    assert e.value.field == field


def test_a_refresh_keeps_committee_and_threshold() -> None:
    r = op(kind=KeyOpKind.REFRESH, new_committee=(1, 2, 3, 4, 5), roster_version=1)
    assert r.dropped == () and r.joining == ()
    with pytest.raises(GovernanceError):
        op(kind=KeyOpKind.REFRESH, new_committee=(1, 2, 3, 4, 5), new_threshold=2)


def test_decoding_is_strict() -> None:
    enc = op().encode()
    for bad in (enc + b"\x00", enc[:-1], enc[:6] + bytes([enc[6] ^ 1]) + enc[7:]):
        with pytest.raises(GovernanceError):
            KeyOperation.from_bytes(bad)
    s = signed(op(), "ada").to_bytes()
    with pytest.raises(GovernanceError):
        SignedKeyOperation.from_bytes(s + b"\x00")


# --- authorization --------------------------------------------------------------------------


def test_admin_quorum_authorizes() -> None:
    assert check_authorized(signed(op(new_committee=(1, 2, 4), roster_version=2), "ada", "cyd"), ADMINS, ROSTER_2) == "admin-quorum"


def test_roster_implied_reshare_needs_no_signature() -> None:
    o = op()
    assert roster_implied(o, ROSTER_2)
    assert check_authorized(SignedKeyOperation(o), ADMINS, ROSTER_2) == "roster"
    # adding node 6 back: to exactly the active nodes, same threshold
    r3 = add_node(ROSTER_2, _entry(6), epoch=3)
    o2 = op(old_epoch=1, old_committee=(1, 2, 4, 5), new_committee=(1, 2, 4, 5, 6), roster_version=3)
    assert check_authorized(SignedKeyOperation(o2), ADMINS, r3) == "roster"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"new_threshold": 2}, "signatures"),  # a threshold change is never implied
        ({"new_committee": (1, 2, 4)}, "signatures"),  # not all active nodes
        ({"roster_version": 1}, "roster_version"),  # not the verifier's roster
    ],
)
def test_unsigned_operations_the_roster_does_not_imply_are_refused(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(GovernanceError) as e:
        check_authorized(SignedKeyOperation(op(**kw)), ADMINS, ROSTER_2)
    assert e.value.field == field


def test_an_unsigned_refresh_is_refused() -> None:
    r = op(kind=KeyOpKind.REFRESH, new_committee=(1, 2, 3, 4, 5), roster_version=1)
    with pytest.raises(GovernanceError) as e:
        check_authorized(SignedKeyOperation(r), ADMINS, ROSTER_1)
    assert e.value.field == "signatures"


def test_signature_failures() -> None:
    o = op(new_committee=(1, 2, 4))
    with pytest.raises(GovernanceError, match="1 distinct admin"):
        check_authorized(signed(o, "ada", "ada"), ADMINS, ROSTER_2)
    forged = SignedKeyOperation(o, (sign_key_operation(o, "ada", OUTSIDER_KEY), sign_key_operation(o, "bob", ADMIN_KEYS["bob"])))
    with pytest.raises(GovernanceError, match="does not verify"):
        check_authorized(forged, ADMINS, ROSTER_2)
    other = signed(dataclasses.replace(o, reason="other"), "ada", "bob")
    swapped = SignedKeyOperation(o, other.signatures)
    with pytest.raises(GovernanceError, match="does not verify"):
        check_authorized(swapped, ADMINS, ROSTER_2)


def test_foreign_cluster_and_inactive_members_are_refused() -> None:
    foreign = admin_set(cluster_id=OTHER_CLUSTER_ID)
    with pytest.raises(GovernanceError) as e:
        check_authorized(signed(op(new_committee=(1, 2, 4)), "ada", "bob"), foreign, ROSTER_2)
    assert e.value.field == "governance_root"
    with pytest.raises(GovernanceError) as e:
        check_authorized(signed(op(new_committee=(1, 2, 3)), "ada", "bob"), ADMINS, ROSTER_2)
    assert e.value.field == "new_committee" and "node 3" in e.value.reason


# --- receipts and the commit certificate ------------------------------------------------------


def receipt(holder: int, **kw: Any) -> bytes:
    base: dict[str, Any] = dict(
        governance_root=ROOT, key_id=KEY_ID, op_digest=op().digest(), session_id=SID, epoch=1, threshold=3,
        committee=(1, 2, 4, 5), state_digest=bytes([9] * 32), holder=holder,
    )
    base.update(kw)
    key = kw.pop("key", None) or NODE_KEYS[holder]
    base.pop("key", None)
    return sign_epoch_receipt(EpochReceipt(**base), key).to_bytes()


IDS = {i: raw(k) for i, k in NODE_KEYS.items() if i != 3}


def certify(receipts: list[bytes], **kw: Any) -> Any:
    args: dict[str, Any] = dict(governance_root=ROOT, key_id=KEY_ID, session_id=SID, identities=IDS)
    args.update(kw)
    return verify_commit_certificate(receipts, **args)


def test_a_complete_certificate_verifies() -> None:
    cert = certify([receipt(i) for i in (5, 1, 4, 2)])
    assert (cert.epoch, cert.threshold, cert.committee) == (1, 3, (1, 2, 4, 5))
    r = EpochReceipt.from_bytes(receipt(1))
    assert EpochReceipt.from_bytes(r.to_bytes()) == r and r.verify(IDS[1]) and not r.verify(IDS[2])


@pytest.mark.parametrize(
    ("receipts", "kw", "match"),
    [
        (lambda: [receipt(i) for i in (1, 2, 4)], {}, "node 5 of the new committee has not confirmed"),
        (lambda: [receipt(i) for i in (1, 2, 4, 4, 5)], {}, "appears twice"),
        (lambda: [receipt(1), receipt(2), receipt(4), receipt(5, state_digest=bytes(32))], {}, "different epoch state"),
        (lambda: [receipt(i) for i in (1, 2, 4, 5)], {"session_id": bytes(32)}, "another session"),
        (lambda: [receipt(i) for i in (1, 2, 4, 5)], {"key_id": bytes(32)}, "another key"),
        (lambda: [receipt(i) for i in (1, 2, 4, 5)], {"governance_root": bytes(32)}, "another governance root"),
        (lambda: [receipt(1), receipt(2), receipt(4), receipt(5, key=NODE_KEYS[1])], {}, "does not verify"),
        (lambda: [receipt(i) for i in (1, 2, 4, 5)], {"identities": {i: k for i, k in IDS.items() if i != 5}}, "not an active node"),
        (lambda: [], {}, "non-empty"),
    ],
)
def test_incomplete_or_inconsistent_certificates_are_refused(receipts: Any, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(GovernanceError, match=match):
        certify(receipts(), **kw)


def test_receipt_rules() -> None:
    with pytest.raises(GovernanceError) as e:
        receipt(3)  # not in the committee
    assert e.value.field == "holder"
    with pytest.raises(GovernanceError) as e:
        receipt(1, epoch=0)
    assert e.value.field == "epoch"
    with pytest.raises(GovernanceError):
        EpochReceipt.from_bytes(receipt(1) + b"\x00")


def test_a_due_refresh_needs_no_signature_but_only_when_due() -> None:
    from governance.keyop import refresh_due

    r = SignedKeyOperation(op(kind=KeyOpKind.REFRESH, new_committee=(1, 2, 3, 4, 5), roster_version=1))
    assert check_authorized(r, ADMINS, ROSTER_1, scheduled=True) == "schedule"
    with pytest.raises(GovernanceError):
        check_authorized(r, ADMINS, ROSTER_1, scheduled=False)
    with pytest.raises(GovernanceError):  # a schedule never authorizes a reshare
        check_authorized(SignedKeyOperation(op(new_committee=(1, 2, 4))), ADMINS, ROSTER_2, scheduled=True)
    assert refresh_due(3600, 0, 3_600_000) and not refresh_due(3600, 1, 3_600_000) and not refresh_due(0, 0, 10**12)


def test_key_policy_refresh_period_is_optional_and_canonical() -> None:
    from governance.policy import KeyPolicy
    from tests.governance.gov_util import policy

    p = policy()
    assert p.refresh_period_s == 0 and "refresh_period_s" not in p.to_dict()
    q = dataclasses.replace(p, refresh_period_s=86400)
    assert q.encode() != p.encode()
    assert KeyPolicy.from_bytes(q.encode()) == q == KeyPolicy.from_dict(q.to_dict())
    assert KeyPolicy.from_bytes(p.encode()) == p  # encodings without it are unchanged
    with pytest.raises(GovernanceError) as e:
        dataclasses.replace(p, refresh_period_s=59)
    assert e.value.field == "refresh_period_s"
    with pytest.raises(GovernanceError):  # an explicit 0 is not canonical
        KeyPolicy.from_bytes(p.encode() + (8).to_bytes(8, "big") + bytes(8))


def test_dropping_revoked_nodes_from_an_admin_chosen_committee_is_roster_implied() -> None:
    # an admin-chosen committee (1, 2, 3) of the active (1..5); node 3 revoked: dropping it is implied
    o = op(old_committee=(1, 2, 3), old_threshold=2, new_committee=(1, 2), new_threshold=2)
    assert roster_implied(o, ROSTER_2)
    assert check_authorized(SignedKeyOperation(o), ADMINS, ROSTER_2) == "roster"
    # dropping an active node too, or keeping the revoked one, is not
    for new in ((1, 4), (1, 2, 4)):
        bad = op(old_committee=(1, 2, 3), old_threshold=2, new_committee=new, new_threshold=2)
        with pytest.raises(GovernanceError) as e:
            check_authorized(SignedKeyOperation(bad), ADMINS, ROSTER_2)
        assert e.value.field == "signatures"
