"""How a node's secrets at rest are protected: a passphrase (scrypt) or a PKCS#11 token (issue 13).

The names below are the interface the enrolment code (``mpc-node init``/``join``, the dev
launcher), the node (``mpc_node.main``) and ``mpc-node rekey-store`` call.

Two protections, chosen by the node config:

* ``passphrase`` (today's): ``passphrase_file`` or ``passphrase_env``; the keystore and the
  store are encrypted under keys derived with scrypt from it.
* ``pkcs11``: a non-extractable AES key in a PKCS#11 token wraps the store's (and the
  keystore's) random data key; optionally the node's Ed25519 identity key lives in the token
  (``identity_key_label``) and signs there. Config (node config, top-level key ``pkcs11``)::

      "pkcs11": {"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "node-1",
                 "pin_file": "hsm-pin",                       # or "pin_env": "MPC_NODE_HSM_PIN"
                 "storage_key_label": "mpcnet-storage-key",   # default
                 "identity_key_label": "mpcnet-identity-key"} # absent/null: identity in the keystore

Under ``pkcs11`` (token access: :mod:`mpcnet.common.pkcs11token`):

* the storage key is AES-256, generated in the token, sensitive and never extractable; it only
  wraps and unwraps random 32-byte *data keys* with CKM_AES_GCM inside the token
  (``nonce(12) || ct(32) || tag(16)``, associated data naming what the data key is for);
* the keystore (format below, :func:`seal_token_keystore`) holds the X25519 encryption key and,
  unless it is in the token, the Ed25519 identity key, AES-256-GCM-sealed under its own data key;
* the store (:meth:`mpc_node.storage.NodeStore.open` given the storage key) keeps its data key
  wrapped in its meta table (kind ``pkcs11``, key label, mechanism, wrapped key, check value);
* an identity in the token is a :class:`mpcnet.common.pkcs11token.TokenIdentity`: signing runs
  CKM_EDDSA in the token under a per-token lock, its private half cannot be exported;
* one logged-in session per (module, token) per process (:func:`open_pkcs11`).

Opening a file with the other protection is a :class:`KeystoreError`/``StoreError`` naming the
protection it has; token problems are :class:`TokenError` naming the ``pkcs11.*`` config field;
the PIN is never in a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from mpcnet.common.config import Fields
from mpcnet.common.fsutil import read_small_file, write_atomic
from mpcnet.common.keystore import (
    FORMAT,
    PURPOSE,
    SCRYPT_N,
    VERSION,
    KeystoreError,
    OperationalKeys,
    create_keystore,
    load_keystore,
    read_passphrase,
)
from mpcnet.common.pkcs11token import (
    DATA_KEY_LEN,
    WRAP_MECHANISM,
    WRAPPED_LEN,
    StorageKey,
    Token,
    TokenError,
    open_token,
    reinitialize,
)

DEFAULT_STORAGE_KEY_LABEL = "mpcnet-storage-key"
DEFAULT_IDENTITY_KEY_LABEL = "mpcnet-identity-key"


@dataclass(frozen=True)
class Pkcs11Settings:
    """Where the node's token keys are: ``module`` the PKCS#11 library (a .so path);
    ``token_label``; the user PIN from ``pin_file`` (one trailing newline stripped) or the
    environment variable ``pin_env`` (exactly one of the two); the labels of the storage key
    (AES-256) and, if the identity key is in the token, of the Ed25519 identity key pair."""

    module: Path
    token_label: str
    pin_file: Path | None = None
    pin_env: str | None = None
    storage_key_label: str = DEFAULT_STORAGE_KEY_LABEL
    identity_key_label: str | None = None


@dataclass(frozen=True)
class KeyProtection:
    """A node's protection: ``passphrase_file``/``passphrase_env`` (kind ``passphrase``) or
    ``pkcs11`` (kind ``pkcs11``)."""

    passphrase_file: Path | None = None
    passphrase_env: str | None = None
    pkcs11: Pkcs11Settings | None = None

    @property
    def kind(self) -> str:
        return "pkcs11" if self.pkcs11 is not None else "passphrase"

    def config_fields(self) -> dict[str, Any]:
        """The node-config keys that stand for this protection (paths as given)."""
        if self.pkcs11 is None:
            if self.passphrase_file is not None:
                return {"passphrase_file": str(self.passphrase_file)}
            return {"passphrase_env": self.passphrase_env}
        p = self.pkcs11
        doc: dict[str, Any] = {"module": str(p.module), "token_label": p.token_label, "storage_key_label": p.storage_key_label}
        if p.pin_file is not None:
            doc["pin_file"] = str(p.pin_file)
        else:
            doc["pin_env"] = p.pin_env
        if p.identity_key_label is not None:
            doc["identity_key_label"] = p.identity_key_label
        return {"pkcs11": doc}


def new_passphrase_file(path: Path) -> KeyProtection:
    """Write a fresh random passphrase to ``path`` (0600, never overwriting) and return the
    protection naming it."""
    if not path.exists():
        write_atomic(path, (secrets.token_urlsafe(32) + "\n").encode(), 0o600, overwrite=False)
    return KeyProtection(passphrase_file=path)


def load_pkcs11_settings(f: Fields) -> Pkcs11Settings:
    """The ``pkcs11`` object of a node config (``f`` is the top-level document): exact keys,
    exactly one of ``pin_file``/``pin_env``, labels 1..32 bytes of printable text. Raises
    :class:`ConfigError` naming ``pkcs11.<field>``."""
    p = f.obj("pkcs11")
    p.extra_keys({"module", "token_label", "pin_file", "pin_env", "storage_key_label", "identity_key_label"})
    pin_file, pin_env = p.path("pin_file", required=False), p.opt_str("pin_env")
    if (pin_file is None) == (pin_env is None):
        raise p.error("pin_file", "give exactly one of pin_file and pin_env")
    if pin_env is not None and not _ENV_NAME.fullmatch(pin_env):
        raise p.error("pin_env", "must be an environment variable name")
    labels = {}
    for key, default in (("token_label", None), ("storage_key_label", DEFAULT_STORAGE_KEY_LABEL), ("identity_key_label", "")):
        value = p.text(key, default)
        if value and not (len(value.encode()) <= 32 and value.isprintable()):
            raise p.error(key, "must be 1..32 bytes of printable text")
        if not value and key != "identity_key_label":
            raise p.error(key, "must not be empty")
        labels[key] = value
    return Pkcs11Settings(
        module=p.req_path("module"), token_label=labels["token_label"], pin_file=pin_file, pin_env=pin_env,
        storage_key_label=labels["storage_key_label"], identity_key_label=labels["identity_key_label"] or None,
    )  # fmt: skip


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def read_pin(settings: Pkcs11Settings) -> bytes:
    """The token's user PIN from ``pin_file`` (one trailing newline stripped) or ``pin_env``.
    Raises :class:`TokenError` naming ``pkcs11.pin_file`` / ``pkcs11.pin_env`` (never the PIN)."""
    try:
        return read_passphrase(file=settings.pin_file, env=settings.pin_env)
    except KeystoreError as e:
        fname = "pkcs11.pin_file" if settings.pin_file is not None else "pkcs11.pin_env"
        reason = str(e).split(": ", 1)[-1]
        raise TokenError(f"{fname}: {reason}") from None


_tokens: dict[tuple[str, str], tuple[Token, bytes]] = {}  # (module, label) -> (session, HMAC of its PIN)
_tokens_lock = threading.Lock()
_pin_mac_key = os.urandom(32)  # per process: the PINs' MACs mean nothing outside it


def _pin_mac(pin: bytes) -> bytes:
    return hmac.new(_pin_mac_key, pin, hashlib.sha256).digest()


def open_pkcs11(settings: Pkcs11Settings) -> Token:
    """The logged-in token of ``settings``: one session per (module, token label) per process,
    shared by the keystore, the store and the identity signer. The PIN is read and checked on
    every call: a token logged in already (PKCS#11 login state is per application, so a second
    C_Login would not check it) is returned only for the PIN it was opened with, else
    :class:`TokenError` naming the PIN field. Raises :class:`TokenError`."""
    key = (os.path.realpath(settings.module), settings.token_label)
    pin_field = "pkcs11.pin_file" if settings.pin_file is not None else "pkcs11.pin_env"
    pin = read_pin(settings)
    with _tokens_lock:
        held = _tokens.get(key)
        if held is not None and held[0]._session is not None:
            if not hmac.compare_digest(held[1], _pin_mac(pin)):
                raise TokenError(f"{pin_field}: the token refused the PIN (not the PIN its open session was logged in with)")
            return held[0]
        token = open_token(settings.module, settings.token_label, pin, pin_field=pin_field)
        token._reopen = lambda: _reopen(settings, pin_field)
        _tokens[key] = (token, _pin_mac(pin))
        return token


def _reopen(settings: Pkcs11Settings, pin_field: str) -> Any:
    """A new logged-in session for a token whose session was lost (the PIN read again, never kept
    for it); the library re-initialized if it no longer finds the token. Raises :class:`TokenError`."""
    pin = read_pin(settings)
    try:
        return open_token(settings.module, settings.token_label, pin, pin_field=pin_field)._session
    except TokenError as first:
        try:
            reinitialize(settings.module)
            return open_token(settings.module, settings.token_label, pin, pin_field=pin_field)._session
        except TokenError:
            raise first from None


def close_tokens() -> None:
    """Close every token session this process opened (tests; a node at exit)."""
    with _tokens_lock:
        for token, _ in _tokens.values():
            token.close()
        _tokens.clear()


def storage_key(settings: Pkcs11Settings, *, create: bool = False) -> StorageKey:
    """The token's storage key of ``settings`` (created when missing and ``create``)."""
    return open_pkcs11(settings).storage_key(settings.storage_key_label, create=create)


