"""A component's operational keys (a node's, or the coordinator's), kept in a passphrase-encrypted file.

Operational keys authenticate the node inside the protocol: an Ed25519 *identity* key signs
every outgoing protocol message and an X25519 *encryption* key receives end-to-end encrypted
direct messages relayed by the untrusted coordinator. They are generated at random, separately
from (and never derived from) key shares, so rotating or losing them never touches a share.

File format (JSON, version 1)::

    {"format": "mpcnet-node-keystore", "version": 1,
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<b64, 16 bytes>"},
     "cipher": {"name": "aes-256-gcm", "nonce": "<b64, 12 bytes>"},
     "identity_public": "<hex>", "encryption_public": "<hex>",
     "ciphertext": "<b64: AES-GCM(identity_private(32) || encryption_private(32))>"}

The AES-GCM associated data binds the format, version, purpose, KDF parameters and both public
keys, so none of them can be altered without decryption failing.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from mpcnet.common.fsutil import read_small_file, write_atomic

FORMAT = "mpcnet-node-keystore"
VERSION = 1
PURPOSE = b"MPCNET/v1/keystore/operational-keys"
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
MIN_SCRYPT_N = 2**10  # lower values exist only so tests run fast
MAX_SCRYPT_N = 2**20
SALT_LEN = 16
NONCE_LEN = 12
_PLAINTEXT_LEN = 64
_DECRYPT_FAILED = "keystore: cannot be unlocked (wrong passphrase or corrupted file)"


class KeystoreError(Exception):
    """The keystore cannot be created, read or unlocked, or no passphrase is available."""


@dataclass(frozen=True, repr=False, eq=False)
class OperationalKeys:
    """The node's identity (Ed25519) and encryption (X25519) private keys."""

    identity: Ed25519PrivateKey  # signs every outgoing protocol message
    encryption: X25519PrivateKey  # receives end-to-end encrypted direct messages

    @property
    def identity_public(self) -> bytes:
        """Raw 32-byte Ed25519 public key."""
        return self.identity.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def encryption_public(self) -> bytes:
        """Raw 32-byte X25519 public key."""
        return self.encryption.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def __repr__(self) -> str:  # public halves only
        return (
            f"OperationalKeys(identity_public={self.identity_public.hex()}, "
            f"encryption_public={self.encryption_public.hex()})"
        )


# --- helpers ---------------------------------------------------------------------------------


def _check_passphrase(passphrase: object) -> bytes:
    if not isinstance(passphrase, (bytes, bytearray)):
        raise KeystoreError("passphrase: must be bytes")
    if not passphrase:
        raise KeystoreError("passphrase: must not be empty")
    return bytes(passphrase)


def _check_scrypt_n(n: object, field: str) -> int:
    if (
        not isinstance(n, int)
        or isinstance(n, bool)
        or not MIN_SCRYPT_N <= n <= MAX_SCRYPT_N
        or n & (n - 1)
    ):
        raise KeystoreError(f"{field}: must be a power of two in [2**10, 2**20]")
    return n


def _kek(passphrase: bytes, salt: bytes, n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase)


