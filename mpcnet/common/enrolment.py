"""Enrolment requests (public JSON files), their CSRs, CA issuance from a request, and the checks
of a certificate against a request or roster entry and the CA (issue 13, README "Deploying").

Two request files, both public (they travel through any channel; the signature inside binds
them to the key they enrol, :mod:`governance.enrolment`)::

    enrolment-request.json  {"format": "mpcnet-enrolment-request", "version": 1,
                             "role": "node"|"coordinator", "name", "endpoint" (host:port),
                             "identity_key" (hex 32, Ed25519), "encryption_key" (hex 32, X25519),
                             "csr" (PEM PKCS#10: subject exactly OU=role, CN=name, EC P-256,
                                    subjectAltName covering the endpoint host),
                             "identity_in_token": bool, "signature" (hex 64, by identity_key)}
    identity-request.json   {"format": "mpcnet-identity-request", "version": 1, "role" (a people
                             role), "name", "signing_key" (hex 32), "csr" (OU=role, CN=name, no
                             SAN), "signature" (hex 64, by signing_key)}

A request's *fingerprint* is the SHA-256 of its canonical JSON (sorted keys, no spaces, ASCII):
what the CA operator and the admins compare with the requester over another channel.

Every refusal is an :class:`EnrolmentError` naming the field; caller text in messages is quoted
(escaped). Nothing here reads or prints a private key's bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from governance._checks import from_hex
from governance.enrolment import (
    PEOPLE_ROLES,
    REQUEST_VERSION,
    SERVICE_ROLES,
    enrolment_request_message,
    identity_request_message,
    verify_request_signature,
)
from governance.errors import GovernanceError
from governance.text import quote
from mpcnet.common.fsutil import write_atomic
from mpcnet.common.pki import CertPaths, PkiError, sign_csr

ENROLMENT_FORMAT = "mpcnet-enrolment-request"
IDENTITY_FORMAT = "mpcnet-identity-request"
ENROLMENT_REQUEST_FILE = "enrolment-request.json"
IDENTITY_REQUEST_FILE = "identity-request.json"
MAX_REQUEST_BYTES = 64 * 1024
_ENROLMENT_KEYS = frozenset({
    "format", "version", "role", "name", "endpoint", "identity_key", "encryption_key", "csr", "identity_in_token", "signature",
})
_IDENTITY_KEYS = frozenset({"format", "version", "role", "name", "signing_key", "csr", "signature"})


class EnrolmentError(Exception):
    """A request, certificate or genesis is refused; ``field`` says where, ``reason`` why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class Signer(Protocol):
    """An Ed25519 private key, in memory or in a token: ``sign(bytes) -> 64 bytes``."""

    def sign(self, data: bytes) -> bytes: ...


def canonical_json(doc: Any) -> bytes:
    """The canonical JSON encoding: sorted keys, no whitespace, ASCII only."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def fingerprint(doc: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of ``doc``."""
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def endpoint_host(endpoint: str) -> str:
    """The host of ``host:port`` (an IPv6 literal without its brackets)."""
    host = endpoint.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


# --- keys and CSRs -------------------------------------------------------------------------------


