"""Adding a node later, end to end on localhost (issue 13, README "Rotate, revoke, add"): a 2-of-3
cluster enrolled by the production flow makes a key; a 4th node is inited on its own host,
CA-signed, added with its enrolment request and certificate, approved, joined with the roster
history the admins publish (``mpc roster show --history``), started; the roster-implied reshare
takes the key to nodes 1-4, and a signature with node 4 among the signers verifies."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from mpcnet.cluster.launcher import child_env, free_ports
from mpcnet.common.pki import CertPaths, channel_credentials
from mpcnet.common.rpc import CHANNEL_OPTIONS, wait_for_health
from tests.deploy.test_enrolment import SCRYPT, World, coord, enrol_world, mpc, node, signed
from tests.deploy.test_enrolment_e2e import as_person, run_json


class Hosts:
    """The running processes of a world, by host name."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.procs: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    def start(self, name: str, module: str, port: int) -> None:
        log = open(self.w.root / f"{name}.out", "ab")
        self.procs[name] = (subprocess.Popen(
            [sys.executable, "-m", module, "--config", str(self.w.host(name) / "config.json")],
            stdout=log, stderr=subprocess.STDOUT, env=child_env(), cwd=self.w.host(name),
        ), log)
        creds = channel_credentials(CertPaths(self.w.cert("admin1"), self.w.host("admin1") / "tls.key"), self.w.ex / "ca.pem")
        with grpc.secure_channel(f"localhost:{port}", creds, options=CHANNEL_OPTIONS) as ch:
            assert wait_for_health(ch, timeout=60), (name, (self.w.root / f"{name}.out").read_text()[-3000:])

    def stop(self, name: str) -> None:
        p, log = self.procs.pop(name)
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[World, list[int], Hosts]]:
    ports = free_ports(5)  # coordinator, node-1..3, node-4 (added later)
    w = signed(enrol_world(tmp_path, ports[:4]))
    for i in (1, 2, 3):
        assert w.join(i) == 0
    assert coord("join", "--dir", str(w.host("coordinator")), "--genesis", str(w.ex / "genesis.json"),
                 "--cert", str(w.cert("coordinator")), "--ca", str(w.ex / "ca.pem")) == 0
    hosts = Hosts(w)
    try:
        for i in (1, 2, 3):
            hosts.start(f"node-{i}", "mpc_node.main", ports[i])
        hosts.start("coordinator", "coordinator.main", ports[0])
        yield w, ports, hosts
    finally:
        hosts.stop_all()


