"""How a node's secrets at rest are protected: a passphrase (scrypt) or a PKCS#11 token (issue 13).

CONTRACT STUB (issue 13): the names below are the interface the enrolment code (``mpc-node
init``/``join``, the dev launcher) calls; the PKCS#11 half is being built in parallel and
replaces the ``NotImplementedError`` branches. Keep these signatures.

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
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpcnet.common.fsutil import write_atomic
from mpcnet.common.keystore import SCRYPT_N, OperationalKeys, create_keystore, load_keystore, read_passphrase

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


def create_operational_keys(keystore: Path, protection: KeyProtection, *, scrypt_n: int = SCRYPT_N) -> OperationalKeys:
    """Make the node's operational keys on this host and keep them under ``protection``:
    the keystore file ``keystore`` (mode 0600, never overwritten: an existing one is loaded and
    returned instead) and, for ``pkcs11``, the token's storage key and (if configured) identity
    key pair, created when missing. Raises KeystoreError (or the token's error) naming the
    field; never prints or logs a secret."""
    if protection.pkcs11 is not None:
        raise NotImplementedError("pkcs11: not built yet (issue 13, HSM part)")
    if keystore.exists():
        return open_operational_keys(keystore, protection)
    passphrase = read_passphrase(file=protection.passphrase_file, env=protection.passphrase_env)
    return create_keystore(keystore, passphrase, scrypt_n=scrypt_n)


def open_operational_keys(keystore: Path, protection: KeyProtection) -> OperationalKeys:
    """The node's operational keys (the identity key may be a token-held signer: use only
    ``identity.sign(data)`` and ``identity_public``). Raises KeystoreError (or the token's
    error) naming the field."""
    if protection.pkcs11 is not None:
        raise NotImplementedError("pkcs11: not built yet (issue 13, HSM part)")
    return load_keystore(keystore, read_passphrase(file=protection.passphrase_file, env=protection.passphrase_env))
