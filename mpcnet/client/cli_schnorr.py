"""The ``mpc`` options and views of Schnorr (FROST) keys, issue 16; :mod:`mpcnet.client.cli` wires
them into its commands:

* ``mpc keygen --scheme {ecdsa-secp256k1,ed25519,schnorr-secp256k1-bip340}`` (default ecdsa);
* ``mpc request sign --key K (--digest HEX | --message-file F | --message-hex HEX)
  [--taproot-root HEX]``: exactly one of the three; a message (ed25519 keys) is 1..65536 bytes and
  the request's digest is its SHA-256; ``--taproot-root`` (bip340 keys) the script tree's Merkle
  root (none: the BIP86 key-path tweak);
* ``mpc approve ID --expect-message-file F``: an approver holding the message signs nothing unless
  the request's digest is its SHA-256;
* ``mpc pubkey --key K [--network mainnet|testnet] [--taproot-root HEX]``: the chain-native forms
  (ed25519: the key and its Solana address; bip340: internal key, output key, P2TR address).

Every value is read through :mod:`mpcnet.common.cliutil` types, so a bad one is a usage error
naming the option (exit 2) and nothing is sent."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from crypto_core.frost.public import frost_key_id
from governance.approval import MAX_MESSAGE, SCHEME_BIP340, SCHEME_ECDSA, SCHEME_ED25519, SCHEMES
from governance.errors import GovernanceError
from governance.text import quote
from mpcnet.client.errors import MpcError
from mpcnet.client.schnorr import a_scheme, schnorr_describe
from mpcnet.client.sdk import Key, SignRequest
from mpcnet.common import cliutil
from mpcnet.common.addresses import NETWORKS, AddressError, p2tr_address, taproot_output_key

F = TypeVar("F", bound=Callable[..., Any])


class MessageHex(cliutil.Hex):
    """A message written as hex: 1..:data:`MAX_MESSAGE` bytes (ASCII hex digits, an optional
    ``0x``); the usage error gives the size, never the value beyond a short escaped prefix."""

    name = "HEX"

    def __init__(self) -> None:
        super().__init__(0)

    def check(self, value: Any) -> bytes:
        if isinstance(value, bytes) and 1 <= len(value) <= MAX_MESSAGE:
            return value
        text = value[2:] if isinstance(value, str) and value[:2] in ("0x", "0X") else value
        if not isinstance(text, str) or not text or len(text) % 2 or len(text) > 2 * MAX_MESSAGE or not text.isascii():
            raise GovernanceError("value", f"must be 1 to {MAX_MESSAGE} bytes as hex (an even number of hex digits), got {quote(value)}")
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise GovernanceError("value", f"must be hex digits, got {quote(value)}") from None


def scheme_option(f: F) -> F:
    """``--scheme`` of ``mpc keygen``."""
    return click.option(
        "--scheme", type=cliutil.Choice(SCHEMES), default=SCHEME_ECDSA, show_default=True,
        help="signature scheme: ecdsa-secp256k1 (DKLs23, BIP32 paths), ed25519 (FROST, e.g. Solana) or "
        "schnorr-secp256k1-bip340 (FROST, Bitcoin Taproot)",
    )(f)


def message_options(f: F) -> F:
    """``--message-file``, ``--message-hex`` and ``--taproot-root`` of ``mpc request sign``."""
    f = click.option(
        "--taproot-root", type=cliutil.Hex(32), default=None, metavar="HEX",
        help="schnorr-secp256k1-bip340 keys: the Taproot script tree's Merkle root (32 bytes hex; none: BIP86 key path only)",
    )(f)
    f = click.option(
        "--message-hex", type=MessageHex(), default=None, metavar="HEX",
        help=f"ed25519 keys: the message to sign as hex (1 to {MAX_MESSAGE} bytes; approvers see its size and SHA-256)",
    )(f)
    return click.option(
        "--message-file", type=cliutil.InFile(), default=None,
        help=f"ed25519 keys: a file holding the message to sign (1 to {MAX_MESSAGE} bytes)",
    )(f)


def network_options(f: F) -> F:
    """``--network`` and ``--taproot-root`` of ``mpc pubkey``."""
    f = click.option(
        "--taproot-root", type=cliutil.Hex(32), default=None, metavar="HEX",
        help="schnorr-secp256k1-bip340 keys: the output key and address for this script tree root (none: BIP86)",
    )(f)
    return click.option(
        "--network", type=cliutil.Choice(NETWORKS), default="mainnet", show_default=True,
        help="schnorr-secp256k1-bip340 keys: the Bitcoin network of the Taproot address (bc1p... / tb1p...)",
    )(f)


def expect_message_option(f: F) -> F:
    """``--expect-message-file`` of ``mpc approve``: an approver holding the message (ed25519)
    signs nothing unless the request's digest is its SHA-256."""
    return click.option(
        "--expect-message-file", type=cliutil.InFile(), default=None,
        help="ed25519 keys: sign nothing unless the request is for the message in this file (its SHA-256 is the digest)",
    )(f)