def make_tls_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The TLS private key (EC P-256, PKCS#8 PEM, mode 0600) at ``path``: created if missing,
    never overwritten. EnrolmentError naming ``tls.key`` if an existing file is not such a key."""
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        write_atomic(path, pem, 0o600, overwrite=False)
    return load_tls_key(path)


def load_tls_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The EC P-256 private key at ``path``; EnrolmentError naming ``tls.key`` otherwise."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise EnrolmentError("tls.key", f"cannot read {quote(str(path), 200)} ({e.strerror or type(e).__name__})") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise EnrolmentError("tls.key", f"{quote(str(path), 200)} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise EnrolmentError("tls.key", f"{quote(str(path), 200)} is not an EC P-256 key")
    return key


def _san_for(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_csr(key: ec.EllipticCurvePrivateKey, role: str, name: str, hosts: tuple[str, ...] = ()) -> bytes:
    """A PEM CSR: subject exactly OU=``role``, CN=``name``; subjectAltName ``hosts`` (DNS names or
    IP addresses) when given; signed by ``key`` (SHA-256)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role), x509.NameAttribute(NameOID.COMMON_NAME, name),
    ]))
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san_for(h) for h in hosts]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _spki(key: ec.EllipticCurvePublicKey | Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def _subject(name: x509.Name, field: str) -> tuple[str, str]:
    """(OU, CN) of a subject that holds exactly those two attributes, once each, as text."""
    attrs = list(name)
    ous = name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 2 or len(ous) != 1 or len(cns) != 1 or not isinstance(ous[0].value, str) or not isinstance(cns[0].value, str):
        raise EnrolmentError(field, "must be exactly OU=role, CN=name")
    return ous[0].value, cns[0].value


def _san_hosts(ext: x509.Extensions) -> frozenset[str] | None:
    try:
        san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    return frozenset(san.get_values_for_type(x509.DNSName)) | {_IP_PREFIX + str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


_IP_PREFIX = "ip:"  # IP SANs apart from DNS SANs: a DNSName "10.0.0.1" does not cover an IP endpoint
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*", re.IGNORECASE | re.ASCII)
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE | re.ASCII)  # ASCII: [a-z] would match U+212A, U+017F


def _covers(hosts: frozenset[str] | None, host: str) -> bool:
    if not hosts:
        return False
    try:
        return _IP_PREFIX + str(ipaddress.ip_address(host)) in hosts
    except ValueError:
        return host.lower().rstrip(".") in {h.lower().rstrip(".") for h in hosts if not h.startswith(_IP_PREFIX)}


def san_list(ext: x509.Extensions) -> list[str]:
    """The subjectAltName entries as text (``DNS:name``, ``IP:addr``, other kinds by class name)."""
    try:
        san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = []
    for g in san:
        if isinstance(g, x509.DNSName):
            out.append(f"DNS:{quote(g.value)}")
        elif isinstance(g, x509.IPAddress):
            out.append(f"IP:{g.value}")
        else:
            out.append(type(g).__name__)
    return out


def _check_server_sans(csr: x509.CertificateSigningRequest) -> None:
    """A server CSR's subjectAltName holds only plain host names and IP addresses: no wildcard,
    no trailing dot, no IP address written as a DNS name, no URI/e-mail/directory name (the CA
    copies every entry into the certificate, and a client trusting the CA accepts any of them).
    EnrolmentError naming ``csr.san``."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    for g in san:
        if isinstance(g, x509.IPAddress):
            if not isinstance(g.value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                raise EnrolmentError("csr.san", f"{g.value} is a network, not an address")
            continue
        if not isinstance(g, x509.DNSName):
            raise EnrolmentError("csr.san", f"holds a {type(g).__name__}; only DNS host names and IP addresses are issued")
        name = g.value
        labels = name.split(".")
        if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
            raise EnrolmentError("csr.san", f"{quote(name)} is not a plain DNS host name (no wildcard, empty label or trailing dot)")
        if _NUMERIC_LABEL.fullmatch(labels[-1]):  # 10.0.0.1, 127.1, 0x7f.1, 010.1: resolvers read an IPv4 address
            raise EnrolmentError("csr.san", f"{quote(name)} is an IP address written as a DNS name")


def check_csr(csr_pem: object, role: str, name: str, host: str | None) -> x509.CertificateSigningRequest:
    """Parse and check a request's CSR: PEM, its self-signature, EC P-256, subject exactly
    OU=``role``/CN=``name``; a subjectAltName covering ``host`` (a server), or none (``host`` None).
    EnrolmentError naming ``csr``/``csr.subject``/``csr.san``."""
    if not isinstance(csr_pem, str) or not csr_pem.isascii():
        raise EnrolmentError("csr", "must be a PEM certificate signing request (ASCII text)")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
    except ValueError:
        raise EnrolmentError("csr", "not a PEM certificate signing request") from None
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise EnrolmentError("csr", "its self-signature does not verify")
    pub = csr.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or not isinstance(pub.curve, ec.SECP256R1):
        raise EnrolmentError("csr", "the key is not EC P-256")
    if _subject(csr.subject, "csr.subject") != (role, name):
        raise EnrolmentError("csr.subject", f"must be OU={role}, CN={quote(name)} (the request's role and name)")
    hosts = _san_hosts(csr.extensions)
    if host is not None:
        _check_server_sans(csr)
    if host is None:
        if hosts is not None:
            raise EnrolmentError("csr.san", "a person's CSR carries no subjectAltName")
    elif not _covers(hosts, host):
        raise EnrolmentError("csr.san", f"does not cover the endpoint host {quote(host)}")
    return csr


# --- requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrolmentRequest:
    """A node's or the coordinator's verified enrolment request (see the module docstring)."""

    role: str
    name: str
    endpoint: str
    identity_key: bytes
    encryption_key: bytes
    csr_pem: str
    identity_in_token: bool
    signature: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ENROLMENT_FORMAT, "version": REQUEST_VERSION, "role": self.role, "name": self.name,
            "endpoint": self.endpoint, "identity_key": self.identity_key.hex(), "encryption_key": self.encryption_key.hex(),
            "csr": self.csr_pem, "identity_in_token": self.identity_in_token, "signature": self.signature.hex(),
        }

    @property
    def host(self) -> str:
        return endpoint_host(self.endpoint)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.to_dict())

    def csr_public_key_der(self) -> bytes:
        return _spki(x509.load_pem_x509_csr(self.csr_pem.encode("ascii")).public_key())


@dataclass(frozen=True)
class IdentityRequest:
    """A person's verified identity request (see the module docstring)."""

    role: str
    name: str
    signing_key: bytes
    csr_pem: str
    signature: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": IDENTITY_FORMAT, "version": REQUEST_VERSION, "role": self.role, "name": self.name,
            "signing_key": self.signing_key.hex(), "csr": self.csr_pem, "signature": self.signature.hex(),
        }

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.to_dict())

    def csr_public_key_der(self) -> bytes:
        return _spki(x509.load_pem_x509_csr(self.csr_pem.encode("ascii")).public_key())


