"""The client API against a running 3-of-5 cluster of real processes (signatures through the
approval flow: requester1 asks, approver1 and approver2 approve)."""

from __future__ import annotations

import hashlib

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from mpcnet.client import MpcClient, MpcError, SigningTeam

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def verify_independently(public_key: bytes, der: bytes, digest: bytes) -> None:
    """OpenSSL (via cryptography), not our code: raises InvalidSignature on failure."""
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    pub.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_keygen_gives_an_active_key(client: MpcClient, key) -> None:
    assert key.status == "active"
    assert (key.threshold, key.parties) == (3, 5)
    assert len(key.key_id) == 32 and len(key.public_key) == 33
    assert client.get_key(key.key_id) == key
    assert key.key_id in [k.key_id for k in client.list_keys()]


def test_sign_and_verify_with_openssl(team: SigningTeam, key) -> None:
    digest = hashlib.sha256(b"hello threshold world").digest()
    sig = team.sign(key.key_id, digest)
    assert sig.public_key == key.public_key
    assert len(sig.signers) == 3
    verify_independently(key.public_key, sig.der, digest)
    assert decode_dss_signature(sig.der) == (sig.r, sig.s)
    assert 0 < sig.s <= SECP256K1_ORDER // 2 and sig.recovery_id in (0, 1, 2, 3)  # low-s


def test_sign_with_derivation_path(team: SigningTeam, key) -> None:
    digest = hashlib.sha256(b"derived").digest()
    sig = team.sign(key.key_id, digest, path="m/0/7")
    assert sig.public_key == key.derive("m/0/7") != key.public_key
    verify_independently(sig.public_key, sig.der, digest)


def test_request_status_is_recorded(client: MpcClient, team: SigningTeam, key) -> None:
    digest = bytes(range(32))
    sig = team.sign(key.key_id, digest, description="status test")
    info = client.get_sign_request(sig.request_id)
    assert info.state == "done" and info.signature == sig
    assert info.request.digest == digest and info.request.requester == "requester1"
    assert info.request.description == "status test"
    assert sorted(info.approved_by) == ["approver1", "approver2"] and info.approval_quorum == 2


@pytest.mark.parametrize("n", [0, 31, 33])
def test_wrong_digest_length_is_invalid_argument(team: SigningTeam, key, n: int) -> None:
    with pytest.raises(MpcError) as e:
        team.sign(key.key_id, b"\x01" * n)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    # "(or empty)": an ed25519 request may leave the digest to the coordinator (SHA-256 of its message)
    assert e.value.message in (f"digest: must be 32 bytes, got {n}", f"digest: must be 32 bytes (or empty), got {n}")


def test_unknown_key_is_not_found(team: SigningTeam) -> None:
    with pytest.raises(MpcError) as e:
        team.sign(b"\x42" * 32, b"\x00" * 32)
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert "key_id: unknown key 4242" in e.value.message


def test_unknown_request_is_not_found(client: MpcClient) -> None:
    with pytest.raises(MpcError) as e:
        client.get_request("no-such-request")
    assert e.value.code == grpc.StatusCode.NOT_FOUND and "no-such-request" in e.value.message
    with pytest.raises(MpcError) as e:
        client.get_sign_request("no-such-request")
    assert e.value.code == grpc.StatusCode.NOT_FOUND and "no-such-request" in e.value.message


def test_short_key_id_is_invalid_argument(client: MpcClient, team: SigningTeam) -> None:
    with pytest.raises(MpcError) as e:
        team.sign(b"\x01" * 5, b"\x00" * 32)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message == "key_id: must be 32 bytes, got 5"
    with pytest.raises(MpcError) as e:
        client.get_key(b"")
    assert e.value.message == "key_id: must be 32 bytes, got 0"


def test_hardened_path_is_invalid_argument(team: SigningTeam, key) -> None:
    with pytest.raises(MpcError) as e:
        team.sign(key.key_id, b"\x00" * 32, path=[0x80000001])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message.startswith("derivation_path[0]: hardened index 1'")


def test_oversized_label_is_invalid_argument(client: MpcClient) -> None:
    with pytest.raises(MpcError) as e:
        client.create_key("x" * 300)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message == "label: at most 256 bytes, got 300"


def test_bad_request_id_is_invalid_argument(team: SigningTeam, key) -> None:
    for bad in ("no spaces allowed", "kid-X\n", "x" * 65):  # a dot is allowed (batch.7)
        with pytest.raises(MpcError) as e:
            team.sign(key.key_id, b"\x00" * 32, request_id=bad)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.message.startswith("request_id:")


def test_same_request_id_returns_the_same_signature(team: SigningTeam, key) -> None:
    digest = hashlib.sha256(b"idempotent").digest()
    a = team.sign(key.key_id, digest, request_id="idem-1")
    b = team.sign(key.key_id, digest, request_id="idem-1")
    assert a == b
    with pytest.raises(MpcError) as e:
        team.sign(key.key_id, b"\x00" * 32, request_id="idem-1")
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS and "idem-1" in e.value.message


def _raw_channel(cluster, endpoint: str, identity: str = "client", options=None) -> grpc.Channel:
    """A channel with a certificate from DIR/certs (client, coordinator, node-i) or an identity."""
    from mpcnet.client.identities import identity_dir
    from mpcnet.common.pki import CertPaths, channel_credentials

    lay = cluster.lay
    d = identity_dir(lay.dir, identity)
    cert = CertPaths(d / f"{identity}.pem", d / f"{identity}.key") if d.is_dir() else lay.cert(identity)
    return grpc.secure_channel(endpoint, channel_credentials(cert, lay.ca.cert), options=options or [])


