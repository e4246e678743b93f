"""The client's side of Schnorr (FROST) keys, issue 16: a key's scheme, its chain-native forms,
the message an Ed25519 request signs as an approver sees it, and a finished Schnorr signature,
checked by independent libraries before the SDK returns it.

Schemes (``governance.approval.SCHEMES``): ``ecdsa-secp256k1`` (DKLs23, the default),
``ed25519`` (FROST(Ed25519, SHA-512), RFC 9591; PureEdDSA over a message of 1..65536 bytes whose
SHA-256 is the request's ``digest``) and ``schnorr-secp256k1-bip340`` (FROST(secp256k1, SHA-256)
with the BIP340 variant: the 32-byte ``digest`` is the message signed, e.g. a Taproot sighash,
under the Taproot output key of the group key tweaked with the request's script root, BIP86 when
there is none).

Signature checks use libraries independent of the signers' code: ``cryptography`` (OpenSSL) for
Ed25519 (RFC 8032) and coincurve's ``PublicKeyXOnly.verify`` (libsecp256k1) for BIP340."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import grpc
from coincurve import PublicKeyXOnly
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from governance.approval import MAX_MESSAGE, SCHEME_BIP340, SCHEME_ECDSA, SCHEME_ED25519, SCHEMES, SigningRequest
from mpcnet.client.errors import MpcError
from mpcnet.common import addresses
from mpcnet.wire.mpc.v1 import common_pb2

FROST_SCHEMES: Final = (SCHEME_ED25519, SCHEME_BIP340)
SCHNORR_SIGNATURE_LEN: Final = 64
_PREVIEW: Final = 64  # bytes of a message shown as text (printable ASCII only) on an approver's screen

__all__ = [
    "FROST_SCHEMES", "MAX_MESSAGE", "SCHEMES", "SCHEME_BIP340", "SCHEME_ECDSA", "SCHEME_ED25519", "SchnorrSignature",
    "check_message", "check_scheme", "check_taproot_root", "message_view", "native_forms", "signing_key", "verify_schnorr",
]


def _bad(field: str, why: str) -> MpcError:
    return MpcError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {why}")


def a_scheme(scheme: str) -> str:
    """``scheme`` with its indefinite article, for messages: "an ed25519", "an ecdsa-secp256k1",
    "a schnorr-secp256k1-bip340"."""
    return f"{'an' if scheme[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {scheme}"


def check_scheme(scheme: str) -> str:
    """``scheme`` if it is one of :data:`SCHEMES` ("" reads as ``ecdsa-secp256k1``, as on the
    wire), else :class:`MpcError` INVALID_ARGUMENT naming ``scheme``."""
    if scheme == "":
        return SCHEME_ECDSA
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise _bad("scheme", f"must be one of {', '.join(SCHEMES)}")
    return scheme


def check_message(message: bytes) -> bytes:
    """An Ed25519 request's message: bytes, 1..:data:`MAX_MESSAGE` (65536); else INVALID_ARGUMENT
    naming ``message``."""
    if not isinstance(message, bytes) or not 1 <= len(message) <= MAX_MESSAGE:
        raise _bad("message", f"must be 1 to {MAX_MESSAGE} bytes")
    return message


def check_taproot_root(root: bytes) -> bytes:
    """A Taproot script tree's Merkle root: b"" (BIP86, key path only) or 32 bytes; else
    INVALID_ARGUMENT naming ``taproot_merkle_root``."""
    if not isinstance(root, bytes) or len(root) not in (0, addresses.TAPROOT_ROOT_LEN):
        raise _bad("taproot_merkle_root", "must be empty (BIP86) or 32 bytes")
    return root


def _printable(data: bytes) -> bool:
    """Printable ASCII, tabs and line breaks (a text file usually ends with a newline); the views
    escape the latter (``\\n``), JSON encodes them."""
    return all(0x20 <= b < 0x7F or b in (0x09, 0x0A, 0x0D) for b in data)


def message_view(message: bytes) -> dict[str, Any]:
    """What an approver is shown of a message instead of its raw bytes (which may hold terminal
    escapes): ``message_size`` (bytes), ``message_sha256`` (hex: what the request's digest is and
    what the approvals sign), ``message_preview``: the first 64 bytes as text when they are all
    printable ASCII, tabs or line breaks (which every text view escapes), else as hex (``hex:...``), with ``...`` when there is more."""
    more = "..." if len(message) > _PREVIEW else ""
    head = message[:_PREVIEW]
    preview = (head.decode("ascii") if _printable(head) else "hex:" + head.hex()) + more
    return {"message_size": len(message), "message_sha256": hashlib.sha256(message).hexdigest(), "message_preview": preview}


def signing_key(scheme: str, public_key: bytes, taproot_root: bytes = b"") -> bytes:
    """The key a verifier uses for a Schnorr key's signatures (as ``Signature.public_key`` on the
    wire, and ``crypto_core.frost.signing.signing_key``): ed25519 the 32-byte key itself;
    bip340 the 32-byte x-only Taproot output key of the group key (33 bytes compressed) tweaked
    with ``taproot_root`` (BIP341; BIP86 for b""). INVALID_ARGUMENT naming the field otherwise."""
    try:
        if scheme == SCHEME_ED25519:
            addresses.solana_address(public_key)  # the point checks
            return public_key
        if scheme == SCHEME_BIP340:
            return addresses.taproot_output_key(public_key, check_taproot_root(taproot_root))
    except addresses.AddressError as e:
        raise _bad(e.field, e.why) from None
    raise _bad("scheme", f"must be one of {', '.join(FROST_SCHEMES)}")


def verify_schnorr(scheme: str, key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (64 bytes) verifies over ``message`` under the verifying ``key`` (see
    :func:`signing_key`): ed25519 with ``cryptography`` (RFC 8032), bip340 with coincurve
    ``PublicKeyXOnly`` (BIP340; ``message`` any length, here the 32-byte digest). False for
    anything malformed, never an exception."""
    if not isinstance(signature, bytes) or len(signature) != SCHNORR_SIGNATURE_LEN or not isinstance(message, bytes):
        return False
    try:
        if scheme == SCHEME_ED25519:
            Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
            return True
        if scheme == SCHEME_BIP340:
            return bool(PublicKeyXOnly(key).verify(signature, message))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return False


