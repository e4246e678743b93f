"""One host's side of enrolment (``mpc-node init|join``, ``mpc-coordinator init|join``).

``init`` makes this host's keys in its own directory DIR and writes its public enrolment request::

    DIR/init.json                  what was initialised: role, name, endpoint, listen, protection
    DIR/passphrase                 (passphrase protection, 0600; never overwritten)
    DIR/keystore.json              identity + encryption keys (0600; never overwritten)
    DIR/tls.key                    TLS key, EC P-256 (0600; never overwritten)
    DIR/enrolment-request.json     the signed request (public)

It is safe to re-run: ``init.json`` is written first, and each later file only when missing, so
an interrupted run is completed by the next; a DIR initialised for another role, name, endpoint
or protection is refused. ``join`` verifies the admin-signed genesis, this host's certificate and
the CA, then writes ``tls.pem``, ``ca.pem`` and finally ``config.json`` (atomic; checked by the
process's own config loader before it is put in place); any refusal writes nothing.
Errors: :class:`EnrolmentError` naming the field.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import serialization

from governance.roster import Roster, RosterEntry, SignedRosterChange, check_endpoint
from governance.text import quote
from mpcnet.common.datadir import DataDirBusy, hold_data_dirs
from mpcnet.common.dirlock import exclusive_directory
from mpcnet.common.enrolment import (
    ENROLMENT_REQUEST_FILE,
    EnrolmentError,
    EnrolmentRequest,
    build_enrolment_request,
    check_certificate,
    endpoint_host,
    load_pem_certificate,
    load_request,
    load_tls_key,
    make_tls_key,
    read_json,
    write_request,
)
from mpcnet.common.fsutil import write_atomic
from mpcnet.common.genesis import Genesis, load_genesis, verify_genesis
from mpcnet.common.keystore import MAX_SCRYPT_N, MIN_SCRYPT_N, KeystoreError, OperationalKeys
from mpcnet.common.pkcs11token import TokenError
from mpcnet.common.pki import certificate_fingerprint
from mpcnet.common.privatedir import check_private_dir
from mpcnet.common.protection import KeyProtection, create_operational_keys, new_passphrase_file, open_operational_keys
from mpcnet.common.rosterfile import load_roster_history, verify_against_genesis

INIT_FILE = "init.json"
INIT_FORMAT = "mpcnet-host-init"
KEYSTORE_FILE = "keystore.json"
PASSPHRASE_FILE = "passphrase"  # noqa: S105 (a file name)
TLS_KEY_FILE = "tls.key"
TLS_CERT_FILE = "tls.pem"
CA_FILE = "ca.pem"
CONFIG_FILE = "config.json"
HOST_FILES = (INIT_FILE, ENROLMENT_REQUEST_FILE)
HOST_SECRETS = (KEYSTORE_FILE, PASSPHRASE_FILE, TLS_KEY_FILE)


@dataclass(frozen=True)
class HostInit:
    """What ``init`` recorded in ``DIR/init.json``."""

    role: str
    name: str
    endpoint: str
    listen: str
    protection: dict[str, Any]  # the config fields (KeyProtection.config_fields, paths relative to DIR)
    scrypt_n: int

    def to_dict(self) -> dict[str, Any]:
        return {"format": INIT_FORMAT, "version": 1, "role": self.role, "name": self.name, "endpoint": self.endpoint,
                "listen": self.listen, "protection": self.protection, "scrypt_n": self.scrypt_n}


def _absolute(directory: Path, protection: KeyProtection) -> KeyProtection:
    if protection.passphrase_file is not None and not protection.passphrase_file.is_absolute():
        return KeyProtection(passphrase_file=directory / protection.passphrase_file)
    return protection


def read_init(directory: Path) -> HostInit | None:
    """``DIR/init.json``, or None if DIR holds none; EnrolmentError naming ``init.json``."""
    path = directory / INIT_FILE
    if not path.exists():
        return None
    doc = read_json(path, INIT_FILE)
    keys = {"format", "version", "role", "name", "endpoint", "listen", "protection", "scrypt_n"}
    if not isinstance(doc, dict) or set(doc) != keys or doc["format"] != INIT_FORMAT or not isinstance(doc["protection"], dict):
        raise EnrolmentError(INIT_FILE, f"{quote(str(path), 200)} is not an init record")
    return HostInit(doc["role"], doc["name"], doc["endpoint"], doc["listen"], doc["protection"], doc["scrypt_n"])


def protection_from_fields(fields: dict[str, Any], directory: Path) -> KeyProtection:
    """The KeyProtection an init record's ``protection`` names (passphrase paths resolved in DIR)."""
    from mpcnet.common.protection import Pkcs11Settings

    if "pkcs11" in fields:
        p = fields["pkcs11"]
        return KeyProtection(pkcs11=Pkcs11Settings(
            module=Path(p["module"]), token_label=p["token_label"],
            pin_file=Path(p["pin_file"]) if p.get("pin_file") else None, pin_env=p.get("pin_env"),
            storage_key_label=p["storage_key_label"], identity_key_label=p.get("identity_key_label"),
        ))
    if "passphrase_file" in fields:
        return _absolute(directory, KeyProtection(passphrase_file=Path(fields["passphrase_file"])))
    return KeyProtection(passphrase_env=fields["passphrase_env"])


