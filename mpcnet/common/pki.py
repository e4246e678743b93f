"""Development PKI for mutual TLS between nodes, the coordinator and clients.

One CA signs every certificate. A certificate carries the holder's name in the subject CN
and its role (one of :data:`ROLES`) in the subject OU, so an authorization layer can read both
from an authenticated gRPC peer with :func:`peer_identity`. Keys are ECDSA P-256 and are
written atomically with mode 0600; nothing here ever logs or formats key material.

This is a *dev* PKI (unencrypted key files, no revocation); production deployments plug in
their own CA but keep the same CN/OU convention.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from governance.text import NAME_RE, NAME_RULE, quote
from mpcnet.common.fsutil import read_small_file, write_atomic

ROLES = ("node", "coordinator", "admin", "requester", "approver", "auditor", "client", "officer")

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CERT_VALIDITY = dt.timedelta(days=365)
CA_VALIDITY = dt.timedelta(days=10 * 365)
CLOCK_SKEW = dt.timedelta(minutes=5)  # not_valid_before is backdated by this much

_NAME_RE = NAME_RE  # certificate names are the audit's actors and the policies' names: one alphabet
_DNS_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class PkiError(Exception):
    """A certificate, key or PKI input is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class CertPaths:
    """Where a certificate (PEM) and its private key (PEM, PKCS#8) live."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class CertIdentity:
    """Who a certificate names: CN (``name``) and OU (``role``)."""

    name: str
    role: str


# --- validation ------------------------------------------------------------------------------


def _check_name(name: object, field: str = "name") -> str:
    """A name is also a file name, so only a conservative character set is allowed."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise PkiError(f"{field}: {NAME_RULE}, got {quote(name)}")
    return name


def _check_role(role: object, field: str = "role") -> str:
    if not isinstance(role, str) or role not in ROLES:
        raise PkiError(f"{field}: must be one of {', '.join(ROLES)}")
    return role


def _san_entries(hosts: Sequence[str]) -> list[x509.GeneralName]:
    if isinstance(hosts, (str, bytes)) or not hosts:
        raise PkiError("hosts: a server certificate needs a non-empty sequence of host names or IPs")
    out: list[x509.GeneralName] = []
    for i, host in enumerate(hosts):
        if not isinstance(host, str) or not host:
            raise PkiError(f"hosts[{i}]: must be a non-empty string")
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        labels = host.rstrip(".").split(".")
        if len(host) > 253 or not all(_DNS_LABEL_RE.fullmatch(label) for label in labels):
            raise PkiError(f"hosts[{i}]: {quote(host)} is neither an IP address nor a DNS name")
        out.append(x509.DNSName(host))
    return out


# --- files -----------------------------------------------------------------------------------




def _read(path: Path, what: str) -> bytes:
    try:
        return read_small_file(Path(path))  # a FIFO, a device or a huge file: refused, never waited on
    except OSError as e:
        raise PkiError(f"{what}: cannot read {path} ({e.strerror or type(e).__name__})") from None


def _load_private_key(path: Path, what: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path, what), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # the last: a key type the library does not know
        # the parser's message could quote key material; say only what and where
        raise PkiError(f"{what}: {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{what}: {path} is not an EC private key")
    return key


def _load_cert_file(path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path, what))
    except ValueError:
        raise PkiError(f"{what}: {path} is not a PEM X.509 certificate") from None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _same_public_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


# --- CA and issuance -------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _self_signed_ca(key: ec.EllipticCurvePrivateKey, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )


def create_ca(directory: Path, name: str = "mpcnet dev CA") -> CertPaths:
    """Create ``ca.pem`` + ``ca.key`` (0600) in ``directory``, or reuse the CA already there.

    Reuse checks that the key matches the certificate. A key without a certificate (a crash
    between the two writes) is completed with a fresh certificate; a certificate without its key
    is an error, since nothing can be issued from it.
    """
    if not isinstance(name, str) or not name or len(name) > 64:
        raise PkiError("name: CA name must be a non-empty string of at most 64 characters")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(cert=directory / CA_CERT_FILE, key=directory / CA_KEY_FILE)
    have_cert, have_key = paths.cert.exists(), paths.key.exists()
    if have_cert and not have_key:
        raise PkiError(f"ca.key: {paths.cert} exists but its key {paths.key} is missing")
    if have_cert:
        cert = _load_cert_file(paths.cert, "ca.pem")
        key = _load_private_key(paths.key, "ca.key")
        if not _same_public_key(cert, key):
            raise PkiError(f"ca.key: {paths.key} does not match {paths.cert}")
        _check_is_ca(cert)
        return paths
    if have_key:
        key = _load_private_key(paths.key, "ca.key")
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        write_atomic(paths.key, _key_pem(key), 0o600)
    cert = _self_signed_ca(key, name)
    write_atomic(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths


def _check_is_ca(cert: x509.Certificate) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise PkiError("ca.pem: certificate has no BasicConstraints extension") from None
    if not bc.ca:
        raise PkiError("ca.pem: certificate is not a CA certificate")


def issue_cert(
    ca: CertPaths,
    out_dir: Path,
    name: str,
    *,
    role: str,
    server: bool = False,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
) -> CertPaths:
    """Issue a 1-year certificate for ``name`` with ``role``; write ``<name>.pem``/``<name>.key``.

    Every certificate allows TLS client auth; ``server=True`` adds serverAuth and the ``hosts``
    as subjectAltNames (IP or DNS). Files are replaced atomically (re-issuing rotates the key).
    """
    _check_name(name)
    _check_role(role)
    sans = _san_entries(hosts) if server else []
    ca_cert = _load_cert_file(ca.cert, "ca.cert")
    ca_key = _load_private_key(ca.key, "ca.key")
    if not _same_public_key(ca_cert, ca_key):
        raise PkiError("ca.key: does not match ca.cert")
    _check_is_ca(ca_cert)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(cert=out_dir / f"{name}.pem", key=out_dir / f"{name}.key")
    ca_files = {Path(ca.cert).resolve(), Path(ca.key).resolve()}
    if paths.cert.resolve() in ca_files or paths.key.resolve() in ca_files:
        raise PkiError(f"name: {quote(name)} would overwrite the CA's own files in {out_dir}")

    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    eku = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    # key first: a crash in between leaves an unused new key next to the old certificate
    write_atomic(paths.key, _key_pem(key), 0o600)
    write_atomic(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths


def sign_csr(ca: CertPaths, csr_pem: bytes, *, server: bool = True) -> bytes:
    """Issue a 1-year certificate (PEM) for a node's key rotation request: the CSR's key, subject
    (CN name, OU role; checked) and subjectAltNames, for TLS client and server use, signed by
    the CA (``server=False``: client use only, without subjectAltNames, for people).
    :class:`PkiError` naming ``csr`` if the request is malformed or its signature is bad."""
    try:
        csr = x509.load_pem_x509_csr(bytes(csr_pem))
    except (ValueError, TypeError):
        raise PkiError("csr: not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise PkiError("csr: its signature does not verify")
    _check_name(_single_csr_attribute(csr, NameOID.COMMON_NAME, "CN"), "csr.subject.CN")
    _check_role(_single_csr_attribute(csr, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU"), "csr.subject.OU (role)")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise PkiError("csr: the key is not an EC key")
    ca_cert = _load_cert_file(ca.cert, "ca.cert")
    ca_key = _load_private_key(ca.key, "ca.key")
    if not _same_public_key(ca_cert, ca_key):
        raise PkiError("ca.key: does not match ca.cert")
    _check_is_ca(ca_cert)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if server:
            builder = builder.add_extension(san, critical=False)
    except x509.ExtensionNotFound:
        pass
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _single_csr_attribute(csr: x509.CertificateSigningRequest, oid: x509.ObjectIdentifier, field: str) -> str:
    attrs = csr.subject.get_attributes_for_oid(oid)
    if len(attrs) != 1 or not isinstance(attrs[0].value, str):
        raise PkiError(f"csr.subject.{field}: must appear exactly once, as text")
    return attrs[0].value


def cert_hosts(cert_path: Path) -> frozenset[str]:
    """The DNS names and IP addresses (as text) in a certificate's subjectAltName (empty if none)."""
    cert = _load_cert_file(cert_path, "cert")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return frozenset(san.get_values_for_type(x509.DNSName)) | ips


# --- identities ------------------------------------------------------------------------------


def _single_attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier, field: str) -> str:
    attrs = cert.subject.get_attributes_for_oid(oid)
    if not attrs:
        raise PkiError(f"certificate.subject.{field}: missing")
    if len(attrs) > 1:
        raise PkiError(f"certificate.subject.{field}: appears {len(attrs)} times, expected once")
    value = attrs[0].value
    if not isinstance(value, str):
        raise PkiError(f"certificate.subject.{field}: not a text string")
    return value


def identity_from_cert(cert_pem_or_der: bytes) -> CertIdentity:
    """Read name (CN) and role (OU) from a PEM or DER certificate; :class:`PkiError` if absent.

    The certificate is *not* verified here: call this only on certificates that TLS already
    verified against the CA (as :func:`peer_identity` does).
    """
    if not isinstance(cert_pem_or_der, (bytes, bytearray, memoryview)):
        raise PkiError("certificate: must be bytes (PEM or DER)")
    data = bytes(cert_pem_or_der)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError:
        raise PkiError("certificate: not a valid PEM or DER X.509 certificate") from None
    name = _single_attribute(cert, NameOID.COMMON_NAME, "CN")
    role = _single_attribute(cert, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU")
    return CertIdentity(
        name=_check_name(name, "certificate.subject.CN"),
        role=_check_role(role, "certificate.subject.OU (role)"),
    )


# --- gRPC ------------------------------------------------------------------------------------


def _tls_files(cert: CertPaths, ca_cert: Path, *, ca_first: bool) -> tuple[bytes, bytes, bytes]:
    """``(key, cert, ca)`` PEM bytes, checked before grpc sees them: the CA file and the
    certificate file hold PEM certificates and the key is the certificate's own unencrypted
    private key. grpc itself only logs a C-core error for such files and fails every call later
    as ``UNAVAILABLE``, which reads like an unreachable server. :class:`PkiError` names the file
    (``cert``, ``key``, ``ca_cert``)."""
    ca = _read(ca_cert, "ca_cert") if ca_first else b""
    key_pem, cert_pem = _read(cert.key, "key"), _read(cert.cert, "cert")
    if not ca_first:
        ca = _read(ca_cert, "ca_cert")
    _load_certs(ca, ca_cert, "ca_cert")
    leaf = _load_certs(cert_pem, cert.cert, "cert")[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # the last: a key type the library does not know
        # the parser's message could quote key material; say only what and where
        raise PkiError(f"key: {_shown(cert.key)} is not an unencrypted PEM private key") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        leaf_key = leaf.public_key().public_bytes(*spki)
    except (ValueError, UnsupportedAlgorithm):
        raise PkiError(f"cert: {_shown(cert.cert)} holds a public key of a type that is not supported") from None
    if key.public_key().public_bytes(*spki) != leaf_key:
        raise PkiError(f"key: {_shown(cert.key)} is not the private key of the certificate {_shown(cert.cert)}")
    return key_pem, cert_pem, ca


def _shown(path: Path) -> str:
    """A file path in an error: escaped, long enough to tell files of one directory apart."""
    return quote(str(path), 256)


def _load_certs(data: bytes, path: Path, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise PkiError(f"{what}: {_shown(path)} is not a PEM certificate")
    return certs


def server_credentials(cert: CertPaths, ca_cert: Path) -> grpc.ServerCredentials:
    """TLS server credentials that *require* a client certificate issued by ``ca_cert``."""
    key_pem, cert_pem, ca = _tls_files(cert, ca_cert, ca_first=False)
    return grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca, require_client_auth=True)


def server_certificate_configuration(cert: CertPaths, ca_cert: Path) -> grpc.ServerCertificateConfiguration:
    """The certificate and key (checked as :func:`server_credentials` does) as a configuration
    for :func:`grpc.dynamic_ssl_server_credentials`: a server that serves a rotated certificate
    without a restart (its fetcher returns the next configuration)."""
    key_pem, cert_pem, ca = _tls_files(cert, ca_cert, ca_first=False)
    return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)], root_certificates=ca)


def load_certificate(pem: bytes, what: str = "certificate") -> x509.Certificate:
    """Exactly one PEM certificate from ``pem``; :class:`PkiError` naming ``what`` otherwise."""
    if not isinstance(pem, (bytes, bytearray)):
        raise PkiError(f"{what}: must be PEM bytes")
    try:
        certs = x509.load_pem_x509_certificates(bytes(pem))
    except ValueError:
        raise PkiError(f"{what}: not a PEM X.509 certificate") from None
    if len(certs) != 1:
        raise PkiError(f"{what}: must hold exactly one certificate, got {len(certs)}")
    return certs[0]


def certificate_fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER encoding (what a roster entry names), 32 bytes."""
    return cert.fingerprint(hashes.SHA256())


def channel_credentials(cert: CertPaths, ca_cert: Path) -> grpc.ChannelCredentials:
    """TLS channel credentials: trust only ``ca_cert`` and present ``cert`` as client certificate."""
    key_pem, cert_pem, ca = _tls_files(cert, ca_cert, ca_first=True)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key_pem, certificate_chain=cert_pem)


def peer_identity(context: grpc.ServicerContext) -> CertIdentity | None:
    """The authenticated peer's identity, or ``None`` if it presented no verified certificate.

    Raises :class:`PkiError` when a verified certificate lacks a valid name or role.
    """
    if context.peer_identity_key() is None:  # not an authenticated (mTLS) connection
        return None
    # types-grpcio types the values as bytes; grpc maps each property to a list of values
    certs = cast("Sequence[bytes] | None", context.auth_context().get("x509_pem_cert"))
    if not certs:
        return None
    return identity_from_cert(certs[0])