@dataclass(frozen=True)
class SchnorrSignature:
    """A finished Schnorr signature of an ed25519 or bip340 key; checked when built (``scheme`` a
    FROST scheme, ``signature`` 64 bytes: ed25519 ``R || S``, bip340 ``x(R) || s``; ``public_key``
    the 32-byte verifying key, see :func:`signing_key`), else :class:`MpcError`
    INVALID_ARGUMENT (DATA_LOSS from :meth:`from_proto`). Whether it verifies over the request's
    message is checked by the SDK (:meth:`verifies`) before it returns one."""

    request_id: str
    scheme: str
    signature: bytes
    public_key: bytes
    signers: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.scheme not in FROST_SCHEMES:
            raise _bad("signature.scheme", f"must be one of {', '.join(FROST_SCHEMES)}")
        if not isinstance(self.signature, bytes) or len(self.signature) != SCHNORR_SIGNATURE_LEN:
            raise _bad("signature.schnorr", "must be 64 bytes")
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise _bad("signature.public_key", "must be 32 bytes (the verifying key of a Schnorr key)")

    @staticmethod
    def from_proto(rid: str, scheme: str, sig: common_pb2.Signature, signers: Sequence[int]) -> SchnorrSignature:
        """The coordinator's ``Signature`` of a Schnorr key (``schnorr`` set; r, s, der and
        recovery_id empty); DATA_LOSS if malformed."""
        try:
            if sig.r or sig.s or sig.der or sig.recovery_id:
                raise _bad("signature", "r, s, der and recovery_id must be empty for a Schnorr key")
            return SchnorrSignature(rid, scheme, bytes(sig.schnorr), bytes(sig.public_key), tuple(signers))
        except MpcError as e:
            raise MpcError(grpc.StatusCode.DATA_LOSS, f"{e.message} (the coordinator sent a malformed signature)") from None

    def verifies(self, message: bytes) -> bool:
        """:func:`verify_schnorr` of this signature over ``message`` (ed25519: the message;
        bip340: the request's 32-byte digest) under ``public_key``."""
        return verify_schnorr(self.scheme, self.public_key, message, self.signature)

    def as_dict(self) -> dict[str, Any]:
        """Keys (stable): ``request_id``, ``scheme``, ``signature`` (64 bytes hex), ``r`` (ed25519
        the encoded R; bip340 x(R); 32 bytes hex), ``s`` (32 bytes hex: ed25519 little-endian as
        RFC 8032 encodes it, bip340 big-endian), ``public_key`` (the verifying key, hex),
        ``signers``."""
        return {
            "request_id": self.request_id,
            "scheme": self.scheme,
            "signature": self.signature.hex(),
            "r": self.signature[:32].hex(),
            "s": self.signature[32:].hex(),
            "public_key": self.public_key.hex(),
            "signers": list(self.signers),
        }


