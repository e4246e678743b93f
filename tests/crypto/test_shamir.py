import itertools

from hypothesis import given, strategies as st

from crypto_core import shamir
from crypto_core.group import Point, Q
from crypto_core.rng import DeterministicRng


@st.composite
def tn(draw, max_n=8):
    n = draw(st.integers(2, max_n))
    t = draw(st.integers(2, n))
    return t, n


@given(tn(), st.binary(max_size=8), st.data())
def test_any_t_shares_interpolate(params, seed, data):
    t, n = params
    coeffs = shamir.random_polynomial(t, DeterministicRng(seed))
    shares = {i: shamir.evaluate(coeffs, i) for i in range(1, n + 1)}
    subset = data.draw(st.lists(st.sampled_from(range(1, n + 1)), min_size=t, max_size=t, unique=True))
    assert shamir.interpolate_at_zero({i: shares[i] for i in subset}) == coeffs[0]
    F = shamir.feldman_commit(coeffs)
    for i in subset:
        assert shamir.feldman_evaluate(F, i) == Point.base_mul(shares[i])
    # a changed share fails Feldman
    i = subset[0]
    assert shamir.feldman_evaluate(F, i) != Point.base_mul(shares[i] + 1)


def test_lagrange_sums_to_one():
    for s in [(1, 2), (1, 3, 5), (2, 4, 7, 9)]:
        assert sum(shamir.lagrange_coefficient(i, s) for i in s) % Q == 1


def _shamir_mod(p, coeffs, x):
    return sum(c * x**k for k, c in enumerate(coeffs)) % p


def test_fewer_than_t_shares_reveal_nothing_exactly():
    """Over GF(101), for fixed t-1 = 2 indices the share vector is uniform whatever the secret."""
    p, idx = 101, (1, 2)  # t = 3
    dists = []
    for secret in (0, 42):
        counts: dict[tuple[int, ...], int] = {}
        for a1, a2 in itertools.product(range(p), repeat=2):
            v = tuple(_shamir_mod(p, [secret, a1, a2], x) for x in idx)
            counts[v] = counts.get(v, 0) + 1
        dists.append(counts)
    assert dists[0] == dists[1]
    assert len(dists[0]) == p * p and set(dists[0].values()) == {1}  # uniform over all pairs