def _open_keys(opener: Callable[[], OperationalKeys]) -> OperationalKeys:
    try:
        return opener()
    except NotImplementedError:
        raise EnrolmentError("pkcs11", "PKCS#11 key protection is not available in this build") from None
    except TokenError as e:  # names the pkcs11 field, never the PIN
        raise EnrolmentError("pkcs11", str(e)) from None
    except KeystoreError as e:
        raise EnrolmentError(KEYSTORE_FILE, str(e)) from None


def init_host(
    directory: Path, *, role: str, name: str, endpoint: str, listen: str, protection: KeyProtection | None = None,
    scrypt_n: int = 2**15, identity_in_token: bool = False,
) -> EnrolmentRequest:
    """Make (or complete) this host's keys in ``directory`` and return its enrolment request
    (written to ``DIR/enrolment-request.json``). ``protection`` None: a fresh random passphrase
    in ``DIR/passphrase``. EnrolmentError naming the field: a bad name/endpoint/listen, DIR
    initialised differently (another node's init), a request that is not this host's."""
    try:
        check_endpoint(endpoint, "endpoint")
        check_endpoint(listen, "listen")
    except Exception as e:  # GovernanceError: field and reason
        raise EnrolmentError(getattr(e, "field", "endpoint"), getattr(e, "reason", str(e))) from None
    # a dry run of the request's field rules (name, role) before anything is written
    from governance.text import check_name

    try:
        check_name(name, "name")
    except Exception as e:
        raise EnrolmentError("name", getattr(e, "reason", str(e))) from None
    directory = Path(directory)
    check_private_dir(directory, (), ())  # not a symlink, our own (R1)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    with exclusive_directory(directory):  # a concurrent init of DIR waits, then finds these keys
        return _init_locked(directory, role, name, endpoint, listen, protection, scrypt_n, identity_in_token)


