"""Backup split and reconstruction of FROST shares in the key's own group (crypto_core.frost.backup,
crypto_core.frost.feldman): both groups, every bad piece named, strict commitment decoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.errors import DecodeError, RecoveryError, UsageError
from crypto_core.frost.backup import BAD_PIECE, OK, reconstruct, split_share
from crypto_core.frost.feldman import check_commitments, piece_matches
from crypto_core.frost.group import ED25519, SECP256K1, Group
from crypto_core.rng import DeterministicRng

from ...conftest import scaled
from .frost_util import SCHEMES, bad_elements, keygen

GROUPS = {"ed25519": ED25519, "schnorr-secp256k1-bip340": SECP256K1}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_real_share_splits_and_any_quorum_rebuilds_it(scheme: str) -> None:
    group = GROUPS[scheme]
    share = keygen(scheme, 2, 3)[1]
    pieces, commitments = split_share(group, share.secret_share, 3, 5, DeterministicRng(b"split"))
    enc = [group.encode(c) for c in commitments]
    assert len(pieces) == 5 and len(enc) == 3 and all(len(c) == group.element_len for c in enc)
    assert enc[0] == share.public_shares[share.index - 1]  # C_0 is the node's public share
    checked = check_commitments(group, enc, 3, share.public_shares[share.index - 1])
    for subset in ((1, 2, 3), (2, 4, 5), (1, 3, 5)):
        secret, outcomes = reconstruct(group, checked, {j: pieces[j - 1] for j in subset}, 3)
        assert secret == share.secret_share and set(outcomes.values()) == {OK}


@settings(max_examples=scaled(10), deadline=None)
@given(st.sampled_from(SCHEMES), st.integers(2, 6), st.integers(0, 3), st.binary(min_size=1, max_size=8), st.data())
def test_split_reconstruct_roundtrip_over_random_quorums(scheme: str, m: int, extra: int, seed: bytes, data: st.DataObject) -> None:
    group = GROUPS[scheme]
    k = m + extra
    secret = 1 + int.from_bytes(seed * 8, "big") % (group.order - 1)
    pieces, commitments = split_share(group, secret, m, k, DeterministicRng(seed))
    subset = data.draw(st.lists(st.integers(1, k), min_size=m, max_size=k, unique=True))
    got, _ = reconstruct(group, commitments, {j: pieces[j - 1] for j in subset}, m)
    assert got == secret
    # m-1 pieces never suffice (UsageError-free: RecoveryError with nobody at fault)
    with pytest.raises(RecoveryError) as e:
        reconstruct(group, commitments, {j: pieces[j - 1] for j in subset[: m - 1]}, m)
    assert e.value.officers == ()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_bad_pieces_are_named_and_a_quorum_of_good_ones_still_rebuilds(scheme: str) -> None:
    group = GROUPS[scheme]
    pieces, commitments = split_share(group, 12345, 2, 4, DeterministicRng(b"x"))
    given_ = {1: (pieces[0] + 1) % group.order, 2: pieces[1], 3: group.order, 4: pieces[3]}
    secret, outcomes = reconstruct(group, commitments, given_, 2)
    assert secret == 12345 and outcomes == {1: BAD_PIECE, 2: OK, 3: BAD_PIECE, 4: OK}
    with pytest.raises(RecoveryError) as e:
        reconstruct(group, commitments, {1: given_[1], 2: pieces[1], 3: given_[3]}, 2)
    assert e.value.officers == (1, 3) and "12345" not in str(e.value)


def test_a_piece_of_the_other_group_does_not_match() -> None:
    pieces, commitments = split_share(ED25519, 7, 2, 3, DeterministicRng(b"y"))
    assert piece_matches(ED25519, commitments, 1, pieces[0])
    assert not piece_matches(ED25519, commitments, 1, pieces[0] + ED25519.order)  # out of range, never reduced
    assert not piece_matches(ED25519, commitments, 0, pieces[0]) and not piece_matches(ED25519, commitments, True, pieces[0])
    with pytest.raises(TypeError):
        piece_matches(SECP256K1, commitments, 1, pieces[0])  # a group only takes its own elements


@pytest.mark.parametrize("scheme", SCHEMES)
def test_commitments_decode_strictly_naming_the_field(scheme: str) -> None:
    group: Group = GROUPS[scheme]
    share = keygen(scheme, 2, 3)[0]
    _, commitments = split_share(group, share.secret_share, 2, 3, DeterministicRng(b"z"))
    enc = [group.encode(c) for c in commitments]
    mine = share.public_shares[share.index - 1]
    for why, bad in bad_elements(scheme).items():
        with pytest.raises(DecodeError) as e:
            check_commitments(group, [enc[0], bad], 2, mine)
        assert e.value.field == "commitments[1]", why
    with pytest.raises(DecodeError) as e:
        check_commitments(group, enc, 2, share.public_shares[1])
    assert e.value.field == "commitments[0]"
    with pytest.raises(DecodeError) as e:
        check_commitments(group, enc[:1], 2, mine)
    assert e.value.field == "commitments"
    with pytest.raises(DecodeError) as e:
        check_commitments(group, enc + enc[1:], 2, mine)
    assert e.value.field == "commitments"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_split_and_reconstruct_refuse_bad_arguments(scheme: str) -> None:
    group = GROUPS[scheme]
    for secret in (0, group.order, -1, True):
        with pytest.raises(UsageError):
            split_share(group, secret, 2, 3)
    for m, k in ((0, 3), (3, 2), (2, 256)):
        with pytest.raises(UsageError):
            split_share(group, 5, m, k)
    pieces, commitments = split_share(group, 5, 2, 3)
    with pytest.raises(UsageError):
        reconstruct(group, commitments[:1], {1: pieces[0]}, 2)
    with pytest.raises(UsageError):
        reconstruct(group, [group.identity(), commitments[1]], {1: pieces[0]}, 2)
    with pytest.raises(UsageError):
        reconstruct(group, commitments, {0: pieces[0], 1: pieces[0]}, 2)
