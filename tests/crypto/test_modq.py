"""crypto_core.hazmat.modq against Python integers, and the RVOLE's vectorised steps against the
per-element formulas they replace (same bytes)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.errors import UsageError
from crypto_core.group import Q
from crypto_core.hazmat import modq, rvole
from crypto_core.hazmat.ot_ext import WIDTH, XI
from crypto_core.rng import DeterministicRng

from ..conftest import scaled

C = (1 << 256) - Q
# values where a carry ripples, a limb is all ones, or the result lands next to q
EDGES = [0, 1, Q - 1, Q, Q + 1, (1 << 256) - 1, C, C - 1, 1 << 255, (1 << 224) - 1, ((1 << 256) - 1) ^ (1 << 32)]
u256 = st.one_of(st.sampled_from(EDGES), st.integers(0, (1 << 256) - 1))
scalar = st.one_of(st.sampled_from([0, 1, Q - 1, C]), st.integers(0, Q - 1))


def enc(vs: list[int]) -> bytes:
    return b"".join(v.to_bytes(32, "big") for v in vs)


@settings(max_examples=scaled(60), deadline=None)
@given(st.lists(st.tuples(u256, u256, u256), min_size=1, max_size=40), scalar, scalar)
def test_lincomb_equals_python_ints(rows, s0, s1):
    """sum of x * s0 + y * s1 + z, reduced: the same 32-byte encodings as Python's % Q."""
    flat = [v for r in rows for v in r]
    lim = modq.limbs16(enc(flat), len(rows), 3, 3)
    got = modq.lincomb(
        [(lim[:, :16], modq.times_scalar(s0)), (lim[:, 16:32], modq.times_scalar(s1)), (lim[:, 32:], modq.identity_sums())]
    )
    assert got == enc([(x * s0 + y * s1 + z) % Q for x, y, z in rows])


limb55 = st.one_of(st.sampled_from([0, 1, 0xFFFFFFFF, 1 << 32, (1 << 55) - 1]), st.integers(0, (1 << 55) - 1))


@settings(max_examples=scaled(60), deadline=None)
@given(st.integers(9, 17), st.lists(st.lists(limb55, min_size=17, max_size=17), min_size=1, max_size=30))
def test_reduce_any_width(k, columns):
    """reduce() of K limbs below 2^55 each (top limb 0, so the value is below 2^(32 K))."""
    x = np.zeros((k, len(columns)), dtype=np.int64)
    want = []
    for col, limbs in enumerate(columns):
        x[: k - 1, col] = limbs[: k - 1]
        want.append(sum(v << (32 * i) for i, v in enumerate(limbs[: k - 1])) % Q)
    assert modq.reduce(x) == enc(want)


def test_reduce_extremes():
    """The largest inputs the bounds allow, and every edge value, all at once."""
    k = 17
    top = np.full((k, 1), 0xFFFFFFFF, dtype=np.int64)  # 2^544 - 1
    big = np.full((k, 1), (1 << 55) - 1, dtype=np.int64)
    big[-1] = 0  # below 2^(32 k): limbs of 2^55 up to limb 15
    edge = np.zeros((k, len(EDGES)), dtype=np.int64)
    for col, v in enumerate(EDGES):
        for i in range(8):
            edge[i, col] = (v >> (32 * i)) & 0xFFFFFFFF
    x = np.concatenate((top, big, edge), axis=1)
    want = [(1 << 544) - 1, sum(((1 << 55) - 1) << (32 * i) for i in range(k - 1)), *EDGES]
    assert modq.reduce(x) == enc([v % Q for v in want])


def test_shapes_are_checked():
    with pytest.raises(UsageError):
        modq.reduce(np.zeros((8, 3), dtype=np.int64))
    with pytest.raises(UsageError):
        modq.reduce(np.zeros((18, 3), dtype=np.int64))
    with pytest.raises(UsageError):
        modq.times_scalar(1 << 256)
    with pytest.raises(UsageError):
        modq.limbs16(b"\0" * 31, 1, 1, 1)
    with pytest.raises(UsageError):
        modq.lincomb([])


@settings(max_examples=scaled(10), deadline=None)
@given(st.binary(min_size=8, max_size=8), scalar, scalar, scalar)
def test_a_tilde_equals_the_per_element_formula(seed, a0, a1, eta):
    """RVOLE step 3 vectorised: (alpha0 - alpha1 + (a_0, a_1, eta)[w]) mod q, byte for byte."""
    rng = DeterministicRng(seed)
    d0, d1 = rng.bytes(XI * WIDTH * 32), rng.bytes(XI * WIDTH * 32)
    x0 = [int.from_bytes(d0[i : i + 32], "big") for i in range(0, len(d0), 32)]
    x1 = [int.from_bytes(d1[i : i + 32], "big") for i in range(0, len(d1), 32)]
    adds = [a0, a1, eta] * XI
    want = enc([(x - y + z) % Q for x, y, z in zip(x0, x1, adds, strict=True)])
    assert rvole._a_tilde((a0, a1), eta, d0, d1) == want
    # pads at the extremes: 0 - (2^256 - 1) and (2^256 - 1) - 0
    hi, lo = b"\xff" * (XI * WIDTH * 32), bytes(XI * WIDTH * 32)
    m = (1 << 256) - 1
    assert rvole._a_tilde((a0, a1), eta, lo, hi) == enc([(z - m) % Q for z in adds])
    assert rvole._a_tilde((a0, a1), eta, hi, lo) == enc([(m + z) % Q for z in adds])


def test_decode_names_the_first_non_canonical_scalar():
    """The vectorised canonical check finds the same field the per-scalar loop did."""
    from crypto_core.errors import ProtocolAbort

    ok = bytes(rvole.MSG2_LEN)
    for index, field in ((0, "a~[0][0]"), (7, "a~[2][1]"), (XI * WIDTH, "eta~")):
        bad = bytearray(ok)
        bad[index * 32 : index * 32 + 32] = Q.to_bytes(32, "big")
        with pytest.raises(ProtocolAbort, match=rf"{field.replace('[', '.').replace(']', '.')}: scalar not below"):
            rvole._decode_msg2(bytes(bad), 3)
    # a top limb of all ones that is still below q is accepted
    fine = bytearray(ok)
    fine[0:32] = (Q - 1).to_bytes(32, "big")
    a_tilde, eta_tilde, mu = rvole._decode_msg2(bytes(fine), 3)
    assert a_tilde[:32] == (Q - 1).to_bytes(32, "big") and eta_tilde == 0 and mu == bytes(64)
