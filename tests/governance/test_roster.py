"""The node roster as an admin-governed object (governance/roster.py, issue 11 items 3-4)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings, strategies as st

from governance.errors import GovernanceError
from governance.policy import AdminSignature
from governance.roster import (
    _X25519_LOW_ORDER,
    NodeStatus,
    Roster,
    RosterChange,
    RosterEntry,
    SignedRosterChange,
    active_entries,
    active_entry_by_fingerprint,
    active_entry_by_identity,
    add_node,
    change_endpoint,
    check_endpoint,
    check_x25519_public_key,
    is_revoked_identity,
    revoke_node,
    rotate_keys,
    sign_roster_change,
    verify_roster_change,
    verify_roster_history,
)

from ..conftest import scaled
from .gov_util import ADMIN_KEYS, OTHER_CLUSTER_ID, admin_set

P = 2**255 - 19


def _ed(seed: int) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"id%d" % seed).digest())
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _x(seed: int) -> bytes:
    key = X25519PrivateKey.from_private_bytes(hashlib.sha256(b"enc%d" % seed).digest())
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _fp(seed: int) -> bytes:
    return hashlib.sha256(b"cert%d" % seed).digest()


def entry(index: int, seed: int | None = None, **kw: object) -> RosterEntry:
    s = index if seed is None else seed
    fields: dict[str, object] = {
        "index": index, "name": f"node-{index}", "identity_key": _ed(s), "encryption_key": _x(s),
        "tls_fingerprint": _fp(s), "endpoint": f"127.0.0.1:{7000 + index}",
    }
    fields.update(kw)
    return RosterEntry(**fields)  # type: ignore[arg-type]


def first_roster(n: int = 3) -> Roster:
    return Roster(1, 0, tuple(entry(i) for i in range(1, n + 1)))


def signed(
    new: Roster, prev: Roster | None, admins: tuple[str, ...] = ("ada", "bob"), *, quorum: int = 2
) -> SignedRosterChange:
    change = RosterChange(new, None if prev is None else prev.digest(), admin_set(quorum).digest())
    return SignedRosterChange(change, tuple(sign_roster_change(change, a, ADMIN_KEYS[a]) for a in admins))


# --- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"index_": 0}, "index"),
        ({"index_": 256}, "index"),
        ({"index_": True}, "index"),
        ({"name": "-bad"}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"identity_key": b"\x01" * 31}, "identity_key"),
        ({"identity_key": bytes(32)}, "identity_key"),  # small order (y = 0)
        ({"identity_key": (1).to_bytes(32, "little")}, "identity_key"),  # the identity point
        ({"encryption_key": bytes(32)}, "encryption_key"),
        ({"encryption_key": b"\x09" * 33}, "encryption_key"),
        ({"encryption_key": (P + 5).to_bytes(32, "little")}, "encryption_key"),  # non-canonical
        ({"encryption_key": ((1 << 255) | 9).to_bytes(32, "little")}, "encryption_key"),  # bit 255
        ({"tls_fingerprint": bytes(32)}, "tls_fingerprint"),
        ({"tls_fingerprint": b"\x01" * 20}, "tls_fingerprint"),
        ({"endpoint": "host"}, "endpoint"),
        ({"endpoint": "host:0"}, "endpoint"),
        ({"endpoint": "host:70000"}, "endpoint"),
        ({"endpoint": "host:80\n"}, "endpoint"),
        ({"endpoint": "hôst:80"}, "endpoint"),
        ({"endpoint": "host:\uff18\uff10"}, "endpoint"),  # fullwidth digits are not [0-9]
        ({"endpoint": "a" * 251 + ":8080"}, "endpoint"),
        ({"status": 3}, "status"),
        ({"key_version": 0}, "key_version"),
    ],
)
def test_construction_errors_name_the_field(kw: dict[str, object], field: str) -> None:
    kw = dict(kw)
    with pytest.raises(GovernanceError) as info:
        if "index_" in kw:
            RosterEntry(kw["index_"], "n", _ed(1), _x(1), _fp(1), "h:1")  # type: ignore[arg-type]
        else:
            entry(1, **kw)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize("u", sorted(_X25519_LOW_ORDER))
def test_low_order_x25519_keys_are_refused_and_are_really_low_order(u: int) -> None:
    raw = u.to_bytes(32, "little")
    with pytest.raises(ValueError):  # X25519 itself: the shared secret would be all zero
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(raw))
    with pytest.raises(GovernanceError, match="low-order"):
        check_x25519_public_key(raw, "encryption_key")


def test_endpoints_accepted() -> None:
    for ok in ("127.0.0.1:7001", "node-1.example.com:443", "[::1]:65535"):
        assert check_endpoint(ok) == ok


@pytest.mark.parametrize(
    ("entries", "field"),
    [
        ((entry(1), entry(1, seed=9)), "entries[1].index"),
        ((entry(1), entry(2, seed=9, name="node-1")), "entries[1].name"),
        ((entry(1), entry(2, seed=9, identity_key=_ed(1))), "entries[1].identity_key"),
        ((entry(1), entry(2, seed=9, encryption_key=_x(1))), "entries[1].encryption_key"),
        ((entry(1), entry(2, seed=9, tls_fingerprint=_fp(1))), "entries[1].tls_fingerprint"),
        ((), "entries"),
    ],
)
def test_roster_duplicates_are_refused(entries: tuple[RosterEntry, ...], field: str) -> None:
    with pytest.raises(GovernanceError) as info:
        Roster(1, 0, entries)
    assert info.value.field == field


def test_roster_sorts_entries_and_checks_version_epoch() -> None:
    r = Roster(1, 0, (entry(3), entry(1), entry(2)))
    assert [e.index for e in r.entries] == [1, 2, 3]
    with pytest.raises(GovernanceError, match="^version"):
        Roster(0, 0, (entry(1),))
    with pytest.raises(GovernanceError, match="^epoch"):
        Roster(1, -1, (entry(1),))


def test_repr_and_errors_hold_no_secret() -> None:
    # Only public keys are in a roster; errors quote at most a short prefix of a caller's value.
    with pytest.raises(GovernanceError) as info:
        entry(1, endpoint="x" * 1000)
    assert len(str(info.value)) < 300


# --- signing and verification ----------------------------------------------------------------


def test_first_roster_with_quorum_verifies() -> None:
    r = first_roster()
    assert verify_roster_change(None, signed(r, None), admin_set()) == r


def test_without_quorum_refused_and_repeated_admin_counts_once() -> None:
    r = first_roster()
    with pytest.raises(GovernanceError, match="1 distinct admin"):
        verify_roster_change(None, signed(r, None, ("ada",)), admin_set())
    with pytest.raises(GovernanceError, match="1 distinct admin"):
        verify_roster_change(None, signed(r, None, ("ada", "ada")), admin_set())
    assert verify_roster_change(None, signed(r, None, ("ada",), quorum=1), admin_set(quorum=1)) == r


def test_bad_signature_unknown_admin_and_other_cluster_refused() -> None:
    r = first_roster()
    s = signed(r, None)
    other = first_roster(2)
    forged = sign_roster_change(RosterChange(other, None, admin_set().digest()), "bob", ADMIN_KEYS["bob"])
    with pytest.raises(GovernanceError) as info:
        verify_roster_change(None, SignedRosterChange(s.change, (s.signatures[0], forged)), admin_set())
    assert info.value.field == "signatures[1].signature" and info.value.subject == "bob"
    with pytest.raises(GovernanceError) as info:
        verify_roster_change(None, SignedRosterChange(s.change, (AdminSignature("eve", bytes(64)),)), admin_set())
    assert info.value.field == "signatures[0].admin"
    with pytest.raises(GovernanceError) as info:
        verify_roster_change(None, s, admin_set(cluster_id=OTHER_CLUSTER_ID))
    assert info.value.field == "governance_root"


def test_change_not_chained_to_previous_digest_refused() -> None:
    r1 = first_roster()
    r2 = change_endpoint(r1, 2, "10.0.0.2:7002")
    admins = admin_set()
    assert verify_roster_change(r1, signed(r2, r1), admins) == r2
    wrong_prev = dataclasses.replace(r1, epoch=5)
    with pytest.raises(GovernanceError) as info:
        verify_roster_change(r1, signed(r2, wrong_prev), admins)
    assert info.value.field == "previous_digest"
    with pytest.raises(GovernanceError) as info:  # a replay of the first change onto r2
        verify_roster_change(r2, signed(r1, None), admins)
    assert info.value.field == "previous_digest"
    with pytest.raises(GovernanceError) as info:  # first roster naming a previous one
        verify_roster_change(None, signed(r2, r1), admins)
    assert info.value.field == "previous_digest"
    skip = dataclasses.replace(r2, version=3)
    with pytest.raises(GovernanceError) as info:
        verify_roster_change(r1, signed(skip, r1), admins)
    assert info.value.field == "new_roster.version"


def test_revocation_keeps_the_entry_and_refuses_its_keys() -> None:
    r1 = first_roster()
    r2 = revoke_node(r1, 2)
    assert verify_roster_change(r1, signed(r2, r1), admin_set()) == r2
    assert r2.entry(2) is not None and r2.entry(2).status is NodeStatus.REVOKED  # type: ignore[union-attr]
    assert r2.epoch == 1
    assert is_revoked_identity(r2, _ed(2)) and not is_revoked_identity(r2, _ed(1))
    assert active_entry_by_identity(r2, _ed(2)) is None
    assert active_entry_by_fingerprint(r2, _fp(2)) is None
    assert active_entry_by_identity(r2, _ed(1)) == r2.entry(1)
    assert [e.index for e in active_entries(r2)] == [1, 3]
    # its keys can never be given to another node: distinctness covers revoked entries
    with pytest.raises(GovernanceError, match="identity_key"):
        add_node(r2, entry(4, identity_key=_ed(2)))


def test_revoked_index_reuse_refused() -> None:
    r1 = first_roster()
    r2 = revoke_node(r1, 2)
    with pytest.raises(GovernanceError, match="never reused"):
        add_node(r2, entry(2, seed=20))
    # hand-built: the revoked entry replaced by a fresh active one at the same index
    reused = Roster(3, 2, tuple(entry(2, seed=20, name="node-2") if e.index == 2 else e for e in r2.entries))
    with pytest.raises(GovernanceError) as info:
        verify_roster_change(r2, signed(reused, r2), admin_set())
    assert info.value.field == "new_roster.entries[1]" and "revocation is final" in info.value.reason
    # nor may the revoked entry be dropped to free its index
    dropped = Roster(3, 2, tuple(e for e in r2.entries if e.index != 2))
    with pytest.raises(GovernanceError, match="dropped"):
        verify_roster_change(r2, signed(dropped, r2), admin_set())


def test_add_rotate_endpoint_chain_and_history() -> None:
    admins = admin_set()
    r1 = first_roster()
    r2 = add_node(r1, entry(4))
    r3 = rotate_keys(r2, 1, identity_key=_ed(41), encryption_key=_x(41), tls_fingerprint=_fp(41))
    r4 = change_endpoint(r3, 4, "node-4.example:7004")
    r5 = revoke_node(r4, 3)
    chain = [signed(r1, None), signed(r2, r1), signed(r3, r2), signed(r4, r3), signed(r5, r4)]
    assert verify_roster_history(admins, chain) == r5
    e1 = r5.entry(1)
    assert e1 is not None and e1.key_version == 2 and e1.identity_key == _ed(41)
    assert active_entry_by_identity(r5, _ed(1)) is None  # rotated away
    assert r4.epoch == r3.epoch  # an endpoint change keeps the epoch
    assert [r.epoch for r in (r1, r2, r3, r5)] == [0, 1, 2, 3]
    with pytest.raises(GovernanceError) as info:
        verify_roster_history(admins, [chain[0], chain[2]])
    assert info.value.field == "history[1].previous_digest"


def test_a_rotated_away_key_may_not_come_back() -> None:
    admins = admin_set()
    r1 = first_roster()
    r2 = rotate_keys(r1, 1, identity_key=_ed(41))
    r3 = rotate_keys(r2, 1, identity_key=_ed(1))
    assert verify_roster_change(r2, signed(r3, r2), admins) == r3  # one step cannot see it ...
    with pytest.raises(GovernanceError) as info:  # ... the history does
        verify_roster_history(admins, [signed(r1, None), signed(r2, r1), signed(r3, r2)])
    assert info.value.field == "history[2].new_roster.entries"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: dataclasses.replace(e, name="renamed"), "new_roster.entries[0].name"),
        (lambda e: dataclasses.replace(e, identity_key=_ed(50)), "new_roster.entries[0].key_version"),
        (lambda e: dataclasses.replace(e, identity_key=_ed(50), key_version=3), "new_roster.entries[0].key_version"),
        (lambda e: dataclasses.replace(e, key_version=2), "new_roster.entries[0].key_version"),
        (lambda e: dataclasses.replace(e, status=NodeStatus.REVOKED, endpoint="h:1"), "new_roster.entries[0]"),
    ],
)
def test_disallowed_steps(mutate: object, field: str) -> None:
    r1 = first_roster()
    assert callable(mutate)
    new = Roster(2, 1, tuple(mutate(e) if e.index == 1 else e for e in r1.entries))
    with pytest.raises(GovernanceError) as info:
        verify_roster_change(r1, signed(new, r1), admin_set())
    assert info.value.field == field


def test_epoch_rules_and_no_op_and_first_roster_rules() -> None:
    admins = admin_set()
    r1 = first_roster()
    same_epoch = rotate_keys(r1, 1, identity_key=_ed(41), epoch=0)
    with pytest.raises(GovernanceError) as info:
        verify_roster_change(r1, signed(same_epoch, r1), admins)
    assert info.value.field == "new_roster.epoch"
    back = Roster(2, 1, r1.entries)
    r2 = change_endpoint(back, 1, "h:1")
    r2 = dataclasses.replace(r2, version=2)
    r3 = dataclasses.replace(change_endpoint(r2, 1, "h:2"), epoch=0)
    with pytest.raises(GovernanceError, match="go back"):
        verify_roster_change(r2, signed(r3, r2), admins)
    with pytest.raises(GovernanceError, match="changes no entry"):
        verify_roster_change(r1, signed(Roster(2, 0, r1.entries), r1), admins)
    with pytest.raises(GovernanceError) as info:
        verify_roster_change(None, signed(Roster(1, 0, (entry(1, status=NodeStatus.REVOKED),)), None), admins)
    assert info.value.field == "new_roster.entries[0].status"
    with pytest.raises(GovernanceError) as info:
        verify_roster_change(r1, signed(add_node(r1, entry(5, key_version=2)), r1), admins)
    assert info.value.field == "new_roster.entries[3].key_version"


# --- encodings -------------------------------------------------------------------------------


@st.composite
def rosters(draw: st.DrawFn) -> Roster:
    indices = draw(st.lists(st.integers(1, 255), min_size=1, max_size=6, unique=True))
    entries = []
    for i in indices:
        port = draw(st.integers(1, 65535))
        host = draw(st.from_regex(r"[A-Za-z0-9.\-]{1,20}", fullmatch=True))
        entries.append(
            entry(
                i, seed=i + 1000,
                name=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True)) + f"-{i}",
                endpoint=f"{host}:{port}",
                status=draw(st.sampled_from(NodeStatus)),
                key_version=draw(st.integers(1, 2**63 - 1)),
            )
        )
    return Roster(draw(st.integers(1, 2**63 - 1)), draw(st.integers(0, 2**63 - 1)), tuple(entries))


@settings(max_examples=scaled(40), deadline=None)
@given(rosters(), st.booleans())
def test_encodings_round_trip(r: Roster, first: bool) -> None:
    assert Roster.from_bytes(r.encode()) == r
    assert Roster.from_dict(r.to_dict()) == r
    for e in r.entries:
        assert RosterEntry.from_bytes(e.encode()) == e
    change = RosterChange(r, None if first else hashlib.sha256(b"p").digest(), admin_set().digest())
    assert RosterChange.from_bytes(change.encode()) == change
    assert RosterChange.from_dict(change.to_dict()) == change
    s = SignedRosterChange(change, (sign_roster_change(change, "ada", ADMIN_KEYS["ada"]),))
    assert SignedRosterChange.from_bytes(s.to_bytes()) == s
    assert SignedRosterChange.from_dict(s.to_dict()) == s


def test_strict_decoding() -> None:
    r = first_roster()
    data = r.encode()
    with pytest.raises(GovernanceError, match="trailing"):
        Roster.from_bytes(data + b"\x00")
    with pytest.raises(GovernanceError) as info:
        Roster.from_bytes(first_roster().entries[0].encode())  # another object's tag
    assert info.value.field == "tag"
    # entries out of order: re-encode by hand with entries 2, 1
    swapped = data[: len(data) - sum(8 + len(e.encode()) for e in r.entries)]
    swapped += b"".join(len(e.encode()).to_bytes(8, "big") + e.encode() for e in (r.entries[1], r.entries[0], r.entries[2]))
    with pytest.raises(GovernanceError) as info:
        Roster.from_bytes(swapped)
    assert info.value.field == "entries[1].index"
    e = r.entries[0]
    with pytest.raises(GovernanceError) as info:
        RosterEntry.from_dict({**e.to_dict(), "status": "gone"})
    assert info.value.field == "status"
    with pytest.raises(GovernanceError) as info:
        Roster.from_dict({**r.to_dict(), "extra": 1})
    assert info.value.field == "extra"


def test_lookups_validate_their_argument_and_last_active_node_stays() -> None:
    r = first_roster(1)
    with pytest.raises(GovernanceError) as info:
        is_revoked_identity(r, b"short")
    assert info.value.field == "key"
    with pytest.raises(GovernanceError) as info:
        active_entry_by_fingerprint(r, "ab")  # type: ignore[arg-type]
    assert info.value.field == "fingerprint"
    with pytest.raises(GovernanceError, match="no active node"):
        verify_roster_change(r, signed(revoke_node(r, 1), r), admin_set())
