"""The FROST key-share record: round trip, strict decoding naming the field, validation, key id,
repr without secrets."""

from __future__ import annotations

import dataclasses

import pytest

from crypto_core.errors import DecodeError, UsageError
from crypto_core.frost.keyshare import MAGIC, FrostKeyShare, FrostPublic, frost_key_id, is_frost_record
from crypto_core.frost.scheme import group_for
from crypto_core.keyshare import KeyShare
from crypto_core.tags import Tag
from crypto_core.transcript import hash32

from ..dkg_util import keygen as ecdsa_keygen
from .frost_util import SCHEMES, bad_elements, keygen, non_canonical_scalar


def layout(ks: FrostKeyShare) -> dict[str, tuple[int, int]]:
    """(offset, length) of every field of ``ks.to_bytes()``."""
    e = group_for(ks.scheme).element_len
    parts = [("magic", len(MAGIC)), ("version", 2), ("scheme.length", 1), ("scheme", len(ks.scheme)),
             ("threshold", 2), ("parties", 2), ("index", 2), ("epoch", 4), ("key_label.length", 4),
             ("key_label", len(ks.key_label)), ("secret_share", 32), ("public_key", e)]
    parts += [(f"public_shares[{k}]", e) for k in range(ks.parties)] + [("sid_dkg", 32)]
    out, pos = {}, 0
    for name, ln in parts:
        out[name] = (pos, ln)
        pos += ln
    return out


def replace(data: bytes, at: tuple[int, int], new: bytes) -> bytes:
    off, ln = at
    assert len(new) == ln
    return data[:off] + new + data[off + ln:]


def refused(data: bytes, field: str) -> DecodeError:
    with pytest.raises(DecodeError) as ei:
        FrostKeyShare.from_bytes(data)
    assert ei.value.field == field, ei.value
    return ei.value


@pytest.mark.parametrize("scheme", SCHEMES)
def test_round_trip_all_parties_and_epochs(scheme: str) -> None:
    for ks in keygen(scheme, 3, 5):
        data = ks.to_bytes()
        assert is_frost_record(data) and data.startswith(b"MPCNET-FROSTSHARE\x00\x01")
        assert FrostKeyShare.from_bytes(data) == ks
        assert len(data) == sum(ln for _, ln in layout(ks).values())
        later = dataclasses.replace(ks, epoch=2**32 - 1, key_label=b"")
        assert FrostKeyShare.from_bytes(later.to_bytes()) == later


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_truncation_and_trailing_bytes_refused(scheme: str) -> None:
    data = keygen(scheme, 2, 3)[0].to_bytes()
    for cut in range(len(data)):
        with pytest.raises(DecodeError) as ei:
            FrostKeyShare.from_bytes(data[:cut])
        assert ei.value.field.startswith("frostshare."), ei.value
    refused(data + b"\x00", "frostshare")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_header_byte_flipped_refused(scheme: str) -> None:
    """Magic, version, scheme, t, n, index: every byte changed in any bit position is refused
    (a raised threshold too: the shares are of degree exactly t-1). The epoch and the label are
    plain data: the node seals records at rest with an AEAD."""
    ks = keygen(scheme, 2, 3)[1]
    data = ks.to_bytes()
    end = layout(ks)["index"][0] + 2
    for pos in range(end):
        for bit in range(8):
            bad = data[:pos] + bytes([data[pos] ^ (1 << bit)]) + data[pos + 1:]
            with pytest.raises(DecodeError) as ei:
                FrostKeyShare.from_bytes(bad)
            assert ei.value.field.startswith("frostshare"), (pos, bit, ei.value)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_named_fields(scheme: str) -> None:
    ks = keygen(scheme, 2, 3)[0]
    data, at = ks.to_bytes(), layout(ks)
    refused(b"MPCNET-KEYSHARE\x00\x02" + data[17:], "frostshare.magic")
    for v in (0, 2, 0xFFFF):
        refused(replace(data, at["version"], v.to_bytes(2, "big")), "frostshare.version")
    refused(replace(data, at["threshold"], (1).to_bytes(2, "big")), "frostshare.threshold")
    refused(replace(data, at["threshold"], (4).to_bytes(2, "big")), "frostshare.threshold")
    refused(replace(data, at["threshold"], (3).to_bytes(2, "big")), "frostshare.threshold")  # raised: degree too low
    refused(replace(data, at["index"], (0).to_bytes(2, "big")), "frostshare.index")
    refused(replace(data, at["index"], (2).to_bytes(2, "big")), "frostshare.secret_share")  # not its public share
    refused(replace(data, at["key_label.length"], (257).to_bytes(4, "big")), "frostshare.key_label")
    refused(replace(data, at["secret_share"], non_canonical_scalar(scheme)), "frostshare.secret_share")
    refused(replace(data, at["secret_share"], bytes(32)), "frostshare.secret_share")
    g = group_for(ks.scheme)
    refused(replace(data, at["secret_share"], g.encode_scalar(ks.secret_share + 1)), "frostshare.secret_share")
    e = g.element_len
    for _what, enc in bad_elements(scheme).items():
        if len(enc) != e:
            continue
        refused(replace(data, at["public_key"], enc), "frostshare.public_key")
        refused(replace(data, at["public_shares[2]"], enc), "frostshare.public_shares[2]")
    other = keygen(scheme, 2, 3, b"other")[0]
    refused(replace(data, at["public_key"], other.public_key), "frostshare.public_shares")
    # the first t still interpolate to the key; S_3 is off the polynomial
    refused(replace(data, at["public_shares[2]"], other.public_shares[2]), "frostshare.public_shares[2]")