def message_matches(message: bytes, digest: bytes) -> bool:
    """Whether SHA-256(``message``) is ``digest`` (an Ed25519 request's rule; compare_digest)."""
    return hmac.compare_digest(hashlib.sha256(message).digest(), digest)


def native_forms(scheme: str, public_key: bytes, *, network: str = "mainnet", taproot_root: bytes = b"") -> dict[str, Any]:
    """A key's chain-native forms (``mpc pubkey``). Keys: ``scheme``, ``public_key`` (hex as
    the coordinator reports it) and by scheme: ed25519 ``solana_address`` (Base58);
    bip340 ``internal_key`` (x-only, hex), ``output_key`` (x-only, hex), ``taproot_root`` (hex or
    None), ``tweak`` ("BIP86 (key path only, no script tree)" or "script tree root"),
    ``network``, ``address`` (bech32m ``bc1p``/``tb1p``); ecdsa ``public_key`` only (33 bytes
    compressed; its other forms are in ``Key.describe``). INVALID_ARGUMENT naming a bad field."""
    scheme = check_scheme(scheme)
    out: dict[str, Any] = {"scheme": scheme, "public_key": public_key.hex()}
    try:
        if scheme == SCHEME_ED25519:
            out["solana_address"] = addresses.solana_address(public_key)
        elif scheme == SCHEME_BIP340:
            root = check_taproot_root(taproot_root)
            out |= {
                "internal_key": addresses.xonly(public_key).hex(),
                "output_key": addresses.taproot_output_key(public_key, root).hex(),
                "taproot_root": root.hex() if root else None,
                "tweak": "script tree root (BIP341)" if root else "BIP86 (key path only, no script tree)",
                "network": network,
                "address": addresses.taproot_address(public_key, root, network),
            }
    except addresses.AddressError as e:
        raise _bad(e.field, e.why) from None
    return out


def check_schnorr_key(key_id: bytes, scheme: str, public_key: bytes, chain_code: bytes) -> None:
    """A Schnorr key's fields as :class:`mpcnet.client.sdk.Key` checks them: ``key_id`` 32 bytes,
    ``chain_code`` empty (no BIP32), ``public_key`` the group key (ed25519 32 bytes, a valid
    point; bip340 33 bytes compressed on secp256k1). INVALID_ARGUMENT naming the field."""
    if not isinstance(key_id, bytes) or len(key_id) != 32:
        raise _bad("key_id", "must be 32 bytes")
    if chain_code != b"":
        raise _bad("chain_code", f"must be empty for a {scheme} key (no BIP32 derivation)")
    want = 32 if scheme == SCHEME_ED25519 else addresses.COMPRESSED_LEN
    if not isinstance(public_key, bytes) or len(public_key) != want:
        raise _bad("public_key", f"must be {want} bytes for a {scheme} key")
    signing_key(scheme, public_key)  # the point checks