def create_operational_keys(keystore: Path, protection: KeyProtection, *, scrypt_n: int = SCRYPT_N) -> OperationalKeys:
    """Make the node's operational keys on this host and keep them under ``protection``:
    the keystore file ``keystore`` (mode 0600, never overwritten: an existing one is loaded and
    returned instead) and, for ``pkcs11``, the token's storage key and (if configured) identity
    key pair, created when missing. Raises KeystoreError (or the token's error) naming the
    field; never prints or logs a secret."""
    if keystore.exists():
        return open_operational_keys(keystore, protection)
    if protection.pkcs11 is not None:
        settings = protection.pkcs11
        wrap_key = storage_key(settings, create=True)
        encryption = X25519PrivateKey.generate()
        identity: Ed25519PrivateKey
        if settings.identity_key_label is not None:
            identity = open_pkcs11(settings).identity(settings.identity_key_label, create=True)
        else:
            identity = Ed25519PrivateKey.generate()
        keys = OperationalKeys(identity, encryption)
        try:
            write_atomic(keystore, seal_token_keystore(keys, wrap_key, settings), 0o600, overwrite=False)
        except FileExistsError:
            raise KeystoreError(f"keystore: {keystore} already exists, refusing to overwrite") from None
        return keys
    passphrase = read_passphrase(file=protection.passphrase_file, env=protection.passphrase_env)
    return create_keystore(keystore, passphrase, scrypt_n=scrypt_n)


