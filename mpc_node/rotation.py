"""Operational key rotation of a node (issue 11 item 4; design section 5).

A node's operational keys are its Ed25519 identity key and X25519 encryption key (the keystore,
:mod:`mpcnet.common.keystore`) and its TLS key and certificate. Rotating them never touches a
key share. Three steps:

1. :meth:`KeyRotation.prepare` (``PrepareKeyRotation``): make a new identity, encryption and TLS
   key and keep them **staged** in ``<store dir>/rotation/`` (the keystore sealed with the
   node's passphrase like the live one; the TLS key as PKCS#8 encrypted with the same
   passphrase; atomic writes, mode 0600). It answers with the public keys, a CSR for the TLS key
   carrying the current certificate's subject (CN = name, OU = role) and subjectAltNames, and a
   proof: the *current* identity key's signature over :func:`governance.roster.rotation_proof_message`. Calling it again
   replaces the staged set (and drops a staged certificate, which belongs to the old staged key).
2. :meth:`KeyRotation.install_certificate` (``InstallStagedCertificate``): the CA-signed
   certificate for the staged TLS key, checked by :func:`check_staged_certificate` (issued by the
   node's CA, currently valid, not a CA, the staged public key, the same subject and SANs, TLS
   client and server use); stored staged. Returns its SHA-256 fingerprint (DER).
Steps 1 and 2 are audited (``key-rotation-prepared`` / ``key-rotation-certificate``, outcome
``staged``) after their files are written, each with a once-only event token derived from what
was staged (:func:`staged_event`); a kill between the write and the append is caught up at the
next start (:meth:`KeyRotation.audit_staged`, outcome ``staged-at-start``), so every staged set
on disk is audited exactly once.

3. :meth:`KeyRotation.on_roster` (a listener on roster installs): when the roster's entry for this
   node names the staged identity key, encryption key and certificate fingerprint, the node
   switches (:meth:`KeyRotation.switch`). An entry naming keys the node holds neither live nor
   staged is installed anyway (it is admin-signed) but the node can no longer take part: it logs
   an error and reports NOT_SERVING with :data:`KEYS_NOT_HELD` (:attr:`KeyRotation.problem`).

**The switch is crash-safe.** Its steps, in this order (each file write is
:func:`mpcnet.common.fsutil.write_atomic`: temp file, fsync, rename, fsync of the directory):

    1. ``rotation/switching.json``: the staged identity, encryption key and fingerprint
       (the commit point: from here on the node only rolls forward);
    2. the audit log is handed over to the new identity key (an ``audit-key-rotated`` entry
       signed by the old key, :meth:`mpcnet.common.stores.audit.AuditLog.rotate_key`);
    3. the TLS key file, 4. the TLS certificate file, 5. the keystore file are replaced by the
       staged ones (the old private keys' files are gone: replaced, not edited);
    6. the in-memory keys are swapped (one reference, under the host's ``keys_lock``) and the
       server serves the new certificate to new connections (:class:`mpc_node.tls.ServingCertificate`);
    7. audit ``key-rotation`` (signed by the new key), appended once: its ``event`` token is
       written in the marker at step 1, and :func:`recover_switch` appends the entry
       (``switched-at-start``) with the same token, which the log skips if step 7 had run;
    8. the staged TLS key, certificate and keystore are deleted, then ``switching.json``.

A node killed before step 1 starts with its old, complete set; :func:`recover_switch` (run at
start, before the keystore is loaded) finishes steps 2-8 when ``switching.json`` exists, so a
node killed after step 1 starts with the new complete set, and its log holds exactly one
``key-rotation`` entry for the switch (the marker is the switch's commit point; its entry is
bound to it by the event token, :meth:`mpcnet.common.stores.audit.AuditLog.append_once`). A kill between the roster's install
and step 1 leaves the old set and a roster naming the staged one: the start-up call of
:meth:`KeyRotation.on_roster` with the roster in force switches then.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from governance.audit import detail_text
from governance.errors import GovernanceError
from governance.roster import RosterEntry, rotation_proof_message as proof_message
from mpc_node.audit_outbox import new_event
from mpc_node.config import NodeConfig
from mpc_node.tls import ServingCertificate
from mpcnet.common.fsutil import fsync_dir, write_atomic
from mpcnet.common.keystore import (
    KeystoreError,
    OperationalKeys,
    generate_keys,
    load_keystore,
    read_passphrase,
    seal_keystore,
)
from mpcnet.common.keystore_lock import replace_keystore
from mpcnet.common.pki import PkiError, certificate_fingerprint, load_certificate
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog

log = logging.getLogger("mpc_node.rotation")
Code = grpc.StatusCode

STAGING_DIR = "rotation"
KEYS_NOT_HELD = "roster names operational keys this node does not hold"
MAX_CERT_PEM = 16 * 1024
_PUB = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

_EVENT_RE = re.compile(r"n[0-9a-f]{24}")  # an event token of mpc_node.audit_outbox.new_event
# steps of the switch, in order (tests fail after each to check recovery)
SWITCH_STEPS = ("marker", "audit", "tls-key", "tls-cert", "keystore", "memory", "audited", "cleanup")


class RotationHost(Protocol):
    """What :class:`KeyRotation` needs of the node service."""

    cfg: NodeConfig
    audit: AuditLog
    keys: OperationalKeys
    keys_lock: threading.Lock
    health: Any


@dataclass(frozen=True)
class StagingPaths:
    """The staged files, in ``directory`` (``<store dir>/rotation``)."""

    directory: Path

    @classmethod
    def for_config(cls, cfg: NodeConfig) -> StagingPaths:
        return cls(Path(cfg.store).parent / STAGING_DIR)

    @property
    def keystore(self) -> Path:
        return self.directory / "staged-keystore.json"

    @property
    def tls_key(self) -> Path:
        return self.directory / "staged-tls-key.pem"  # PKCS#8, encrypted with the node's passphrase

    @property
    def tls_cert(self) -> Path:
        return self.directory / "staged-tls-cert.pem"

    @property
    def marker(self) -> Path:
        return self.directory / "switching.json"


@dataclass(frozen=True)
class PreparedRotation:
    """What ``PrepareKeyRotation`` answers: raw public keys (32 bytes each), the CSR (PEM) and the
    current identity key's Ed25519 signature over :func:`governance.roster.rotation_proof_message` of the three."""

    identity_public: bytes
    encryption_public: bytes
    tls_csr_pem: bytes
    proof: bytes


