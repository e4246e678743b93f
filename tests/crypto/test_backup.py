"""Backup splitting and reconstruction (crypto_core.backup, crypto_core.feldman; issue 12).

Properties over random (t, n, m, k): any m officers rebuild any node's share, which matches its
public share; any m-1 pieces are consistent with every candidate secret (so m-1 officers learn
nothing); a tampered piece or commitment names the officers at fault. A refresh in which some
dealers hold a RecoveredShare gives KeyShares that sign under the same public key.
"""

from __future__ import annotations

import hashlib
import itertools

import pytest
from coincurve import PublicKey
from hypothesis import given, settings, strategies as st

from crypto_core.backup import BAD_PIECE, OK, RecoveredShare, reconstruct, split_share
from crypto_core.errors import DecodeError, ProtocolError, RecoveryError, UsageError
from crypto_core.feldman import check_commitments, check_public_shares, evaluate_in_exponent, key_id_of, piece_matches
from crypto_core.group import G, Point, Q, inv
from crypto_core.keyshare import KeyShare
from crypto_core.local import run
from crypto_core.reshare import ReshareConfig, ReshareParty
from crypto_core.rng import DeterministicRng
from crypto_core.shamir import evaluate, feldman_commit

from ..conftest import scaled
from .dkg_util import keygen
from .sign_util import sign
from .test_redaction import assert_hidden, assert_object_hidden

KEYS = [(2, 2), (2, 3), (3, 4)]


def completion(pieces: dict[int, int], candidate: int) -> list[int]:
    """Test-only: the coefficients (constant first) of the one polynomial of degree <= m-1 that
    passes through the m-1 ``pieces`` ``{x: y}`` and ``(0, candidate)`` (Lagrange, expanded)."""
    pts = {0: candidate % Q, **pieces}
    m = len(pts)
    coeffs = [0] * m
    for i, y in pts.items():
        basis = [1]  # prod_{j != i} (X - j) / (i - j)
        den = 1
        for j in pts:
            if j == i:
                continue
            basis = [(a - j * b) % Q for a, b in zip([0, *basis], [*basis, 0], strict=True)]
            den = den * (i - j) % Q
        scale = y * inv(den) % Q
        coeffs = [(c + scale * b) % Q for c, b in zip(coeffs, basis, strict=True)]
    return coeffs


def recovered(ks: KeyShare, secret: int | None = None) -> RecoveredShare:
    return RecoveredShare(
        ks.threshold, ks.parties, ks.index, ks.secret_share if secret is None else secret, ks.public_key,
        ks.public_shares, ks.chain_code, ks.key_label, ks.epoch,
    )


@st.composite
def splits(draw):
    t, n = draw(st.sampled_from(KEYS))
    index = draw(st.integers(1, n))
    k = draw(st.integers(1, 7))
    m = draw(st.integers(1, k))
    return t, n, index, m, k


@given(splits(), st.data())
@settings(max_examples=scaled(25), deadline=None)
def test_any_m_officers_rebuild_any_nodes_share(plan, data):
    t, n, index, m, k = plan
    ks = keygen(t, n)[index]
    seed = data.draw(st.binary(min_size=1, max_size=8), label="seed")
    pieces, commitments = split_share(ks.secret_share, m, k, DeterministicRng(seed))
    assert len(pieces) == k and len(commitments) == m
    assert commitments[0] == ks.public_shares[index - 1]
    assert check_commitments([c.encode() for c in commitments], m, ks.public_shares[index - 1].encode()) == commitments
    assert all(piece_matches(commitments, j, pieces[j - 1]) for j in range(1, k + 1))
    officers = data.draw(st.sets(st.integers(1, k), min_size=m, max_size=k), label="officers")
    secret, outcomes = reconstruct(commitments, {j: pieces[j - 1] for j in officers}, m)
    assert secret == ks.secret_share and Point.base_mul(secret) == ks.public_shares[index - 1]
    assert outcomes == {j: OK for j in officers}


