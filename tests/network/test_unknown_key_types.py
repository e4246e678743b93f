"""A PEM private key of a type the crypto library does not know (a PKCS#8 key whose algorithm is
another tool's: post-quantum, GOST, ...) raised cryptography's ``UnsupportedAlgorithm``, which is
neither ValueError nor TypeError: every loader let it through and ``mpc`` said "internal error (a
bug, please report it)" (second attacker round, issue 10). Each one names the file instead."""

from __future__ import annotations

import base64
import contextlib
import io
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mpcnet.client import cli
from mpcnet.client.identities import SIGNING_KEY_FILE, identity_dir, load_identity
from mpcnet.common.pki import CertPaths, PkiError, channel_credentials, create_ca, issue_cert, server_credentials


def _tlv(tag: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes([tag, len(body)]) + body


def odd_key(path: Path) -> Path:
    """A well-formed PKCS#8 PEM private key of algorithm 1.2.3.4."""
    der = _tlv(0x30, _tlv(2, b"\x00") + _tlv(0x30, _tlv(6, bytes([0x2A, 3, 4]))) + _tlv(4, b"\x04\x20" + b"\x01" * 32))
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END PRIVATE KEY-----\n")
    return path


def test_tls_credentials_name_a_key_of_an_unknown_type(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    alice = issue_cert(ca, tmp_path / "certs", "alice", role="auditor")
    odd = CertPaths(alice.cert, odd_key(tmp_path / "odd.key"))
    for make in (channel_credentials, server_credentials):
        with pytest.raises(PkiError, match=r"^key: .* is not an unencrypted PEM private key"):
            make(odd, ca.cert)
    with pytest.raises(PkiError, match=r"^ca.key: .* is not an unencrypted PEM private key"):
        issue_cert(CertPaths(ca.cert, odd.key), tmp_path / "more", "bob", role="auditor")
    # and a certificate whose public key is of an unknown type (id-ecPublicKey's last arc changed)
    der = x509.load_pem_x509_certificate(alice.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    ec_oid = bytes.fromhex("06072a8648ce3d0201")
    assert der.count(ec_oid) == 1
    odd_cert = tmp_path / "odd.pem"
    odd_cert.write_bytes(pem_cert(der.replace(ec_oid, ec_oid[:-1] + b"\x09")))
    for make in (channel_credentials, server_credentials):
        with pytest.raises(PkiError, match=r"^cert: .* holds a public key of a type that is not supported"):
            make(CertPaths(odd_cert, alice.key), ca.cert)


def pem_cert(der: bytes) -> bytes:
    return b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"


def test_mpc_names_the_option_of_a_key_of_an_unknown_type(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    alice = issue_cert(ca, tmp_path / "certs", "alice", role="approver")
    odd = odd_key(tmp_path / "odd.key")
    files = {"--tls-cert": alice.cert, "--tls-key": alice.key, "--tls-ca": ca.cert}
    for option, extra in (("--tls-key", {"--tls-key": odd}), ("--signing-key", {"--signing-key": odd})):
        argv = ["--endpoint", "localhost:1"] + [x for o, f in {**files, **extra}.items() for x in (o, str(f))]
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = cli.main([*argv, "keys"])
        assert code == 2 and err.getvalue().startswith(f"mpc: error: {option}: "), err.getvalue()
        assert "internal error" not in err.getvalue() and len(err.getvalue().splitlines()) == 1


def test_an_identity_with_a_signing_key_of_an_unknown_type_is_named(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    d = identity_dir(tmp_path, "alice")
    d.mkdir(parents=True)
    issue_cert(ca, d, "alice", role="approver")
    odd_key(d / SIGNING_KEY_FILE)
    with pytest.raises(PkiError, match="is not an unencrypted PEM private key"):
        load_identity(tmp_path, "alice")
