"""Envelopes: round trips, and every tampering / misrouting / replay is refused naming the field."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import assume, given, strategies as st

from mpc_node.envelope import Envelope, EnvelopeError, open_envelope, seal_broadcast, seal_direct


def _raw(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# parties 1..4, each with an identity and an encryption key
IDS = {i: Ed25519PrivateKey.generate() for i in range(1, 5)}
ENC = {i: X25519PrivateKey.generate() for i in range(1, 5)}
SID = bytes(range(32))

sessions = st.binary(min_size=32, max_size=32)
rounds = st.integers(0, 2**32 - 1)
payloads = st.binary(max_size=512)
pairs = st.permutations([1, 2, 3, 4]).map(lambda p: (p[0], p[1], p[2]))  # sender, receiver, third party


def _broadcast(payload: bytes = b"hello all", sid: bytes = SID, rnd: int = 1, sender: int = 1) -> Envelope:
    return seal_broadcast(payload, identity=IDS[sender], session_id=sid, round=rnd, sender=sender)


def _direct(payload: bytes = b"hello two", sid: bytes = SID, rnd: int = 1, sender: int = 1, receiver: int = 2) -> Envelope:
    return seal_direct(
        payload, identity=IDS[sender], recipient_encryption_public=_raw(ENC[receiver]),
        session_id=sid, round=rnd, sender=sender, receiver=receiver,
    )  # fmt: skip


def _open(env: Envelope, *, sid: bytes = SID, rnd: int = 1, sender: int = 1, me: int = 2, **kw: Any) -> bytes:
    args: dict[str, Any] = {
        "sender_identity_public": _raw(IDS[sender]),
        "my_encryption": ENC[me],
        "expected_session_id": sid,
        "expected_round": rnd,
        "expected_sender": sender,
        "me": me,
    }
    args.update(kw)
    return open_envelope(env, **args)


def _field_of(call: Any) -> str:
    with pytest.raises(EnvelopeError) as ei:
        call()
    return ei.value.field


@given(payload=payloads, sid=sessions, rnd=rounds, parties=pairs)
def test_broadcast_round_trip(payload: bytes, sid: bytes, rnd: int, parties: tuple[int, int, int]) -> None:
    sender, me, _ = parties
    env = _broadcast(payload, sid, rnd, sender)
    assert env.receiver == 0 and env.ephemeral_key == b"" and env.payload == payload
    assert _open(env, sid=sid, rnd=rnd, sender=sender, me=me, my_encryption=None) == payload


@given(payload=payloads, sid=sessions, rnd=rounds, parties=pairs)
def test_direct_round_trip(payload: bytes, sid: bytes, rnd: int, parties: tuple[int, int, int]) -> None:
    sender, receiver, _ = parties
    env = _direct(payload, sid, rnd, sender, receiver)
    assert len(env.ephemeral_key) == 32 and len(env.payload) == len(payload) + 16
    assert _open(env, sid=sid, rnd=rnd, sender=sender, me=receiver) == payload


@given(payload=st.binary(min_size=16, max_size=512))
def test_ciphertext_hides_plaintext_and_keys_are_fresh(payload: bytes) -> None:
    a, b = _direct(payload), _direct(payload)
    assert payload not in a.payload
    assert a.ephemeral_key != b.ephemeral_key and a.payload != b.payload


_INT_BITS = {"round": 32, "sender": 16, "receiver": 16}
_FIELDS = ["session_id", "round", "sender", "receiver", "payload", "ephemeral_key", "signature"]


@given(direct=st.booleans(), payload=st.binary(min_size=1, max_size=64), name=st.sampled_from(_FIELDS), data=st.data())
def test_any_bit_flip_is_refused(direct: bool, payload: bytes, name: str, data: st.DataObject) -> None:
    env = _direct(payload) if direct else _broadcast(payload)
    value = getattr(env, name)
    if isinstance(value, int):
        flipped: Any = value ^ (1 << data.draw(st.integers(0, _INT_BITS[name] - 1)))
    else:
        assume(len(value) > 0)
        bit = data.draw(st.integers(0, 8 * len(value) - 1))
        raw = bytearray(value)
        raw[bit // 8] ^= 1 << (bit % 8)
        flipped = bytes(raw)
    try:
        bad = dataclasses.replace(env, **{name: flipped})
    except EnvelopeError as e:  # out of range (e.g. sender 0): refused at construction
        assert e.field == name
        return
    assert _field_of(lambda: _open(bad, my_encryption=ENC[2])) == "signature"


@given(direct=st.booleans(), name=st.sampled_from(["payload", "signature", "ephemeral_key", "session_id"]), cut=st.integers(1, 40))
def test_truncation_is_refused(direct: bool, name: str, cut: int) -> None:
    env = _direct() if direct else _broadcast()
    value = getattr(env, name)
    assume(len(value) > 0)
    try:
        bad = dataclasses.replace(env, **{name: value[: max(0, len(value) - cut)]})
    except EnvelopeError as e:
        assert e.field == name
        return
    assert _field_of(lambda: _open(bad)) == "signature"


def test_swapping_sender_and_receiver_is_refused() -> None:
    env = _direct(sender=1, receiver=2)
    swapped = dataclasses.replace(env, sender=2, receiver=1)
    # whichever key the victim (party 1) looks up, the signature does not verify
    assert _field_of(lambda: _open(swapped, sender=2, me=1)) == "signature"
    assert _field_of(lambda: _open(swapped, sender=2, me=1, sender_identity_public=_raw(IDS[1]))) == "signature"


@given(other_sid=sessions, other_round=rounds, direct=st.booleans())
def test_replay_into_other_session_or_round(other_sid: bytes, other_round: int, direct: bool) -> None:
    env = _direct() if direct else _broadcast()
    assume(other_sid != SID and other_round != 1)
    assert _field_of(lambda: _open(env, sid=other_sid)) == "session_id"
    assert _field_of(lambda: _open(env, rnd=other_round)) == "round"


def test_wrong_sender_receiver_and_key() -> None:
    env = _direct(sender=1, receiver=2)
    # delivered to a third party
    assert _field_of(lambda: _open(env, me=3)) == "receiver"
    # the right recipient index but the wrong decryption key
    assert _field_of(lambda: _open(env, me=2, my_encryption=ENC[3])) == "payload"
    # verified with the right key but attributed to another party
    assert _field_of(lambda: _open(env, sender=3, sender_identity_public=_raw(IDS[1]))) == "sender"
    # verified against another party's identity key
    assert _field_of(lambda: _open(env, sender=3)) == "signature"
    # no decryption key supplied for a direct message
    assert _field_of(lambda: _open(env, my_encryption=None)) == "my_encryption"
    # a party's own message echoed back to it
    assert _field_of(lambda: _open(env, sender=1, me=1)) == "sender"


def test_signed_but_inconsistent_envelopes_are_refused() -> None:
    """A malicious (but correctly signing) sender cannot smuggle malformed envelopes either."""
    base = _direct(sender=1, receiver=2)

    def resign(env: Envelope, signer: int) -> Envelope:
        return dataclasses.replace(env, signature=IDS[signer].sign(env.signing_bytes()))

    # party 3 re-signs party 1's ciphertext to party 2 as its own: the AEAD binds the sender
    stolen = resign(dataclasses.replace(base, sender=3), 3)
    assert _field_of(lambda: _open(stolen, sender=3)) == "payload"
    # the same ciphertext re-signed for another round
    moved = resign(dataclasses.replace(base, round=2), 1)
    assert _field_of(lambda: _open(moved, rnd=2)) == "payload"
    # a broadcast that carries an ephemeral key
    odd = resign(dataclasses.replace(_broadcast(), ephemeral_key=base.ephemeral_key), 1)
    assert _field_of(lambda: _open(odd)) == "ephemeral_key"
    # a direct message without one
    bare = resign(dataclasses.replace(base, ephemeral_key=b""), 1)
    assert _field_of(lambda: _open(bare)) == "ephemeral_key"
    # a low-order ephemeral key (all-zero shared secret)
    weak = resign(dataclasses.replace(base, ephemeral_key=bytes(32)), 1)
    assert _field_of(lambda: _open(weak)) == "ephemeral_key"
    # a ciphertext too short to hold the tag
    short = resign(dataclasses.replace(base, payload=b"x"), 1)
    assert _field_of(lambda: _open(short)) == "payload"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"session_id": b"x" * 31}, "session_id"),
        ({"round": -1}, "round"),
        ({"round": 2**32}, "round"),
        ({"sender": 0}, "sender"),
        ({"receiver": 0}, "receiver"),
        ({"receiver": 1}, "receiver"),  # to itself
        ({"receiver": True}, "receiver"),
        ({"recipient_encryption_public": b"k" * 31}, "recipient_encryption_public"),
        ({"recipient_encryption_public": bytes(32)}, "recipient_encryption_public"),
        ({"payload": "text"}, "payload"),
    ],
)
def test_seal_direct_rejects_bad_arguments(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {
        "payload": b"p", "identity": IDS[1], "recipient_encryption_public": _raw(ENC[2]),
        "session_id": SID, "round": 1, "sender": 1, "receiver": 2,
    }  # fmt: skip
    args.update(kwargs)
    payload = args.pop("payload")
    assert _field_of(lambda: seal_direct(payload, **args)) == field


def test_seal_broadcast_rejects_bad_arguments() -> None:
    assert _field_of(lambda: seal_broadcast(b"p", identity=IDS[1], session_id=b"", round=1, sender=1)) == "session_id"
    assert _field_of(lambda: seal_broadcast(b"p", identity=IDS[1], session_id=SID, round=1, sender=70000)) == "sender"
    assert _field_of(lambda: seal_broadcast(b"p", identity=ENC[1], session_id=SID, round=1, sender=1)) == "identity"  # type: ignore[arg-type]


def test_signing_bytes_are_canonical_and_domain_separated() -> None:
    env = _broadcast(b"abc")
    sb = env.signing_bytes()
    assert sb.startswith(b"\x00\x00\x00\x12MPCNET/v1/envelope")
    # moving a byte between adjacent variable-length fields changes the encoding
    a = dataclasses.replace(env, payload=b"")
    b = dataclasses.replace(_direct(), payload=b"")
    assert a.signing_bytes() != b.signing_bytes()
    assert dataclasses.replace(env, signature=bytes(64)).signing_bytes() == sb  # signature excluded


def test_repr_is_short() -> None:
    env = _broadcast(b"z" * 10_000)
    assert len(repr(env)) < 200 and "10000 bytes" in repr(env)