@given(splits(), st.data())
@settings(max_examples=scaled(20), deadline=None)
def test_m_minus_1_pieces_are_consistent_with_every_secret(plan, data):
    t, n, index, m, k = plan
    if m < 2:
        return
    ks = keygen(t, n)[index]
    pieces, commitments = split_share(ks.secret_share, m, k, DeterministicRng(b"m-1"))
    officers = sorted(data.draw(st.sets(st.integers(1, k), min_size=m - 1, max_size=m - 1), label="officers"))
    seen = {j: pieces[j - 1] for j in officers}
    # the true polynomial is one of the completions: the one through the real secret
    assert feldman_commit(completion(seen, ks.secret_share)) == commitments
    for candidate in (0, 1, Q - 1, data.draw(st.integers(0, Q - 1), label="candidate")):
        coeffs = completion(seen, candidate)
        assert len(coeffs) == m and evaluate(coeffs, 0) == candidate
        assert all(evaluate(coeffs, j) == y for j, y in seen.items())
    # and m-1 pieces alone are refused, naming no officer (none was wrong)
    with pytest.raises(RecoveryError) as e:
        reconstruct(commitments, seen, m)
    assert e.value.officers == ()


@given(splits(), st.data())
@settings(max_examples=scaled(20), deadline=None)
def test_a_tampered_piece_names_its_officer(plan, data):
    t, n, index, m, k = plan
    ks = keygen(t, n)[index]
    pieces, commitments = split_share(ks.secret_share, m, k, DeterministicRng(b"tamper"))
    bad = data.draw(st.integers(1, k), label="bad")
    delta = data.draw(st.integers(1, Q - 1), label="delta")
    given_pieces = {j: pieces[j - 1] for j in range(1, k + 1)}
    given_pieces[bad] = (given_pieces[bad] + delta) % Q
    good = k - 1
    if good >= m:
        secret, outcomes = reconstruct(commitments, given_pieces, m)
        assert secret == ks.secret_share and outcomes[bad] == BAD_PIECE
        assert [j for j, o in outcomes.items() if o != OK] == [bad]
    else:
        with pytest.raises(RecoveryError) as e:
            reconstruct(commitments, given_pieces, m)
        assert e.value.officers == (bad,) and f"officers at fault: {bad}" in str(e.value)


def test_a_tampered_commitment_is_refused():
    ks = keygen(2, 3)[2]
    pieces, commitments = split_share(ks.secret_share, 2, 3, DeterministicRng(b"c"))
    enc = [c.encode() for c in commitments]
    # C_0 that is not the public share
    with pytest.raises(DecodeError) as e:
        check_commitments([(commitments[0] + G).encode(), enc[1]], 2, ks.public_shares[1].encode())
    assert e.value.field == "commitments[0]"
    # a later commitment changed: every officer's piece fails, all are named
    tampered = [commitments[0], commitments[1] + G]
    with pytest.raises(RecoveryError) as e2:
        reconstruct(tampered, {j: pieces[j - 1] for j in (1, 2, 3)}, 2)
    assert e2.value.officers == (1, 2, 3)
    # malformed encodings name the position
    for bad, field in ((enc[1][:-1], "commitments[1]"), (bytes(33), "commitments[1]"), (b"\x05" + enc[1][1:], "commitments[1]")):
        with pytest.raises(DecodeError) as e3:
            check_commitments([enc[0], bad], 2, ks.public_shares[1].encode())
        assert e3.value.field == field
    with pytest.raises(DecodeError) as e4:
        check_commitments(enc, 3, ks.public_shares[1].encode())
    assert e4.value.field == "commitments"


def test_piece_matches_refuses_out_of_range_values():
    _, commitments = split_share(5, 2, 3, DeterministicRng(b"r"))
    for j, piece in ((1, -1), (1, Q), (0, 5), (256, 5), (True, 5)):
        assert piece_matches(commitments, j, piece) is False
    assert piece_matches([], 1, 5) is False
    assert evaluate_in_exponent(commitments, 0) == commitments[0]


def test_split_and_reconstruct_refuse_bad_arguments():
    for m, k in ((0, 3), (3, 2), (1, 256)):
        with pytest.raises(UsageError):
            split_share(5, m, k)
    for secret in (-1, Q):
        with pytest.raises(UsageError):
            split_share(secret, 2, 3)
    pieces, commitments = split_share(5, 2, 3, DeterministicRng(b"u"))
    with pytest.raises(UsageError):
        reconstruct(commitments, {1: pieces[0], 2: pieces[1]}, 3)  # m != len(commitments)
    with pytest.raises(UsageError):
        reconstruct(commitments, {0: pieces[0], 2: pieces[1]}, 2)


