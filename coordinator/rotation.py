"""The coordinator's relay for a node's operational key rotation (issue 11 item 4).

``PrepareNodeKeyRotation`` and ``InstallNodeCertificate`` (admin only, see
:mod:`coordinator.roles`) pass the call on to node ``node`` (a roster index that must be active
in the roster in force) and its answer back. The coordinator is untrusted: the node itself
checks the certificate, and the admin's client checks the node's proof (the current identity
key's signature over the new keys and CSR) against its own roster copy. The coordinator checks
the answer's shape and, when it knows the node's identity key, the proof as well, so a node
answering nonsense is reported here rather than later. Every call is audited
(``node-key-rotation`` / ``node-certificate``: ``prepared`` / ``installed`` / ``refused`` /
``failed``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coordinator.relay import NodeHandle
from governance.audit import detail_text
from mpc_node.rotation import proof_message
from mpcnet.common.rpc import RpcError, status_of
from mpcnet.common.stores.audit import AuditLog
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

log = logging.getLogger("coordinator.rotation")
Code = grpc.StatusCode

# a node's own refusal is passed on with its code; anything else is the node being unreachable
_PASSED_ON = frozenset({Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION, Code.PERMISSION_DENIED, Code.UNAVAILABLE})


class NodeKeyRotationRelay:
    """Relays rotation calls to ``nodes`` (roster index -> handle). ``active()`` gives the
    active roster indices; ``identity_of(i)`` node ``i``'s identity key in the roster in force
    (``None``: unknown, the proof is then left to the client)."""

    def __init__(
        self,
        nodes: Mapping[int, NodeHandle],
        audit: AuditLog,
        active: Callable[[], tuple[int, ...]],
        identity_of: Callable[[int], bytes | None],
        timeout_s: float,
    ) -> None:
        self._nodes = nodes
        self._audit = audit
        self._active = active
        self._identity_of = identity_of
        self._timeout = timeout_s

    def _handle(self, node: int, actor: str, action: str) -> NodeHandle:
        handle = self._nodes.get(node)
        if node not in self._active() or handle is None:
            reason = f"node {node} is not an active node of the roster in force"
            self._audit.append(actor, action, outcome="refused", details={"node": node, **detail_text("reason", reason)})
            raise RpcError(Code.FAILED_PRECONDITION, f"node: {reason}")
        return handle

    def _refused(self, handle: NodeHandle, actor: str, action: str, e: grpc.RpcError) -> RpcError:
        code, details = status_of(e)
        outcome = "refused" if code in _PASSED_ON and code is not Code.UNAVAILABLE else "failed"
        why = detail_text("reason", f"{code.name}: {details}")
        self._audit.append(actor, action, outcome=outcome, details={"node": handle.index, **why})
        if code in _PASSED_ON:
            return RpcError(code, f"{details} ({handle.label})")
        return RpcError(Code.UNAVAILABLE, f"node: {handle.label} did not answer ({code.name}: {details})")

    def prepare(self, req: coordinator_pb2.PrepareNodeKeyRotationRequest, actor: str) -> node_pb2.PrepareKeyRotationResponse:
        """``PrepareKeyRotation`` on node ``req.node``; the answer checked (lengths, CSR, proof)."""
        action = "node-key-rotation"
        handle = self._handle(req.node, actor, action)
        try:
            resp: node_pb2.PrepareKeyRotationResponse = handle.stub.PrepareKeyRotation(
                node_pb2.PrepareKeyRotationRequest(), timeout=self._timeout
            )
        except grpc.RpcError as e:
            raise self._refused(handle, actor, action, e) from None
        problem = _check_prepared(resp, self._identity_of(req.node))
        if problem:
            self._audit.append(actor, action, outcome="failed", details={"node": req.node, **detail_text("reason", problem)})
            raise RpcError(Code.UNAVAILABLE, f"node: {handle.label} answered a malformed rotation ({problem})")
        self._audit.append(actor, action, outcome="prepared", details={
            "node": req.node, "identity_public": resp.identity_public.hex(), "encryption_public": resp.encryption_public.hex(),
        })
        return resp

    def install_certificate(
        self, req: coordinator_pb2.InstallNodeCertificateRequest, actor: str
    ) -> node_pb2.InstallStagedCertificateResponse:
        """``InstallStagedCertificate`` on node ``req.node`` (the node checks the certificate)."""
        action = "node-certificate"
        handle = self._handle(req.node, actor, action)
        try:
            resp: node_pb2.InstallStagedCertificateResponse = handle.stub.InstallStagedCertificate(
                node_pb2.InstallStagedCertificateRequest(certificate_pem=req.certificate_pem), timeout=self._timeout
            )
        except grpc.RpcError as e:
            raise self._refused(handle, actor, action, e) from None
        if len(resp.tls_fingerprint) != 32:
            self._audit.append(actor, action, outcome="failed", details={"node": req.node, "reason": "malformed fingerprint"})
            raise RpcError(Code.UNAVAILABLE, f"node: {handle.label} answered a malformed fingerprint")
        self._audit.append(actor, action, outcome="installed", details={"node": req.node, "tls_fingerprint": resp.tls_fingerprint.hex()})
        return resp


def _check_prepared(resp: node_pb2.PrepareKeyRotationResponse, identity: bytes | None) -> str:
    """What is wrong with a node's ``PrepareKeyRotation`` answer ("" if nothing)."""
    if len(resp.identity_public) != 32 or len(resp.encryption_public) != 32 or len(resp.proof) != 64:
        return "identity_public, encryption_public must be 32 bytes and proof 64"
    try:
        csr = x509.load_pem_x509_csr(resp.tls_csr_pem)
    except ValueError:
        return "tls_csr_pem: not a PEM certificate signing request"
    if not csr.is_signature_valid:
        return "tls_csr_pem: its signature does not verify"
    if identity is not None:
        try:
            Ed25519PublicKey.from_public_bytes(identity).verify(
                resp.proof, proof_message(resp.identity_public, resp.encryption_public, resp.tls_csr_pem)
            )
        except (InvalidSignature, ValueError):
            return "proof: not signed by the node's current identity key"
    return ""
