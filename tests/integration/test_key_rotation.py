"""Operational key rotation on real processes (issue 11 item 4): a node's new keys are staged and
certified through the coordinator, and the coordinator's audit key is rotated offline with
``mpc-coordinator rotate-audit-key`` while ``mpc audit verify`` keeps accepting its log."""

from __future__ import annotations

import contextlib
import hashlib
import signal
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mpc_node.rotation import proof_message
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import LocalCluster, child_env
from mpcnet.common.pki import certificate_fingerprint, channel_credentials, create_ca, load_certificate, sign_csr
from mpcnet.wire.mpc.v1 import coordinator_pb2, coordinator_pb2_grpc, node_pb2, node_pb2_grpc

from .cli_util import cli
from .conftest import make_cluster


@pytest.fixture(scope="module")
def kc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "rotation-2of3", 3, 2)
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


@contextlib.contextmanager
def admin_coordinator(c: LocalCluster) -> Iterator[coordinator_pb2_grpc.CoordinatorStub]:
    creds = channel_credentials(load_identity(c.lay.dir, "admin1").cert, c.lay.ca.cert)
    channel = grpc.secure_channel(c.lay.endpoints()["coordinator"], creds)
    try:
        yield coordinator_pb2_grpc.CoordinatorStub(channel)
    finally:
        channel.close()


def test_prepare_and_install_a_certificate_through_the_coordinator(kc: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    with admin_coordinator(kc) as stub:
        prepared = stub.PrepareNodeKeyRotation(coordinator_pb2.PrepareNodeKeyRotationRequest(node=2), timeout=30)
        assert len(prepared.identity_public) == 32 and len(prepared.encryption_public) == 32
        with pytest.raises(grpc.RpcError) as e:  # a certificate from another CA
            other = create_ca(tmp_path_factory.mktemp("other-ca"))
            stub.InstallNodeCertificate(
                coordinator_pb2.InstallNodeCertificateRequest(node=2, certificate_pem=sign_csr(other, prepared.tls_csr_pem)), timeout=30
            )
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details().startswith("certificate_pem.issuer:"), e.value.details()
        pem = sign_csr(kc.lay.ca, prepared.tls_csr_pem)
        installed = stub.InstallNodeCertificate(coordinator_pb2.InstallNodeCertificateRequest(node=2, certificate_pem=pem), timeout=30)
        assert installed.tls_fingerprint == certificate_fingerprint(load_certificate(pem))
        with pytest.raises(grpc.RpcError) as e:
            stub.PrepareNodeKeyRotation(coordinator_pb2.PrepareNodeKeyRotationRequest(node=9), timeout=30)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and e.value.details().startswith("node:")
    # the proof is node 2's current identity key's signature over the new keys and the CSR
    creds = channel_credentials(kc.lay.cert("coordinator"), kc.lay.ca.cert)
    with grpc.secure_channel(kc.lay.endpoints()["node-2"], creds) as ch:
        info = node_pb2_grpc.NodeStub(ch).GetInfo(node_pb2.GetInfoRequest(), timeout=30)
    Ed25519PublicKey.from_public_bytes(info.identity_public).verify(
        prepared.proof, proof_message(prepared.identity_public, prepared.encryption_public, prepared.tls_csr_pem)
    )
    assert info.identity_public != prepared.identity_public  # staged only: nothing switched


def test_coordinator_audit_key_rotation_keeps_the_trail_verifiable(kc: LocalCluster) -> None:
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1") as admin, SigningTeam.from_cluster(kc.lay.dir) as team:
        key = admin.create_key("before-audit-rotation")
        team.sign(key.key_id, hashlib.sha256(b"before").digest())
    assert cli("--cluster", str(kc.lay.dir), "--as", "auditor1", "audit", "verify", check=False).returncode == 0
    running = subprocess.run(  # refused while the coordinator runs: its data directory is locked
        [*_coordinator_command(kc), "rotate-audit-key", "--config", str(kc.lay.coordinator_config)],
        env=child_env(), capture_output=True, text=True, timeout=60,
    )
    assert running.returncode == 1 and "cannot rotate the audit key" in running.stderr
    kc.kill("coordinator", signal.SIGTERM)
    done = subprocess.run(
        [*_coordinator_command(kc), "rotate-audit-key", "--config", str(kc.lay.coordinator_config)],
        env=child_env(), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "audit key rotated" in done.stdout
    kc.start("coordinator")
    kc.wait_healthy(["coordinator"])
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1") as admin, SigningTeam.from_cluster(kc.lay.dir) as team:
        team.sign(key.key_id, hashlib.sha256(b"after").digest())
    out = cli("--cluster", str(kc.lay.dir), "--as", "auditor1", "audit", "verify", check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def _coordinator_command(c: LocalCluster) -> list[str]:
    return [sys.executable, "-m", "coordinator.main"]
