"""End-to-end protection of protocol messages relayed by the untrusted coordinator.

Every message is signed with the sender's Ed25519 identity key over a canonical,
domain-separated encoding of all its routing fields and payload, so the coordinator can neither
forge, alter, re-route nor replay a message into another session or round. Direct (point-to-
point) messages are additionally encrypted to the receiver's X25519 key with a fresh ephemeral
key per message (HKDF-SHA256 -> ChaCha20-Poly1305), so the coordinator never sees them.

:func:`open_envelope` verifies the signature *first*, then the routing fields, and only then
decrypts. Every failure raises :class:`EnvelopeError` whose ``field`` names what failed.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SIGN_DOMAIN = b"MPCNET/v1/envelope"
DIRECT_INFO = b"MPCNET/v1/direct"
AAD_DOMAIN = b"MPCNET/v1/direct/aad"
SESSION_ID_LEN = 32
KEY_LEN = 32
SIGNATURE_LEN = 64
TAG_LEN = 16
MAX_ROUND = 2**32 - 1
MAX_PARTY = 65535
MAX_PAYLOAD = 2**24  # 16 MiB; larger than any protocol message and than gRPC's default limit
BROADCAST = 0
_ZERO_NONCE = bytes(12)  # safe: every direct message uses a fresh, single-use key


class EnvelopeError(Exception):
    """An envelope is malformed, not authentic, misrouted or undecryptable; ``field`` says which."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _check_bytes(value: object, field: str, *, length: int | None = None, max_len: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise EnvelopeError(field, "must be bytes")
    if length is not None and len(value) != length:
        raise EnvelopeError(field, f"must be {length} bytes, got {len(value)}")
    if max_len is not None and len(value) > max_len:
        raise EnvelopeError(field, f"longer than {max_len} bytes")
    return value


def _check_int(value: object, field: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise EnvelopeError(field, "must be an int")
    if not lo <= value <= hi:
        raise EnvelopeError(field, f"must be in [{lo}, {hi}], got {value}")
    return value


@dataclass(frozen=True, repr=False)
class Envelope:
    """One signed (and, for direct messages, encrypted) protocol message.

    Construction checks only the shape of each field (types, lengths, ranges); authenticity and
    routing are checked by :func:`open_envelope`.
    """

    session_id: bytes  # 32
    round: int
    sender: int  # party index 1..65535
    receiver: int  # 0 = broadcast
    payload: bytes  # broadcast: protocol bytes in clear; direct: ciphertext
    ephemeral_key: bytes  # direct: sender's ephemeral X25519 public key (32); broadcast: b""
    signature: bytes  # Ed25519 by the sender's identity key over signing_bytes()

    def __post_init__(self) -> None:
        _check_bytes(self.session_id, "session_id", length=SESSION_ID_LEN)
        _check_int(self.round, "round", 0, MAX_ROUND)
        _check_int(self.sender, "sender", 1, MAX_PARTY)
        _check_int(self.receiver, "receiver", 0, MAX_PARTY)
        _check_bytes(self.payload, "payload", max_len=MAX_PAYLOAD + TAG_LEN)
        _check_bytes(self.ephemeral_key, "ephemeral_key", max_len=KEY_LEN)
        if len(self.ephemeral_key) not in (0, KEY_LEN):
            raise EnvelopeError("ephemeral_key", f"must be empty or {KEY_LEN} bytes")
        _check_bytes(self.signature, "signature", length=SIGNATURE_LEN)

    def __repr__(self) -> str:  # routing fields and sizes; payloads can be large
        return (
            f"Envelope(session_id={self.session_id.hex()[:16]}…, round={self.round}, "
            f"sender={self.sender}, receiver={self.receiver}, payload={len(self.payload)} bytes)"
        )

    @property
    def is_broadcast(self) -> bool:
        return self.receiver == BROADCAST

    def signing_bytes(self) -> bytes:
        """Canonical, domain-separated, length-prefixed encoding of every field but the signature."""
        return b"".join(
            (
                _lp(SIGN_DOMAIN),
                _lp(self.session_id),
                _lp(struct.pack(">I", self.round)),
                _lp(struct.pack(">H", self.sender)),
                _lp(struct.pack(">H", self.receiver)),
                _lp(self.ephemeral_key),
                _lp(self.payload),
            )
        )


def _direct_aad(session_id: bytes, round: int, sender: int, receiver: int) -> bytes:
    return b"".join(
        (
            _lp(AAD_DOMAIN),
            _lp(session_id),
            _lp(struct.pack(">I", round)),
            _lp(struct.pack(">H", sender)),
            _lp(struct.pack(">H", receiver)),
        )
    )


def _direct_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> ChaCha20Poly1305:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + recipient_public, info=DIRECT_INFO
    ).derive(shared)
    return ChaCha20Poly1305(key)


def _sign(unsigned: Envelope, identity: Ed25519PrivateKey) -> Envelope:
    if not isinstance(identity, Ed25519PrivateKey):
        raise EnvelopeError("identity", "must be an Ed25519PrivateKey")
    sig = identity.sign(unsigned.signing_bytes())
    return Envelope(
        unsigned.session_id, unsigned.round, unsigned.sender, unsigned.receiver,
        unsigned.payload, unsigned.ephemeral_key, sig,
    )  # fmt: skip