def open_operational_keys(keystore: Path, protection: KeyProtection) -> OperationalKeys:
    """The node's operational keys (the identity key may be a token-held signer: use only
    ``identity.sign(data)`` and ``identity_public``). Raises KeystoreError (or the token's
    error) naming the field."""
    if protection.pkcs11 is not None:
        settings = protection.pkcs11
        return load_token_keystore(keystore, None, settings)
    return load_keystore(keystore, read_passphrase(file=protection.passphrase_file, env=protection.passphrase_env))


# --- the token-protected keystore ------------------------------------------------------------
#
#   {"format": "mpcnet-node-keystore", "version": 1,
#    "protection": {"name": "pkcs11", "token_label", "storage_key_label", "mechanism": "CKM_AES_GCM",
#                   "wrapped_data_key": "<b64: nonce(12) || ct(32) || tag(16)>",
#                   "identity_key_label": "<label>" | null},
#    "cipher": {"name": "aes-256-gcm", "nonce": "<b64, 12 bytes>"},
#    "identity_public": "<hex>", "encryption_public": "<hex>",
#    "ciphertext": "<b64: AES-GCM(data key, [identity_private(32)] || encryption_private(32))>"}
#
# The data key is random, wrapped by the token (AES-GCM inside it, associated data binding the
# public keys); the AES-GCM associated data of the ciphertext binds everything else in the file.

