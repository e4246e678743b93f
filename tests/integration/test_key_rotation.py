"""Operational key rotation on real processes (issue 11 item 4): a node's new keys are staged and
certified through the coordinator, and the coordinator's audit key is rotated offline with
``mpc-coordinator rotate-audit-key`` while ``mpc audit verify`` keeps accepting its log."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from governance.roster import RosterChange, SignedRosterChange, rotate_keys, rotation_proof_message as proof_message, sign_roster_change
from mpc_node.envelope import seal_broadcast
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import LocalCluster, child_env
from mpcnet.common.keystore import load_keystore
from mpcnet.common.pki import certificate_fingerprint, channel_credentials, create_ca, load_certificate, sign_csr
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc, node_pb2, node_pb2_grpc

from .cli_util import cli
from .conftest import coordinator_handles, make_cluster
from .relay_util import run


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
    # node 3: the staged set it certifies stays (only an admin's own call may replace a certified
    # set), and the next test rotates node 2
    with admin_coordinator(kc) as stub:
        prepared = stub.PrepareNodeKeyRotation(coordinator_pb2.PrepareNodeKeyRotationRequest(node=3), timeout=30)
        assert len(prepared.identity_public) == 32 and len(prepared.encryption_public) == 32
        with pytest.raises(grpc.RpcError) as e:  # a certificate from another CA
            other = create_ca(tmp_path_factory.mktemp("other-ca"))
            stub.InstallNodeCertificate(
                coordinator_pb2.InstallNodeCertificateRequest(node=3, certificate_pem=sign_csr(other, prepared.tls_csr_pem)), timeout=30
            )
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details().startswith("certificate_pem.issuer:"), e.value.details()
        pem = sign_csr(kc.lay.ca, prepared.tls_csr_pem)
        installed = stub.InstallNodeCertificate(coordinator_pb2.InstallNodeCertificateRequest(node=3, certificate_pem=pem), timeout=30)
        assert installed.tls_fingerprint == certificate_fingerprint(load_certificate(pem))
        with pytest.raises(grpc.RpcError) as e:
            stub.PrepareNodeKeyRotation(coordinator_pb2.PrepareNodeKeyRotationRequest(node=9), timeout=30)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and e.value.details().startswith("node:")
    # the proof is node 2's current identity key's signature over the new keys and the CSR
    creds = channel_credentials(kc.lay.cert("coordinator"), kc.lay.ca.cert)
    with grpc.secure_channel(kc.lay.endpoints()["node-3"], creds) as ch:
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


def _verify_ecdsa(public_key: bytes, der: bytes, digest: bytes) -> None:
    """OpenSSL (via cryptography), not our code: raises InvalidSignature on failure."""
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    pub.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def _served_fingerprint(c: LocalCluster, name: str) -> bytes:
    """SHA-256 of the DER certificate a new TLS connection to ``name`` is served (mTLS, as admin1)."""
    host, port = c.lay.endpoints()[name].rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(str(c.lay.ca.cert))
    ident = load_identity(c.lay.dir, "admin1").cert
    ctx.load_cert_chain(str(ident.cert), str(ident.key))
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).digest()


def _signed_rotation(c: LocalCluster, node: int, prepared: node_pb2.PrepareKeyRotationResponse, fp: bytes) -> bytes:
    """The roster change rotating ``node``'s keys, signed by admin1 and admin2 (their keys are in
    the dev cluster's directory)."""
    with grpc.secure_channel(c.lay.endpoints()["node-1"], channel_credentials(c.lay.cert("coordinator"), c.lay.ca.cert)) as ch:
        history = node_pb2_grpc.NodeStub(ch).GetRoster(node_pb2.GetRosterRequest(), timeout=30).signed_changes
    roster = SignedRosterChange.from_bytes(history[-1]).change.new_roster
    new = rotate_keys(
        roster, node, identity_key=prepared.identity_public, encryption_key=prepared.encryption_public, tls_fingerprint=fp
    )
    admin_set, _ = c.lay.governance()
    change = RosterChange(new, roster.digest(), admin_set.digest())
    sigs = tuple(sign_roster_change(change, a, load_identity(c.lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    return SignedRosterChange(change, sigs).to_bytes()


def test_node_switches_to_rotated_keys_at_the_roster_change(kc: LocalCluster) -> None:
    nd = kc.lay.node_dir(2)
    old = load_keystore(nd / "keystore.json", (nd / "passphrase").read_bytes().rstrip(b"\n"))  # the test plays a thief
    old_fp = _served_fingerprint(kc, "node-2")
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1") as admin:
        key = admin.create_key("rotated-signers")
    with admin_coordinator(kc) as stub:
        prepared = stub.PrepareNodeKeyRotation(coordinator_pb2.PrepareNodeKeyRotationRequest(node=2), timeout=30)
        pem = sign_csr(kc.lay.ca, prepared.tls_csr_pem)
        install = coordinator_pb2.InstallNodeCertificateRequest(node=2, certificate_pem=pem)
        fp = stub.InstallNodeCertificate(install, timeout=30).tls_fingerprint
    signed = _signed_rotation(kc, 2, prepared, fp)
    creds = channel_credentials(load_identity(kc.lay.dir, "admin1").cert, kc.lay.ca.cert)
    for i in (1, 3, 2):  # admins push roster changes to the nodes directly
        with grpc.secure_channel(kc.lay.endpoints()[f"node-{i}"], creds) as ch:
            resp = node_pb2_grpc.NodeStub(ch).InstallRosterChange(node_pb2.InstallRosterChangeRequest(signed_change=signed), timeout=60)
        assert resp.installed and resp.keys_switched == (i == 2), (i, resp)
    # the new certificate is served without a restart; the old keystore is gone from disk
    assert _served_fingerprint(kc, "node-2") == fp != old_fp
    now = load_keystore(nd / "keystore.json", (nd / "passphrase").read_bytes().rstrip(b"\n"))
    assert now.identity_public == prepared.identity_public != old.identity_public
    with coordinator_handles(kc) as nodes:
        assert nodes[2].stub.GetInfo(node_pb2.GetInfoRequest(), timeout=30).identity_public == prepared.identity_public
        # an envelope signed with node 2's old identity key is refused by node 3
        sid = os.urandom(32)

        def resign_with_old_key(rnd: int, inboxes: dict[int, list[common_pb2.Envelope]]) -> None:
            if rnd == 1:
                orig = [e for e in inboxes[3] if e.sender == 2 and e.receiver == 0][0]
                env = seal_broadcast(orig.payload, identity=old.identity, session_id=sid, round=1, sender=2)
                inboxes[3] = [e for e in inboxes[3] if not (e.sender == 2 and e.receiver == 0)] + [common_pb2.Envelope(
                    session_id=env.session_id, round=env.round, sender=2, receiver=0, payload=env.payload, signature=env.signature)]

        errs = run(nodes, sid, [1, 2, 3], tamper=resign_with_old_key, dkg=node_pb2.DkgParams(threshold=2, parties=3))
        assert isinstance(errs, dict) and 3 in errs, errs
        assert "round-1 broadcast message from node 2 (node-2)" in errs[3].details(), errs[3].details()
    # node 2 signs with its new keys: node 1 is down, so the 2-of-3 signature needs nodes 2 and 3
    kc.kill("node-1", signal.SIGTERM)
    try:
        digest = hashlib.sha256(b"after rotation").digest()
        with SigningTeam.from_cluster(kc.lay.dir, timeout=120) as team:
            sig = team.sign(key.key_id, digest)
        assert sorted(sig.signers) == [2, 3]
        _verify_ecdsa(key.public_key, sig.der, digest)
    finally:
        kc.start("node-1")
        kc.wait_healthy(["node-1"])
    deadline = time.monotonic() + 30  # the coordinator redials node 1 (restarted) after its backoff
    while True:
        out = cli("--cluster", str(kc.lay.dir), "--as", "auditor1", "audit", "verify", check=False)
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert out.returncode == 0, out.stdout + out.stderr  # node 2's log: handed over to its new key, one chain
