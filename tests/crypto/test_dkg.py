"""DKG properties: agreement, interpolation, base-OT correctness, zero seeds."""

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.dkg import DkgConfig, DkgParty
from crypto_core.errors import UsageError
from crypto_core.group import Point
from crypto_core.keyshare import KeyShare
from crypto_core.shamir import interpolate_at_zero, interpolate_points_at_zero

from ..conftest import scaled
from .dkg_util import keygen


@st.composite
def tn(draw, max_n=5):
    n = draw(st.integers(2, max_n))
    return draw(st.integers(2, n)), n


def check_keyshares(shares: dict[int, KeyShare], t: int, n: int, subsets_limit: int = 40) -> None:
    ks = list(shares.values())
    first = ks[0]
    for k in ks:
        k.validate()
        assert (k.threshold, k.parties) == (t, n)
        assert k.public_key == first.public_key
        assert k.public_shares == first.public_shares
        assert k.chain_code == first.chain_code and k.sid_dkg == first.sid_dkg and k.key_id == first.key_id
        assert Point.base_mul(k.secret_share) == k.public_shares[k.index - 1]
    subsets = list(itertools.islice(itertools.combinations(range(1, n + 1), t), subsets_limit))
    for s in subsets:
        assert interpolate_points_at_zero({m: first.public_shares[m - 1] for m in s}) == first.public_key
        sk = interpolate_at_zero({m: shares[m].secret_share for m in s})
        assert Point.base_mul(sk) == first.public_key
    # t-1 shares interpolate to something else
    sk_short = interpolate_at_zero({m: shares[m].secret_share for m in range(1, t)}) if t > 2 else None
    if sk_short is not None:
        assert Point.base_mul(sk_short) != first.public_key
    # pairwise: base OTs correct in both directions, zero seeds shared and distinct
    zero_seeds = set()
    for i, j in itertools.permutations(range(1, n + 1), 2):
        bob = shares[i].peer(j).as_bob  # i is extension receiver toward j
        alice = shares[j].peer(i).as_alice
        assert bob.lambda_c == alice.lambda_c == shares[i].lambda_c
        for k in range(bob.lambda_c):
            c = alice.delta_bit(k)
            chosen, other = (bob.seeds0[k], bob.seeds1[k]) if c == 0 else (bob.seeds1[k], bob.seeds0[k])
            assert alice.seeds[k] == chosen and alice.seeds[k] != other
        assert shares[i].peer(j).zero_seed == shares[j].peer(i).zero_seed
        zero_seeds.add(shares[i].peer(j).zero_seed)
    assert len(zero_seeds) == n * (n - 1) // 2
    # Delta is not constant
    for i in shares:
        for p in shares[i].pairwise:
            assert 0 < sum(p.as_alice.delta_bit(k) for k in range(p.as_alice.lambda_c)) < p.as_alice.lambda_c


@settings(max_examples=scaled(6))
@given(tn(), st.binary(min_size=1, max_size=6))
def test_dkg_random_parameters(params, seed):
    t, n = params
    check_keyshares(keygen(t, n, seed), t, n)


def test_dkg_with_256_base_ots():
    shares = keygen(2, 3, b"lambda256", lambda_c=256)
    assert all(k.lambda_c == 256 for k in shares.values())
    check_keyshares(shares, 2, 3)


def test_parties_disagreeing_on_lambda_abort():
    from crypto_core.dkg import DkgConfig, DkgParty
    from crypto_core.errors import ProtocolAbort
    from crypto_core.rng import DeterministicRng

    from ..harness import run_collect

    ps = {i: DkgParty(DkgConfig(b"S" * 32, 2, 3, i, b"", 256 if i == 3 else 128), DeterministicRng(bytes([i]))) for i in (1, 2, 3)}
    out = run_collect(ps)
    assert out.aborts and not out.finished
    assert all(isinstance(a, ProtocolAbort) for a in out.aborts.values())


def test_dkg_sixteen_parties():
    t, n = 11, 16
    check_keyshares(keygen(t, n, b"sixteen"), t, n, subsets_limit=5)


def test_independent_runs_give_independent_keys():
    a, b = keygen(2, 3, b"one"), keygen(2, 3, b"two")
    assert a[1].public_key != b[1].public_key
    assert a[1].sid_dkg != b[1].sid_dkg


@pytest.mark.parametrize(
    "t,n,i",
    [(1, 3, 1), (4, 3, 1), (2, 3, 0), (2, 3, 4), (2, 2000, 1)],
)
def test_config_rejects_bad_parameters(t, n, i):
    with pytest.raises(UsageError):
        DkgConfig(b"S" * 32, t, n, i)


def test_config_rejects_unsupported_lambda():
    with pytest.raises(UsageError, match="lambda_c"):
        DkgConfig(b"S" * 32, 2, 3, 1, b"", 64)


def test_config_rejects_bad_session():
    with pytest.raises(UsageError, match="session"):
        DkgConfig(b"short", 2, 3, 1)


def test_api_misuse():
    p = DkgParty(DkgConfig(b"S" * 32, 2, 2, 1))
    with pytest.raises(UsageError):
        p.receive({})
    p.start()
    with pytest.raises(UsageError):
        p.start()