def _out(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    rc = mpc(*args)
    got = capsys.readouterr()
    assert rc == 0, got.err
    return got.out


def _wait_done(capsys: pytest.CaptureFixture[str], key_id: str, committee: list[int], timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        capsys.readouterr()
        assert mpc("--json", "key", "operations", key_id) == 0
        ops = json.loads(capsys.readouterr().out)
        done = [o for o in ops if o["new_committee"] == committee and o["state"] == "done"]
        if done:
            return dict(done[-1])
        assert time.monotonic() < deadline, ops
        time.sleep(1)


def test_a_node_added_with_its_request_and_certificate_joins_and_signs(
    cluster: tuple[World, list[int], Hosts], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    w, ports, hosts = cluster
    as_person(monkeypatch, w, "admin1", ports)
    run_json(capsys, "policy", "attest")
    key = run_json(capsys, "keygen", "--label", "treasury")
    key_id = str(key["key_id"])
    # node-4's host: its keys and request; the CA: its certificate
    n4 = w.host("node-4")
    assert node("init", "--dir", str(n4), "--name", "node-4", "--endpoint", f"localhost:{ports[4]}",
                "--listen", f"127.0.0.1:{ports[4]}", "--scrypt-n", SCRYPT) == 0
    shutil.copy(n4 / "enrolment-request.json", w.request("node-4"))
    assert mpc("pki", "sign-csr", "--ca-dir", str(w.host("ca")), "--request", str(w.request("node-4")),
               "--out", str(w.cert("node-4"))) == 0
    # admin1 proposes with the request and the certificate (index: the next free one), admin2 approves
    proposed = run_json(capsys, "node", "add", "--enrolment", str(w.request("node-4")), "--cert", str(w.cert("node-4")), "--no-wait")
    p = proposed["proposal"]
    assert isinstance(p, dict) and p["state"] == "pending"
    assert [e["index"] for e in p["roster"]["entries"]] == [1, 2, 3, 4] and p["roster"]["entries"][3]["name"] == "node-4"
    as_person(monkeypatch, w, "admin2", ports)
    approved = run_json(capsys, "lifecycle", "approve", p["proposal_id"], "--expect-digest", p["digest"], "--no-wait")
    assert approved["proposal"]["state"] == "applied"  # type: ignore[index]
    # the admins publish the verified roster history; node-4 joins with it and starts
    (w.ex / "roster.json").write_text(_out(capsys, "roster", "show", "--history"))
    # without --roster the genesis does not name node-4: refused, nothing written
    assert node("join", "--dir", str(n4), "--genesis", str(w.ex / "genesis.json"), "--cert", str(w.cert("node-4")),
                "--ca", str(w.ex / "ca.pem")) == 1
    assert "--roster" in capsys.readouterr().err and not (n4 / "config.json").exists()
    assert node("join", "--dir", str(n4), "--genesis", str(w.ex / "genesis.json"), "--cert", str(w.cert("node-4")),
                "--ca", str(w.ex / "ca.pem"), "--roster", str(w.ex / "roster.json")) == 0
    assert "joined as node 4" in capsys.readouterr().out
    hosts.start("node-4", "mpc_node.main", ports[4])
    # the reshare the roster change implies takes the key to nodes 1-4
    op = _wait_done(capsys, key_id, [1, 2, 3, 4])
    assert op["authorized_by"] == "roster" and op["old_committee"] == [1, 2, 3]
    # signatures until node-4 is among the signers (the coordinator rotates signer sets): each verifies
    public = serialization.load_pem_public_key(str(key["public_key_pem"]).encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    signers: list[list[int]] = []
    for attempt in range(4):
        digest = hashlib.sha256(b"pay 2 BTC to Carol, %d" % attempt).hexdigest()
        as_person(monkeypatch, w, "requester1", ports)
        req = run_json(capsys, "request", "sign", "--key", key_id, "--digest", digest, "--request-id", f"add-{attempt}")
        as_person(monkeypatch, w, "approver1", ports)
        run_json(capsys, "approve", str(req["request_id"]), "--expect-digest", digest)
        as_person(monkeypatch, w, "approver2", ports)
        done = run_json(capsys, "--timeout", "120", "approve", str(req["request_id"]), "--expect-digest", digest, "--wait")
        assert done["state"] == "done", done
        sig = done["signature"]
        assert isinstance(sig, dict)
        public.verify(bytes.fromhex(sig["der"]), bytes.fromhex(digest), ec.ECDSA(Prehashed(hashes.SHA256())))
        signers.append(sig["signers"])
        if 4 in sig["signers"]:
            break
    assert any(4 in s for s in signers), signers
    # policy attest with MPC_GENESIS (roster version 1) reaches node-4 too (the verified roster in
    # force); a node this host cannot reach, while the coordinator stored it, is not a failure
    hosts.stop("node-1")
    as_person(monkeypatch, w, "admin1", ports)
    attested = run_json(capsys, "policy", "attest")
    assert attested["node-1"] == "unreachable (relayed by the coordinator)", attested
    assert attested["coordinator"] == "stored" and attested["node-4"] == attested["node-2"] != attested["node-1"], attested
    capsys.readouterr()
    assert mpc("policy", "attest") == 0
    assert "unreachable (relayed by the coordinator)" in capsys.readouterr().out