Request = EnrolmentRequest | IdentityRequest


def _der(csr_pem: str) -> bytes:
    return x509.load_pem_x509_csr(csr_pem.encode("ascii")).public_bytes(serialization.Encoding.DER)


def build_enrolment_request(
    role: str, name: str, endpoint: str, identity: Signer, identity_key: bytes, encryption_key: bytes,
    tls_key: ec.EllipticCurvePrivateKey, *, identity_in_token: bool = False, extra_hosts: tuple[str, ...] = (),
) -> EnrolmentRequest:
    """A signed enrolment request for this host's keys (``identity`` signs; it may be a token
    key). The CSR's subjectAltName is the endpoint host, then ``extra_hosts`` (DNS names or IP
    addresses; the dev cluster's). EnrolmentError naming a bad field."""
    try:
        from governance.roster import check_endpoint

        check_endpoint(endpoint)
        hosts = (endpoint_host(endpoint), *(h for h in extra_hosts if h != endpoint_host(endpoint)))
        csr_pem = make_csr(tls_key, role, name, hosts).decode("ascii")
        message = enrolment_request_message(REQUEST_VERSION, role, name, endpoint, identity_key, encryption_key, _der(csr_pem))
    except GovernanceError as e:
        raise EnrolmentError(e.field, e.reason) from None
    req = EnrolmentRequest(role, name, endpoint, identity_key, encryption_key, csr_pem, identity_in_token, identity.sign(message))
    return parse_request(req.to_dict())  # type: ignore[return-value]  # checks it as a receiver would


def build_identity_request(
    role: str, name: str, signing_key: Signer, signing_public: bytes, tls_key: ec.EllipticCurvePrivateKey,
) -> IdentityRequest:
    """A person's signed identity request (client certificate CSR without subjectAltName)."""
    try:
        csr_pem = make_csr(tls_key, role, name).decode("ascii")
        message = identity_request_message(REQUEST_VERSION, role, name, signing_public, _der(csr_pem))
    except GovernanceError as e:
        raise EnrolmentError(e.field, e.reason) from None
    req = IdentityRequest(role, name, signing_public, csr_pem, signing_key.sign(message))
    return parse_request(req.to_dict())  # type: ignore[return-value]


def _exact_keys(doc: dict[str, Any], keys: frozenset[str]) -> None:
    missing, extra = sorted(keys - doc.keys()), sorted(doc.keys() - keys)
    if missing:
        raise EnrolmentError(missing[0], "missing")
    if extra:
        raise EnrolmentError(quote(extra[0]), "unknown field")


