"""Production enrolment (issue 13, design sections 1-2): requests, CA issuance, genesis, init/join.

Every refusal the issue names (a request whose signature is not by its identity key, a roster
signed by too few admins, a certificate whose CN differs from the roster name) and their
siblings; each refused ``join`` writes nothing. The end-to-end test is in test_enrolment_e2e.py.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator import main as coordinator_main
from mpc_node import main as node_main
from mpcnet.client import cli as mpc_cli
from mpcnet.client.cli_deploy import load_signing_key
from mpcnet.common.enrolment import (
    EnrolmentError,
    EnrolmentRequest,
    IdentityRequest,
    build_enrolment_request,
    issue_for_request,
    load_request,
    make_csr,
    parse_request,
)
from mpcnet.common.genesis import PolicySpec, build_genesis, load_genesis, sign_genesis, verify_genesis, write_genesis
from mpcnet.common.pki import CertPaths, create_ca, sign_csr

SCRYPT = "1024"
PEOPLE = (("admin1", "admin"), ("admin2", "admin"), ("approver1", "approver"), ("approver2", "approver"), ("requester1", "requester"))


def mpc(*args: str) -> int:
    return mpc_cli.main(list(args))


def node(*args: str) -> int:
    return node_main.main(list(args))


def coord(*args: str) -> int:
    return coordinator_main.main(list(args))


@dataclass
class World:
    """One deployment's hosts (a directory each) and the exchange of public files."""

    root: Path

    @property
    def ex(self) -> Path:
        return self.root / "ex"

    def host(self, name: str) -> Path:
        return self.root / name

    @property
    def ca(self) -> CertPaths:
        return CertPaths(self.host("ca") / "ca.pem", self.host("ca") / "ca.key")

    def request(self, name: str) -> Path:
        return self.ex / f"{name}.request.json"

    def cert(self, name: str) -> Path:
        return self.ex / f"{name}.pem"

    def genesis_args(self, nodes: int = 3) -> list[str]:
        ex = self.ex
        args = ["genesis", "new", "--out", str(ex / "genesis.json"), "--threshold", "2", "--ca", str(ex / "ca.pem"),
                "--admin", str(self.request("admin1")), "--admin", str(self.request("admin2")), "--admin-quorum", "2",
                "--approver", str(self.request("approver1")), "--approver", str(self.request("approver2")),
                "--approval-quorum", "2", "--requester", str(self.request("requester1"))]
        for i in range(1, nodes + 1):
            args += ["--node", str(self.request(f"node-{i}")), str(self.cert(f"node-{i}"))]
        return args

    def sign(self, admin: str) -> int:
        return mpc("genesis", "sign", str(self.ex / "genesis.json"), "--name", admin,
                   "--signing-key", str(self.host(admin) / "signing.key"))

    def join(self, i: int, genesis: Path | None = None, cert: Path | None = None, ca: Path | None = None) -> int:
        return node("join", "--dir", str(self.host(f"node-{i}")), "--genesis", str(genesis or self.ex / "genesis.json"),
                    "--cert", str(cert or self.cert(f"node-{i}")), "--ca", str(ca or self.ex / "ca.pem"))


