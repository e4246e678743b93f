"""The Node.js example (examples/node) against a real cluster, and its encoder against Python's.

``scripts/node_example.sh`` (also sourced by ``scripts/test``) makes sure node and npm exist and
installs the example's locked packages once (``npm ci`` only when package-lock.json changed).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from concurrent import futures
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.approval import Decision, SigningRequest, _approval_message, sign_approval
from governance.encoding import Encoder, domain_tag
from governance.errors import GovernanceError
from mpcnet.client import MpcClient
from mpcnet.client.identities import create_identity
from mpcnet.common.pki import create_ca, issue_cert, server_credentials
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"


@pytest.fixture(scope="module")
def node_example() -> Path:
    r = subprocess.run(
        ["bash", "-c", "source scripts/node_example.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, f"installing the Node example failed:\n{r.stdout}\n{r.stderr}"
    return EXAMPLE


def _node(example: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", *args], cwd=example, capture_output=True, text=True, timeout=timeout)


# --- the encoder, byte for byte ---------------------------------------------------------------

def _requests() -> list[SigningRequest]:
    return [
        SigningRequest(
            "req-1", bytes(range(32)), hashlib.sha256(b"hello").digest(), (), "requester1", "",
            1_700_000_000_000, 1_700_003_600_000, 1, bytes(32),
        ),
        SigningRequest(
            "R" * 64, b"\xff" * 32, bytes(range(32, 64)), (0, 1, 2**31, 2**32 - 1), "approver.x_y-Z",
            "Zahlung \u2014 10 \u20ac an Bob, Zeile 2 \u2713 \U0001f512", 2**63 - 2, 2**63 - 1, 2**63 - 1, b"\x5a" * 32,
        ),
        SigningRequest(
            "x", b"\x01" * 32, b"\x02" * 32, tuple(range(255)), "r", "d" * 1024, 0, 1, 7, b"\x03" * 32,
        ),
    ]


def _fields(**over: object) -> bytes:
    """A signing-request encoding with some fields replaced by raw (possibly invalid) values."""
    f: dict[str, object] = {
        "request_id": b"req-1", "key_id": b"\x01" * 32, "digest": b"\x02" * 32, "path": [], "requester": b"requester1",
        "description": b"", "created": 1000, "expires": 2000, "version": 1, "policy_digest": b"\x03" * 32,
        "tag": domain_tag("signing-request"),
    }
    f.update(over)
    enc = Encoder(str(f["tag"])).raw(f["request_id"]).raw(f["key_id"]).raw(f["digest"])  # type: ignore[arg-type]
    enc.count(len(f["path"]))  # type: ignore[arg-type]
    for i in f["path"]:  # type: ignore[attr-defined]
        enc.uint(i)
    enc.raw(f["requester"]).raw(f["description"])  # type: ignore[arg-type]
    return enc.uint(f["created"]).uint(f["expires"]).uint(f["version"]).raw(f["policy_digest"]).finish()  # type: ignore[arg-type]


def _invalid() -> list[dict[str, str]]:
    good = _requests()[0].encode()
    cases = [
        good[:-1],  # truncated
        good + b"\x00",  # trailing byte
        _fields(tag=domain_tag("approval")),
        _fields(digest=b"\x02" * 31),
        _fields(requester=b"\xc3\x28"),  # not UTF-8
        _fields(requester=b"no spaces"),
        _fields(description="\u202eevil".encode()),  # a bidi override hides text from a reviewer
        _fields(expires=1000),
        _fields(version=0),
        _fields(path=list(range(256))),
    ]
    out = []
    for data in cases:
        with pytest.raises(GovernanceError) as e:
            SigningRequest.from_bytes(data)
        out.append({"encoding": data.hex(), "field": e.value.field})
    return out


def _vectors() -> dict[str, object]:
    keys = {name: Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i, name in enumerate(("approver1", "approver2"))}
    requests = []
    for req in _requests():
        d = req.to_dict()
        for k in ("created_at_ms", "expires_at_ms", "policy_version"):
            d[k] = str(d[k])  # u64: beyond JSON's exact integers
        d["derivation_path"] = [str(i) for i in req.derivation_path]
        approvals = []
        for (name, key), decision in zip(keys.items(), (Decision.APPROVE, Decision.REJECT), strict=True):
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            approvals.append({
                "approver": name, "decision": decision.value, "private_key_pem": pem.decode(),
                "message": _approval_message(req.encode(), name, decision).hex(),
                "signature": sign_approval(req, name, key, decision).signature.hex(),
            })
        requests.append({"request": d, "encoding": req.encode().hex(), "approvals": approvals})
    return {"requests": requests, "invalid": _invalid()}


def test_node_encoder_matches_python(node_example: Path, tmp_path: Path) -> None:
    vectors = tmp_path / "governance-vectors.json"
    vectors.write_text(json.dumps(_vectors()))
    r = _node(node_example, "check_encoding.js", str(vectors))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: 3 requests, 6 approvals, 10 invalid encodings match Python"), r.stdout


def test_node_check_catches_a_mismatch(node_example: Path, tmp_path: Path) -> None:
    doc = _vectors()
    first = doc["requests"][0]  # type: ignore[index]
    first["approvals"][0]["signature"] = "00" * 64
    vectors = tmp_path / "bad.json"
    vectors.write_text(json.dumps(doc))
    r = _node(node_example, "check_encoding.js", str(vectors))
    assert r.returncode == 1 and "requests[0].approvals[0]: signature differs" in r.stderr


# --- end to end ---------------------------------------------------------------------------------

def test_node_example_signs_and_the_signature_verifies_in_python(node_example: Path, cluster, client: MpcClient, key) -> None:
    message = "pay 10 to bob (from Node.js)"
    r = _node(
        node_example, "sign.js", "--cluster", str(cluster.lay.dir), "--key-id", key.key_id.hex(), "--message", message,
        "--json", timeout=240,
    )
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["verified"] is True and out["key_id"] == key.key_id.hex() and out["public_key"] == key.public_key.hex()
    assert bytes.fromhex(out["message_hex"]) == message.encode()
    assert out["digest"] == hashlib.sha256(message.encode()).hexdigest()
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), key.public_key)
    pub.verify(bytes.fromhex(out["der"]), message.encode(), ec.ECDSA(hashes.SHA256()))  # raises if it does not verify
    done = client.get_sign_request(out["request_id"])
    assert done.state == "done" and done.signature is not None
    assert (f"{done.signature.r:064x}", f"{done.signature.s:064x}", done.signature.recovery_id) == (
        out["r"], out["s"], out["recovery_id"]
    )
    assert sorted(done.approved_by) == ["approver1", "approver2"] and done.request.requester == "requester1"


# --- a lying coordinator ------------------------------------------------------------------------

class _LyingCoordinator(coordinator_pb2_grpc.CoordinatorServicer):
    """Accepts the request honestly, then shows approvers a request for another digest."""

    def __init__(self) -> None:
        self.key_id = b"\x07" * 32
        self.decisions: list[str] = []
        self.submitted: SigningRequest | None = None

    def GetKey(self, request, context):
        pub = ec.generate_private_key(ec.SECP256K1()).public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
        return common_pb2.KeyInfo(key_id=self.key_id, label="k", public_key=pub, status=common_pb2.KEY_STATUS_ACTIVE)

    def _info(self, req: SigningRequest) -> coordinator_pb2.SignRequestInfo:
        return coordinator_pb2.SignRequestInfo(
            request_id=req.request_id, state=coordinator_pb2.SIGN_REQUEST_STATE_PENDING_APPROVAL, request=req.encode(),
            key_id=req.key_id, digest=req.digest, requester=req.requester, description=req.description,
        )

    def SubmitSignRequest(self, request, context):
        self.submitted = SigningRequest(
            "req-lie", bytes(request.key_id), bytes(request.digest), (), "requester1", request.description,
            1_700_000_000_000, 1_700_003_600_000, 1, bytes(32),
        )
        return self._info(self.submitted)

    def GetSignRequest(self, request, context):
        assert self.submitted is not None
        return self._info(replace(self.submitted, digest=hashlib.sha256(b"pay 1000000 to mallory").digest()))

    def DecideSignRequest(self, request, context):
        self.decisions.append(request.approver)
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the test's coordinator takes no decisions")


def test_node_approver_refuses_a_request_for_another_digest(node_example: Path, tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    server_cert = issue_cert(ca, tmp_path / "certs", "coordinator", role="coordinator", server=True)
    identities = {}
    for name, role in (("requester1", "requester"), ("approver1", "approver"), ("approver2", "approver")):
        ident = create_identity(ca, tmp_path, name, role)
        identities[name] = {
            "role": role, "cert": str(ident.cert.cert), "key": str(ident.cert.key),
            "signing_key": str(tmp_path / "identities" / name / "signing.key"), "public_key": ident.public_key.hex(),
        }
    liar = _LyingCoordinator()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(liar, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(server_cert, ca.cert))
    server.start()
    try:
        info = {"coordinator": {"endpoint": f"localhost:{port}"}, "ca_cert": str(ca.cert), "identities": identities}
        (tmp_path / "cluster.json").write_text(json.dumps(info))
        r = _node(node_example, "sign.js", "--cluster", str(tmp_path), "--key-id", liar.key_id.hex(), "--timeout-s", "20")
    finally:
        server.stop(None)
    assert r.returncode == 1, f"{r.stdout}\n{r.stderr}"
    assert "error: digest: request is for " in r.stderr and "nothing was signed" in r.stderr
    assert liar.submitted is not None and liar.decisions == []