def test_unknown_scheme_refused() -> None:
    ks = keygen("ed25519", 2, 3)[0]
    data = ks.to_bytes()
    for name in (b"ed25518", b"ecdsa-secp256k1"[:7], b"\xffd25519"):
        bad = data[:19] + bytes([len(name)]) + name + data[20 + 7:]
        refused(bad, "frostshare.scheme")
    # a BIP340 key's body under the ed25519 name: lengths or elements do not fit
    bip = keygen("schnorr-secp256k1-bip340", 2, 3)[0].to_bytes()
    with pytest.raises(DecodeError):
        FrostKeyShare.from_bytes(data[:20] + b"ed25519" + bip[20 + 24:])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_validate_and_to_bytes_refuse_inconsistent_records(scheme: str) -> None:
    ks = keygen(scheme, 2, 3)[0]
    for change, field in [
        ({"index": 4}, "frostshare.index"),
        ({"secret_share": ks.secret_share + 1}, "frostshare.secret_share"),
        ({"sid_dkg": b"x" * 31}, "frostshare.sid_dkg"),
        ({"epoch": -1}, "frostshare.epoch"),
        ({"epoch": 2**32}, "frostshare.epoch"),
        ({"threshold": 4}, "frostshare.threshold"),
        ({"public_shares": ks.public_shares[:2]}, "frostshare.public_shares"),
        ({"scheme": "ecdsa-secp256k1"}, "frostshare.scheme"),
    ]:
        bad = dataclasses.replace(ks, **change)  # type: ignore[arg-type]
        with pytest.raises(DecodeError) as ei:
            bad.validate()
        assert ei.value.field == field
        with pytest.raises(UsageError):
            bad.to_bytes()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_public_part_and_key_id(scheme: str) -> None:
    ks = keygen(scheme, 2, 3)[0]
    pub = ks.public()
    assert pub == FrostPublic(scheme, 2, 3, ks.public_key, ks.public_shares)
    pub.validate()
    assert ks.key_id == pub.key_id == hash32(Tag.FROST_KEY_ID, scheme.encode(), ks.public_key)
    other = "ed25519" if scheme != "ed25519" else "schnorr-secp256k1-bip340"
    assert frost_key_id(other, ks.public_key) != ks.key_id  # the scheme is bound
    with pytest.raises(DecodeError) as ei:
        dataclasses.replace(pub, public_shares=pub.public_shares[::-1]).validate()
    assert ei.value.field.startswith("frostpublic.public_shares")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_repr_shows_no_secret(scheme: str) -> None:
    ks = keygen(scheme, 2, 3)[0]
    g = group_for(scheme)
    text = repr(ks) + str(ks) + f"{ks!r}"
    assert str(ks.secret_share) not in text
    assert g.encode_scalar(ks.secret_share).hex() not in text and hex(ks.secret_share)[2:] not in text
    assert "secret" not in text and ks.key_id.hex()[:16] in text


def test_records_do_not_cross_decode() -> None:
    ecdsa = ecdsa_keygen(2, 2)[1].to_bytes()
    assert not is_frost_record(ecdsa)
    refused(ecdsa, "frostshare.magic")
    frost = keygen("ed25519", 2, 3)[0].to_bytes()
    with pytest.raises(DecodeError) as ei:
        KeyShare.from_bytes(frost)
    assert ei.value.field == "keyshare.magic"
    assert not is_frost_record(b"") and not is_frost_record(MAGIC[:-1])