def no_derivation(scheme: str) -> None:
    """Refuses BIP32 derivation for a Schnorr key: FAILED_PRECONDITION naming ``derivation_path``
    (nothing for an ECDSA key)."""
    if scheme != SCHEME_ECDSA:
        raise MpcError(grpc.StatusCode.FAILED_PRECONDITION, f"derivation_path: {a_scheme(scheme)} key has no BIP32 derivation")


class _KeyFields(Protocol):
    """The fields of ``mpcnet.client.sdk.Key`` used here (read-only)."""

    @property
    def key_id(self) -> bytes: ...

    @property
    def label(self) -> str: ...

    @property
    def scheme(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def threshold(self) -> int: ...

    @property
    def parties(self) -> int: ...

    @property
    def epoch(self) -> int: ...

    @property
    def committee(self) -> tuple[int, ...]: ...

    @property
    def public_key(self) -> bytes: ...

    @property
    def created_unix_ms(self) -> int: ...


def schnorr_describe(key: _KeyFields, path: object = None, network: str = "mainnet", taproot_root: bytes = b"") -> dict[str, Any]:
    """``Key.describe`` of a Schnorr key: ``key_id``, ``label``, ``scheme``, ``status``,
    ``threshold``, ``parties``, ``epoch``, ``committee``, ``path`` ("m": no derivation),
    :func:`native_forms` (for ``network`` and ``taproot_root``), ``created_unix_ms``. FAILED_PRECONDITION naming
    ``derivation_path`` for a ``path`` other than the key itself."""
    if path not in (None, "", "m", ()):
        no_derivation(key.scheme)
    return {
        "key_id": key.key_id.hex(), "label": key.label, "scheme": key.scheme, "status": key.status,
        "threshold": key.threshold, "parties": key.parties, "epoch": key.epoch, "committee": list(key.committee), "path": "m",
        **native_forms(key.scheme, key.public_key, network=network, taproot_root=taproot_root),
        "created_unix_ms": key.created_unix_ms,
    }


def _lost(why: str) -> MpcError:
    return MpcError(grpc.StatusCode.DATA_LOSS, f"{why} (the coordinator sent a malformed request)")


def checked_message(q: SigningRequest, message: bytes, root: bytes) -> bytes:
    """The message the coordinator lists with request ``q`` (``SignRequestInfo.message`` and
    ``.taproot_merkle_root``), taken only if it fits the canonical request: ed25519 1..65536 bytes
    whose SHA-256 is ``q.digest``; other schemes none; the root equal to ``q.taproot_root``.
    DATA_LOSS naming the field otherwise."""
    if not hmac.compare_digest(root, q.taproot_root):
        raise _lost("taproot_merkle_root: is not the request's")
    if q.scheme != SCHEME_ED25519:
        if message:
            raise _lost(f"message: must be empty for a {q.scheme} request")
        return b""
    if not 1 <= len(message) <= MAX_MESSAGE or not message_matches(message, q.digest):
        raise _lost("message: its SHA-256 is not the request's digest")
    return message


def checked_signature(rid: str, q: SigningRequest, message: bytes, sig: common_pb2.Signature, signers: Sequence[int]) -> SchnorrSignature:
    """The Schnorr signature of request ``q`` as the coordinator sent it, returned only if it
    verifies (independent libraries, :func:`verify_schnorr`) over what the request signs (ed25519
    ``message``, bip340 ``q.digest``) under its own ``public_key``; DATA_LOSS otherwise. That
    ``public_key`` is the request's key is checked by the SDK against the key it fetched."""
    s = SchnorrSignature.from_proto(rid, q.scheme, sig, signers)
    signed = message if q.scheme == SCHEME_ED25519 else q.digest
    if not s.verifies(signed):
        raise MpcError(
            grpc.StatusCode.DATA_LOSS,
            f"signature: does not verify over the request's {'message' if q.scheme == SCHEME_ED25519 else 'digest'} "
            f"under its public_key ({q.scheme}; the coordinator sent a malformed signature)",
        )
    return s