def seal_broadcast(
    payload: bytes, *, identity: Ed25519PrivateKey, session_id: bytes, round: int, sender: int
) -> Envelope:
    """Sign a broadcast message (payload stays in clear: every party, and the coordinator, sees it)."""
    _check_bytes(payload, "payload", max_len=MAX_PAYLOAD)
    unsigned = Envelope(session_id, round, sender, BROADCAST, payload, b"", bytes(SIGNATURE_LEN))
    return _sign(unsigned, identity)


def seal_direct(
    payload: bytes,
    *,
    identity: Ed25519PrivateKey,
    recipient_encryption_public: bytes,
    session_id: bytes,
    round: int,
    sender: int,
    receiver: int,
) -> Envelope:
    """Encrypt ``payload`` to ``receiver`` under a fresh ephemeral X25519 key, then sign."""
    _check_bytes(payload, "payload", max_len=MAX_PAYLOAD)
    _check_bytes(recipient_encryption_public, "recipient_encryption_public", length=KEY_LEN)
    _check_bytes(session_id, "session_id", length=SESSION_ID_LEN)
    _check_int(round, "round", 0, MAX_ROUND)
    _check_int(sender, "sender", 1, MAX_PARTY)
    _check_int(receiver, "receiver", 1, MAX_PARTY)
    if receiver == sender:
        raise EnvelopeError("receiver", "a party does not send direct messages to itself")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_encryption_public))
    except ValueError:  # low-order point: the shared secret would be all zero
        raise EnvelopeError("recipient_encryption_public", "not a usable X25519 public key") from None
    aead = _direct_key(shared, ephemeral_public, recipient_encryption_public)
    ciphertext = aead.encrypt(_ZERO_NONCE, payload, _direct_aad(session_id, round, sender, receiver))
    unsigned = Envelope(session_id, round, sender, receiver, ciphertext, ephemeral_public, bytes(SIGNATURE_LEN))
    return _sign(unsigned, identity)


def open_envelope(
    env: Envelope,
    *,
    sender_identity_public: bytes,
    my_encryption: X25519PrivateKey | None,
    expected_session_id: bytes,
    expected_round: int,
    expected_sender: int,
    me: int,
) -> bytes:
    """Verify and unwrap ``env``; returns the protocol payload.

    Order: signature (against ``sender_identity_public``), session, round, sender, receiver
    (0 for broadcast or ``me``), then decryption of direct payloads with ``my_encryption``.
    """
    if not isinstance(env, Envelope):
        raise EnvelopeError("envelope", "must be an Envelope")
    _check_bytes(sender_identity_public, "sender_identity_public", length=KEY_LEN)
    _check_bytes(expected_session_id, "expected_session_id", length=SESSION_ID_LEN)
    _check_int(expected_round, "expected_round", 0, MAX_ROUND)
    _check_int(expected_sender, "expected_sender", 1, MAX_PARTY)
    _check_int(me, "me", 1, MAX_PARTY)

    try:
        Ed25519PublicKey.from_public_bytes(sender_identity_public).verify(env.signature, env.signing_bytes())
    except (InvalidSignature, ValueError):
        raise EnvelopeError("signature", "does not verify under the sender's identity key") from None

    if not hmac.compare_digest(env.session_id, expected_session_id):
        raise EnvelopeError("session_id", "message belongs to another session")
    if env.round != expected_round:
        raise EnvelopeError("round", f"expected round {expected_round}, got {env.round}")
    if env.sender != expected_sender:
        raise EnvelopeError("sender", f"expected party {expected_sender}, got {env.sender}")
    if env.sender == me:
        raise EnvelopeError("sender", "message claims to come from this party")
    if env.is_broadcast:
        if env.ephemeral_key:
            raise EnvelopeError("ephemeral_key", "a broadcast carries no ephemeral key")
        return env.payload
    if env.receiver != me:
        raise EnvelopeError("receiver", f"addressed to party {env.receiver}, not {me}")

    if len(env.ephemeral_key) != KEY_LEN:
        raise EnvelopeError("ephemeral_key", "a direct message needs a 32-byte ephemeral key")
    if my_encryption is None or not isinstance(my_encryption, X25519PrivateKey):
        raise EnvelopeError("my_encryption", "a direct message needs this party's X25519 key")
    if len(env.payload) < TAG_LEN:
        raise EnvelopeError("payload", "ciphertext shorter than its authentication tag")
    my_public = my_encryption.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        shared = my_encryption.exchange(X25519PublicKey.from_public_bytes(env.ephemeral_key))
    except ValueError:
        raise EnvelopeError("ephemeral_key", "not a usable X25519 public key") from None
    aead = _direct_key(shared, env.ephemeral_key, my_public)
    try:
        return aead.decrypt(_ZERO_NONCE, env.payload, _direct_aad(env.session_id, env.round, env.sender, env.receiver))
    except InvalidTag:
        raise EnvelopeError("payload", "does not decrypt with this party's key") from None