@dataclass(frozen=True, repr=False)
class _Staged:
    keys: OperationalKeys
    keystore_bytes: bytes
    tls_key: ec.EllipticCurvePrivateKey
    cert_pem: bytes | None

    @property
    def fingerprint(self) -> bytes | None:
        return None if self.cert_pem is None else certificate_fingerprint(load_certificate(self.cert_pem))

    def matches(self, entry: RosterEntry) -> bool:
        fp = self.fingerprint
        return (
            fp is not None
            and hmac.compare_digest(entry.identity_key, self.keys.identity_public)
            and hmac.compare_digest(entry.encryption_key, self.keys.encryption_public)
            and hmac.compare_digest(entry.tls_fingerprint, fp)
        )


# --- certificates ----------------------------------------------------------------------------


def _sans(cert: x509.Certificate | x509.CertificateSigningRequest) -> frozenset[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(san.get_values_for_type(x509.DNSName)) | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def make_csr(tls_key: ec.EllipticCurvePrivateKey, current: x509.Certificate) -> bytes:
    """A PKCS#10 request (PEM) for ``tls_key`` with ``current``'s subject and subjectAltNames."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(current.subject)
    with contextlib.suppress(x509.ExtensionNotFound):
        san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=san.critical)
    return builder.sign(tls_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _subject_part(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def check_staged_certificate(
    pem: bytes, *, ca: x509.Certificate, staged_key: ec.EllipticCurvePublicKey, current: x509.Certificate, now: dt.datetime
) -> x509.Certificate:
    """``pem`` as a certificate the node may switch to, else :class:`RpcError` INVALID_ARGUMENT
    naming the field (``certificate_pem``, ``certificate_pem.issuer``, ``.validity``,
    ``.basic_constraints``, ``.public_key``, ``.subject``, ``.subject_alt_name``,
    ``.extended_key_usage``). ``now`` is timezone-aware UTC."""
    field = "certificate_pem"
    if not pem or len(pem) > MAX_CERT_PEM:
        raise _invalid(field, f"must be 1..{MAX_CERT_PEM} bytes of PEM")
    try:
        cert = load_certificate(pem, field)
    except PkiError as e:
        raise RpcError(Code.INVALID_ARGUMENT, str(e)) from None
    try:
        if cert.issuer != ca.subject:
            raise ValueError("issuer name")
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        raise _invalid(f"{field}.issuer", "is not signed by this node's CA") from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise _invalid(f"{field}.validity", "is not valid now")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise _invalid(f"{field}.basic_constraints", "is a CA certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        same_key = cert.public_key().public_bytes(*_PUB) == staged_key.public_bytes(*_PUB)
    except (ValueError, UnsupportedAlgorithm):
        same_key = False
    if not same_key:
        raise _invalid(f"{field}.public_key", "is not the staged TLS key (call PrepareKeyRotation, then sign its CSR)")
    for oid, what in ((NameOID.COMMON_NAME, "CN (name)"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)")):
        if _subject_part(cert, oid) != _subject_part(current, oid):
            raise _invalid(f"{field}.subject", f"{what} differs from the node's current certificate")
    if _sans(cert) != _sans(current):
        raise _invalid(f"{field}.subject_alt_name", "differs from the node's current certificate")
    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = set()
    if not {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= usages:
        raise _invalid(f"{field}.extended_key_usage", "must allow TLS server and client authentication")
    return cert


def _invalid(field: str, reason: str) -> RpcError:
    return RpcError(Code.INVALID_ARGUMENT, f"{field}: {reason}")


# --- staged files ----------------------------------------------------------------------------


def _load_staged(paths: StagingPaths, passphrase: bytes) -> _Staged | None:
    """The staged set, or None when no complete set (keystore and TLS key) is staged."""
    if not paths.keystore.exists() or not paths.tls_key.exists():
        return None
    keys = load_keystore(paths.keystore, passphrase)
    try:
        tls_key = serialization.load_pem_private_key(paths.tls_key.read_bytes(), password=passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeystoreError(f"staged TLS key: {paths.tls_key} cannot be unlocked") from None
    if not isinstance(tls_key, ec.EllipticCurvePrivateKey):
        raise KeystoreError(f"staged TLS key: {paths.tls_key} is not an EC key")
    cert_pem = paths.tls_cert.read_bytes() if paths.tls_cert.exists() else None
    return _Staged(keys, paths.keystore.read_bytes(), tls_key, cert_pem)


def _plain_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _marker_bytes(staged: _Staged, event: str) -> bytes:
    """``switching.json``: the staged keys and ``event``, the once-only key of the switch's
    ``key-rotation`` audit entry (appended at step 7, or by :func:`recover_switch`: once)."""
    doc = {
        "identity_public": staged.keys.identity_public.hex(),
        "encryption_public": staged.keys.encryption_public.hex(),
        "tls_fingerprint": (staged.fingerprint or b"").hex(),
        "event": event,
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def _install_files(cfg: NodeConfig, staged: _Staged, after: Callable[[str], None]) -> None:
    """Steps 3-5: the live TLS key, certificate and keystore files replaced by the staged ones."""
    assert staged.cert_pem is not None
    write_atomic(cfg.cert.key, _plain_key_pem(staged.tls_key), 0o600)
    after("tls-key")
    write_atomic(cfg.cert.cert, staged.cert_pem, 0o644)
    after("tls-cert")
    replace_keystore(cfg.keystore, staged.keystore_bytes, 0o600)  # locked before the rename (mpcnet/common/keystore_lock.py)
    after("keystore")


def _cleanup(paths: StagingPaths) -> None:
    """Step 8: staged files first, the marker last."""
    for p in (paths.tls_key, paths.tls_cert, paths.keystore, paths.marker):
        _unlink(p)
    if paths.directory.exists():
        fsync_dir(paths.directory)


def _no_fault(step: str) -> None:
    return None


def recover_switch(cfg: NodeConfig, passphrase: bytes, *, clock: Callable[[], int] | None = None) -> bool:
    """Finish a switch a kill interrupted (``switching.json`` exists): steps 2-8. Run at start,
    before the keystore and the audit log are opened. Returns whether there was one.
    Raises :class:`KeystoreError` / :class:`GovernanceError` when the files cannot be used."""
    paths = StagingPaths.for_config(cfg)
    if not paths.marker.exists():
        return False
    staged = _load_staged(paths, passphrase)
    if staged is None or staged.cert_pem is None:  # step 8 had begun: 3-7 are done
        _cleanup(paths)
        log.warning("key rotation: finished cleaning up a switch interrupted after it completed")
        return True
    try:
        marker = json.loads(paths.marker.read_bytes())
        named = bytes.fromhex(marker["identity_public"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        marker, named = {}, b""
    if not hmac.compare_digest(named, staged.keys.identity_public):
        raise KeystoreError(f"key rotation: {paths.marker} does not name the staged keys; restore the staged files or the marker")
    current = load_keystore(cfg.keystore, passphrase)
    new_public = staged.keys.identity_public
    if current.identity_public != new_public:  # the keystore was not replaced yet: step 2 may be missing
        try:
            audit = AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=current.identity, clock=clock)
        except GovernanceError as e:
            if e.field != "signing_key":
                raise
        else:  # the log still wants the old key: hand it over now
            with audit:
                audit.rotate_key(cfg.name, staged.keys.identity)
    _install_files(cfg, staged, _no_fault)
    event = marker.get("event")
    if not isinstance(event, str) or not _EVENT_RE.fullmatch(event):
        event = new_event()  # a marker written before the switch carried its event: appended once now
    with AuditLog.open(cfg.audit_db, component=cfg.name, signing_key=staged.keys.identity, clock=clock) as audit:
        # once: the switch's entry may be in the log already (step 7 ran before the kill)
        audit.append_once(cfg.name, "key-rotation", event=event, outcome="switched-at-start", details=_key_details(staged))
    _cleanup(paths)
    log.warning("key rotation: finished a switch interrupted by a restart")
    return True


def staged_event(kind: str, public: bytes) -> str:
    """The once-only event token of the ``key-rotation-prepared`` (``kind`` ``prepared``, the
    staged identity key) or ``key-rotation-certificate`` (``certificate``, the staged
    certificate's fingerprint) entry: derived from what was staged, so the entry appended after
    the staged file was written and the one :meth:`KeyRotation.audit_staged` appends at start
    (a kill between the write and the append) are the same entry, logged once."""
    return "n" + hashlib.sha256(b"mpc-node/key-rotation/" + kind.encode() + b"/" + public).hexdigest()[:24]


def _key_details(staged: _Staged) -> dict[str, str | int | bool]:
    return {
        "identity_public": staged.keys.identity_public.hex(),
        "encryption_public": staged.keys.encryption_public.hex(),
        "tls_fingerprint": (staged.fingerprint or b"").hex(),
    }


# --- the rotation ----------------------------------------------------------------------------


class KeyRotation:
    """A node's key rotation (see the module docstring). ``host`` is the node service;
    ``serving`` (set by the server setup) is the certificate the gRPC server serves."""

    def __init__(self, host: RotationHost, *, now: Callable[[], dt.datetime] | None = None) -> None:
        self._host = host
        self._cfg = host.cfg
        self.paths = StagingPaths.for_config(host.cfg)
        self.serving: ServingCertificate | None = None
        self._lock = threading.Lock()  # one prepare / install / switch at a time
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._problem = ""
        self.switched_versions: set[int] = set()  # roster versions whose install switched the keys
        # tests: raise after a step of the switch (SWITCH_STEPS), or after prepare's / install_certificate's
        # file writes ("prepared", "certificate"); the node wires it to mpc_node/faults.py key-switch-<step>
        self.fault: Callable[[str], None] = _no_fault

    def attach(self, roster_state: Any) -> None:
        """Switch with the roster: listen to ``roster_state``'s installs
        (:class:`mpc_node.roster_state.NodeRoster`) and check the roster in force now (a kill
        between a roster's install and step 1 of the switch is finished here, at start)."""

        def listener(old: Any, new: Any) -> None:
            self.check_roster(new, "roster", version=int(new.version))

        roster_state.add_listener(listener)
        self.audit_staged()
        current = roster_state.current()
        if current is not None:
            self.check_roster(current, self._cfg.name, version=int(current.version))

    def check_roster(self, roster: Any, actor: str, *, version: int) -> bool:
        """:meth:`on_roster` with ``roster``'s entry for this node; a switch that fails half-way
        (a full disk) leaves the node NOT_SERVING until a restart finishes it (:func:`recover_switch`)."""
        try:
            switched = self.on_roster(roster.entry(self._cfg.index), actor)
        except Exception as e:
            log.error("key rotation: the switch failed (%s); restart the node to finish it", type(e).__name__)
            self._set_problem(f"the switch to the staged keys failed ({type(e).__name__}); restart the node to finish it")
            return False
        if switched:
            self.switched_versions.add(version)
        return switched

    @property
    def problem(self) -> str:
        """Why the node cannot take part any more ("" when it can): :data:`KEYS_NOT_HELD`."""
        return self._problem

    def _passphrase(self) -> bytes:
        if getattr(self._cfg, "pkcs11", None) is not None:  # prepare refuses such a node first
            raise RpcError(Code.FAILED_PRECONDITION, "pkcs11: key rotation is not supported for keys in a PKCS#11 token")
        try:
            return read_passphrase(file=self._cfg.passphrase_file, env=self._cfg.passphrase_env)
        except KeystoreError as e:
            raise RpcError(Code.UNAVAILABLE, f"{e} (the node needs its passphrase to seal staged keys)") from None

    def _current_cert(self) -> x509.Certificate:
        try:
            return load_certificate(Path(self._cfg.cert.cert).read_bytes(), "cert")
        except (OSError, PkiError) as e:
            raise RpcError(Code.UNAVAILABLE, f"cert: cannot read the node's certificate ({type(e).__name__})") from None

    def audit_staged(self) -> int:
        """At start: the staged keys and certificate on disk whose ``staged`` entry a kill cut
        off (after the file was written, before the append) are audited now, outcome
        ``staged-at-start`` (once: :func:`staged_event`; an entry already appended is skipped).
        Returns how many entries were appended; a staged set that cannot be read is logged
        (the next :meth:`prepare` replaces it)."""
        with self._lock:
            if not self.paths.keystore.exists():
                return 0
            try:
                staged = _load_staged(self.paths, self._passphrase())
            except (KeystoreError, OSError, RpcError) as e:
                log.error("key rotation: cannot read the staged keys to audit them: %s", e)
                return 0
            if staged is None:
                return 0
            audit, name, n = self._host.audit, self._cfg.name, 0
            ids = {"identity_public": staged.keys.identity_public.hex(), "encryption_public": staged.keys.encryption_public.hex()}
            if audit.append_once(name, "key-rotation-prepared", event=staged_event("prepared", staged.keys.identity_public),
                                 outcome="staged-at-start", details=ids) is not None:
                n += 1
            fp = staged.fingerprint
            if fp is not None and audit.append_once(
                name, "key-rotation-certificate", event=staged_event("certificate", fp), outcome="staged-at-start",
                details={"tls_fingerprint": fp.hex()},
            ) is not None:
                n += 1
            if n:
                log.warning("key rotation: audited %d staged item(s) whose entry a restart had cut off", n)
            return n

    def _audit(self, actor: str, action: str, outcome: str, details: dict[str, str | int | bool]) -> None:
        self._host.audit.append(actor, action, outcome=outcome, details=details)

    # --- PrepareKeyRotation ------------------------------------------------------------------
    def prepare(self, actor: str, *, admin: bool = True) -> PreparedRotation:
        """Make and stage a new identity, encryption and TLS key (replacing any staged set);
        audited ``key-rotation-prepared``.

        ``admin``: the caller is an admin (the service passes the caller certificate's role).
        A staged set whose certificate is installed (the admin's step 2: the admins are about
        to sign the roster change naming it) is replaced only by an admin: a coordinator
        replacing it would leave the node holding none of the keys that change names (NOT_SERVING
        for good); refused FAILED_PRECONDITION naming ``staged``, audited."""
        with self._lock:
            if getattr(self._cfg, "pkcs11", None) is not None:  # staged keys would live outside the token
                reason = "the node's keys are protected by a PKCS#11 token (config pkcs11); replace the node instead (mpc node replace)"
                self._audit(actor, "key-rotation-prepared", "refused", detail_text("reason", reason))
                raise RpcError(Code.FAILED_PRECONDITION, f"pkcs11: key rotation is not supported: {reason}")
            if not admin and self.paths.tls_cert.exists():
                reason = "a certificate is installed for the staged keys; only an admin may replace them"
                self._audit(actor, "key-rotation-prepared", "refused", detail_text("reason", reason))
                raise RpcError(Code.FAILED_PRECONDITION, f"staged: {reason} (the roster change naming them switches this node)")
            passphrase = self._passphrase()
            current = self._current_cert()
            live_key = current.public_key()  # the same algorithm as the live TLS key
            curve = live_key.curve if isinstance(live_key, ec.EllipticCurvePublicKey) else ec.SECP256R1()
            keys = generate_keys()
            tls_key = ec.generate_private_key(curve)
            csr = make_csr(tls_key, current)
            self.paths.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _unlink(self.paths.tls_cert)  # a staged certificate belongs to the previous staged key
            write_atomic(
                self.paths.tls_key,
                tls_key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(passphrase),
                ),
                0o600,
            )
            write_atomic(self.paths.keystore, seal_keystore(keys, passphrase, scrypt_n=self._cfg.scrypt_n), 0o600)
            del passphrase
            self.fault("prepared")  # test mode: the staged set written, its entry not appended
            proof = self._host.keys.identity.sign(proof_message(keys.identity_public, keys.encryption_public, csr))
            self._host.audit.append_once(actor, "key-rotation-prepared", event=staged_event("prepared", keys.identity_public),
                                         outcome="staged", details={
                "identity_public": keys.identity_public.hex(), "encryption_public": keys.encryption_public.hex(),
            })
            log.info("key rotation: new operational keys staged (identity %s)", keys.identity_public.hex()[:16])
            return PreparedRotation(keys.identity_public, keys.encryption_public, csr, proof)

    # --- InstallStagedCertificate ------------------------------------------------------------
    def install_certificate(self, pem: bytes, actor: str) -> bytes:
        """Check ``pem`` (:func:`check_staged_certificate`) and stage it; returns its SHA-256
        fingerprint. Refusals are audited (``key-rotation-certificate`` refused) and raise
        :class:`RpcError` (INVALID_ARGUMENT naming the field; FAILED_PRECONDITION with no
        staged keys)."""
        with self._lock:
            try:
                staged = _load_staged(self.paths, self._passphrase())
            except KeystoreError as e:
                raise RpcError(Code.FAILED_PRECONDITION, f"staged: {e} (call PrepareKeyRotation again)") from None
            if staged is None:
                self._audit(actor, "key-rotation-certificate", "refused", detail_text("reason", "no staged keys"))
                raise RpcError(Code.FAILED_PRECONDITION, "staged: this node has no staged keys (call PrepareKeyRotation first)")
            ca = load_certificate(Path(self._cfg.ca_cert).read_bytes(), "ca_cert")
            try:
                cert = check_staged_certificate(
                    pem, ca=ca, staged_key=staged.tls_key.public_key(), current=self._current_cert(), now=self._now()
                )
            except RpcError as e:
                self._audit(actor, "key-rotation-certificate", "refused", detail_text("reason", e.message))
                raise
            fingerprint = certificate_fingerprint(cert)
            write_atomic(self.paths.tls_cert, cert.public_bytes(serialization.Encoding.PEM), 0o600)
            self.fault("certificate")  # test mode: the certificate staged, its entry not appended
            self._host.audit.append_once(actor, "key-rotation-certificate", event=staged_event("certificate", fingerprint),
                                         outcome="staged", details={"tls_fingerprint": fingerprint.hex()})
            return fingerprint

    # --- roster listener ---------------------------------------------------------------------
    def on_roster(self, entry: RosterEntry | None, actor: str) -> bool:
        """The roster in force names ``entry`` for this node: switch to the staged set if it
        names it (returns True), do nothing if it names the live set, else report
        :data:`KEYS_NOT_HELD` (NOT_SERVING). ``None`` (no entry, a legacy roster): nothing."""
        if entry is None or not entry.active:
            return False
        with self._lock:
            keys = self._host.keys
            live_fp = self.serving.fingerprint if self.serving is not None else certificate_fingerprint(self._current_cert())
            if (
                hmac.compare_digest(entry.identity_key, keys.identity_public)
                and hmac.compare_digest(entry.encryption_key, keys.encryption_public)
                and hmac.compare_digest(entry.tls_fingerprint, live_fp)
            ):
                self._set_problem("")
                return False
            try:
                staged = _load_staged(self.paths, self._passphrase())
            except (KeystoreError, OSError, RpcError) as e:
                log.error("key rotation: cannot read the staged keys: %s", e)
                staged = None
            if staged is None or not staged.matches(entry):
                self._set_problem(KEYS_NOT_HELD)
                return False
            self._switch(staged, actor)
            self._set_problem("")
            return True

    def _switch(self, staged: _Staged, actor: str) -> None:
        """Steps 1-8 of the module docstring (held: ``self._lock``)."""
        cfg, host, fault = self._cfg, self._host, self.fault
        event = new_event()  # the once-only key of the switch's entry (step 7 or recover_switch)
        write_atomic(self.paths.marker, _marker_bytes(staged, event), 0o600)
        fault("marker")
        if host.audit.signing_public_key != staged.keys.identity_public:
            host.audit.rotate_key(cfg.name, staged.keys.identity)
        fault("audit")
        _install_files(cfg, staged, fault)
        with host.keys_lock:  # the old keys: no reference left here once this returns
            host.keys = staged.keys
        if self.serving is not None:
            self.serving.reload()
        fault("memory")
        host.audit.append_once(actor, "key-rotation", event=event, outcome="switched", details=_key_details(staged))
        fault("audited")
        _cleanup(self.paths)
        fault("cleanup")
        log.warning("key rotation: switched to identity %s", staged.keys.identity_public.hex()[:16])

    def _set_problem(self, problem: str) -> None:
        before, self._problem = self._problem, problem
        if before == problem:
            return
        if problem:
            log.error("key rotation: %s: NOT_SERVING (this node takes no sessions)", problem)
            with contextlib.suppress(Exception):
                self._audit(self._cfg.name, "key-rotation", "keys-not-held", detail_text("reason", problem))
        self.publish_health()

    def publish_health(self) -> None:
        """Tell the standard health service (once the server has set it) whether the node serves."""
        health = self._host.health
        if health is not None:
            from grpc_health.v1 import health_pb2

            from mpc_node.service import HEALTH_SERVICES

            serving = not self._problem and not getattr(self._host, "store_problem", "")
            status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in HEALTH_SERVICES:
                health.set(name, status)
