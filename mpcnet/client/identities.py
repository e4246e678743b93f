"""People and services that act on a cluster: an mTLS certificate plus an Ed25519 signing key.

An identity ``NAME`` lives in ``DIR/identities/NAME/``::

    NAME.pem, NAME.key    TLS client certificate (CN = NAME, OU = role) and its key
    signing.key           Ed25519 private key (PKCS#8 PEM, mode 0600): signs approvals
                          (approvers) and policy changes (admins), client-side
    signing.pub           its raw public key in hex (what policies and the admin set name)

The certificate name is the name used in policies, so the coordinator can check that an
approval or an admin signature comes from the person it names. This is a *development*
layout: the keys are not encrypted (like the dev PKI's), and in production each person keeps
their key on their own device (or in an HSM) and never on a shared host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpcnet.common.fsutil import write_atomic
from mpcnet.common.pki import CertPaths, PkiError, identity_from_cert, issue_cert

SIGNING_KEY_FILE = "signing.key"
SIGNING_PUB_FILE = "signing.pub"

# the demo identities `mpc-cluster up` creates (name, role)
DEMO_IDENTITIES: tuple[tuple[str, str], ...] = (
    ("admin1", "admin"),
    ("admin2", "admin"),
    ("admin3", "admin"),
    ("requester1", "requester"),
    ("approver1", "approver"),
    ("approver2", "approver"),
    ("approver3", "approver"),
    ("auditor1", "auditor"),
    # recovery officers (issue 12): their TLS certificates let them reach the coordinator; their
    # age recovery keys are theirs alone (`mpc officer keygen`), never made by the launcher
    ("officer1", "officer"),
    ("officer2", "officer"),
    ("officer3", "officer"),
)


@dataclass(frozen=True, repr=False)
class Identity:
    name: str
    role: str
    cert: CertPaths
    signing_key: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        return raw_public(self.signing_key)

    def __repr__(self) -> str:  # never the private key
        return f"Identity(name={self.name!r}, role={self.role!r}, public_key={self.public_key.hex()})"


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)




def identity_dir(cluster_dir: Path, name: str) -> Path:
    return Path(cluster_dir) / "identities" / name


def create_identity(ca: CertPaths, cluster_dir: Path, name: str, role: str) -> Identity:
    """Create ``name``'s certificate and signing key (each only if missing) and return it."""
    d = identity_dir(cluster_dir, name)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    cert = CertPaths(d / f"{name}.pem", d / f"{name}.key")
    if not cert.cert.exists() or not cert.key.exists():
        issue_cert(ca, d, name, role=role)
    sk = d / SIGNING_KEY_FILE
    if not sk.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        write_atomic(sk, pem, 0o600)
        write_atomic(d / SIGNING_PUB_FILE, (raw_public(key).hex() + "\n").encode(), 0o644)
    return load_identity(cluster_dir, name)


def load_identity(cluster_dir: Path, name: str) -> Identity:
    """Load ``DIR/identities/NAME`` (PkiError naming what is missing or wrong)."""
    d = identity_dir(cluster_dir, name)
    if not d.is_dir():
        raise PkiError(f"identity: no identity {name!r} in {d.parent}")
    cert = CertPaths(d / f"{name}.pem", d / f"{name}.key")
    try:
        ident = identity_from_cert(cert.cert.read_bytes())
    except OSError as e:
        raise PkiError(f"identity {name}: cannot read {cert.cert} ({e.strerror or type(e).__name__})") from None
    if ident.name != name:
        raise PkiError(f"identity {name}: certificate names {ident.name!r}")
    try:
        key = serialization.load_pem_private_key((d / SIGNING_KEY_FILE).read_bytes(), password=None)
    except OSError as e:
        raise PkiError(f"identity {name}: cannot read its signing key ({e.strerror or type(e).__name__})") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):  # the last: a key type the library does not know
        raise PkiError(f"identity {name}: {d / SIGNING_KEY_FILE} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PkiError(f"identity {name}: {d / SIGNING_KEY_FILE} is not an Ed25519 key")
    return Identity(name, ident.role, cert, key)