def parse_request(doc: object) -> Request:
    """Verify a request document (either kind, by ``format``): exact keys, every field's rule,
    the CSR (self-signature, subject == role/name, SAN), and the signature by the request's own
    key. EnrolmentError naming the field."""
    if not isinstance(doc, dict):
        raise EnrolmentError("request", "must be a JSON object")
    fmt = doc.get("format")
    if fmt not in (ENROLMENT_FORMAT, IDENTITY_FORMAT):
        raise EnrolmentError("format", f"must be {ENROLMENT_FORMAT!r} or {IDENTITY_FORMAT!r}, got {quote(fmt)}")
    _exact_keys(doc, _ENROLMENT_KEYS if fmt == ENROLMENT_FORMAT else _IDENTITY_KEYS)
    if doc["version"] != REQUEST_VERSION or isinstance(doc["version"], bool):
        raise EnrolmentError("version", f"must be {REQUEST_VERSION}")
    try:
        if fmt == ENROLMENT_FORMAT:
            if not isinstance(doc["identity_in_token"], bool):
                raise EnrolmentError("identity_in_token", "must be true or false")
            identity_key = from_hex(doc["identity_key"], "identity_key", length=32)
            encryption_key = from_hex(doc["encryption_key"], "encryption_key", length=32)
            signature = from_hex(doc["signature"], "signature", length=64)
            # field rules first (role, name, endpoint, keys), then the CSR, then the signature
            enrolment_request_message(REQUEST_VERSION, doc["role"], doc["name"], doc["endpoint"], identity_key, encryption_key, b"-")
            csr = check_csr(doc["csr"], doc["role"], doc["name"], endpoint_host(doc["endpoint"]))
            message = enrolment_request_message(
                REQUEST_VERSION, doc["role"], doc["name"], doc["endpoint"], identity_key, encryption_key,
                csr.public_bytes(serialization.Encoding.DER),
            )
            verify_request_signature(identity_key, signature, message, "identity_key")
            return EnrolmentRequest(
                doc["role"], doc["name"], doc["endpoint"], identity_key, encryption_key, doc["csr"], doc["identity_in_token"], signature,
            )
        signing_key = from_hex(doc["signing_key"], "signing_key", length=32)
        signature = from_hex(doc["signature"], "signature", length=64)
        identity_request_message(REQUEST_VERSION, doc["role"], doc["name"], signing_key, b"-")
        csr = check_csr(doc["csr"], doc["role"], doc["name"], None)
        csr_der = csr.public_bytes(serialization.Encoding.DER)
        message = identity_request_message(REQUEST_VERSION, doc["role"], doc["name"], signing_key, csr_der)
        verify_request_signature(signing_key, signature, message, "signing_key")
        return IdentityRequest(doc["role"], doc["name"], signing_key, doc["csr"], signature)
    except GovernanceError as e:
        raise EnrolmentError(e.field, e.reason) from None


def read_json(path: Path, what: str, limit: int = MAX_REQUEST_BYTES) -> Any:
    """The JSON document in ``path`` (at most ``limit`` bytes); EnrolmentError naming ``what``."""
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise EnrolmentError(what, f"cannot read {quote(str(path), 200)} ({e.strerror or type(e).__name__})") from None
    if len(raw) > limit:
        raise EnrolmentError(what, f"{quote(str(path), 200)} is larger than {limit} bytes")
    try:
        return json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as e:
        raise EnrolmentError(what, f"{quote(str(path), 200)} has a duplicate key {quote(e.key)}") from None
    except RecursionError:
        raise EnrolmentError(what, f"{quote(str(path), 200)} is nested too deep") from None
    except ValueError:
        raise EnrolmentError(what, f"{quote(str(path), 200)} is not JSON") from None


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; _DuplicateKey if a key repeats (parsers disagree on
    which value wins, so two readers of one file could see two documents)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def load_request(path: Path) -> Request:
    """:func:`parse_request` of the file ``path``; errors are prefixed with the file name."""
    doc = read_json(path, "request")
    try:
        return parse_request(doc)
    except EnrolmentError as e:
        raise EnrolmentError(e.field, f"{e.reason} (in {quote(str(path), 200)})") from None


def write_request(path: Path, request: Request) -> None:
    """Write ``request`` as indented JSON (mode 0644, atomic)."""
    write_atomic(path, (json.dumps(request.to_dict(), indent=2, sort_keys=True) + "\n").encode("ascii"), 0o644)


def describe(request: Request) -> str:
    """One line for a terminal: kind, name, role, SANs/endpoint, fingerprint (escaped)."""
    if isinstance(request, EnrolmentRequest):
        return (f"enrolment request: name {quote(request.name)}, role {request.role}, endpoint {quote(request.endpoint)}, "
                f"SAN {', '.join(san_list(x509.load_pem_x509_csr(request.csr_pem.encode('ascii')).extensions))}, "
                f"fingerprint {request.fingerprint}")
    return f"identity request: name {quote(request.name)}, role {request.role}, fingerprint {request.fingerprint}"


# --- the CA ----------------------------------------------------------------------------------


def issue_for_request(ca: CertPaths, request: Request) -> bytes:
    """A 1-year certificate (PEM) for a verified request: node/coordinator server+client with the
    CSR's subjectAltNames, people client only. EnrolmentError naming ``ca`` for CA trouble."""
    return _issue(ca, request.csr_pem, server=isinstance(request, EnrolmentRequest))


