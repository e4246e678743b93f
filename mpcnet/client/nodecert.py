"""A node's operational key rotation, client side: the proof a node gives for its staged keys
and the CA signature over its new TLS key's certificate request (issue 11, design section 5).

:func:`rotation_proof_message` is what a node signs with its *current* Ed25519 identity key in
``PrepareKeyRotationResponse.proof`` (so that a coordinator relaying the answer cannot put its
own keys in the roster change the admins sign). :func:`sign_node_csr` issues the certificate
for the staged TLS key: only for a well-formed, self-signed PKCS#10 request whose subject is
exactly ``OU=node, CN=<the roster entry's name>``, with an EC P-256 key, copying its DNS/IP
subjectAltNames; the certificate is a server and client certificate like
:func:`mpcnet.common.pki.issue_cert` makes for nodes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from governance.text import quote
from mpcnet.common.pki import CERT_VALIDITY, CLOCK_SKEW, CertPaths, PkiError

NODE_ROLE = "node"
MAX_CSR_PEM = 16 * 1024
MAX_SANS = 16


class NodeCsrError(ValueError):
    """A certificate request (or CA file) the client refuses to sign; the message names the field."""


def pem_fingerprint(cert_pem: bytes) -> bytes:
    """SHA-256 of the certificate's DER encoding (what a roster entry names)."""
    return hashlib.sha256(x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)).digest()


def _one(name: x509.Name, oid: x509.ObjectIdentifier, field: str) -> str:
    attrs = name.get_attributes_for_oid(oid)
    if len(attrs) != 1 or not isinstance(attrs[0].value, str):
        raise NodeCsrError(f"{field}: must appear exactly once")
    return attrs[0].value


def sign_node_csr(ca: CertPaths, csr_pem: bytes, *, name: str, now: dt.datetime | None = None) -> bytes:
    """A PEM certificate for the key of ``csr_pem``, issued by ``ca``, for node ``name``.

    Refused (NodeCsrError naming the field): more than 16 KiB, not one PEM PKCS#10 request, a
    request signature that does not verify, a subject other than exactly ``OU=node, CN=name``,
    a key that is not EC P-256, more than 16 subjectAltNames or one that is not DNS/IP; a CA
    key that does not match its certificate."""
    if not isinstance(csr_pem, bytes) or len(csr_pem) > MAX_CSR_PEM:
        raise NodeCsrError(f"csr: must be at most {MAX_CSR_PEM} bytes of PEM")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise NodeCsrError("csr: not a PEM PKCS#10 certificate request") from None
    if not csr.is_signature_valid:
        raise NodeCsrError("csr.signature: does not verify (not made with the key it names)")
    if len(csr.subject) != 2:
        raise NodeCsrError("csr.subject: must be exactly OU=node, CN=<node name>")
    cn = _one(csr.subject, NameOID.COMMON_NAME, "csr.subject.CN")
    ou = _one(csr.subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "csr.subject.OU")
    if cn != name:
        raise NodeCsrError(f"csr.subject.CN: is {quote(cn)}, the roster names this node {quote(name)}")
    if ou != NODE_ROLE:
        raise NodeCsrError(f"csr.subject.OU: is {quote(ou)}, must be {NODE_ROLE!r}")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise NodeCsrError("csr.public_key: must be an EC P-256 key")
    sans: list[x509.GeneralName] = []
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = list(ext.value)
    except x509.ExtensionNotFound:
        pass
    if len(sans) > MAX_SANS:
        raise NodeCsrError(f"csr.subject_alt_names: at most {MAX_SANS}")
    for i, san in enumerate(sans):
        if not isinstance(san, (x509.DNSName, x509.IPAddress)):
            raise NodeCsrError(f"csr.subject_alt_names[{i}]: only DNS names and IP addresses")
        if isinstance(san, x509.IPAddress) and not isinstance(san.value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            raise NodeCsrError(f"csr.subject_alt_names[{i}]: an IP address, not a network")
    try:
        ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
        ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise NodeCsrError(f"ca: cannot load the CA certificate and key ({type(e).__name__})") from None
    ca_public = ca_cert.public_key()
    if (
        not isinstance(ca_key, ec.EllipticCurvePrivateKey) or not isinstance(ca_public, ec.EllipticCurvePublicKey)
        or ca_key.public_key().public_numbers() != ca_public.public_numbers()
    ):
        raise NodeCsrError("ca.key: does not match ca.cert")
    now = now or dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, NODE_ROLE), x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    try:
        cert = builder.sign(ca_key, hashes.SHA256())
    except (ValueError, TypeError, PkiError) as e:
        raise NodeCsrError(f"ca: cannot sign ({type(e).__name__})") from None
    return cert.public_bytes(serialization.Encoding.PEM)
