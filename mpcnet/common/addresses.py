"""Chain-native forms of a Schnorr key's public key (issue 16): the Solana address of an Ed25519
key and the Bitcoin Taproot (P2TR) address of a BIP340 key.

* Solana: the address *is* the 32-byte Ed25519 public key, written in Base58 (Bitcoin alphabet,
  the ``base58`` package).
* Taproot (BIP341 / BIP86 / BIP350): the output key is ``Q = lift_x(P) + int(t)·G`` with
  ``t = hash_TapTweak(x(P) || root)`` (``root`` omitted when there is no script tree: the BIP86
  key-path-only tweak); the address is the segwit v1 program ``x(Q)`` (32 bytes) in bech32m with
  the network's human-readable part (``bc`` mainnet, ``tb`` testnet; the ``bech32m`` package).
  The point arithmetic is coincurve's (libsecp256k1 ``xonly_pubkey_tweak_add``), never ours.

Every input is validated (exact lengths, a point on its curve); a bad one raises
:class:`AddressError` naming the field. This module is pure (no I/O) and imports nothing of the
servers or the client, so the SDK, the CLI and the demo share it."""

from __future__ import annotations

import hashlib
from typing import Final

import base58
import bech32m  # type: ignore[import-untyped]  # no stubs (pyproject lists coincurve only)
import nacl.bindings
from coincurve import PublicKey, PublicKeyXOnly

ED25519_KEY_LEN: Final = 32
XONLY_LEN: Final = 32  # a BIP340 x-only key
COMPRESSED_LEN: Final = 33  # a SEC1 compressed secp256k1 point
TAPROOT_ROOT_LEN: Final = 32  # a Taproot script tree's Merkle root
TAPROOT_WITNESS_VERSION: Final = 1
NETWORKS: Final = ("mainnet", "testnet")
HRP: Final = {"mainnet": "bc", "testnet": "tb"}  # BIP173/BIP350 human-readable parts