def issue_for_csr(ca: CertPaths, csr_pem: str, name: str, role: str) -> bytes:
    """A 1-year certificate (PEM) for a bare CSR from external tooling: its self-signature valid,
    EC P-256, subject exactly OU=``role``/CN=``name`` (EnrolmentError naming ``csr.subject``
    otherwise); node/coordinator: server+client with the CSR's subjectAltNames (at least one,
    ``csr.san``), people: client only, without subjectAltName. Nothing binds a bare CSR to an
    identity key: the CA operator checks where it came from."""
    from governance.text import check_name

    try:
        check_name(name, "name")
    except GovernanceError as e:
        raise EnrolmentError("name", e.reason) from None
    if role not in SERVICE_ROLES + PEOPLE_ROLES:
        raise EnrolmentError("role", f"must be one of {', '.join(SERVICE_ROLES + PEOPLE_ROLES)}, got {quote(role)}")
    server = role in SERVICE_ROLES
    host = None
    if server:
        try:
            hosts = _san_hosts(x509.load_pem_x509_csr(csr_pem.encode("ascii")).extensions) if csr_pem.isascii() else None
        except ValueError:
            raise EnrolmentError("csr", "not a PEM certificate signing request") from None
        if not hosts:
            raise EnrolmentError("csr.san", "a server's CSR must name its host names (subjectAltName)")
        host = sorted(hosts)[0].removeprefix(_IP_PREFIX)
    check_csr(csr_pem, role, name, host)
    return _issue(ca, csr_pem, server=server)


def _issue(ca: CertPaths, csr_pem: str, *, server: bool) -> bytes:
    for path, field in ((ca.cert, "ca.cert"), (ca.key, "ca.key")):
        if not Path(path).is_file():
            raise EnrolmentError(field, f"{quote(str(path), 200)} is not a readable file")
    try:
        return sign_csr(ca, csr_pem.encode("ascii"), server=server)
    except PkiError as e:
        raise EnrolmentError("ca", str(e)) from None


def load_pem_certificate(pem: bytes, field: str) -> x509.Certificate:
    """Exactly one PEM certificate; EnrolmentError naming ``field`` otherwise."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        certs = []
    if len(certs) != 1:
        raise EnrolmentError(field, "must hold exactly one PEM X.509 certificate")
    return certs[0]


def check_certificate(
    cert: x509.Certificate, ca: x509.Certificate, *, role: str, name: str, public_key_der: bytes,
    host: str | None, now: dt.datetime | None = None,
) -> None:
    """Refuse (EnrolmentError naming ``cert``, ``cert.subject``, ``cert.san``, ``cert.key``) a
    certificate that is not issued by ``ca`` (signature, issuer name, CA's BasicConstraints), is
    outside its validity window, does not name exactly OU=``role``/CN=``name``, whose public key
    is not ``public_key_der`` (SubjectPublicKeyInfo DER), or, for a server (``host`` not None),
    whose subjectAltName does not cover ``host``."""
    try:
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise EnrolmentError("ca", "is not a CA certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        raise EnrolmentError("cert", "is not issued by the given CA (signature or issuer does not match)") from None
    try:
        leaf_bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        leaf_bc = None
    if leaf_bc is not None and leaf_bc.ca:
        raise EnrolmentError("cert", "is a CA certificate (BasicConstraints CA), not a host's or person's certificate")
    when = now or dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise EnrolmentError("cert", "is outside its validity period")
    ou, cn = _subject(cert.subject, "cert.subject")
    if cn != name:
        raise EnrolmentError("cert.subject", f"CN {quote(cn)} differs from the roster name {quote(name)}")
    if ou != role:
        raise EnrolmentError("cert.subject", f"OU {quote(ou)} is not {role}")
    if _spki(cert.public_key()) != public_key_der:
        raise EnrolmentError("cert.key", "the certificate's public key is not this host's TLS key")
    if host is not None:
        if not _covers(_san_hosts(cert.extensions), host):
            raise EnrolmentError("cert.san", f"does not cover the endpoint host {quote(host)}")
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = None
        if eku is not None and ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            raise EnrolmentError("cert", "does not allow TLS server use")


def check_people_role(role: str) -> str:
    """``role`` if it is a people role; EnrolmentError naming ``role``."""
    if role not in PEOPLE_ROLES:
        raise EnrolmentError("role", f"must be one of {', '.join(PEOPLE_ROLES)}, got {quote(role)}")
    return role


def check_service_role(role: str) -> str:
    """``role`` if it is node or coordinator; EnrolmentError naming ``role``."""
    if role not in SERVICE_ROLES:
        raise EnrolmentError("role", f"must be one of {', '.join(SERVICE_ROLES)}, got {quote(role)}")
    return role