def _init_locked(
    directory: Path, role: str, name: str, endpoint: str, listen: str, protection: KeyProtection | None, scrypt_n: int,
    identity_in_token: bool,
) -> EnrolmentRequest:
    if protection is None:
        fields = {"passphrase_file": PASSPHRASE_FILE}
    else:
        fields = protection.config_fields()
    want = HostInit(role, name, endpoint, listen, fields, scrypt_n)
    have = read_init(directory)
    if have is None and ((directory / KEYSTORE_FILE).exists() or (directory / TLS_KEY_FILE).exists()):
        raise EnrolmentError("dir", f"{quote(str(directory), 200)} holds keys but no {INIT_FILE}: not this host's init")
    check_private_dir(directory, HOST_FILES, HOST_SECRETS, (PASSPHRASE_FILE,))  # before anything in it is reused (R1)
    if have is None:
        write_atomic(directory / INIT_FILE, (json.dumps(want.to_dict(), indent=2) + "\n").encode(), 0o644, overwrite=False)
    elif have != want:
        raise EnrolmentError(
            "dir", f"{quote(str(directory), 200)} holds the init of {have.role} {quote(have.name)} at {quote(have.endpoint)} "
            "(with other options): use another --dir",
        )
    prot = protection_from_fields(fields, directory)
    if protection is None:
        if (directory / KEYSTORE_FILE).exists() and not (directory / PASSPHRASE_FILE).exists():
            raise EnrolmentError(PASSPHRASE_FILE, "the keystore exists but its passphrase file is missing")
        new_passphrase_file(directory / PASSPHRASE_FILE)
    keys = _open_keys(lambda: create_operational_keys(directory / KEYSTORE_FILE, prot, scrypt_n=scrypt_n))
    tls_key = make_tls_key(directory / TLS_KEY_FILE)
    req_path = directory / ENROLMENT_REQUEST_FILE
    if req_path.exists():
        req = load_request(req_path)
        tls_pub = tls_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if not (isinstance(req, EnrolmentRequest) and (req.role, req.name, req.endpoint) == (role, name, endpoint)
                and req.identity_key == keys.identity_public and req.encryption_key == keys.encryption_public
                and req.csr_public_key_der() == tls_pub):
            raise EnrolmentError(ENROLMENT_REQUEST_FILE, "exists and is not this host's request (remove it to make a new one)")
        return req
    req = build_enrolment_request(
        role, name, endpoint, keys.identity, keys.identity_public, keys.encryption_public, tls_key, identity_in_token=identity_in_token,
    )
    write_request(req_path, req)
    return req


@dataclass(frozen=True)
class JoinPlan:
    """What ``join`` verified: the init record, the genesis, its roster, this node's entry (None
    for the coordinator), and the certificate and CA (PEM) to copy into DIR."""

    init: HostInit
    genesis: Genesis
    roster: Roster
    entry: RosterEntry | None
    cert_pem: bytes
    ca_pem: bytes
    history: tuple[SignedRosterChange, ...] = ()  # the verified roster history (default: the genesis's)


