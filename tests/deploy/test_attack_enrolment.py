"""Attacks on enrolment requests, their CSRs, the CA and certificate checks (issue 13, R1).

Each test is an attack that worked before its fix: a request file nested deep enough to crash
the JSON parser (a traceback, not a refusal), a request whose duplicate keys read differently
in another JSON parser than here, a node CSR naming hosts its endpoint does not justify (a
wildcard, another host name, a URI or e-mail name) that the CA copied into the certificate, a
CA certificate (BasicConstraints CA) accepted as a node's certificate, and ``mpc pki sign-csr
--out`` overwriting the CA's own key or certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from governance._checks import raw_public_key
from governance.enrolment import enrolment_request_message
from mpcnet.client import cli as mpc_cli
from mpcnet.common.enrolment import (
    EnrolmentError,
    build_enrolment_request,
    check_certificate,
    describe,
    issue_for_request,
    load_pem_certificate,
    load_request,
    parse_request,
)
from mpcnet.common.genesis import load_genesis
from mpcnet.common.pki import CertPaths, create_ca

ENDPOINT = "node1.example.com:7001"


class _Signer:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)


@pytest.fixture(scope="module")
def keys() -> tuple[Ed25519PrivateKey, ec.EllipticCurvePrivateKey, bytes]:
    enc = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    return Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1()), enc


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return create_ca(tmp_path_factory.mktemp("ca"), "Attack CA")


def request_doc(keys: Any, sans: list[x509.GeneralName] | None = None, endpoint: str = ENDPOINT) -> dict[str, Any]:
    """A node request signed by its own identity key, whose CSR carries ``sans`` (default: the endpoint host)."""
    idk, tls, enc = keys
    if sans is None:
        return build_enrolment_request("node", "node-1", endpoint, _Signer(idk), raw_public_key(idk), enc, tls).to_dict()
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "node"), x509.NameAttribute(NameOID.COMMON_NAME, "node-1"),
    ])).add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = b.sign(tls, hashes.SHA256())
    der = csr.public_bytes(serialization.Encoding.DER)
    message = enrolment_request_message(1, "node", "node-1", endpoint, raw_public_key(idk), enc, der)
    return {
        "format": "mpcnet-enrolment-request", "version": 1, "role": "node", "name": "node-1", "endpoint": endpoint,
        "identity_key": raw_public_key(idk).hex(), "encryption_key": enc.hex(),
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode(), "identity_in_token": False, "signature": idk.sign(message).hex(),
    }


# --- the request file ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[" * 50_000, '{"a":' * 12_000])
def test_deeply_nested_json_is_refused_not_a_crash(tmp_path: Path, text: str) -> None:
    p = tmp_path / "r.json"
    p.write_text(text)
    with pytest.raises(EnrolmentError, match="request: .* nested too deep"):
        load_request(p)
    g = tmp_path / "genesis.json"
    g.write_text(text)
    with pytest.raises(EnrolmentError, match="genesis: .* nested too deep"):
        load_genesis(g)


def test_deeply_nested_request_in_sign_csr_is_one_line(tmp_path: Path, ca: CertPaths, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "r.json"
    p.write_text("[" * 50_000)
    rc = mpc_cli.main(["pki", "sign-csr", "--ca-cert", str(ca.cert), "--ca-key", str(ca.key), "--request", str(p),
                       "--out", str(tmp_path / "o.pem")])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err and "nested too deep" in err
    assert not (tmp_path / "o.pem").exists()


def test_duplicate_keys_are_refused(tmp_path: Path, keys: Any) -> None:
    """``{"name": "node-1", ..., "name": "node-9"}``: Python keeps the last, other parsers the
    first; the CA operator and the admins could be shown different names."""
    doc = request_doc(keys)
    text = json.dumps(doc)
    p = tmp_path / "dup.json"
    p.write_text(text[:-1] + ', "name": "node-1"}')
    with pytest.raises(EnrolmentError, match="duplicate key 'name'"):
        load_request(p)
    p.write_text(json.dumps(doc))
    load_request(p)


# --- SANs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [
    x509.DNSName("*.example.com"),
    x509.DNSName("*"),
    x509.UniformResourceIdentifier("spiffe://cluster/coordinator"),
    x509.RFC822Name("admin@example.com"),
    x509.DNSName("xn--nde-qoa.example.com."),
    x509.DNSName("a..example.com"),
    x509.DNSName("-bad.example.com"),
    x509.DNSName("127.1"),  # inet_aton: 127.0.0.1
    x509.DNSName("0x7f.0.0.1"),
    x509.DNSName("010.0.0.1"),  # octal: 8.0.0.1
    x509.DNSName._init_without_validation("\u212aode1.example.com"),  # KELVIN SIGN: [a-z] under IGNORECASE without ASCII
    x509.DNSName._init_without_validation("no\u017fe1.example.com"),  # LATIN SMALL LETTER LONG S
    x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coordinator")])),
])
def test_a_csr_with_sans_the_request_does_not_justify_is_refused(keys: Any, ca: CertPaths, extra: x509.GeneralName) -> None:
    doc = request_doc(keys, [x509.DNSName("node1.example.com"), extra])
    with pytest.raises(EnrolmentError, match=r"csr\.san"):
        parse_request(doc)


def test_extra_plain_host_names_are_shown_to_the_ca_operator(keys: Any, ca: CertPaths) -> None:
    """The dev cluster's requests name localhost too; the CA issues every SAN it copies, so
    ``sign-csr`` prints all of them (the operator sees a ``coordinator.example.com`` smuggled in)."""
    sans = [x509.DNSName("node1.example.com"), x509.DNSName("coordinator.example.com"), x509.IPAddress(ipaddress.ip_address("10.0.0.7"))]
    doc = request_doc(keys, sans)
    req = parse_request(doc)
    line = describe(req)
    assert "coordinator.example.com" in line and "10.0.0.7" in line
    cert = x509.load_pem_x509_certificate(issue_for_request(ca, req))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"node1.example.com", "coordinator.example.com"}


def test_an_ip_endpoint_needs_an_ip_san_not_a_dns_name(keys: Any) -> None:
    with pytest.raises(EnrolmentError, match=r"csr\.san"):
        parse_request(request_doc(keys, [x509.DNSName("10.0.0.1")], endpoint="10.0.0.1:7001"))
    with pytest.raises(EnrolmentError, match=r"csr\.san"):  # an IPv4 address in inet_aton's other notations
        parse_request(request_doc(keys, [x509.DNSName("127.1")], endpoint="127.1:7001"))
    parse_request(request_doc(keys, [x509.IPAddress(ipaddress.ip_address("10.0.0.1"))], endpoint="10.0.0.1:7001"))


# --- certificates -------------------------------------------------------------------------------


def _issue(ca: CertPaths, key: ec.EllipticCurvePrivateKey, *, is_ca: bool, start: dt.datetime | None = None) -> x509.Certificate:
    ca_cert = load_pem_certificate(ca.cert.read_bytes(), "ca")
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    now = start or dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "node"), x509.NameAttribute(NameOID.COMMON_NAME, "node-1"),
        ]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("node1.example.com")]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )


def test_a_ca_certificate_is_refused_as_a_node_certificate(keys: Any, ca: CertPaths) -> None:
    _idk, tls, _enc = keys
    spki = tls.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ca_cert = load_pem_certificate(ca.cert.read_bytes(), "ca")
    kw: dict[str, Any] = {"role": "node", "name": "node-1", "public_key_der": spki, "host": "node1.example.com"}
    check_certificate(_issue(ca, tls, is_ca=False), ca_cert, **kw)
    with pytest.raises(EnrolmentError, match=r"cert: .*CA"):
        check_certificate(_issue(ca, tls, is_ca=True), ca_cert, **kw)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    with pytest.raises(EnrolmentError, match="validity"):
        check_certificate(_issue(ca, tls, is_ca=False, start=later), ca_cert, **kw)
    other = create_ca(ca.cert.parent.parent / "other-ca", "Attack CA")  # same subject, other key
    with pytest.raises(EnrolmentError, match="not issued by the given CA"):
        check_certificate(_issue(other, tls, is_ca=False), ca_cert, **kw)


# --- mpc pki sign-csr --out -------------------------------------------------------------------


@pytest.mark.parametrize("target", ["ca.key", "ca.pem", "request"])
def test_sign_csr_never_writes_over_the_ca_or_the_request(
    tmp_path: Path, keys: Any, target: str, capsys: pytest.CaptureFixture[str],
) -> None:
    ca = create_ca(tmp_path / "ca", "Attack CA")
    req = tmp_path / "node-1.request.json"
    req.write_text(json.dumps(request_doc(keys)))
    out = req if target == "request" else tmp_path / "ca" / target
    (tmp_path / "link").symlink_to(tmp_path / "ca")
    for out_path in (out, tmp_path / "link" / out.name if target != "request" else out):
        before = {p: p.read_bytes() for p in (ca.cert, ca.key, req)}
        rc = mpc_cli.main(["pki", "sign-csr", "--ca-dir", str(tmp_path / "ca"), "--request", str(req), "--out", str(out_path)])
        err = capsys.readouterr().err
        assert rc != 0 and "--out" in err and "Traceback" not in err
        assert {p: p.read_bytes() for p in before} == before


def test_sign_csr_out_in_a_missing_directory_is_one_line(tmp_path: Path, keys: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ca = create_ca(tmp_path / "ca", "Attack CA")
    req = tmp_path / "node-1.request.json"
    req.write_text(json.dumps(request_doc(keys)))
    rc = mpc_cli.main(["pki", "sign-csr", "--ca-dir", str(tmp_path / "ca"), "--request", str(req), "--out", str(tmp_path / "no" / "x.pem")])
    err = capsys.readouterr().err
    assert rc == 1 and "--out: cannot write" in err and "internal error" not in err
    assert ca.key.exists()