def enrol_world(root: Path, ports: list[int] | None = None, nodes: int = 3) -> World:
    """Section 1 of the design up to an unsigned genesis: CA, people, nodes, coordinator, certificates."""
    w = World(root)
    ex = w.ex
    ex.mkdir()
    assert mpc("pki", "init-ca", "--dir", str(w.host("ca")), "--name", "Example MPC CA") == 0
    shutil.copy(w.ca.cert, ex / "ca.pem")
    for name, role in PEOPLE:
        assert mpc("identity", "init", "--dir", str(w.host(name)), "--name", name, "--role", role) == 0
        shutil.copy(w.host(name) / "identity-request.json", w.request(name))
    ports = ports or [17000 + i for i in range(nodes + 1)]
    for i in range(1, nodes + 1):
        assert node("init", "--dir", str(w.host(f"node-{i}")), "--name", f"node-{i}", "--endpoint", f"localhost:{ports[i]}",
                    "--listen", f"127.0.0.1:{ports[i]}", "--scrypt-n", SCRYPT) == 0
        shutil.copy(w.host(f"node-{i}") / "enrolment-request.json", w.request(f"node-{i}"))
    assert coord("init", "--dir", str(w.host("coordinator")), "--endpoint", f"localhost:{ports[0]}",
                 "--listen", f"127.0.0.1:{ports[0]}", "--scrypt-n", SCRYPT) == 0
    shutil.copy(w.host("coordinator") / "enrolment-request.json", w.request("coordinator"))
    for r in sorted(ex.glob("*.request.json")):
        assert mpc("pki", "sign-csr", "--ca-dir", str(w.host("ca")), "--request", str(r),
                   "--out", str(r.with_name(r.name.replace(".request.json", ".pem")))) == 0
    assert mpc(*w.genesis_args(nodes)) == 0
    return w


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> World:
    return enrol_world(tmp_path_factory.mktemp("enrol"))


@pytest.fixture
def world(built: World, tmp_path: Path) -> World:
    """A private copy of the module's world (tests edit files)."""
    shutil.copytree(built.root, tmp_path / "w", symlinks=True)
    return World(tmp_path / "w")


def signed(w: World) -> World:
    assert w.sign("admin1") == 0
    assert w.sign("admin2") == 0
    return w


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def refused_writing_nothing(w: World, i: int, capsys: pytest.CaptureFixture[str], *, expect: str, **kw: Any) -> str:
    d = w.host(f"node-{i}")
    before = snapshot(d)
    capsys.readouterr()
    assert w.join(i, **kw) == 1
    err = capsys.readouterr().err
    assert expect in err, err
    assert snapshot(d) == before
    assert not (d / "config.json").exists()
    return err


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


# --- requests --------------------------------------------------------------------------------


