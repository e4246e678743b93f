"""End to end on localhost: the design's section-1 flow (each host its own directory, public files
through an exchange directory), then the processes started from the joined configs, a policy
attestation, a key, and an approved signature verified under the key's public key."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from mpcnet.cluster.launcher import child_env, free_ports
from mpcnet.common.pki import CertPaths, channel_credentials
from mpcnet.common.rpc import CHANNEL_OPTIONS, wait_for_health
from tests.deploy.test_enrolment import World, coord, enrol_world, mpc, node, signed


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[World, list[int]]]:
    ports = free_ports(4)
    w = signed(enrol_world(tmp_path, ports))
    for i in (1, 2, 3):
        assert node("join", "--dir", str(w.host(f"node-{i}")), "--genesis", str(w.ex / "genesis.json"),
                    "--cert", str(w.cert(f"node-{i}")), "--ca", str(w.ex / "ca.pem")) == 0
    assert coord("join", "--dir", str(w.host("coordinator")), "--genesis", str(w.ex / "genesis.json"),
                 "--cert", str(w.cert("coordinator")), "--ca", str(w.ex / "ca.pem")) == 0
    procs = []
    try:
        for name, module in [("node-1", "mpc_node.main"), ("node-2", "mpc_node.main"), ("node-3", "mpc_node.main"),
                             ("coordinator", "coordinator.main")]:
            log = open(w.root / f"{name}.out", "wb")
            procs.append((subprocess.Popen(
                [sys.executable, "-m", module, "--config", str(w.host(name) / "config.json")],
                stdout=log, stderr=subprocess.STDOUT, env=child_env(), cwd=w.host(name),
            ), log))
        creds = channel_credentials(CertPaths(w.cert("admin1"), w.host("admin1") / "tls.key"), w.ex / "ca.pem")
        for port in ports:
            with grpc.secure_channel(f"localhost:{port}", creds, options=CHANNEL_OPTIONS) as ch:
                logs = [(w.root / f"{n}.out").read_text()[-2000:] for n in ("node-1", "coordinator")]
                assert wait_for_health(ch, timeout=60), (port, logs)
        yield w, ports
    finally:
        for p, _ in procs:
            p.terminate()
        for p, log in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            log.close()


def as_person(monkeypatch: pytest.MonkeyPatch, w: World, me: str, ports: list[int]) -> None:
    """The README's export line for ``me``."""
    for var, value in {
        "MPC_ENDPOINT": f"localhost:{ports[0]}", "MPC_TLS_CERT": str(w.cert(me)), "MPC_TLS_KEY": str(w.host(me) / "tls.key"),
        "MPC_TLS_CA": str(w.ex / "ca.pem"), "MPC_SIGNING_KEY": str(w.host(me) / "signing.key"), "MPC_GENESIS": str(w.ex / "genesis.json"),
    }.items():
        monkeypatch.setenv(var, value)
    for var in ("MPC_CLUSTER", "MPC_AS"):
        monkeypatch.delenv(var, raising=False)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    rc = mpc("--json", *args)
    out = capsys.readouterr()
    assert rc == 0, out.err
    doc = json.loads(out.out)
    assert isinstance(doc, dict)
    return doc


def test_enrolled_cluster_attests_creates_a_key_and_signs(
    running: tuple[World, list[int]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    w, ports = running
    as_person(monkeypatch, w, "admin1", ports)
    attested = run_json(capsys, "policy", "attest")
    assert all(v in ("confirmed", "stored") for v in attested.values()), attested
    key = run_json(capsys, "keygen", "--label", "treasury")
    assert key["status"] == "active" and key["parties"] == 3
    digest = hashlib.sha256(b"pay 1 BTC to Bob").hexdigest()
    as_person(monkeypatch, w, "requester1", ports)
    req = run_json(capsys, "request", "sign", "--key", str(key["key_id"]), "--digest", digest, "--request-id", "e2e-1")
    as_person(monkeypatch, w, "approver1", ports)
    run_json(capsys, "approve", str(req["request_id"]), "--expect-digest", digest)
    as_person(monkeypatch, w, "approver2", ports)
    done = run_json(capsys, "approve", str(req["request_id"]), "--expect-digest", digest, "--wait")
    assert done["state"] == "done"
    sig = done["signature"]
    assert isinstance(sig, dict)
    public = serialization.load_pem_public_key(str(key["public_key_pem"]).encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(bytes.fromhex(sig["der"]), bytes.fromhex(digest), ec.ECDSA(Prehashed(hashes.SHA256())))
    # a requester cannot attest (not an admin): the role check of the existing client still holds
    as_person(monkeypatch, w, "requester1", ports)
    capsys.readouterr()
    assert mpc("policy", "attest") != 0
    assert os.path.exists(w.host("node-1") / "node.db")
    # joining again while the node runs: refused, its config untouched
    config = (w.host("node-1") / "config.json").read_bytes()
    capsys.readouterr()
    assert w.join(1) == 1
    assert "stop it before joining again" in capsys.readouterr().err
    assert (w.host("node-1") / "config.json").read_bytes() == config
