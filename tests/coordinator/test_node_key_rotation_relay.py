"""coordinator/rotation.py: the relay of PrepareNodeKeyRotation / InstallNodeCertificate checks
the node is active, checks the node's answer (proof by its current identity key), passes a
node's refusal on with its code and audits every call."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from coordinator.rotation import NodeKeyRotationRelay
from mpc_node.rotation import proof_message
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

IDENTITY = Ed25519PrivateKey.generate()
RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


class Refusal(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _prepared(signer: Ed25519PrivateKey = IDENTITY) -> node_pb2.PrepareKeyRotationResponse:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-1")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    ident, enc = b"\x01" * 32, b"\x02" * 32
    return node_pb2.PrepareKeyRotationResponse(
        identity_public=ident, encryption_public=enc, tls_csr_pem=csr, proof=signer.sign(proof_message(ident, enc, csr))
    )


class Stub:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[Any] = []

    def _reply(self, req: Any) -> Any:
        self.calls.append(req)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def PrepareKeyRotation(self, req: Any, timeout: float) -> Any:
        return self._reply(req)

    def InstallStagedCertificate(self, req: Any, timeout: float) -> Any:
        return self._reply(req)


def _relay(tmp: Path, answer: Any, active: tuple[int, ...] = (1, 2, 3)) -> tuple[NodeKeyRotationRelay, Stub, AuditLog]:
    stub = Stub(answer)
    handle = SimpleNamespace(index=1, label="node 1 (node-1)", stub=stub)
    audit = AuditLog.open(tmp / "audit.db", component="coordinator", signing_key=Ed25519PrivateKey.generate())
    identity = IDENTITY.public_key().public_bytes(*RAW)
    relay = NodeKeyRotationRelay({1: handle}, audit, lambda: active, lambda i: identity, 5.0)  # type: ignore[dict-item]
    return relay, stub, audit


def _last(audit: AuditLog) -> tuple[str, str, dict[str, Any]]:
    e = audit.entries()[-1]
    return e.action, e.outcome, dict(e.details)


def test_prepare_relays_and_audits(tmp_path: Path) -> None:
    answer = _prepared()
    relay, stub, audit = _relay(tmp_path, answer)
    assert not stub.calls
    assert relay.prepare(coordinator_pb2.PrepareNodeKeyRotationRequest(node=1), "admin1") == answer
    action, outcome, details = _last(audit)
    assert (action, outcome, details["node"]) == ("node-key-rotation", "prepared", 1)
    assert audit.entries()[-1].actor == "admin1"


def test_prepare_with_a_proof_not_by_the_current_identity_is_refused(tmp_path: Path) -> None:
    relay, _, audit = _relay(tmp_path, _prepared(Ed25519PrivateKey.generate()))
    with pytest.raises(RpcError) as e:
        relay.prepare(coordinator_pb2.PrepareNodeKeyRotationRequest(node=1), "admin1")
    assert e.value.code == grpc.StatusCode.UNAVAILABLE and "proof" in e.value.message
    assert _last(audit)[1] == "failed"


@pytest.mark.parametrize("node", [2, 9])  # 2: active but no handle; 9: not in the roster
def test_a_node_not_active_is_refused_naming_node(tmp_path: Path, node: int) -> None:
    relay, stub, audit = _relay(tmp_path, _prepared(), active=(1, 2))
    with pytest.raises(RpcError) as e:
        relay.prepare(coordinator_pb2.PrepareNodeKeyRotationRequest(node=node), "admin1")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and e.value.message.startswith("node:")
    assert not stub.calls and _last(audit)[1] == "refused"


def test_revoked_node_is_refused(tmp_path: Path) -> None:
    relay, stub, _ = _relay(tmp_path, _prepared(), active=(2, 3))
    with pytest.raises(RpcError):
        relay.install_certificate(coordinator_pb2.InstallNodeCertificateRequest(node=1, certificate_pem=b"x"), "admin1")
    assert not stub.calls


def test_install_certificate_passes_the_nodes_refusal_on(tmp_path: Path) -> None:
    refusal = Refusal(grpc.StatusCode.INVALID_ARGUMENT, "certificate_pem.issuer: is not signed by this node's CA")
    relay, stub, audit = _relay(tmp_path, refusal)
    with pytest.raises(RpcError) as e:
        relay.install_certificate(coordinator_pb2.InstallNodeCertificateRequest(node=1, certificate_pem=b"pem"), "admin1")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message.startswith("certificate_pem.issuer:") and "node 1" in e.value.message
    assert stub.calls[0].certificate_pem == b"pem"
    assert _last(audit)[:2] == ("node-certificate", "refused")


def test_install_certificate_ok(tmp_path: Path) -> None:
    relay, _, audit = _relay(tmp_path, node_pb2.InstallStagedCertificateResponse(tls_fingerprint=b"\x05" * 32))
    resp = relay.install_certificate(coordinator_pb2.InstallNodeCertificateRequest(node=1, certificate_pem=b"pem"), "admin1")
    assert resp.tls_fingerprint == b"\x05" * 32
    assert _last(audit)[:2] == ("node-certificate", "installed")


def test_unreachable_node_is_unavailable(tmp_path: Path) -> None:
    relay, _, audit = _relay(tmp_path, Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, "slow"))
    with pytest.raises(RpcError) as e:
        relay.prepare(coordinator_pb2.PrepareNodeKeyRotationRequest(node=1), "admin1")
    assert e.value.code == grpc.StatusCode.UNAVAILABLE and e.value.message.startswith("node:")
    assert _last(audit)[1] == "failed"