def _aad(n: int, salt: bytes, identity_public: bytes, encryption_public: bytes) -> bytes:
    parts = [FORMAT.encode(), struct.pack(">I", VERSION), PURPOSE, b"scrypt",
             struct.pack(">III", n, SCRYPT_R, SCRYPT_P), salt, b"aes-256-gcm",
             identity_public, encryption_public]  # fmt: skip
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _raw_private(keys: OperationalKeys) -> bytes:
    fmt = (Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return keys.identity.private_bytes(*fmt) + keys.encryption.private_bytes(*fmt)


def _write_new_file_atomic(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600) with ``data``, atomically and durably; never overwrite."""
    try:
        write_atomic(path, data, 0o600, overwrite=False)
    except FileExistsError:
        raise KeystoreError(f"keystore: {path} already exists, refusing to overwrite") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _field(doc: dict[str, Any], name: str, kind: type, path: str) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise KeystoreError(f"keystore.{path}: missing or not a {kind.__name__}")
    return value


def _decode_b64(doc: dict[str, Any], name: str, path: str, length: int | None) -> bytes:
    text = _field(doc, name, str, path)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeystoreError(f"keystore.{path}: not valid base64") from None
    if length is not None and len(raw) != length:
        raise KeystoreError(f"keystore.{path}: must be {length} bytes")
    return raw


def _decode_hex32(doc: dict[str, Any], name: str) -> bytes:
    text = _field(doc, name, str, name)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeystoreError(f"keystore.{name}: not valid hex") from None
    if len(raw) != 32:
        raise KeystoreError(f"keystore.{name}: must be 32 bytes")
    return raw


# --- API -------------------------------------------------------------------------------------


def create_keystore(path: Path, passphrase: bytes, *, scrypt_n: int = SCRYPT_N) -> OperationalKeys:
    """Generate fresh operational keys and store them encrypted at ``path`` (mode 0600).

    Refuses to overwrite an existing file: replacing a node's keys must be deliberate.
    ``scrypt_n`` below the default is meant for tests only.
    """
    path = Path(path)
    if path.exists():
        raise KeystoreError(f"keystore: {path} already exists, refusing to overwrite")
    keys = generate_keys()
    _write_new_file_atomic(path, seal_keystore(keys, passphrase, scrypt_n=scrypt_n))
    return keys


def generate_keys() -> OperationalKeys:
    """Fresh random operational keys (in memory only)."""
    return OperationalKeys(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())


def seal_keystore(keys: OperationalKeys, passphrase: bytes, *, scrypt_n: int = SCRYPT_N) -> bytes:
    """The keystore file's bytes (the format above) holding ``keys`` encrypted under
    ``passphrase``; the caller writes them (atomically, mode 0600)."""
    passphrase = _check_passphrase(passphrase)
    n = _check_scrypt_n(scrypt_n, "scrypt_n")
    salt, nonce = os.urandom(SALT_LEN), os.urandom(NONCE_LEN)
    aad = _aad(n, salt, keys.identity_public, keys.encryption_public)
    ciphertext = AESGCM(_kek(passphrase, salt, n)).encrypt(nonce, _raw_private(keys), aad)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "kdf": {"name": "scrypt", "n": n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
        "cipher": {"name": "aes-256-gcm", "nonce": _b64(nonce)},
        "identity_public": keys.identity_public.hex(),
        "encryption_public": keys.encryption_public.hex(),
        "ciphertext": _b64(ciphertext),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def load_keystore(path: Path, passphrase: bytes) -> OperationalKeys:
    """Decrypt the operational keys at ``path``.

    Structural problems name the offending field; a wrong passphrase and a tampered ciphertext,
    parameters or public key all give the same message, which says nothing more.
    """
    passphrase = _check_passphrase(passphrase)
    try:
        data = read_small_file(Path(path))  # a FIFO, a device or a huge file: refused
    except OSError as e:
        raise KeystoreError(f"keystore: cannot read {path} ({e.strerror or type(e).__name__})") from None
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise KeystoreError("keystore: not a JSON document") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeystoreError("keystore.format: not an mpcnet node keystore")
    if doc.get("version") != VERSION or isinstance(doc.get("version"), bool):
        raise KeystoreError("keystore.version: unsupported version")
    if "protection" in doc and "kdf" not in doc:
        raise KeystoreError("keystore.kdf: this keystore is protected by a PKCS#11 token, not a passphrase "
                            "(config pkcs11; an interrupted mpc-node rekey-store: run it again)")
    kdf = _field(doc, "kdf", dict, "kdf")
    if kdf.get("name") != "scrypt":
        raise KeystoreError("keystore.kdf.name: unsupported KDF")
    n = _check_scrypt_n(kdf.get("n"), "keystore.kdf.n")
    if kdf.get("r") != SCRYPT_R or kdf.get("p") != SCRYPT_P:
        raise KeystoreError(f"keystore.kdf: r must be {SCRYPT_R} and p must be {SCRYPT_P}")
    salt = _decode_b64(kdf, "salt", "kdf.salt", SALT_LEN)
    cipher = _field(doc, "cipher", dict, "cipher")
    if cipher.get("name") != "aes-256-gcm":
        raise KeystoreError("keystore.cipher.name: unsupported cipher")
    nonce = _decode_b64(cipher, "nonce", "cipher.nonce", NONCE_LEN)
    identity_public = _decode_hex32(doc, "identity_public")
    encryption_public = _decode_hex32(doc, "encryption_public")
    ciphertext = _decode_b64(doc, "ciphertext", "ciphertext", _PLAINTEXT_LEN + 16)

    aad = _aad(n, salt, identity_public, encryption_public)
    try:
        plain = AESGCM(_kek(passphrase, salt, n)).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise KeystoreError(_DECRYPT_FAILED) from None
    keys = OperationalKeys(
        Ed25519PrivateKey.from_private_bytes(plain[:32]),
        X25519PrivateKey.from_private_bytes(plain[32:]),
    )
    if keys.identity_public != identity_public or keys.encryption_public != encryption_public:
        raise KeystoreError(_DECRYPT_FAILED)  # unreachable unless the writer was broken
    return keys


def read_passphrase(*, file: Path | None, env: str | None) -> bytes:
    """The keystore passphrase from ``file`` (one trailing newline stripped) or env var ``env``.

    ``file`` wins when both are given. Errors name the source, never its content.
    """
    if file is not None:
        try:
            data = Path(file).read_bytes()
        except OSError as e:
            raise KeystoreError(
                f"passphrase file: cannot read {file} ({e.strerror or type(e).__name__})"
            ) from None
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        if not data:
            raise KeystoreError(f"passphrase file: {file} is empty")
        return data
    if env is not None:
        if not env or "=" in env or "\0" in env:
            raise KeystoreError("passphrase env: invalid environment variable name")
        value = os.environb.get(os.fsencode(env)) if os.supports_bytes_environ else None
        if value is None:
            text = os.environ.get(env)
            value = None if text is None else os.fsencode(text)
        if not value:
            raise KeystoreError(f"passphrase env: environment variable {env} is not set or empty")
        return value
    raise KeystoreError("passphrase: no source given (need a passphrase file or an environment variable)")
