"""The canonical encoding: exact round trips, strict decoding, errors naming the field."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, strategies as st

from governance.encoding import Decoder, Encoder, domain_tag
from governance.errors import GovernanceError

TAG = domain_tag("test-object")


def _sample(raw: bytes, text: str, u: int, s: int, f: bool, items: list[bytes], opt: bytes | None) -> bytes:
    enc = Encoder(TAG).raw(raw).text(text).uint(u).sint(s).flag(f).count(len(items))
    for item in items:
        enc.raw(item)
    return enc.optional(opt).finish()


def _read(data: bytes) -> tuple[bytes, str, int, int, bool, list[bytes], bytes | None]:
    dec = Decoder(data, TAG)
    out = (
        dec.raw("raw"),
        dec.text("text"),
        dec.uint("u"),
        dec.sint("s"),
        dec.flag("f"),
        [dec.raw(f"items[{i}]") for i in range(dec.count("items", max_count=100))],
        dec.optional("opt"),
    )
    dec.finish()
    return out


values = st.tuples(
    st.binary(max_size=40),
    st.text(max_size=20),
    st.integers(0, 2**64 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.lists(st.binary(max_size=8), max_size=5),
    st.none() | st.binary(max_size=8),
)


@given(values)
def test_round_trip_and_determinism(v: tuple[bytes, str, int, int, bool, list[bytes], bytes | None]) -> None:
    data = _sample(*v)
    assert data == _sample(*v)
    assert _read(data) == v


@given(values)
def test_every_truncation_and_any_trailing_byte_is_refused(
    v: tuple[bytes, str, int, int, bool, list[bytes], bytes | None],
) -> None:
    data = _sample(*v)
    for cut in range(len(data)):
        with pytest.raises(GovernanceError):
            _read(data[:cut])
    with pytest.raises(GovernanceError) as e:
        _read(data + b"\x00")
    assert e.value.field == "encoding"


def test_layout_is_length_prefixed_with_the_tag_first() -> None:
    data = Encoder(TAG).uint(5).count(2).text("a").finish()
    tag = TAG.encode()
    assert data == struct.pack(">Q", len(tag)) + tag + struct.pack(">Q", 8) + struct.pack(">Q", 5) + struct.pack(
        ">I", 2
    ) + struct.pack(">Q", 1) + b"a"
    assert TAG.startswith("MPCNET/v1/gov/")


def test_wrong_tag_names_the_tag() -> None:
    data = Encoder(domain_tag("other")).uint(1).finish()
    with pytest.raises(GovernanceError) as e:
        Decoder(data, TAG)
    assert e.value.field == "tag"


def test_errors_name_the_field() -> None:
    data = Encoder(TAG).raw(b"\x00" * 7).finish()
    with pytest.raises(GovernanceError) as e:
        Decoder(data, TAG).uint("version")
    assert e.value.field == "version"
    data = Encoder(TAG).raw(b"\x02").finish()
    with pytest.raises(GovernanceError) as e:
        Decoder(data, TAG).flag("enabled")
    assert e.value.field == "enabled"
    data = Encoder(TAG).raw(b"\xff\xfe").finish()
    with pytest.raises(GovernanceError) as e:
        Decoder(data, TAG).text("name")
    assert e.value.field == "name"
    data = Encoder(TAG).count(3).finish()
    with pytest.raises(GovernanceError) as e:
        Decoder(data, TAG).count("items", max_count=2)
    assert e.value.field == "items"


def test_huge_length_prefix_is_refused_without_allocation() -> None:
    tag = TAG.encode()
    data = struct.pack(">Q", len(tag)) + tag + struct.pack(">Q", 2**63)
    with pytest.raises(GovernanceError) as e:
        Decoder(data, TAG).raw("blob")
    assert e.value.field == "blob"


def test_encoder_refuses_out_of_range_values() -> None:
    with pytest.raises(GovernanceError):
        Encoder(TAG).uint(-1)
    with pytest.raises(GovernanceError):
        Encoder(TAG).uint(2**64)
    with pytest.raises(GovernanceError):
        Encoder(TAG).sint(2**63)
    with pytest.raises(GovernanceError):
        Encoder(TAG).uint(True)
    with pytest.raises(GovernanceError):
        Encoder(TAG).text("\ud800")
    with pytest.raises(ValueError):
        Encoder("MPCNET/v1/other")