_DATA_KEY_AAD = b"MPCNET/v1/keystore/data-key"


def _lp(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _keystore_aad(doc_prot: dict[str, Any], wrapped: bytes, identity_public: bytes, encryption_public: bytes) -> bytes:
    label = doc_prot.get("identity_key_label") or ""
    return _lp(FORMAT.encode(), struct.pack(">I", VERSION), PURPOSE, b"pkcs11", str(doc_prot["token_label"]).encode(),
               str(doc_prot["storage_key_label"]).encode(), str(label).encode(), wrapped, identity_public,
               encryption_public)  # fmt: skip


def seal_token_keystore(keys: OperationalKeys, wrap_key: StorageKey, settings: Pkcs11Settings) -> bytes:
    """The bytes of a token-protected keystore holding ``keys`` (the identity's private half only
    when it is not in the token). The caller writes them (atomically, mode 0600)."""
    fmt = (Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    in_token = settings.identity_key_label is not None
    plain = (b"" if in_token else keys.identity.private_bytes(*fmt)) + keys.encryption.private_bytes(*fmt)
    data_key = os.urandom(DATA_KEY_LEN)
    wrapped = wrap_key.wrap(data_key, _lp(_DATA_KEY_AAD, keys.identity_public, keys.encryption_public))
    prot = {
        "name": "pkcs11", "token_label": settings.token_label, "storage_key_label": settings.storage_key_label,
        "mechanism": wrap_key.mechanism, "wrapped_data_key": base64.b64encode(wrapped).decode(),
        "identity_key_label": settings.identity_key_label,
    }  # fmt: skip
    nonce = os.urandom(12)
    ct = AESGCM(data_key).encrypt(nonce, plain, _keystore_aad(prot, wrapped, keys.identity_public, keys.encryption_public))
    doc = {
        "format": FORMAT, "version": VERSION, "protection": prot,
        "cipher": {"name": "aes-256-gcm", "nonce": base64.b64encode(nonce).decode()},
        "identity_public": keys.identity_public.hex(), "encryption_public": keys.encryption_public.hex(),
        "ciphertext": base64.b64encode(ct).decode(),
    }  # fmt: skip
    return (json.dumps(doc, indent=2) + "\n").encode()


def _b64(value: object, fname: str, length: int) -> bytes:
    if not isinstance(value, str):
        raise KeystoreError(f"keystore.{fname}: missing or not a str")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeystoreError(f"keystore.{fname}: not valid base64") from None
    if len(raw) != length:
        raise KeystoreError(f"keystore.{fname}: must be {length} bytes")
    return raw


def _hex32(value: object, fname: str) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise KeystoreError(f"keystore.{fname}: must be 32 bytes of hex")
    return raw


def load_token_keystore(path: Path, wrap_key: StorageKey | None, settings: Pkcs11Settings) -> OperationalKeys:
    """Open the token-protected keystore at ``path`` with the token's storage key (``None``: the
    one ``settings`` names, looked up once the file has been checked). Raises
    :class:`KeystoreError` naming the field (a passphrase keystore: "protected by a passphrase"),
    or :class:`TokenError` when the token does not unwrap its data key."""
    try:
        doc = json.loads(read_small_file(Path(path)))  # a FIFO, a device or a huge file: refused
    except OSError as e:
        raise KeystoreError(f"keystore: cannot read {path} ({e.strerror or type(e).__name__})") from None
    except (ValueError, UnicodeDecodeError):
        raise KeystoreError("keystore: not a JSON document") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeystoreError("keystore.format: not an mpcnet node keystore")
    if doc.get("version") != VERSION or isinstance(doc.get("version"), bool):
        raise KeystoreError("keystore.version: unsupported version")
    prot = doc.get("protection")
    if prot is None and "kdf" in doc:
        raise KeystoreError(
            "keystore.protection: this keystore is protected by a passphrase, not a PKCS#11 token "
            "(config pkcs11; move it with mpc-node rekey-store)"
        )
    if not isinstance(prot, dict) or prot.get("name") != "pkcs11":
        raise KeystoreError("keystore.protection: not a PKCS#11-protected keystore")
    if set(prot) != {"name", "token_label", "storage_key_label", "mechanism", "wrapped_data_key", "identity_key_label"}:
        raise KeystoreError("keystore.protection: unexpected or missing fields")
    if prot["mechanism"] != WRAP_MECHANISM:
        raise KeystoreError("keystore.protection.mechanism: unsupported wrapping mechanism")
    if prot["storage_key_label"] != settings.storage_key_label:
        raise KeystoreError(f"keystore.protection.storage_key_label: the keystore names {prot['storage_key_label']!r}, "
                            f"the config (pkcs11.storage_key_label) {settings.storage_key_label!r}")  # fmt: skip
    if prot["identity_key_label"] != settings.identity_key_label:
        raise KeystoreError("keystore.protection.identity_key_label: differs from the config (pkcs11.identity_key_label)")
    if not isinstance(prot["token_label"], str):
        raise KeystoreError("keystore.protection.token_label: not a str")
    wrapped = _b64(prot["wrapped_data_key"], "protection.wrapped_data_key", WRAPPED_LEN)
    cipher = doc.get("cipher")
    if not isinstance(cipher, dict) or cipher.get("name") != "aes-256-gcm":
        raise KeystoreError("keystore.cipher.name: unsupported cipher")
    nonce = _b64(cipher.get("nonce"), "cipher.nonce", 12)
    identity_public = _hex32(doc.get("identity_public"), "identity_public")
    encryption_public = _hex32(doc.get("encryption_public"), "encryption_public")
    in_token = settings.identity_key_label is not None
    ct = _b64(doc.get("ciphertext"), "ciphertext", (32 if in_token else 64) + 16)
    if wrap_key is None:
        wrap_key = storage_key(settings)
    data_key = wrap_key.unwrap(wrapped, _lp(_DATA_KEY_AAD, identity_public, encryption_public))
    try:
        plain = AESGCM(data_key).decrypt(nonce, ct, _keystore_aad(prot, wrapped, identity_public, encryption_public))
    except InvalidTag:
        raise KeystoreError("keystore: cannot be unlocked (altered file)") from None
    identity: Ed25519PrivateKey
    if in_token:
        assert settings.identity_key_label is not None
        identity = wrap_key.token.identity(settings.identity_key_label, create=False)
        encryption = X25519PrivateKey.from_private_bytes(plain)
    else:
        identity = Ed25519PrivateKey.from_private_bytes(plain[:32])
        encryption = X25519PrivateKey.from_private_bytes(plain[32:])
    keys = OperationalKeys(identity, encryption)
    if keys.identity_public != identity_public or keys.encryption_public != encryption_public:
        raise KeystoreError("keystore.identity_public: the token's identity key is not the keystore's")
    return keys