@pytest.mark.parametrize("tn", KEYS + [(3, 5)])
def test_public_shares_of_a_real_key_check(tn):
    t, n = tn
    ks = keygen(*tn)[1]
    shares = [s.encode() for s in ks.public_shares]
    check_public_shares(ks.public_key.encode(), t, shares)
    for pos in range(n):
        bad = list(shares)
        bad[pos] = (ks.public_shares[pos] + G).encode()
        with pytest.raises(DecodeError) as e:
            check_public_shares(ks.public_key.encode(), t, bad)
        assert e.value.field == ("public_shares" if pos < t else f"public_shares[{pos}]")
    with pytest.raises(DecodeError) as e2:
        check_public_shares((ks.public_key + G).encode(), t, shares)
    assert e2.value.field == "public_shares"
    with pytest.raises(DecodeError) as e3:
        check_public_shares(ks.public_key.encode(), n + 1, shares)
    assert e3.value.field == "threshold"
    with pytest.raises(DecodeError) as e4:
        check_public_shares(ks.public_key.encode(), t, [*shares[:-1], bytes(33)])
    assert e4.value.field == f"public_shares[{n - 1}]"


# --- RecoveredShare ------------------------------------------------------------------------------


def test_recovered_share_round_trips_and_hides_its_secret():
    ks = keygen(2, 3)[3]
    pieces, commitments = split_share(ks.secret_share, 2, 3, DeterministicRng(b"rs"))
    secret, _ = reconstruct(commitments, {1: pieces[0], 3: pieces[2]}, 2)
    rs = recovered(ks, secret)
    rs.validate()
    assert rs.key_id == ks.key_id
    data = rs.to_bytes()
    assert data.startswith(b"MPCNET-RECOVERED-SHARE\x00\x01")
    back = RecoveredShare.from_bytes(data)
    assert back == rs and back.to_bytes() == data
    assert_object_hidden(rs, [ks.secret_share, *pieces])
    assert "RecoveredShare(key_id=" in repr(rs)


def test_recovered_share_decoding_is_strict_and_names_the_field():
    ks = keygen(2, 3)[2]
    data = recovered(ks).to_bytes()
    off = data.index(ks.secret_share.to_bytes(32, "big"))
    cases = {
        "recovered_share.magic": b"MPCNET-RECOVERED-SHARX" + data[22:],
        "recovered_share.version": data[:22] + b"\x00\x02" + data[24:],
        "recovered_share": data + b"\x00",
        "recovered_share.chain_code": data[:-1],
        "recovered_share.secret_share": data[:off] + (ks.secret_share ^ 1).to_bytes(32, "big") + data[off + 32:],
        "recovered_share.threshold": data[:24] + b"\x00\x04" + data[26:],
    }
    for field, bad in cases.items():
        with pytest.raises(DecodeError) as e:
            RecoveredShare.from_bytes(bad)
        assert e.value.field == field, (field, e.value)
        assert_hidden(str(e.value), [ks.secret_share, ks.secret_share ^ 1])
    with pytest.raises(DecodeError) as e2:
        RecoveredShare.from_bytes(data[:off] + bytes(32) + data[off + 32:])
    assert e2.value.field == "recovered_share.secret_share"


def test_recovered_share_validate_names_what_is_wrong():
    ks = keygen(2, 3)[1]
    shares = list(ks.public_shares)
    bad = {
        "recovered_share.index": RecoveredShare(2, 3, 4, ks.secret_share, ks.public_key, ks.public_shares, ks.chain_code, b"", 0),
        "recovered_share.chain_code": RecoveredShare(2, 3, 1, ks.secret_share, ks.public_key, ks.public_shares, b"x", b"", 0),
        "recovered_share.public_shares": RecoveredShare(
            2, 3, 1, ks.secret_share, ks.public_key, (shares[0], shares[2], shares[1]), ks.chain_code, b"", 0
        ),
        "recovered_share.epoch": RecoveredShare(2, 3, 1, ks.secret_share, ks.public_key, ks.public_shares, ks.chain_code, b"", -1),
    }
    for field, rs in bad.items():
        with pytest.raises(DecodeError) as e:
            rs.validate()
        assert e.value.field == field


