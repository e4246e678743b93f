from hypothesis import given, strategies as st

from crypto_core.group import Q
from crypto_core.tags import PREFIX, Tag
from crypto_core.transcript import frame, hash32, hash_to_curve, hash_to_scalar, list_of


def test_tags_unique_and_versioned():
    values = [t.bytes for t in Tag]
    assert len(values) == len(set(values))
    assert all(v.startswith(PREFIX) for v in values)
    assert b"/v1/" in PREFIX


@given(st.lists(st.binary(max_size=8), max_size=5), st.lists(st.binary(max_size=8), max_size=5))
def test_framing_is_injective(a, b):
    if a != b:
        assert frame(a) != frame(b)
        assert list_of(a) != list_of(b)


def test_framing_separates_boundaries():
    assert hash32(Tag.COMMIT, b"ab", b"c") != hash32(Tag.COMMIT, b"a", b"bc")
    assert hash32(Tag.COMMIT, b"x") != hash32(Tag.SCHNORR, b"x")


@given(st.binary(max_size=64))
def test_hash_to_scalar_in_range(b):
    assert 0 <= hash_to_scalar(Tag.SCHNORR, b) < Q


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_hash_to_curve_valid_and_deterministic(a, b):
    p = hash_to_curve(a)
    assert not p.is_infinity and p == hash_to_curve(a)
    if a != b:
        assert p != hash_to_curve(b)
