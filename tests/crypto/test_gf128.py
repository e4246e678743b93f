import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.hazmat import gf128

from ..conftest import scaled

elems = st.integers(min_value=0, max_value=gf128.MASK)


@given(elems, elems)
def test_commutative_and_references_agree(a, b):
    ab = gf128.mul_ref(a, b)
    assert ab == gf128.mul_ref(b, a)
    assert ab == gf128.mul_clmul(a, b)
    assert 0 <= ab <= gf128.MASK


@settings(max_examples=scaled(50))
@given(elems, elems, elems)
def test_associative_and_distributive(a, b, c):
    m = gf128.mul_ref
    assert m(m(a, b), c) == m(a, m(b, c))
    assert m(a, b ^ c) == m(a, b) ^ m(a, c)


@given(elems)
def test_identity_and_zero(a):
    assert gf128.mul_ref(a, 1) == a
    assert gf128.mul_ref(1, a) == a
    assert gf128.mul_ref(a, 0) == 0


def test_reduction_polynomial():
    # x^127 * x = x^128 = x^7 + x^2 + x + 1
    assert gf128.mul_ref(1 << 127, 2) == 0x87
    assert gf128.mul_clmul(1 << 127, 2) == 0x87


@settings(max_examples=scaled(3))
@given(elems.filter(lambda v: v != 0))
def test_frobenius(a):
    """a^(2^128) = a: 128 squarings return to the start."""
    x = a
    for _ in range(128):
        x = gf128.mul_clmul(x, x)
    assert x == a


def test_block_encoding_is_little_endian():
    assert gf128.to_block(1) == b"\x01" + bytes(15)
    assert gf128.from_block(bytes(15) + b"\x80") == 1 << 127
    with pytest.raises(ValueError):
        gf128.from_block(bytes(15))
    with pytest.raises(ValueError):
        gf128.mul_ref(1 << 128, 1)


@settings(max_examples=scaled(20))
@given(st.lists(elems, min_size=1, max_size=5))
def test_basis_lanes_match_repeated_doubling(chis):
    assert gf128._mul_x_powers(chis) == gf128._mul_x_powers_ref(chis)


def test_basis_extremes():
    for chis in ([0], [1], [gf128.MASK] * 4, [1 << 127, 0x87]):
        assert gf128._mul_x_powers(chis) == gf128._mul_x_powers_ref(chis)


@settings(max_examples=scaled(20))
@given(st.integers(1, 6).map(lambda n: 8 * n), st.integers(1, 12), st.randoms(use_true_random=False))
def test_bit_transpose_matches_reference(n, w, rnd):
    rows = np.frombuffer(rnd.randbytes(n * w), dtype=np.uint8).reshape(n, w)
    out = gf128.bit_transpose(rows)
    assert out.shape == (8 * w, n // 8)
    assert (out == gf128.bit_transpose_ref(rows)).all()
    # spot-check the bit convention of notes 1.3
    for r in (0, n - 1):
        for c in (0, 8 * w - 1):
            assert (out[c][r >> 3] >> (r & 7)) & 1 == (rows[r][c >> 3] >> (c & 7)) & 1
    assert (gf128.bit_transpose(out) == rows).all()


@settings(max_examples=scaled(15))
@given(st.lists(elems, min_size=4, max_size=4), st.randoms(use_true_random=False))
def test_fast_fold_matches_reference(chis, rnd):
    folder = gf128.Folder(chis)
    n = 24
    rows = np.frombuffer(rnd.randbytes(n * 80), dtype=np.uint8).reshape(n, 80)
    fast = folder.fold_rows(rows)
    for i in range(n):
        row = rows[i].tobytes()
        want = gf128.fold_ref(chis, row)
        assert fast[i].tobytes() == want
        assert folder.fold_one(row) == want


def test_fold_is_linear_and_pads_pass_through():
    chis = [3, 5, 7, 11]
    folder = gf128.Folder(chis)
    pad = bytes(range(16))
    assert folder.fold_one(bytes(64) + pad) == pad
    one = bytes([1]) + bytes(79)  # Y[0] = 1
    assert folder.fold_one(one) == gf128.to_block(3)
    a = bytes(range(80))
    b = bytes(range(100, 180))
    ab = bytes(x ^ y for x, y in zip(a, b, strict=True))
    fa, fb, fab = folder.fold_one(a), folder.fold_one(b), folder.fold_one(ab)
    assert fab == bytes(x ^ y for x, y in zip(fa, fb, strict=True))


def test_fold_rejects_wrong_shapes():
    folder = gf128.Folder([1, 2, 3, 4])
    with pytest.raises(ValueError):
        folder.fold_one(bytes(79))
    with pytest.raises(ValueError):
        folder.fold_cols(np.zeros((639, 32), dtype=np.uint8))
    with pytest.raises(ValueError):
        gf128.bit_transpose(np.zeros((7, 2), dtype=np.uint8))