def test_malformed_protobuf_is_invalid_argument(cluster) -> None:
    eps = cluster.lay.endpoints()
    with _raw_channel(cluster, eps["coordinator"], "requester1") as ch:
        call = ch.unary_unary("/mpc.v1.Coordinator/SubmitSignRequest")
        with pytest.raises(grpc.RpcError) as e:
            call(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)  # field 1, absurd length
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "request: not a valid mpc.v1.SubmitSignRequestRequest protobuf message"
    with _raw_channel(cluster, eps["node-1"], "coordinator") as ch:
        call = ch.unary_unary("/mpc.v1.Node/Step")
        with pytest.raises(grpc.RpcError) as e:
            call(b"\x1a\x05\x0a\x03", timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "mpc.v1.StepRequest" in e.value.details()


def test_oversized_message_is_resource_exhausted(cluster) -> None:
    from mpcnet.wire.mpc.v1 import coordinator_pb2

    eps = cluster.lay.endpoints()
    big = coordinator_pb2.CreateKeyRequest(label="x" * (33 * 1024 * 1024)).SerializeToString()
    with _raw_channel(cluster, eps["coordinator"], "admin1") as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/mpc.v1.Coordinator/CreateKey")(big, timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_client_without_certificate_is_refused(cluster) -> None:
    lay = cluster.lay
    with MpcClient(lay.endpoints()["coordinator"], None, lay.ca.cert, timeout=10) as c:
        with pytest.raises(MpcError) as e:
            c.list_keys()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE


def test_client_with_certificate_from_another_ca_is_refused(cluster, tmp_path) -> None:
    from mpcnet.common.pki import create_ca, issue_cert

    other = create_ca(tmp_path / "ca")
    cert = issue_cert(other, tmp_path, "intruder", role="client")
    with MpcClient(cluster.lay.endpoints()["coordinator"], cert, cluster.lay.ca.cert, timeout=10) as c:
        with pytest.raises(MpcError) as e:
            c.list_keys()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE


def test_only_the_coordinator_may_call_nodes(cluster) -> None:
    from mpcnet.wire.mpc.v1 import node_pb2, node_pb2_grpc

    ep = cluster.lay.endpoints()["node-2"]
    for identity in ("client", "admin1", "approver1", "auditor1", "node-1"):
        with _raw_channel(cluster, ep, identity) as ch:
            with pytest.raises(grpc.RpcError) as e:
                node_pb2_grpc.NodeStub(ch).GetInfo(node_pb2.GetInfoRequest(), timeout=10)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert f"certificate '{identity}'" in e.value.details() and "needs role coordinator" in e.value.details()
    with _raw_channel(cluster, ep, "coordinator") as ch:
        info = node_pb2_grpc.NodeStub(ch).GetInfo(node_pb2.GetInfoRequest(), timeout=10)
    assert info.index == 2 and info.name == "node-2" and len(info.identity_public) == 32


def test_nodes_may_not_call_the_client_api(cluster) -> None:
    from mpcnet.wire.mpc.v1 import coordinator_pb2, coordinator_pb2_grpc

    with _raw_channel(cluster, cluster.lay.endpoints()["coordinator"], "node-1") as ch:
        with pytest.raises(grpc.RpcError) as e:
            coordinator_pb2_grpc.CoordinatorStub(ch).ListKeys(coordinator_pb2.ListKeysRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_standard_health_and_reflection_on_every_server(cluster) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    for name, ep in cluster.lay.endpoints().items():
        service = "mpc.v1.Coordinator" if name == "coordinator" else "mpc.v1.Node"
        with _raw_channel(cluster, ep, "client") as ch:
            st = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert st.status == health_pb2.HealthCheckResponse.SERVING
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            resp = next(iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)))
            names = {s.name for s in resp.list_services_response.service}
            assert {
                service, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"
            } <= names


def test_cluster_status_lists_every_node(client: MpcClient) -> None:
    st = client.cluster_status()
    assert (st.threshold, st.parties) == (3, 5)
    assert [n.name for n in st.nodes] == [f"node-{i}" for i in range(1, 6)]


def test_honest_approvals_show_as_verified(cluster, client: MpcClient, team: SigningTeam, key) -> None:
    """Issue 10 item 2: the approver's view checks each approval's signature against the request's
    admin-signed policy; through a real coordinator every honest approval verifies."""
    import json

    from tests.integration.cli_util import cli

    sig = team.sign(key.key_id, hashlib.sha256(b"verified approvals").digest(), description="verified approvals")
    r = team.approvers[0].get_sign_request(sig.request_id)
    assert r.approvals_verified and r.unverified == [] and sorted(r.approved_by) == ["approver1", "approver2"]
    assert (r.approval_quorum, r.approvers) == (2, 3)
    listed = [x for x in client.list_sign_requests(key_id=key.key_id) if x.request_id == sig.request_id]
    assert listed and listed[0].approvals_verified and sorted(listed[0].approved_by) == ["approver1", "approver2"]
    doc = json.loads(cli("--cluster", str(cluster.lay.dir), "--as", "approver1", "--json", "request", "show", sig.request_id).stdout)
    assert doc["approvals_verified"] is True and all(a["verified"] for a in doc["approvals"]) and len(doc["approvals"]) == 2