# --- a refresh dealt by restored shares ----------------------------------------------------------


def refresh(shares: dict[int, KeyShare | RecoveredShare], seed: bytes = b"rf") -> dict[int, KeyShare]:
    """A refresh of the whole committee (party id = share index); returns the new KeyShares."""
    k0 = next(s for s in shares.values() if isinstance(s, KeyShare))
    pairs = tuple((i, i) for i in sorted(shares))
    parties = {
        i: ReshareParty(
            ReshareConfig(
                b"B" * 32, i, pairs, pairs, k0.threshold, k0.threshold, k0.public_key, k0.chain_code, k0.epoch,
                k0.key_label, refresh=True, old_public_shares=k0.public_shares, lambda_c=k0.lambda_c,
            ),
            s,
            DeterministicRng(seed + bytes([i])),
        )
        for i, s in shares.items()
    }
    run(parties)
    out = {}
    for i, p in parties.items():
        assert p.result is not None and p.result.index == i
        out[i] = p.result
    return out


def restore(ks: KeyShare, officers: tuple[int, ...], m: int = 2, k: int = 3) -> RecoveredShare:
    """Backup then restore through ``officers``' pieces (what a replaced node ends with)."""
    pieces, commitments = split_share(ks.secret_share, m, k, DeterministicRng(b"b" + bytes([ks.index])))
    check_commitments([c.encode() for c in commitments], m, ks.public_shares[ks.index - 1].encode())
    secret, _ = reconstruct(commitments, {j: pieces[j - 1] for j in officers}, m)
    rs = recovered(ks, secret)
    rs.validate()
    return rs


@pytest.mark.parametrize(("tn", "lost"), [((2, 3), (3,)), ((3, 5), (3, 4, 5))])
def test_a_refresh_with_restored_dealers_gives_shares_that_sign(tn, lost):
    old = keygen(*tn)
    shares: dict[int, KeyShare | RecoveredShare] = dict(old)
    for i, officers in zip(lost, itertools.cycle([(1, 2), (2, 3), (1, 3)]), strict=False):
        shares[i] = restore(old[i], officers)
    new = refresh(shares)
    t = tn[0]
    assert all(isinstance(s, KeyShare) and s.epoch == 1 and s.public_key == old[1].public_key for s in new.values())
    assert all(new[i].secret_share != old[i].secret_share for i in new)
    digest = hashlib.sha256(b"after recovery").digest()
    signers = tuple(sorted({*lost, *range(1, t + 1)})[-t:])  # the restored nodes sign
    sig = sign(new, signers, digest)
    assert PublicKey(old[1].public_key.encode()).verify(sig.der(), digest, hasher=None)


def test_a_restored_share_of_another_key_or_epoch_cannot_deal():
    old = keygen(2, 3)
    other = keygen(2, 3, seed=b"other")
    shares: dict[int, KeyShare | RecoveredShare] = dict(old)
    shares[3] = recovered(other[3])
    with pytest.raises(UsageError, match="another key"):
        refresh(shares)
    rs = recovered(old[3])
    shares[3] = RecoveredShare(rs.threshold, rs.parties, rs.index, rs.secret_share, rs.public_key, rs.public_shares,
                               rs.chain_code, rs.key_label, 1)
    with pytest.raises(UsageError, match="epoch"):
        refresh(shares)


def test_a_restored_share_cannot_sign():
    from crypto_core.sign import PresignParty, SignConfig

    rs = recovered(keygen(2, 3)[1])
    with pytest.raises(UsageError, match="only a KeyShare can sign"):
        PresignParty(rs, SignConfig(b"P" * 32, (1, 2), ()))  # type: ignore[arg-type]


def test_recovery_error_is_a_protocol_error():
    assert issubclass(RecoveryError, ProtocolError)


def test_key_id_of_a_public_record_is_the_key_shares():
    ks = keygen(2, 3)[1]
    assert key_id_of(ks.public_key.encode(), ks.chain_code) == ks.key_id
    with pytest.raises(DecodeError) as e:
        key_id_of(ks.public_key.encode(), ks.chain_code[:-1])
    assert e.value.field == "chain_code"
