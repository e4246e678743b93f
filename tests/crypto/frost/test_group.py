"""The FROST groups: encodings strict (RFC 9591 section 3.1), identity handled explicitly, arithmetic consistent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from crypto_core.errors import DecodeError
from crypto_core.frost.group import ED25519, ED25519_ORDER, SECP256K1, Group

from ...conftest import scaled

GROUPS = [ED25519, SECP256K1]
ED_P = 2**255 - 19
ED_ORDER8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")  # a point of order 8


@pytest.mark.parametrize("g", GROUPS, ids=lambda g: g.name)
def test_identity_is_explicit_and_never_encoded(g: Group) -> None:
    o = g.identity()
    b = g.base_mul(1)
    assert g.is_identity(o) and not g.is_identity(b)
    assert g.base_mul(0) == o and g.base_mul(g.order) == o
    assert g.mul(b, 0) == o and g.mul(o, 5) == o and g.mul(b, g.order) == o
    assert g.add(o, b) == b and g.add(b, o) == b
    assert g.add(b, g.neg(b)) == o and g.sub(b, b) == o and g.neg(o) == o
    assert g.sum([]) == o and g.sum([b, b, g.neg(b)]) == b
    with pytest.raises(ValueError, match="identity"):
        g.encode(o)


@pytest.mark.parametrize("g", GROUPS, ids=lambda g: g.name)
@settings(max_examples=scaled(30), deadline=None)
@given(a=st.integers(1, 2**256), b=st.integers(1, 2**256))
def test_arithmetic_is_a_homomorphism_of_the_scalars(g: Group, a: int, b: int) -> None:
    q = g.order
    pa, pb = g.base_mul(a), g.base_mul(b)
    assert g.add(pa, pb) == g.base_mul(a + b)
    assert g.sub(pa, pb) == g.base_mul(a - b)
    assert g.mul(pa, b) == g.base_mul(a * b)
    assert g.neg(pa) == g.base_mul(q - a % q)
    if a % q:
        assert g.decode(g.encode(pa)) == pa
        assert hash(g.decode(g.encode(pa))) == hash(pa)
        assert len(g.encode(pa)) == g.element_len
    k = a % q
    assert g.decode_scalar(g.encode_scalar(k)) == k


def test_ed25519_encodings_are_rfc8032_little_endian() -> None:
    g = ED25519
    assert g.encode(g.base_mul(1)).hex() == "5866666666666666666666666666666666666666666666666666666666666666"
    assert g.encode_scalar(1) == b"\x01" + bytes(31)
    assert g.decode_scalar(b"\x02" + bytes(31)) == 2


def test_secp256k1_encodings_are_sec1_big_endian() -> None:
    g = SECP256K1
    assert g.encode(g.base_mul(1)).hex() == "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    assert g.encode_scalar(1) == bytes(31) + b"\x01"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (bytes(31), "32 bytes"),
        (bytes(33), "32 bytes"),
        (b"\x01" + bytes(31), "identity"),
        ((ED_P - 1).to_bytes(32, "little"), "prime-order subgroup"),  # y = -1: the point of order 2
        ((ED_P + 1).to_bytes(32, "little"), "prime-order subgroup"),  # y = 1 non-canonically (>= p)
        (ED_ORDER8, "prime-order subgroup"),  # small order
        (bytes.fromhex("da99e28ba529cdde35a25fba9059e78ecaee239f99755b9b1aa4f65df00803e2"), "prime-order subgroup"),  # B + T8
        (b"\xff" * 32, "prime-order subgroup"),  # y >= p
    ],
)
def test_ed25519_decode_refuses(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why) as e:
        ED25519.decode(data, "commitments[0].hiding")
    assert e.value.field == "commitments[0].hiding"


def test_ed25519_decode_refuses_points_off_the_curve() -> None:
    refused = 0
    for y in range(2, 40):
        enc = y.to_bytes(32, "little")
        try:
            ED25519.decode(enc)
        except DecodeError:
            refused += 1
    assert refused >= 10  # about half of the y values have no x; none of these is in the subgroup by chance


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (bytes(32), "33 bytes"),
        (bytes(33), "infinity"),
        (b"\x04" + bytes(32), "compressed"),
        (b"\x02" + (5).to_bytes(32, "big"), "not a point"),  # x = 5: x^3 + 7 is not a square
        (b"\x02" + (2**256 - 1).to_bytes(32, "big"), "not a point"),  # x >= p
    ],
)
def test_secp256k1_decode_refuses(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why) as e:
        SECP256K1.decode(data, "f")
    assert e.value.field == "f"


@pytest.mark.parametrize("g", GROUPS, ids=lambda g: g.name)
def test_scalar_decoding_never_reduces(g: Group) -> None:
    with pytest.raises(DecodeError, match="non-canonical"):
        g.decode_scalar(g.order.to_bytes(32, "little" if g is ED25519 else "big"), "z")
    with pytest.raises(DecodeError, match="32 bytes"):
        g.decode_scalar(bytes(31), "z")
    with pytest.raises(DecodeError, match="zero") as e:
        g.decode_scalar(bytes(32), "share", nonzero=True)
    assert e.value.field == "share"
    assert g.decode_scalar(bytes(32)) == 0
    with pytest.raises(ValueError, match="range"):
        g.encode_scalar(g.order)
    with pytest.raises(ValueError, match="range"):
        g.encode_scalar(-1)


def test_a_group_refuses_the_other_groups_elements() -> None:
    with pytest.raises(TypeError):
        ED25519.add(ED25519.base_mul(1), SECP256K1.base_mul(1))
    with pytest.raises(TypeError):
        SECP256K1.encode(ED25519.base_mul(1))
    assert ED25519.order == ED25519_ORDER