def plan_join(directory: Path, role: str, genesis_path: Path, cert_path: Path, ca_path: Path, *,
              expect_digest: bytes | None = None, roster_path: Path | None = None) -> JoinPlan:
    """Verify everything ``join`` needs, writing nothing: DIR's init (of ``role``), the genesis
    (admin quorum on both changes and the genesis message; ``expect_digest`` if given), the CA
    (must be the genesis CA), this node's roster entry (identity and encryption keys), the
    certificate (chain to the CA, its public key == DIR/tls.key's, CN == name, OU == role, SAN
    covers the endpoint host, for a node: SHA-256 == the entry's tls_fingerprint). With
    ``roster_path`` (a node added after the genesis): the roster history file the admins publish
    (:mod:`mpcnet.common.rosterfile`), verified from the genesis's admin set and starting with its
    roster version 1; this node's entry is taken from its newest roster."""
    directory = Path(directory)
    check_private_dir(directory, (*HOST_FILES, CONFIG_FILE), HOST_SECRETS, (PASSPHRASE_FILE,))
    init = read_init(directory)
    if init is None:
        raise EnrolmentError("dir", f"{quote(str(directory), 200)} holds no {INIT_FILE}: run init first")
    if init.role != role:
        raise EnrolmentError("dir", f"{quote(str(directory), 200)} was initialised for role {init.role}")
    genesis = load_genesis(genesis_path)
    roster = verify_genesis(genesis)
    if expect_digest is not None and not hmac.compare_digest(genesis.digest(), expect_digest):
        raise EnrolmentError("expect_digest", f"the genesis digest is {genesis.digest().hex()}")
    history = genesis.roster_history
    if roster_path is not None:
        history = load_roster_history(roster_path)
        roster = verify_against_genesis(genesis, history)

    def read_pem(path: Path, field: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as e:
            raise EnrolmentError(field, f"cannot read {quote(str(path), 200)} ({e.strerror or type(e).__name__})") from None

    ca_pem, cert_pem = read_pem(ca_path, "ca"), read_pem(cert_path, "cert")
    ca = load_pem_certificate(ca_pem, "ca")
    if ca.public_bytes(serialization.Encoding.DER) != genesis.ca_certificate().public_bytes(serialization.Encoding.DER):
        raise EnrolmentError("ca", "is not the CA the genesis names")
    cert = load_pem_certificate(cert_pem, "cert")
    tls_pub = load_tls_key(directory / TLS_KEY_FILE).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    entry = None
    if role == "node":
        prot = protection_from_fields(init.protection, directory)
        keys = _open_keys(lambda: open_operational_keys(directory / KEYSTORE_FILE, prot))
        entry = next((e for e in roster.entries if e.active and hmac.compare_digest(e.identity_key, keys.identity_public)
                      and hmac.compare_digest(e.encryption_key, keys.encryption_public)), None)
        if entry is None:
            where = "roster" if roster_path is not None else "genesis"
            raise EnrolmentError(where, f"roster version {roster.version} holds no active entry with this node's identity and "
                                        "encryption keys" + ("" if roster_path is not None else
                                                             " (a node added later joins with --roster FILE)"))
        if entry.name != init.name:
            where = "roster" if roster_path is not None else "genesis"
            raise EnrolmentError(where, f"this node's roster entry is named {quote(entry.name)}, not {quote(init.name)}")
        check_certificate(cert, ca, role="node", name=entry.name, public_key_der=tls_pub, host=endpoint_host(entry.endpoint))
        if not hmac.compare_digest(certificate_fingerprint(cert), entry.tls_fingerprint):
            raise EnrolmentError("cert", "is not the certificate the roster names (tls_fingerprint differs)")
    else:
        check_certificate(cert, ca, role=role, name=init.name, public_key_der=tls_pub, host=endpoint_host(init.endpoint))
    return JoinPlan(init, genesis, roster, entry, cert_pem, ca_pem, history)


def governance_section(genesis: Genesis, history: tuple[SignedRosterChange, ...] = ()) -> dict[str, Any]:
    """The config's ``governance`` object: admin set, initial policy, roster history (``history``,
    verified by :func:`plan_join`; default: the genesis's)."""
    return {"admin_set": genesis.admin_set.to_dict(), "initial_policy": genesis.initial_policy.to_dict(),
            "roster_history": [c.to_dict() for c in (history or genesis.roster_history)]}


def write_join(directory: Path, plan: JoinPlan, config: dict[str, Any], check: Callable[[Path], object]) -> Path:
    """Write ``config`` as ``DIR/config.json`` after ``check`` (the process's config loader)
    accepted it in a temporary file of DIR, with the certificate and CA copied next to it.
    Returns the config path. EnrolmentError naming ``config`` if the loader refuses it (DIR unchanged)."""
    directory = Path(directory)
    tmp = directory / f".{CONFIG_FILE}.check"
    write_atomic(tmp, (json.dumps(config, indent=2) + "\n").encode(), 0o644)
    try:
        check(tmp)
    except Exception as e:  # the loader's ConfigError (any): refused, nothing kept
        raise EnrolmentError("config", str(e)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    try:
        with hold_data_dirs((directory,)):  # a running node or coordinator holds it: its files stay
            write_atomic(directory / TLS_CERT_FILE, plan.cert_pem, 0o644)
            write_atomic(directory / CA_FILE, plan.ca_pem, 0o644)
            write_atomic(directory / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode(), 0o644)
    except DataDirBusy as e:
        raise EnrolmentError("dir", f"{e} (stop it before joining again)") from None
    return directory / CONFIG_FILE


def scrypt_option(n: int) -> int:
    """``--scrypt-n``: a power of two in [2**10, 2**20]; click.UsageError otherwise."""
    if n < MIN_SCRYPT_N or n > MAX_SCRYPT_N or n & (n - 1):
        raise click.UsageError(f"--scrypt-n: must be a power of two in [{MIN_SCRYPT_N}, {MAX_SCRYPT_N}]")
    return n


def digest_option(value: str | None) -> bytes | None:
    """``--expect-digest``: 64 hex digits as 32 bytes (None when not given); click.UsageError otherwise."""
    if value is None:
        return None
    try:
        out = bytes.fromhex(value)
    except ValueError:
        out = b""
    if len(out) != 32:
        raise click.UsageError("--expect-digest: must be 64 hex digits")
    return out
