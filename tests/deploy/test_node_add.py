"""Adding a node later (issue 13): the roster entry from a node's own enrolment request and its
CA-issued certificate (``mpc node add --enrolment REQUEST --cert CERT``), the roster history file
``mpc-node join --roster`` takes, their refusals, and the coordinator's retry of a failed
roster-implied reshare to an added node. The end-to-end run is test_node_add_e2e.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import coordinator.keyops as keyops
from coordinator.keyop_store import KeyOpRecord
from coordinator.keyops import KeyOperations
from governance.keyop import KeyOperation, KeyOpKind, SignedKeyOperation
from governance.roster import Roster, RosterChange, SignedRosterChange, add_node, sign_roster_change
from mpcnet.client.cli_deploy import load_signing_key
from mpcnet.client.nodeenrol import entry_from_request, next_free_index
from mpcnet.common.enrolment import EnrolmentError, issue_for_request, load_request
from mpcnet.common.genesis import load_genesis
from mpcnet.common.pki import certificate_fingerprint, create_ca
from mpcnet.common.rosterfile import load_roster_history, verify_against_genesis
from tests.deploy.test_enrolment import SCRYPT, World, built, enrol_world, mpc, node, signed, snapshot

__all__ = ["built"]


@pytest.fixture
def world(built: World, tmp_path: Path) -> World:
    """A private copy of the module's world with a signed genesis and a 4th node inited and CA-signed."""
    shutil.copytree(built.root, tmp_path / "w", symlinks=True)
    w = signed(World(tmp_path / "w"))
    n4 = w.host("node-4")
    assert node("init", "--dir", str(n4), "--name", "node-4", "--endpoint", "localhost:17004", "--listen", "127.0.0.1:17004",
                "--scrypt-n", SCRYPT) == 0
    shutil.copy(n4 / "enrolment-request.json", w.request("node-4"))
    w.cert("node-4").write_bytes(issue_for_request(w.ca, load_request(w.request("node-4"))))
    return w


def roster_v1(w: World) -> Roster:
    return load_genesis(w.ex / "genesis.json").roster_change.change.new_roster


def ca_pem(w: World) -> bytes:
    return (w.ex / "ca.pem").read_bytes()


def history_adding_node_4(w: World, admins: tuple[str, ...] = ("admin1", "admin2")) -> list[SignedRosterChange]:
    g = load_genesis(w.ex / "genesis.json")
    entry, _ = entry_from_request(w.request("node-4"), w.cert("node-4").read_bytes(), ca_pem(w), roster_v1(w))
    change = RosterChange(add_node(roster_v1(w), entry), roster_v1(w).digest(), g.admin_set.digest())
    sigs = tuple(sign_roster_change(change, a, load_signing_key(w.host(a) / "signing.key")) for a in admins)
    return [g.roster_change, SignedRosterChange(change, sigs)]


def write_history(path: Path, history: list[SignedRosterChange]) -> Path:
    path.write_text(json.dumps([h.to_dict() for h in history]))
    return path


# --- the roster entry from a request and a certificate ---------------------------------------


def test_the_entry_takes_the_next_free_index_and_the_certificate_fingerprint(world: World) -> None:
    r = roster_v1(world)
    assert next_free_index(r) == 4
    entry, request = entry_from_request(world.request("node-4"), world.cert("node-4").read_bytes(), ca_pem(world), r)
    assert (entry.index, entry.name, entry.endpoint) == (4, "node-4", "localhost:17004") and entry.active and entry.key_version == 1
    assert (entry.identity_key, entry.encryption_key) == (request.identity_key, request.encryption_key)
    from cryptography import x509

    assert entry.tls_fingerprint == certificate_fingerprint(x509.load_pem_x509_certificate(world.cert("node-4").read_bytes()))
    assert entry_from_request(world.request("node-4"), world.cert("node-4").read_bytes(), ca_pem(world), r, 9)[0].index == 9
    # a revoked entry keeps its index: the next free one is still above it
    from governance.roster import revoke_node

    assert next_free_index(revoke_node(r, 3)) == 4


@pytest.mark.parametrize(("case", "field"), [
    ("other-ca", "cert"),             # the certificate is not issued by the CA the client trusts
    ("other-cert", "cert.subject"),   # node-3's certificate with node-4's request
    ("used-index", "index"),          # indices are never reused
    ("bad-signature", "signature"),   # the request's identity signature does not verify
    ("person", "role"),               # an identity request is not a node's
])
def test_a_request_and_certificate_that_do_not_match_are_refused(world: World, tmp_path: Path, case: str, field: str) -> None:
    req, cert, ca, index = world.request("node-4"), world.cert("node-4").read_bytes(), ca_pem(world), None
    if case == "other-ca":
        other = create_ca(tmp_path / "other-ca")
        cert = issue_for_request(other, load_request(req))
    elif case == "other-cert":
        cert = world.cert("node-3").read_bytes()
    elif case == "used-index":
        index = 2
    elif case == "bad-signature":
        doc = json.loads(req.read_text())
        doc["encryption_key"] = json.loads(world.request("node-3").read_text())["encryption_key"]
        req = tmp_path / "bad.json"
        req.write_text(json.dumps(doc))
    else:
        req = world.request("approver1")
    with pytest.raises(EnrolmentError) as e:
        entry_from_request(req, cert, ca, roster_v1(world), index)
    assert e.value.field == field, e.value