class AddressError(ValueError):
    """A refused input: ``field`` names it, ``why`` says what is wrong (no input bytes quoted)."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why


def _bytes(value: object, field: str, *lengths: int) -> bytes:
    if not isinstance(value, bytes) or len(value) not in lengths:
        raise AddressError(field, f"must be {' or '.join(str(n) for n in lengths)} bytes")
    return value


def solana_address(public_key: bytes) -> str:
    """The Solana address of a 32-byte Ed25519 public key (RFC 8032 encoding): its Base58 text.

    Raises :class:`AddressError` (``public_key``) unless it is 32 bytes encoding a point of the
    prime-order subgroup other than the identity (libsodium ``crypto_core_ed25519_is_valid_point``)."""
    pk = _bytes(public_key, "public_key", ED25519_KEY_LEN)
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(pk):
        raise AddressError("public_key", "is not a valid Ed25519 point (off the curve, small order or non-canonical)")
    return base58.b58encode(pk).decode("ascii")


def solana_public_key(address: str) -> bytes:
    """The 32-byte Ed25519 key of a Solana address (inverse of :func:`solana_address`, the same
    checks). Raises :class:`AddressError` (``address``) for text that is not Base58 of 32 bytes."""
    if not isinstance(address, str) or not 32 <= len(address) <= 44 or not address.isascii():
        raise AddressError("address", "must be 32 to 44 Base58 characters")
    try:
        raw = base58.b58decode(address)
    except ValueError:
        raise AddressError("address", "is not Base58") from None
    if len(raw) != ED25519_KEY_LEN or base58.b58encode(raw).decode("ascii") != address:
        raise AddressError("address", "is not the Base58 text of 32 bytes")
    solana_address(raw)
    return raw


def xonly(public_key: bytes) -> bytes:
    """The BIP340 x-only form (32 bytes) of a secp256k1 key given as 33 bytes compressed SEC1 or
    32 bytes x-only; validated on the curve (coincurve). Raises :class:`AddressError`
    (``public_key``)."""
    pk = _bytes(public_key, "public_key", COMPRESSED_LEN, XONLY_LEN)
    try:
        if len(pk) == COMPRESSED_LEN:
            return PublicKey(pk).format(compressed=True)[1:]
        return PublicKeyXOnly(pk).format()
    except ValueError:
        raise AddressError("public_key", "is not a point on secp256k1") from None


def tap_tweak(internal_key: bytes, merkle_root: bytes = b"") -> bytes:
    """``hash_TapTweak(x(P) || root)`` (BIP340 tagged hash, BIP341): 32 bytes. ``root`` b"" is the
    BIP86 tweak (no script path). Raises :class:`AddressError` (``public_key`` /
    ``taproot_root``)."""
    root = _bytes(merkle_root, "taproot_root", 0, TAPROOT_ROOT_LEN)
    tag = hashlib.sha256(b"TapTweak").digest()
    return hashlib.sha256(tag + tag + xonly(internal_key) + root).digest()


def taproot_output_key(internal_key: bytes, merkle_root: bytes = b"") -> bytes:
    """The 32-byte x-only Taproot output key ``x(lift_x(x(P)) + t·G)`` of an internal key (33 bytes
    compressed or 32 x-only) and a script tree root (b"" for BIP86: key path only, or 32 bytes);
    BIP341 ``taproot_tweak_pubkey``, the point addition by libsecp256k1 through coincurve.
    Raises :class:`AddressError` (``public_key``, ``taproot_root``, or ``taproot_root`` when the
    tweak is not below the group order: probability about 2^-128)."""
    tweak = tap_tweak(internal_key, merkle_root)
    key = PublicKeyXOnly(xonly(internal_key))
    try:
        key.tweak_add(tweak)  # in place (coincurve's API); key.parity is then Q's y parity
    except ValueError:
        raise AddressError("taproot_root", "gives a tweak out of range (choose another script tree)") from None
    return key.format()


def _hrp(network: str) -> str:
    if network not in HRP:
        raise AddressError("network", f"must be one of {', '.join(NETWORKS)}")
    return HRP[network]


def p2tr_address(output_key: bytes, network: str = "mainnet") -> str:
    """The bech32m segwit v1 address (``bc1p...`` / ``tb1p...``, BIP350) paying to a 32-byte x-only
    output key (checked on the curve). Raises :class:`AddressError` (``output_key``,
    ``network``)."""
    hrp = _hrp(network)
    key = _bytes(output_key, "output_key", XONLY_LEN)
    try:
        PublicKeyXOnly(key)
    except ValueError:
        raise AddressError("output_key", "is not an x-only point on secp256k1") from None
    return str(bech32m.encode(hrp, TAPROOT_WITNESS_VERSION, key))


def taproot_address(internal_key: bytes, merkle_root: bytes = b"", network: str = "mainnet") -> str:
    """:func:`p2tr_address` of :func:`taproot_output_key`: the address of a BIP340 key's key path
    (BIP86 when ``merkle_root`` is b"")."""
    return p2tr_address(taproot_output_key(internal_key, merkle_root), network)


def p2tr_output_key(address: str, network: str = "mainnet") -> bytes:
    """The 32-byte output key of a P2TR address of ``network`` (inverse of :func:`p2tr_address`):
    bech32m, the network's hrp, witness version 1, a 32-byte program. Raises
    :class:`AddressError` (``address``, ``network``)."""
    hrp = _hrp(network)
    if not isinstance(address, str) or not address.isascii() or len(address) > 90:
        raise AddressError("address", "must be at most 90 ASCII characters")
    try:
        got = bech32m.decode(hrp, address)
    except (bech32m.DecodeError, bech32m.HrpDoesNotMatch, ValueError):
        raise AddressError("address", f"is not a bech32m segwit address of {network} ({hrp}1...)") from None
    if got.witver != TAPROOT_WITNESS_VERSION or len(got.witprog) != XONLY_LEN:
        raise AddressError("address", "is not a Taproot address (witness version 1, 32-byte program)")
    return bytes(got.witprog)