def test_request_verifies_and_signature_must_be_by_its_identity_key(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    req = load_request(world.request("node-1"))
    assert isinstance(req, EnrolmentRequest) and req.name == "node-1" and req.role == "node"
    # the request carries node-2's identity key: the signature (by node-1's key) does not verify
    other = load_request(world.request("node-2"))
    assert isinstance(other, EnrolmentRequest)
    doc = dict(req.to_dict(), identity_key=other.identity_key.hex())
    with pytest.raises(EnrolmentError) as e:
        parse_request(doc)
    assert e.value.field == "signature"
    # and the CA refuses it, writing no certificate
    bad = world.ex / "bad.request.json"
    bad.write_text(json.dumps(doc))
    capsys.readouterr()
    assert mpc("pki", "sign-csr", "--ca-dir", str(world.host("ca")), "--request", str(bad), "--out", str(world.ex / "bad.pem")) == 1
    assert "signature" in capsys.readouterr().err
    assert not (world.ex / "bad.pem").exists()


def test_a_request_signed_by_a_key_it_does_not_name_is_refused() -> None:
    """Someone builds a request for a victim's identity key, signed by their own key."""
    victim, attacker = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    enc = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    victim_public = victim.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(EnrolmentError) as e:
        build_enrolment_request("node", "node-9", "localhost:7009", attacker, victim_public, enc, ec.generate_private_key(ec.SECP256R1()))
    assert e.value.field == "signature"


@pytest.mark.parametrize(
    ("field", "value", "refused"),
    [
        ("name", "node-1", "csr.subject"),  # a foreign request renamed: the CSR still says node-2
        ("name", "evil\x1b[2J\nname", "name"),  # hostile text
        ("endpoint", "evil\x1b[31m:1", "endpoint"),
        ("endpoint", "otherhost:7002", "csr.san"),  # the CSR does not cover another host
        ("role", "admin", "role"),
        ("version", 2, "version"),
        ("identity_in_token", "yes", "identity_in_token"),
        ("signature", "00" * 64, "signature"),
        ("extra", 1, "unknown field"),
    ],
)
def test_request_fields_are_checked(world: World, field: str, value: object, refused: str) -> None:
    doc = load_request(world.request("node-2")).to_dict()
    doc[field] = value
    with pytest.raises(EnrolmentError) as e:
        parse_request(doc)
    assert refused in str(e.value)
    assert "\x1b" not in str(e.value) and "\n" not in str(e.value)


def test_identity_request_checks(world: World) -> None:
    req = load_request(world.request("admin1"))
    assert isinstance(req, IdentityRequest) and req.role == "admin"
    for field, value, refused in (("role", "node", "role"), ("name", "admin2", "csr.subject"), ("signature", "11" * 64, "signature")):
        doc = dict(req.to_dict(), **{field: value})
        with pytest.raises(EnrolmentError, match=refused):
            parse_request(doc)


def test_person_certificate_is_client_only_and_node_certificate_server(world: World) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    person = x509.load_pem_x509_certificate(world.cert("admin1").read_bytes())
    eku = person.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    n = x509.load_pem_x509_certificate(world.cert("node-1").read_bytes())
    assert ExtendedKeyUsageOID.SERVER_AUTH in n.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value


# --- init ------------------------------------------------------------------------------------


def test_init_is_safe_to_rerun_and_refuses_another_nodes_dir(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    d = world.host("node-1")
    before = snapshot(d)
    args = ["init", "--dir", str(d), "--name", "node-1", "--endpoint", "localhost:17001", "--listen", "127.0.0.1:17001",
            "--scrypt-n", SCRYPT]
    capsys.readouterr()
    assert node(*args) == 0
    assert load_request(world.request("node-1")).fingerprint in capsys.readouterr().out
    assert snapshot(d) == before  # nothing overwritten
    # an interrupted init (request and TLS key missing) is completed with the same keys
    (d / "enrolment-request.json").unlink()
    (d / "tls.key").unlink()
    assert node(*args) == 0
    again = load_request(d / "enrolment-request.json")
    first = load_request(world.request("node-1"))
    assert isinstance(again, EnrolmentRequest) and isinstance(first, EnrolmentRequest)
    assert (again.identity_key, again.encryption_key) == (first.identity_key, first.encryption_key)
    assert (d / "keystore.json").read_bytes() == before["keystore.json"]
    # another node's name (or endpoint) in this DIR: refused, nothing changes
    now = snapshot(d)
    capsys.readouterr()
    assert node("init", "--dir", str(d), "--name", "node-9", "--endpoint", "localhost:17001", "--scrypt-n", SCRYPT) == 1
    assert "holds the init of node 'node-1'" in capsys.readouterr().err
    assert snapshot(d) == now
    for mode in (d.stat().st_mode, (d / "keystore.json").stat().st_mode, (d / "tls.key").stat().st_mode, (d / "passphrase").stat().st_mode):
        assert mode & 0o077 == 0


def test_init_refuses_keys_without_an_init_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "n"
    d.mkdir()
    (d / "keystore.json").write_text("{}")
    assert node("init", "--dir", str(d), "--name", "node-1", "--endpoint", "localhost:7001", "--scrypt-n", SCRYPT) == 1
    assert "no init.json" in capsys.readouterr().err
    assert sorted(p.name for p in d.iterdir()) == ["keystore.json"]


def test_init_hostile_name_and_endpoint_are_refused_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, endpoint in (("bad\x1b[2Jname", "localhost:7001"), ("node-1", "host\n:7001"), ("node-1", "localhost:99999")):
        assert node("init", "--dir", str(tmp_path / "n"), "--name", name, "--endpoint", endpoint, "--scrypt-n", SCRYPT) == 1
        err = capsys.readouterr().err
        assert "\x1b" not in err and err.count("\n") == 1, err
        assert not (tmp_path / "n" / "keystore.json").exists()


def test_init_with_pkcs11_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Incomplete options are a usage error; a complete set goes to the key protection (the
    PKCS#11 half may be absent in this build: then a clean error, never a traceback)."""
    d = tmp_path / "n"
    assert node("init", "--dir", str(d), "--name", "node-1", "--endpoint", "localhost:7001", "--pkcs11-module", "/x.so") == 2
    assert "--pkcs11-token" in capsys.readouterr().err
    pin = tmp_path / "pin"
    pin.write_text("1234\n")
    rc = node("init", "--dir", str(d), "--name", "node-1", "--endpoint", "localhost:7001", "--pkcs11-module", str(tmp_path / "missing.so"),
              "--pkcs11-token", "node-1", "--pkcs11-pin-file", str(pin))
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and "1234" not in err
    assert "pkcs11" in err.lower()


# --- CA and genesis --------------------------------------------------------------------------


def test_genesis_needs_a_quorum_and_join_refuses_too_few(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    g = world.ex / "genesis.json"
    assert mpc("genesis", "verify", str(g)) == 1
    assert world.sign("admin1") == 0
    capsys.readouterr()
    assert mpc("genesis", "verify", str(g)) == 1
    assert "signed by too few admins" in capsys.readouterr().err
    refused_writing_nothing(world, 1, capsys, expect="roster: signed by too few admins")
    assert world.sign("admin1") == 0  # repeating is a no-op
    assert len(load_genesis(g).signatures) == 1
    assert world.sign("admin2") == 0
    capsys.readouterr()
    assert mpc("genesis", "verify", str(g)) == 0
    out = capsys.readouterr().out
    assert f"genesis digest: {load_genesis(g).digest().hex()}" in out


def test_genesis_sign_refuses_non_admin_wrong_key_and_other_digest(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    g = world.ex / "genesis.json"
    before = g.read_bytes()
    assert mpc("genesis", "sign", str(g), "--name", "approver1", "--signing-key", str(world.host("approver1") / "signing.key")) == 1
    assert "not an admin" in capsys.readouterr().err
    assert mpc("genesis", "sign", str(g), "--name", "admin1", "--signing-key", str(world.host("admin2") / "signing.key")) == 1
    assert "signing_key" in capsys.readouterr().err
    assert mpc("genesis", "sign", str(g), "--name", "admin1", "--signing-key", str(world.host("admin1") / "signing.key"),
               "--expect-digest", "ab" * 32) == 1
    assert "expect_digest" in capsys.readouterr().err
    assert g.read_bytes() == before
    digest = load_genesis(g).digest().hex()
    assert mpc("genesis", "sign", str(g), "--name", "admin1", "--signing-key", str(world.host("admin1") / "signing.key"),
               "--expect-digest", digest) == 0


@pytest.mark.parametrize("edit", ["threshold", "endpoint", "ca", "policy"])
def test_genesis_edited_after_signing_is_refused(world: World, edit: str, capsys: pytest.CaptureFixture[str]) -> None:
    signed(world)
    g = world.ex / "genesis.json"

    def change(doc: dict[str, Any]) -> None:
        if edit == "threshold":
            doc["threshold"] = 3
        elif edit == "endpoint":
            doc["roster_history"][0]["change"]["new_roster"]["entries"][0]["endpoint"] = "evil.example:7001"
        elif edit == "ca":
            other = create_ca(world.root / "other-ca")
            doc["ca"] = other.cert.read_text()
        else:
            doc["initial_policy"]["change"]["new_policy"]["approval_quorum"] = 1

    edit_json(g, change)
    capsys.readouterr()
    assert mpc("genesis", "verify", str(g)) == 1
    refused_writing_nothing(world, 1, capsys, expect="")


def test_join_refuses_a_certificate_whose_cn_differs_from_the_roster_name(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    signed(world)
    # a CA-signed certificate for node-1's own TLS key, but CN node-9
    from mpcnet.common.enrolment import load_tls_key

    key = load_tls_key(world.host("node-1") / "tls.key")
    pem = sign_csr(world.ca, make_csr(key, "node", "node-9", ("localhost",)))
    bad = world.ex / "node-1-cn.pem"
    bad.write_bytes(pem)
    refused_writing_nothing(world, 1, capsys, expect="CN 'node-9' differs from the roster name 'node-1'", cert=bad)


@pytest.mark.parametrize("case", ["other-node", "other-ca", "wrong-ou", "no-san", "not-roster-cert"])
def test_join_refuses_other_certificates(world: World, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    signed(world)
    from mpcnet.common.enrolment import load_tls_key

    key = load_tls_key(world.host("node-1") / "tls.key")
    bad = world.ex / "bad.pem"
    expect = {"other-node": "cert", "other-ca": "not issued by the given CA", "wrong-ou": "OU 'coordinator'",
              "no-san": "cert.san", "not-roster-cert": "tls_fingerprint"}[case]
    if case == "other-node":
        shutil.copy(world.cert("node-2"), bad)
    elif case == "other-ca":
        pem = sign_csr(create_ca(world.root / "other-ca"), make_csr(key, "node", "node-1", ("localhost",)))
        bad.write_bytes(pem)
    elif case == "wrong-ou":
        bad.write_bytes(sign_csr(world.ca, make_csr(key, "coordinator", "node-1", ("localhost",))))
    elif case == "no-san":
        bad.write_bytes(sign_csr(world.ca, make_csr(key, "node", "node-1", ("otherhost",))))
    else:  # a second, valid certificate for the same key and name: not the one the admins signed
        bad.write_bytes(sign_csr(world.ca, make_csr(key, "node", "node-1", ("localhost",))))
    refused_writing_nothing(world, 1, capsys, expect=expect, cert=bad)


def test_join_refuses_a_genesis_without_this_node_and_a_foreign_ca(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    # a genesis of nodes 1 and 2 only: node 3 is not in it
    (world.ex / "genesis.json").unlink()
    assert mpc(*world.genesis_args(2)) == 0
    signed(world)
    refused_writing_nothing(world, 3, capsys, expect="no active entry with this node's identity and encryption keys")
    other = create_ca(world.root / "other-ca")
    refused_writing_nothing(world, 1, capsys, expect="ca: is not the CA the genesis names", ca=other.cert)


def test_genesis_new_refusals(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    (world.ex / "genesis.json").unlink()
    args = world.genesis_args()
    cases: list[tuple[list[str], str]] = [
        # an admin's identity request given as --node; a node's request given as --admin
        (args + ["--node", str(world.request("admin1")), str(world.cert("admin1"))], "not a node's enrolment request"),
        ([a if a != str(world.request("admin2")) else str(world.request("node-1")) for a in args], "not a person's identity request"),
        ([a if a != str(world.request("approver1")) else str(world.request("admin1")) for a in args], "approver[0]"),
        # the same node twice (a replayed request): duplicate keys and names
        (args + ["--node", str(world.request("node-1")), str(world.cert("node-1"))], "roster"),
        (args + ["--admin", str(world.request("admin1"))], "given twice"),
        # a node's certificate that belongs to another request
        ([*args[:-1], str(world.cert("node-2"))], "node[2]"),
        ([a if a != "2" or i != 5 else "4" for i, a in enumerate(args)], "threshold"),
    ]
    for bad, expect in cases:
        capsys.readouterr()
        assert mpc(*bad) == 1, expect
        err = capsys.readouterr().err
        assert expect in err, (expect, err)
        assert not (world.ex / "genesis.json").exists()


def test_genesis_show_escapes_and_lists_every_entry(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert mpc("genesis", "show", str(world.ex / "genesis.json")) == 0
    out = capsys.readouterr().out
    for name in ("node-1", "node-2", "node-3", "admin1", "admin2", "approver1", "approver2", "requester1"):
        assert name in out
    assert "signed by: nobody yet" in out


def test_genesis_api_roundtrip(world: World) -> None:
    g = load_genesis(world.ex / "genesis.json")
    keys = {n: load_signing_key(world.host(n) / "signing.key") for n in ("admin1", "admin2")}
    g2 = sign_genesis(sign_genesis(g, "admin1", keys["admin1"]), "admin2", keys["admin2"])
    roster = verify_genesis(g2)
    assert [e.name for e in roster.entries] == ["node-1", "node-2", "node-3"]
    write_genesis(world.root / "g.json", g2)
    assert load_genesis(world.root / "g.json") == g2
    with pytest.raises(EnrolmentError, match="too few"):
        verify_genesis(replace(g2, signatures=g2.signatures[:1]))
    reqs = [load_request(world.request(n)) for n in ("admin1", "admin2")]
    with pytest.raises(EnrolmentError, match="node"):
        build_genesis(threshold=2, ca_pem=world.ca.cert.read_bytes(), admins=reqs, admin_quorum=2, approvers=[], requesters=[],  # type: ignore[arg-type]
                      policy=PolicySpec(1), nodes=[])


def test_issue_for_request_uses_the_request_csr(world: World) -> None:
    from cryptography import x509

    req = load_request(world.request("node-2"))
    cert = x509.load_pem_x509_certificate(issue_for_request(world.ca, req))
    assert cert.public_key().public_bytes(*_spki()) == x509.load_pem_x509_csr(req.csr_pem.encode()).public_key().public_bytes(*_spki())


def _spki() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return Encoding.DER, PublicFormat.SubjectPublicKeyInfo


# --- join ------------------------------------------------------------------------------------


def test_join_writes_configs_the_processes_accept(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    from coordinator.config import load_coordinator_config
    from mpc_node.config import load_node_config

    signed(world)
    for i in (1, 2, 3):
        assert world.join(i) == 0
        cfg = load_node_config(world.host(f"node-{i}") / "config.json")
        assert (cfg.index, cfg.name, cfg.threshold, cfg.parties) == (i, f"node-{i}", 2, 3)
        node_main.check_own_certificate(cfg)
    c = world.host("coordinator")
    assert coord("join", "--dir", str(c), "--genesis", str(world.ex / "genesis.json"), "--cert", str(world.cert("coordinator")),
                 "--ca", str(world.ex / "ca.pem")) == 0
    cc = load_coordinator_config(c / "config.json")
    assert sorted(cc.nodes) == [1, 2, 3]
    # the coordinator refuses a node's certificate as its own
    os.unlink(c / "config.json")
    assert coord("join", "--dir", str(c), "--genesis", str(world.ex / "genesis.json"), "--cert", str(world.cert("node-1")),
                 "--ca", str(world.ex / "ca.pem")) == 1
    assert not (c / "config.json").exists()


def test_node_refuses_to_start_with_a_certificate_for_another_name(world: World) -> None:
    from mpc_node.config import load_node_config
    from mpcnet.common.enrolment import load_tls_key
    from mpcnet.common.pki import PkiError

    signed(world)
    assert world.join(1) == 0
    d = world.host("node-1")
    key = load_tls_key(d / "tls.key")
    (d / "tls.pem").write_bytes(sign_csr(world.ca, make_csr(key, "node", "node-2", ("localhost",))))
    with pytest.raises(PkiError, match="not node 'node-1'"):
        node_main.check_own_certificate(load_node_config(d / "config.json"))


# --- hostile arguments -----------------------------------------------------------------------

HOSTILE = ["-1", "5000000000", "\uff11\uff12", "a\x00b\n\x1b[2J", "\u202e", "x" * 5000, "0x" + "g" * 64, "", "/"]


def _deploy_commands() -> list[tuple[tuple[str, ...], Any]]:
    return [(p, c) for p, c in mpc_cli.commands() if p[0] in ("pki", "identity", "genesis")]


@pytest.mark.parametrize("path", [p for p, _ in _deploy_commands()], ids=[" ".join(p) for p, _ in _deploy_commands()])
def test_offline_commands_refuse_hostile_arguments_with_one_line(
    path: tuple[str, ...], world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Every value of every option, hostile: one escaped line on stderr, exit 1 or 2, no
    traceback; the exchange directory is unchanged."""
    import click

    command = dict(_deploy_commands())[path]
    monkeypatch.chdir(world.root)
    valid = {"--ca-dir": str(world.host("ca")), "--request": str(world.request("node-1")), "--out": "out.pem",
             "--dir": "newdir", "--name": "admin1", "--role": "admin", "--threshold": "2", "--ca": str(world.ex / "ca.pem"),
             "--admin": str(world.request("admin1")), "--admin-quorum": "1", "--approval-quorum": "1",
             "--signing-key": str(world.host("admin1") / "signing.key")}
    before = snapshot(world.ex)
    params = [p for p in command.params if p.name != "help" and not (isinstance(p, click.Option) and p.is_flag)]
    for target in params:
        for value in HOSTILE:
            argv: list[str] = list(path)
            for p in params:
                if isinstance(p, click.Argument):
                    argv.append(value if p is target else str(world.ex / "genesis.json"))
                elif p is target:
                    argv += [p.opts[0], value] + ([value] if p.nargs == 2 else [])
                elif p.required:
                    argv += [p.opts[0], valid.get(p.opts[0], "x")] + ([str(world.cert("node-1"))] if p.nargs == 2 else [])
            capsys.readouterr()
            rc = mpc(*argv)
            err = capsys.readouterr().err
            if rc == 0:  # a hostile value the command may accept (e.g. a CA name): it did its job
                continue
            assert rc in (1, 2), (argv[:6], err[:300])
            assert err.count("\n") == 1 and err.isascii() and err[:-1].isprintable() and "Traceback" not in err, (argv[:6], err[:300])
            assert len(err) < 2000
    assert snapshot(world.ex) == before


def test_identity_init_is_safe_to_rerun(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    d = world.host("admin1")
    before = snapshot(d)
    capsys.readouterr()
    assert mpc("identity", "init", "--dir", str(d), "--name", "admin1", "--role", "admin") == 0
    assert load_request(d / "identity-request.json").fingerprint in capsys.readouterr().out
    assert snapshot(d) == before  # keys and request kept
    assert mpc("identity", "init", "--dir", str(world.root / "p"), "--name", "x", "--role", "node") == 1
    assert "role" in capsys.readouterr().err
    assert mpc("pki", "init-ca", "--dir", str(world.host("ca"))) == 1  # never overwrites a CA
    assert "already holds a CA key" in capsys.readouterr().err


def test_sign_csr_of_a_bare_csr_checks_its_subject(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """External tooling: ``--csr FILE --name N --role R``; the subject must be exactly that."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = world.root / "ext.csr"
    out = world.root / "ext.pem"
    ca = ["--ca-dir", str(world.host("ca"))]
    csr.write_bytes(make_csr(key, "node", "node-7", ("node-7.example",)))
    assert mpc("pki", "sign-csr", *ca, "--csr", str(csr), "--name", "node-8", "--role", "node", "--out", str(out)) == 1
    assert "csr.subject" in capsys.readouterr().err and not out.exists()
    assert mpc("pki", "sign-csr", *ca, "--csr", str(csr), "--name", "node-7", "--role", "admin", "--out", str(out)) == 1
    assert not out.exists()
    assert mpc("pki", "sign-csr", *ca, "--csr", str(csr), "--name", "node-7", "--role", "node", "--out", str(out)) == 0
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    csr.write_bytes(make_csr(key, "node", "node-7"))  # a server CSR without host names
    assert mpc("pki", "sign-csr", *ca, "--csr", str(csr), "--name", "node-7", "--role", "node", "--out", str(world.root / "o2.pem")) == 1
    assert "csr.san" in capsys.readouterr().err
    capsys.readouterr()
    assert mpc("pki", "sign-csr", *ca, "--csr", str(csr), "--request", str(world.request("node-1")), "--out", str(out)) == 2
    assert mpc("pki", "sign-csr", *ca, "--csr", str(csr), "--out", str(out)) == 2
