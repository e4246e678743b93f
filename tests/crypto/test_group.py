
import pytest
from coincurve import PrivateKey, PublicKey
from hypothesis import given, strategies as st

from crypto_core.errors import DecodeError
from crypto_core.group import INFINITY, G, Point, Q, point_sum, scalar_from_bytes, scalar_to_bytes

scalars = st.integers(min_value=1, max_value=Q - 1)


@given(scalars)
def test_base_mul_matches_coincurve(k):
    assert Point.base_mul(k).encode() == PrivateKey(k.to_bytes(32, "big")).public_key.format()


@given(scalars, scalars)
def test_group_laws(a, b):
    pa, pb = Point.base_mul(a), Point.base_mul(b)
    assert pa + pb == Point.base_mul(a + b)
    assert pa - pa == INFINITY
    assert pa * b == Point.base_mul(a * b)
    assert -pa + pa == INFINITY
    assert pa + INFINITY == pa and INFINITY + pa == pa
    assert point_sum([pa, pb, -pa]) == pb
    assert point_sum([pa, -pa]) == INFINITY
    assert pa * 0 == INFINITY and pa * Q == INFINITY


@given(st.binary(min_size=33, max_size=33))
def test_decode_never_crashes_and_roundtrips(b):
    try:
        p = Point.decode(b)
    except DecodeError:
        return
    assert p.encode() == b
    assert PublicKey(b).format() == b


def test_decode_rejects():
    for bad in [b"", bytes(32), bytes(34), b"\x04" + bytes(32), b"\x02" + b"\xff" * 32]:
        with pytest.raises(DecodeError):
            Point.decode(bad)
    with pytest.raises(DecodeError, match="infinity"):
        Point.decode(bytes(33))
    assert Point.decode(bytes(33), allow_infinity=True) is INFINITY
    # x = 5 is not on secp256k1 (5^3 + 7 = 132 is a non-residue mod p)
    with pytest.raises(DecodeError, match="not a point"):
        Point.decode(b"\x02" + (5).to_bytes(32, "big"))


def test_scalar_encoding_is_strict():
    assert scalar_from_bytes(scalar_to_bytes(Q - 1)) == Q - 1
    with pytest.raises(DecodeError, match="non-canonical"):
        scalar_from_bytes(Q.to_bytes(32, "big"))
    with pytest.raises(DecodeError, match="zero"):
        scalar_from_bytes(bytes(32), nonzero=True)
    with pytest.raises(DecodeError):
        scalar_from_bytes(bytes(31))
    with pytest.raises(ValueError):
        scalar_to_bytes(Q)


def test_generator_and_coordinates():
    assert G.x == 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798
    assert not G.y_is_odd
    assert G.encode_uncompressed()[0] == 4
    with pytest.raises(ValueError):
        _ = INFINITY.x
