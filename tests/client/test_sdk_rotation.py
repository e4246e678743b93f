"""``MpcClient.rotate_node_keys`` and the CSR signing behind it (mpcnet/client/nodecert.py):
the staged keys must carry the node's proof under its current identity key, the CSR must name
exactly the node, and the roster change names the three new keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from governance.roster import rotation_proof_message
from mpcnet.client import MpcError
from mpcnet.client.nodecert import NodeCsrError, pem_fingerprint, sign_node_csr
from mpcnet.common.pki import CertPaths, create_ca
from mpcnet.wire.mpc.v1 import node_pb2

from .lifecycle_fake import FakeCoordinator, admin_client, node_keys, raw_ed


def csr(name: str = "node-2", ou: str = "node", curve: ec.EllipticCurve | None = None) -> bytes:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou), x509.NameAttribute(NameOID.COMMON_NAME, name)])
    req = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName(name)]), critical=False))
    return req.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def ca(tmp_path: Path) -> CertPaths:
    return create_ca(tmp_path / "ca")


def test_sign_node_csr_issues_a_node_certificate(ca: CertPaths) -> None:
    pem = sign_node_csr(ca, csr(), name="node-2")
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node-2"
    assert cert.issuer == x509.load_pem_x509_certificate(ca.cert.read_bytes()).subject
    assert len(pem_fingerprint(pem)) == 32


@pytest.mark.parametrize(("request_pem", "field"), [
    (lambda: csr(name="node-3"), "csr.subject.CN"),
    (lambda: csr(ou="admin"), "csr.subject.OU"),
    (lambda: csr(curve=ec.SECP384R1()), "csr.public_key"),
    (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "csr:"),
    (lambda: b"x" * 20000, "csr:"),
])
def test_sign_node_csr_refuses_what_is_not_this_nodes_request(ca: CertPaths, request_pem: Any, field: str) -> None:
    with pytest.raises(NodeCsrError) as e:
        sign_node_csr(ca, request_pem(), name="node-2")
    assert str(e.value).startswith(field), str(e.value)


class RotatingFake(FakeCoordinator):
    def __init__(self, proof_by: Ed25519PrivateKey | None = None) -> None:
        super().__init__()
        self.new_identity = Ed25519PrivateKey.generate()
        _, self.new_enc, _ = node_keys(42)
        self.csr = csr()
        signer = proof_by or node_keys(2)[0]
        self.proof = signer.sign(rotation_proof_message(raw_ed(self.new_identity), self.new_enc, self.csr))
        self.installed: list[bytes] = []

    def _PrepareNodeKeyRotation(self, req: Any) -> Any:
        assert req.node == 2
        return node_pb2.PrepareKeyRotationResponse(
            identity_public=raw_ed(self.new_identity), encryption_public=self.new_enc, tls_csr_pem=self.csr, proof=self.proof,
        )

    def _InstallNodeCertificate(self, req: Any) -> Any:
        self.installed.append(bytes(req.certificate_pem))
        return node_pb2.InstallStagedCertificateResponse(tls_fingerprint=pem_fingerprint(bytes(req.certificate_pem)))


def test_rotate_node_keys_proposes_the_staged_keys(ca: CertPaths) -> None:
    fake = RotatingFake()
    p = admin_client(fake).rotate_node_keys(2, ca)
    e = p.signed.change.new_roster.entry(2)  # type: ignore[union-attr]
    assert e is not None and e.key_version == 2
    assert e.identity_key == raw_ed(fake.new_identity) and e.encryption_key == fake.new_enc
    assert e.tls_fingerprint == pem_fingerprint(fake.installed[0])


def test_rotate_node_keys_refuses_keys_the_node_did_not_sign(ca: CertPaths) -> None:
    fake = RotatingFake(proof_by=Ed25519PrivateKey.generate())  # e.g. the coordinator's own keys
    with pytest.raises(MpcError) as e:
        admin_client(fake).rotate_node_keys(2, ca)
    assert e.value.code == grpc.StatusCode.DATA_LOSS and e.value.message.startswith("proof:")
    assert fake.installed == [] and "ProposeRosterChange" not in fake.calls


def test_rotate_node_keys_of_an_unknown_node_is_refused(ca: CertPaths) -> None:
    with pytest.raises(MpcError) as e:
        admin_client(RotatingFake()).rotate_node_keys(9, ca)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.message.startswith("node:")
