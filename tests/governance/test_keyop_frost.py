"""governance.keyop for FROST keys (issue 16): a KeyOperation carries the key's scheme; an ECDSA
key's operation encodes byte for byte as before (v1), a FROST key's under the v2 tag with the
scheme appended, its public key the group element encoding and an empty chain code."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from governance.encoding import Encoder
from governance.errors import GovernanceError
from governance.keyop import KEY_OPERATION_TAG, KEY_OPERATION_V2_TAG, KeyOperation, SignedKeyOperation, sign_key_operation
from tests.governance.gov_util import ADMIN_KEYS
from tests.governance.test_keyop import PK, op

ED_PK = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")  # RFC 8032 test 1


def frost_op(**kw: Any) -> KeyOperation:
    base: dict[str, Any] = dict(scheme="ed25519", public_key=ED_PK, chain_code=b"")
    base.update(kw)
    return op(**base)


def _head(tag: str) -> bytes:
    return Encoder(tag).finish()


@pytest.mark.parametrize("scheme,pk", [("ed25519", ED_PK), ("schnorr-secp256k1-bip340", PK)], ids=["ed25519", "bip340"])
def test_a_frost_operation_round_trips_under_the_v2_tag(scheme: str, pk: bytes) -> None:
    o = frost_op(scheme=scheme, public_key=pk)
    enc = o.encode()
    assert enc.startswith(_head(KEY_OPERATION_V2_TAG)) and not enc.startswith(_head(KEY_OPERATION_TAG))
    assert KeyOperation.from_bytes(enc) == o and KeyOperation.from_dict(o.to_dict()) == o
    assert o.to_dict()["scheme"] == scheme and o.to_dict()["chain_code"] == ""
    name = sorted(ADMIN_KEYS)[0]
    s = SignedKeyOperation(o, (sign_key_operation(o, name, ADMIN_KEYS[name]),))
    assert SignedKeyOperation.from_bytes(s.to_bytes()) == s
    # the scheme is signed: the same key fields under another scheme are another operation
    other = "ed25519" if scheme != "ed25519" else "schnorr-secp256k1-bip340"
    assert o.digest() != dataclasses.replace(o, scheme=other, public_key=ED_PK if other == "ed25519" else PK).digest()
    if scheme != "ed25519":  # a bip340 key's 33-byte key under the ECDSA encoding (with a chain code): another digest
        assert o.digest() != dataclasses.replace(o, scheme="ecdsa-secp256k1", chain_code=bytes(32)).digest()


def test_an_ecdsa_operation_is_unchanged() -> None:
    o = op()
    assert o.scheme == "ecdsa-secp256k1" and o.encode().startswith(_head(KEY_OPERATION_TAG))
    assert "scheme" not in o.to_dict() and KeyOperation.from_dict(o.to_dict()) == o


@pytest.mark.parametrize("kw,field", [
    ({"scheme": "rsa"}, "scheme"),
    ({"scheme": "ed25519", "public_key": PK}, "public_key"),  # 33 bytes for an ed25519 key
    ({"scheme": "schnorr-secp256k1-bip340", "public_key": ED_PK}, "public_key"),
    ({"scheme": "schnorr-secp256k1-bip340", "public_key": b"\x04" + PK[1:]}, "public_key"),
    ({"chain_code": bytes(32)}, "chain_code"),  # a FROST key has no chain code
])
def test_invalid_frost_operations_are_refused_naming_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(GovernanceError) as e:
        frost_op(**kw)
    assert e.value.field == field


def test_a_v2_encoding_of_an_ecdsa_operation_is_refused() -> None:
    o = op()
    forged = frost_op().encode().replace(b"ed25519", b"ecdsa-secp256k1")  # not even length-consistent: refused either way
    with pytest.raises(GovernanceError):
        KeyOperation.from_bytes(forged)
    # a well-formed v2 encoding naming ecdsa-secp256k1 (built by hand)
    enc = Encoder(KEY_OPERATION_V2_TAG).raw(o.governance_root).raw(o.op_id).uint(int(o.kind)).raw(o.key_id).raw(o.public_key)
    enc.raw(o.chain_code).uint(o.old_epoch).uint(o.old_threshold).count(len(o.old_committee))
    for i in o.old_committee:
        enc.uint(i)
    enc.uint(o.new_threshold).count(len(o.new_committee))
    for i in o.new_committee:
        enc.uint(i)
    data = enc.uint(o.roster_version).text(o.reason).text("ecdsa-secp256k1").finish()
    with pytest.raises(GovernanceError) as e:
        KeyOperation.from_bytes(data)
    assert e.value.field == "scheme"


def test_the_epoch_state_digest_of_a_frost_key_has_its_own_domain() -> None:
    from governance.keyop import epoch_state_digest

    shares = [bytes([i]) * 32 for i in (1, 2, 3)]
    frost = epoch_state_digest(ED_PK, b"", 2, (1, 2, 3), shares, "ed25519")
    assert frost != epoch_state_digest(ED_PK, b"", 2, (1, 2, 3), shares)  # not the ECDSA layout over the same bytes
    assert frost != epoch_state_digest(ED_PK, b"", 2, (1, 2, 3), shares, "schnorr-secp256k1-bip340")  # the scheme is bound
    assert frost != epoch_state_digest(ED_PK, b"", 2, (1, 2, 3), [shares[0] + shares[1][:1], shares[1][1:], shares[2]], "ed25519")
    with pytest.raises(GovernanceError) as e:
        epoch_state_digest(ED_PK, bytes(32), 2, (1, 2, 3), shares, "ed25519")
    assert e.value.field == "chain_code"