def test_node_add_cli_needs_cert_with_a_request_and_refuses_it_with_a_legacy_entry(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    """Refused before any call: usage errors naming the option (exit 2), nothing proposed."""
    base = ["--endpoint", "localhost:1", "--tls-cert", str(world.cert("admin1")), "--tls-key", str(world.host("admin1") / "tls.key"),
            "--tls-ca", str(world.ex / "ca.pem"), "--signing-key", str(world.host("admin1") / "signing.key"),
            "--genesis", str(world.ex / "genesis.json"), "--rpc-timeout", "2"]
    capsys.readouterr()
    assert mpc(*base, "node", "add", "--enrolment", str(world.request("node-4"))) == 2
    assert "--cert" in capsys.readouterr().err
    legacy = tmp_path / "entry.json"
    legacy.write_text(json.dumps({"index": 4, "name": "node-4", "identity_key": "00" * 32, "encryption_key": "00" * 32,
                                  "tls_fingerprint": "00" * 32, "endpoint": "localhost:17004"}))
    assert mpc(*base, "node", "add", "--enrolment", str(legacy), "--cert", str(world.cert("node-4"))) == 2
    assert "--cert/--index" in capsys.readouterr().err


# --- the roster history file and join --roster -------------------------------------------------


def test_join_with_the_published_roster_writes_the_whole_history(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    history = history_adding_node_4(world)
    path = write_history(world.ex / "roster.json", history)
    assert verify_against_genesis(load_genesis(world.ex / "genesis.json"), load_roster_history(path)).version == 2
    capsys.readouterr()
    assert node("join", "--dir", str(world.host("node-4")), "--genesis", str(world.ex / "genesis.json"),
                "--cert", str(world.cert("node-4")), "--ca", str(world.ex / "ca.pem"), "--roster", str(path)) == 0
    assert "joined as node 4 (node-4)" in capsys.readouterr().out
    config = json.loads((world.host("node-4") / "config.json").read_text())
    assert config["index"] == 4 and config["name"] == "node-4"
    assert config["governance"]["roster_history"] == [h.to_dict() for h in history]
    # node-1 joins with the same file too (its entry is in the newest roster)
    assert node("join", "--dir", str(world.host("node-1")), "--genesis", str(world.ex / "genesis.json"),
                "--cert", str(world.cert("node-1")), "--ca", str(world.ex / "ca.pem"), "--roster", str(path)) == 0


def test_coordinator_join_with_the_published_roster_dials_the_added_node(world: World) -> None:
    from tests.deploy.test_enrolment import coord

    history = history_adding_node_4(world)
    path = write_history(world.ex / "roster.json", history)
    assert coord("join", "--dir", str(world.host("coordinator")), "--genesis", str(world.ex / "genesis.json"),
                 "--cert", str(world.cert("coordinator")), "--ca", str(world.ex / "ca.pem"), "--roster", str(path)) == 0
    config = json.loads((world.host("coordinator") / "config.json").read_text())
    assert [n["index"] for n in config["nodes"]] == [1, 2, 3, 4]
    assert config["governance"]["roster_history"] == [h.to_dict() for h in history]


@pytest.mark.parametrize(("case", "expect"), [
    ("one-admin", "roster: signed by too few admins"),
    ("other-genesis", "roster[0]: is not the genesis's roster version 1"),
    ("not-a-list", "roster: must be a non-empty JSON list"),
    ("garbled", "roster[1]."),
    ("without-node-4", "roster: roster version 1 holds no active entry"),
])
def test_join_refuses_a_roster_file_that_does_not_verify(
    world: World, capsys: pytest.CaptureFixture[str], case: str, expect: str,
) -> None:
    path = world.ex / "roster.json"
    if case == "one-admin":
        write_history(path, history_adding_node_4(world, ("admin1",)))
    elif case == "other-genesis":
        h = history_adding_node_4(world)
        g = load_genesis(world.ex / "genesis.json")
        other = RosterChange(g.roster_change.change.new_roster, None, b"\x07" * 32)
        write_history(path, [SignedRosterChange(other, ()), h[1]])
    elif case == "not-a-list":
        path.write_text(json.dumps({"roster_history": []}))
    elif case == "garbled":
        docs = [h.to_dict() for h in history_adding_node_4(world)]
        docs[1]["change"] = "x"
        path.write_text(json.dumps(docs))
    else:
        write_history(path, history_adding_node_4(world)[:1])
    d = world.host("node-4")
    before = snapshot(d)
    capsys.readouterr()
    assert node("join", "--dir", str(d), "--genesis", str(world.ex / "genesis.json"), "--cert", str(world.cert("node-4")),
                "--ca", str(world.ex / "ca.pem"), "--roster", str(path)) == 1
    err = capsys.readouterr().err
    assert expect in err, err
    assert snapshot(d) == before


# --- the coordinator retries a failed roster-implied reshare to an added node ------------------

NOW = 10_000_000_000
ROSTER: Any = SimpleNamespace()  # the roster in force (active_entries is patched)
KEY = b"\x01" * 32


def _failed_follow(new_committee: tuple[int, ...], authorized_by: str = "roster", epoch: int = 3) -> KeyOpRecord:
    from crypto_core.group import G

    public = G.encode()
    op = KeyOperation(b"\x02" * 32, b"\x03" * 16, KeyOpKind.RESHARE, KEY, public, b"\x04" * 32, epoch, 2, (1, 2, 3), 2,
                      new_committee, 2, "roster version 2")
    return KeyOpRecord("op", KEY, SignedKeyOperation(op).to_bytes(), authorized_by, "failed", b"", (), (), (), "", 0, NOW - 1000,
                       NOW - 1000)


def _coordinator(ops: list[KeyOpRecord], healthy: dict[int, bool | None]) -> Any:
    started: list[bytes] = []

    def start(key_id: bytes, roster: Any) -> str:
        started.append(key_id)
        return "new-op"

    fake = SimpleNamespace(
        db=SimpleNamespace(
            expiry_ms=lambda wall: wall,  # the wall clock, never stepped here
            list_keys=lambda state: [SimpleNamespace(key_id=KEY, scheme="ecdsa-secp256k1")],
            list_key_operations=lambda key_id: ops,
        ),
        epoch_of=lambda k: (3, (1, 2, 3)), nodes={i: SimpleNamespace(healthy=h) for i, h in healthy.items()},
        start_roster_implied=start, started=started,
    )
    fake._failed_follow = lambda ops, epoch: KeyOperations._failed_follow(fake, ops, epoch)  # type: ignore[arg-type]
    fake._op = lambda rec: SignedKeyOperation.from_bytes(rec.signed).operation
    return fake


@pytest.fixture
def _roster_1234(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyops, "active_entries", lambda roster: [SimpleNamespace(index=i) for i in (1, 2, 3, 4)])
    monkeypatch.setattr(keyops, "now_ms", lambda: NOW)


@pytest.mark.usefixtures("_roster_1234")
@pytest.mark.parametrize(("ops", "node4", "starts"), [
    ([_failed_follow((1, 2, 3, 4))], True, True),            # node 4 answers now: retried at once
    ([_failed_follow((1, 2, 3, 4))], None, False),           # not yet: nothing started
    ([_failed_follow((1, 2, 3, 4))] * 2, True, False),       # the second failure in a row: the usual back-off (30 s)
    ([_failed_follow((1, 2, 3, 4), "admin-quorum")], True, False),  # an admin-chosen committee stays as chosen
    ([_failed_follow((1, 2, 3, 4), epoch=2)], True, False),  # an older epoch's operation
    ([_failed_follow((1, 2, 3, 5))], True, True),            # a follow of an older roster (node 5 since revoked): to 1-4 now
    ([_failed_follow((1, 2))], True, False),                 # a failed reshare that dropped nodes is not a follow that adds
    ([], True, False),                                        # never followed: an admin-chosen committee of 1-3
])
def test_a_failed_reshare_to_an_added_node_is_retried_once_it_answers(ops: list[KeyOpRecord], node4: bool | None, starts: bool) -> None:
    fake = _coordinator(ops, {1: True, 2: True, 3: True, 4: node4})
    assert (KeyOperations.reconcile(fake, ROSTER, backoff_ms=30_000) == ["new-op"]) is starts


# --- the genesis signing message -----------------------------------------------------------------


def test_genesis_sign_with_another_admins_key_names_the_admin_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = enrol_world(tmp_path)
    capsys.readouterr()
    assert mpc("genesis", "sign", str(w.ex / "genesis.json"), "--name", "admin1",
               "--signing-key", str(w.host("admin2") / "signing.key")) == 1
    err = capsys.readouterr().err
    assert "signing_key: is not the key of admin 'admin1' in the admin set" in err and "''" not in err, err
