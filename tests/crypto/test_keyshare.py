"""Versioned key-share record: round trip, golden vector, strict decoding."""

from pathlib import Path

import pytest

from crypto_core.errors import DecodeError
from crypto_core.keyshare import KeyShare

from .dkg_util import keygen

VECTOR = Path(__file__).parent / "vectors" / "keyshare_v1_2of2_party1.hex"
VECTOR_V2 = Path(__file__).parent / "vectors" / "keyshare_v2_2of2_party1_lambda128.hex"


def test_round_trip():
    for ks in keygen(2, 3).values():
        again = KeyShare.from_bytes(ks.to_bytes())
        assert again == ks
        assert again.to_bytes() == ks.to_bytes()


def test_v1_golden_record_still_decodes():
    """A record written by format v1 must keep decoding after upgrades."""
    data = bytes.fromhex(VECTOR.read_text().strip())
    ks = KeyShare.from_bytes(data)
    assert (ks.threshold, ks.parties, ks.index, ks.lambda_c) == (2, 2, 1, 256)
    assert KeyShare.from_bytes(ks.to_bytes()) == ks  # re-encoded as the current version
    assert ks.to_bytes()[15:17] == b"\x00\x02"
    assert ks.key_id.hex() == "ac172d38ed6454ae3e61ffb8515009a041a927be43892f0812bd0557b356e9db"


def test_v2_golden_record_decodes():
    data = bytes.fromhex(VECTOR_V2.read_text().strip())
    ks = KeyShare.from_bytes(data)
    assert (ks.threshold, ks.parties, ks.index, ks.lambda_c) == (2, 2, 1, 128)
    assert ks.to_bytes() == data


def test_repr_hides_secrets():
    ks = keygen(2, 3)[1]
    assert hex(ks.secret_share)[2:] not in repr(ks)
    assert str(ks.secret_share) not in repr(ks)


@pytest.mark.parametrize("mutate", ["truncate", "extend", "magic", "version", "lambda", "secret", "pubshare"])
def test_corrupt_records_are_refused(mutate):
    data = bytearray(keygen(2, 3)[1].to_bytes())
    if mutate == "truncate":
        data = data[:-1]
    elif mutate == "extend":
        data += b"\x00"
    elif mutate == "magic":
        data[0] ^= 1
    elif mutate == "version":
        data[16] ^= 0x7
    elif mutate == "lambda":
        data[24] ^= 0x80  # 128 -> 0 (unsupported)
    elif mutate == "secret":
        off = 15 + 2 + 6 + 2 + 4 + len(b"label")
        data[off + 31] ^= 1
    elif mutate == "pubshare":
        off = 15 + 2 + 6 + 2 + 4 + len(b"label") + 32 + 33
        data[off + 32] ^= 1
    with pytest.raises(DecodeError):
        KeyShare.from_bytes(bytes(data))