def expected_digest(expect_digest: bytes | None, expect_message_file: Path | None) -> bytes | None:
    """``--expect-digest`` or the SHA-256 of ``--expect-message-file`` (not both: usage error)."""
    if expect_message_file is None:
        return expect_digest
    if expect_digest is not None:
        raise click.UsageError("give --expect-digest or --expect-message-file, not both")
    return hashlib.sha256(read_message(expect_message_file, "--expect-message-file")).digest()


def read_message(path: Path, option: str = "--message-file") -> bytes:
    """The message in file ``path``: 1..65536 bytes, read at most one byte past the bound (a
    larger file is refused without being read whole). :class:`click.BadParameter` naming
    ``--message-file`` otherwise."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_MESSAGE + 1)
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise click.BadParameter(f"cannot read {quote(str(path))}: {why}", param_hint=f"'{option}'") from None
    if not 1 <= len(data) <= MAX_MESSAGE:
        why = "is empty" if not data else f"holds more than {MAX_MESSAGE} bytes"
        raise click.BadParameter(f"{quote(str(path))} {why}: a message is 1 to {MAX_MESSAGE} bytes", param_hint=f"'{option}'")
    return data


def sign_payload(
    digest: bytes | None, message_file: Path | None, message_hex: bytes | None, taproot_root: bytes | None,
) -> tuple[bytes, bytes, bytes]:
    """``(digest, message, taproot_root)`` for ``submit_sign_request`` from ``mpc request sign``'s
    options: exactly one of ``--digest`` / ``--message-file`` / ``--message-hex``
    (:class:`click.UsageError` otherwise); ``--taproot-root`` only with ``--digest``."""
    given = [name for name, v in (("--digest", digest), ("--message-file", message_file), ("--message-hex", message_hex)) if v is not None]
    if len(given) != 1:
        got = f"; got {' and '.join(given)}" if given else ""
        raise click.UsageError(
            "give exactly one of --digest (ecdsa-secp256k1 and schnorr-secp256k1-bip340 keys), --message-file or --message-hex "
            f"(ed25519 keys){got}"
        )
    if taproot_root is not None and digest is None:
        raise click.UsageError("--taproot-root is for schnorr-secp256k1-bip340 keys, which sign a --digest (not a message)")
    message = read_message(message_file) if message_file is not None else (message_hex or b"")
    return digest or b"", message, taproot_root or b""


def pubkey_doc(key: Key, path: str | None, network: str, taproot_root: bytes | None) -> dict[str, Any]:
    """``mpc pubkey``'s document: :meth:`Key.describe` of an ECDSA key; a Schnorr key's
    chain-native forms (:func:`mpcnet.client.schnorr.schnorr_describe`) for ``network`` and the
    root. :class:`click.UsageError` naming the option for ``--taproot-root`` on a key other than
    bip340, and for ``--network`` other than its default (mainnet) on a key other than bip340
    (an Ethereum or Solana address has no Bitcoin network)."""
    if network != NETWORKS[0] and key.scheme != SCHEME_BIP340:
        raise click.UsageError(
            f"--network is for {SCHEME_BIP340} keys (the Taproot address); key {key.key_id.hex()} is {key.scheme}"
        )
    if key.scheme == SCHEME_ECDSA:
        if taproot_root is not None:
            raise click.UsageError(f"--taproot-root is for schnorr-secp256k1-bip340 keys; key {key.key_id.hex()} is {key.scheme}")
        return key.describe(path)
    if path not in (None, "", "m"):
        raise click.UsageError(f"--path: {a_scheme(key.scheme)} key has no BIP32 derivation")
    if taproot_root is not None and key.scheme != "schnorr-secp256k1-bip340":
        raise click.UsageError(f"--taproot-root is for schnorr-secp256k1-bip340 keys; key {key.key_id.hex()} is {key.scheme}")
    return schnorr_describe(key, None, network, taproot_root or b"")


def taproot_outputs(get_key: Callable[[bytes], Key], r: SignRequest) -> dict[str, str | None] | None:
    """What a bip340 request's signature will be valid under, for the approver's view: the
    Taproot ``taproot_output_key`` (32-byte x-only hex, BIP341 tweak of the key's public key by
    the request's root; BIP86 when it has none) and its mainnet ``taproot_address`` (BIP350
    bech32m ``bc1p...``), computed here from the public key ``get_key(key_id)`` answers (the
    coordinator's word for the key's public key, checked here against the request's key id, which
    binds the scheme and the group key). Both None when the key cannot be fetched or its public key
    does not fit or does not hash to the key id (never raises for that); None for a request of
    another scheme."""
    q = r.request
    if q.scheme != SCHEME_BIP340:
        return None
    try:
        key = get_key(q.key_id)
        if key.scheme != SCHEME_BIP340:
            raise AddressError("scheme", "is not the request's")
        # the approved request names the key id, which binds the scheme and the group key
        # (crypto_core.frost.public.frost_key_id): a public key the coordinator misreports is refused
        if not hmac.compare_digest(frost_key_id(SCHEME_BIP340, bytes(key.public_key)), q.key_id):
            raise AddressError("public_key", "does not hash to the request's key id")
        output_key = taproot_output_key(key.public_key, q.taproot_root)
        return {"taproot_output_key": output_key.hex(), "taproot_address": p2tr_address(output_key, NETWORKS[0])}
    except (MpcError, AddressError, GovernanceError, ValueError):
        return {"taproot_output_key": None, "taproot_address": None}


def payload_mismatch(
    key_id: bytes, scheme: str, *, digest: bool, message_option: str | None, taproot_root: bool, path: str | None,
) -> str | None:
    """Why ``mpc request sign``'s options do not fit key ``key_id`` of ``scheme`` (one line naming
    the option and saying what the key takes), or None when they fit. ``message_option``:
    ``--message-file`` or ``--message-hex`` when one was given. Used to turn the coordinator's
    INVALID_ARGUMENT for a scheme mismatch into a usage error (exit 2) a newcomer can act on."""
    kind = f"key {key_id.hex()} is {a_scheme(scheme)} key"
    if scheme != SCHEME_ECDSA and path not in (None, "", "m"):
        return f"--path: {kind}, which has no BIP32 derivation (leave --path out)"
    if scheme == SCHEME_ED25519 and digest:
        return f"--digest: {kind}, which signs a message (PureEdDSA): give --message-file FILE or --message-hex HEX instead"
    if scheme != SCHEME_ED25519 and message_option is not None:
        what = "the 32-byte message, e.g. a Taproot sighash" if scheme == SCHEME_BIP340 else "the 32-byte hash to sign"
        return f"{message_option}: {kind}, which signs a --digest HEX ({what}); messages are for ed25519 keys"
    if scheme != SCHEME_BIP340 and taproot_root:
        return f"--taproot-root: {kind}; a Taproot script tree root is for {SCHEME_BIP340} keys only"
    return None
