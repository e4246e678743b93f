"""A node's operational key rotation (mpc_node/rotation.py): staging, the certificate checks, the
switch on a roster naming the staged keys, and a kill after each step of the switch."""

from __future__ import annotations

import datetime as dt
import os
import stat
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from governance.roster import RosterEntry, rotation_proof_message as proof_message
from mpc_node.rotation import KEYS_NOT_HELD, SWITCH_STEPS, KeyRotation, recover_switch
from mpcnet.common.keystore import create_keystore, load_keystore
from mpcnet.common.pki import CertPaths, certificate_fingerprint, create_ca, issue_cert, load_certificate, sign_csr
from mpcnet.common.rpc import RpcError
from mpcnet.common.stores.audit import AuditLog, verify_audit

PASS = b"correct horse"
NAME = "node-1"


class Crash(Exception):
    """A simulated kill."""


def _node(tmp: Path) -> SimpleNamespace:
    ca = create_ca(tmp / "ca")
    cert = issue_cert(ca, tmp / "node", NAME, role="node", server=True, hosts=("localhost", "127.0.0.1"))
    (tmp / "passphrase").write_bytes(PASS + b"\n")
    keys = create_keystore(tmp / "node" / "keystore.json", PASS, scrypt_n=2**10)
    cfg = SimpleNamespace(
        name=NAME, index=1, store=tmp / "node" / "node.db", keystore=tmp / "node" / "keystore.json",
        passphrase_file=tmp / "passphrase", passphrase_env=None, cert=cert, ca_cert=ca.cert, scrypt_n=2**10,
        audit_db=tmp / "node" / "audit.db",
    )
    audit = AuditLog.open(cfg.audit_db, component=NAME, signing_key=keys.identity)
    host = SimpleNamespace(cfg=cfg, audit=audit, keys=keys, keys_lock=threading.Lock(), health=None)
    return SimpleNamespace(ca=ca, cfg=cfg, host=host, rotation=KeyRotation(host), old=keys)  # type: ignore[arg-type]


def _entry(identity: bytes, encryption: bytes, fingerprint: bytes) -> RosterEntry:
    return RosterEntry(1, NAME, identity, encryption, fingerprint, "127.0.0.1:7001", key_version=2)


def _staged_and_certified(n: SimpleNamespace) -> tuple[Any, bytes]:
    prepared = n.rotation.prepare("admin1")
    fingerprint = n.rotation.install_certificate(sign_csr(n.ca, prepared.tls_csr_pem), "admin1")
    return prepared, fingerprint


def _audit_actions(n: SimpleNamespace) -> list[tuple[str, str]]:
    return [(e.action, e.outcome) for e in n.host.audit.entries()]


def test_prepare_stages_encrypted_keys_and_a_csr_like_the_current_certificate(tmp_path: Path) -> None:
    n = _node(tmp_path)
    p = n.rotation.prepare("admin1")
    paths = n.rotation.paths
    for f in (paths.keystore, paths.tls_key):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    staged = load_keystore(paths.keystore, PASS)
    assert (staged.identity_public, staged.encryption_public) == (p.identity_public, p.encryption_public)
    assert p.identity_public != n.old.identity_public
    with pytest.raises(TypeError):  # the staged TLS key is encrypted with the passphrase
        serialization.load_pem_private_key(paths.tls_key.read_bytes(), password=None)
    csr = x509.load_pem_x509_csr(p.tls_csr_pem)
    current = load_certificate(n.cfg.cert.cert.read_bytes())
    assert csr.is_signature_valid and csr.subject == current.subject
    san = x509.SubjectAlternativeName
    assert csr.extensions.get_extension_for_class(san).value == current.extensions.get_extension_for_class(san).value
    Ed25519PublicKey.from_public_bytes(n.old.identity_public).verify(
        p.proof, proof_message(p.identity_public, p.encryption_public, p.tls_csr_pem)
    )
    assert ("key-rotation-prepared", "staged") in _audit_actions(n)


def test_prepare_again_replaces_the_staged_set_and_drops_its_certificate(tmp_path: Path) -> None:
    n = _node(tmp_path)
    first, _ = _staged_and_certified(n)
    second = n.rotation.prepare("admin1")
    assert second.identity_public != first.identity_public
    assert not n.rotation.paths.tls_cert.exists()
    assert load_keystore(n.rotation.paths.keystore, PASS).identity_public == second.identity_public


def test_install_certificate_returns_the_der_fingerprint(tmp_path: Path) -> None:
    n = _node(tmp_path)
    p = n.rotation.prepare("admin1")
    pem = sign_csr(n.ca, p.tls_csr_pem)
    assert n.rotation.install_certificate(pem, "admin1") == certificate_fingerprint(load_certificate(pem))
    assert ("key-rotation-certificate", "staged") in _audit_actions(n)


def _cert(ca: CertPaths, key: ec.EllipticCurvePrivateKey, *, cn: str = NAME, ou: str = "node",
          hosts: tuple[str, ...] = ("localhost",), server: bool = True, days: int = 30) -> bytes:
    ca_cert = load_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC)
    usages = [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH] + ([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou), x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts if h != "127.0.0.1"]
                                                   + [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
    )
    return b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _staged_tls_key(n: SimpleNamespace) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(n.rotation.paths.tls_key.read_bytes(), password=PASS)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("garbage", "certificate_pem"),
        ("two", "certificate_pem"),
        ("other-ca", "certificate_pem.issuer"),
        ("other-key", "certificate_pem.public_key"),
        ("other-name", "certificate_pem.subject"),
        ("other-role", "certificate_pem.subject"),
        ("other-hosts", "certificate_pem.subject_alt_name"),
        ("client-only", "certificate_pem.extended_key_usage"),
    ],
)
def test_install_certificate_refuses_naming_the_field(tmp_path: Path, case: str, field: str) -> None:
    n = _node(tmp_path)
    n.rotation.prepare("admin1")
    key = _staged_tls_key(n)
    good = _cert(n.ca, key)
    pem = {
        "garbage": b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
        "two": good + good,
        "other-ca": _cert(create_ca(tmp_path / "ca2"), key),
        "other-key": _cert(n.ca, ec.generate_private_key(ec.SECP256R1())),
        "other-name": _cert(n.ca, key, cn="node-2"),
        "other-role": _cert(n.ca, key, ou="coordinator"),
        "other-hosts": _cert(n.ca, key, hosts=("evil.example",)),
        "client-only": _cert(n.ca, key, server=False),
    }[case]
    with pytest.raises(RpcError) as e:
        n.rotation.install_certificate(pem, "admin1")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message.startswith(field + ":"), e.value.message
    assert not n.rotation.paths.tls_cert.exists()
    assert _audit_actions(n)[-1] == ("key-rotation-certificate", "refused")
    assert n.rotation.install_certificate(good, "admin1")  # the right one still goes in


def test_install_certificate_without_staged_keys_is_a_failed_precondition(tmp_path: Path) -> None:
    n = _node(tmp_path)
    with pytest.raises(RpcError) as e:
        n.rotation.install_certificate(b"x", "admin1")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and e.value.message.startswith("staged:")


def _assert_switched(n: SimpleNamespace, identity: bytes, encryption: bytes, fingerprint: bytes) -> None:
    keys = load_keystore(n.cfg.keystore, PASS)
    assert (keys.identity_public, keys.encryption_public) == (identity, encryption)
    cert = load_certificate(n.cfg.cert.cert.read_bytes())
    assert certificate_fingerprint(cert) == fingerprint
    key = serialization.load_pem_private_key(n.cfg.cert.key.read_bytes(), password=None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
    assert not any(n.rotation.paths.directory.iterdir()), list(n.rotation.paths.directory.iterdir())
    report = verify_audit(n.cfg.audit_db, n.old.identity_public)  # the log's first key, rotations followed
    assert report.ok, report
    with AuditLog.open(n.cfg.audit_db, component=NAME, signing_key=keys.identity) as log:
        actions = [e.action for e in log.entries()]
    assert actions.count("audit-key-rotated") == 1
    # the switch is audited exactly once, whichever step a kill interrupted (the marker's event)
    assert actions.count("key-rotation") == 1, actions


def test_roster_naming_the_staged_keys_switches_everything(tmp_path: Path) -> None:
    n = _node(tmp_path)
    p, fp = _staged_and_certified(n)
    old_keys = n.host.keys
    assert n.rotation.on_roster(_entry(p.identity_public, p.encryption_public, fp), "admin1")
    assert n.host.keys is not old_keys and n.host.keys.identity_public == p.identity_public
    assert n.host.audit.signing_public_key == p.identity_public
    assert n.rotation.problem == ""
    n.host.audit.close()
    _assert_switched(n, p.identity_public, p.encryption_public, fp)


def test_roster_naming_the_live_keys_changes_nothing(tmp_path: Path) -> None:
    n = _node(tmp_path)
    _staged_and_certified(n)
    fp = certificate_fingerprint(load_certificate(n.cfg.cert.cert.read_bytes()))
    assert not n.rotation.on_roster(_entry(n.old.identity_public, n.old.encryption_public, fp), "admin1")
    assert n.host.keys is n.old and n.rotation.problem == ""
    assert n.rotation.paths.keystore.exists()  # still staged


@pytest.mark.parametrize("certified", [True, False])
def test_roster_naming_keys_not_held_leaves_the_node_not_serving(tmp_path: Path, certified: bool) -> None:
    n = _node(tmp_path)
    if certified:
        p, fp = _staged_and_certified(n)
        entry = _entry(p.identity_public, n.old.encryption_public, fp)  # half staged, half live: not held
    else:
        p = n.rotation.prepare("admin1")  # staged but no certificate yet: the roster's fingerprint is unknown
        entry = _entry(p.identity_public, p.encryption_public, b"\x07" * 32)
    assert not n.rotation.on_roster(entry, "admin1")
    assert n.rotation.problem == KEYS_NOT_HELD
    assert n.host.keys is n.old
    assert _audit_actions(n)[-1] == ("key-rotation", "keys-not-held")
    assert load_keystore(n.cfg.keystore, PASS).identity_public == n.old.identity_public


@pytest.mark.parametrize("step", SWITCH_STEPS)
def test_a_kill_after_any_step_of_the_switch_starts_with_the_new_complete_set(tmp_path: Path, step: str) -> None:
    n = _node(tmp_path)
    p, fp = _staged_and_certified(n)

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    n.rotation.fault = crash
    with pytest.raises(Crash):
        n.rotation.on_roster(_entry(p.identity_public, p.encryption_public, fp), "admin1")
    n.host.audit.close()  # the process dies
    assert recover_switch(n.cfg, PASS) is (step != "cleanup")  # after cleanup there is nothing left to do
    assert recover_switch(n.cfg, PASS) is False  # idempotent
    _assert_switched(n, p.identity_public, p.encryption_public, fp)


def test_a_kill_before_the_switch_starts_leaves_the_old_complete_set(tmp_path: Path) -> None:
    n = _node(tmp_path)
    _staged_and_certified(n)
    n.host.audit.close()
    assert recover_switch(n.cfg, PASS) is False
    assert load_keystore(n.cfg.keystore, PASS).identity_public == n.old.identity_public
    assert verify_audit(n.cfg.audit_db, n.old.identity_public).ok
    with AuditLog.open(n.cfg.audit_db, component=NAME, signing_key=n.old.identity):
        pass


class FakeRosterState:
    """The NodeRoster surface KeyRotation.attach uses."""

    def __init__(self, roster: Any) -> None:
        self.roster = roster
        self.listeners: list[Any] = []

    def current(self) -> Any:
        return self.roster

    def add_listener(self, fn: Any) -> None:
        self.listeners.append(fn)

    def install(self, roster: Any) -> None:
        old, self.roster = self.roster, roster
        for fn in self.listeners:
            fn(old, roster)


class FakeHealth:
    def __init__(self) -> None:
        self.status: dict[str, int] = {}

    def set(self, name: str, status: int) -> None:
        self.status[name] = status


def _roster(version: int, entry: RosterEntry) -> SimpleNamespace:
    return SimpleNamespace(version=version, entry=lambda i: entry if i == 1 else None)


def test_attach_switches_on_install_and_reports_keys_not_held(tmp_path: Path) -> None:
    from grpc_health.v1 import health_pb2

    n = _node(tmp_path)
    n.host.health = FakeHealth()
    live_fp = certificate_fingerprint(load_certificate(n.cfg.cert.cert.read_bytes()))
    state = FakeRosterState(_roster(1, _entry(n.old.identity_public, n.old.encryption_public, live_fp)))
    n.rotation.attach(state)
    assert n.rotation.problem == "" and n.host.keys is n.old
    p, fp = _staged_and_certified(n)
    state.install(_roster(2, _entry(p.identity_public, p.encryption_public, fp)))
    assert n.host.keys.identity_public == p.identity_public and n.rotation.switched_versions == {2}
    stranger = RosterEntry(1, NAME, b"\x09" * 32, p.encryption_public, fp, "127.0.0.1:7001", key_version=3)
    state.install(_roster(3, stranger))
    assert n.rotation.problem == KEYS_NOT_HELD
    assert set(n.host.health.status.values()) == {health_pb2.HealthCheckResponse.NOT_SERVING}


def test_a_roster_installed_before_a_kill_switches_at_the_next_start(tmp_path: Path) -> None:
    n = _node(tmp_path)
    p, fp = _staged_and_certified(n)  # the roster naming the staged set is stored, then the node dies
    n.rotation.attach(FakeRosterState(_roster(2, _entry(p.identity_public, p.encryption_public, fp))))
    assert n.host.keys.identity_public == p.identity_public
    n.host.audit.close()
    _assert_switched(n, p.identity_public, p.encryption_public, fp)


def test_a_marker_naming_other_keys_stops_the_start(tmp_path: Path) -> None:
    from mpcnet.common.keystore import KeystoreError

    n = _node(tmp_path)
    _staged_and_certified(n)
    n.rotation.paths.marker.write_text('{"identity_public": "' + "ab" * 32 + '"}')
    n.host.audit.close()
    with pytest.raises(KeystoreError, match="does not name the staged keys"):
        recover_switch(n.cfg, PASS)
    assert load_keystore(n.cfg.keystore, PASS).identity_public == n.old.identity_public  # nothing changed


@pytest.mark.parametrize("step", ["prepared", "certificate"])
def test_a_kill_between_staging_and_its_entry_is_audited_once_at_the_next_start(tmp_path: Path, step: str) -> None:
    """Regression: PrepareKeyRotation / InstallStagedCertificate wrote the staged files, then
    appended their entry: a kill between left staged keys (or a staged certificate) on disk with
    no entry. The next start (KeyRotation.audit_staged) appends it, once, with the event token
    derived from what was staged; an entry already appended is not repeated."""
    n = _node(tmp_path)

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    if step == "certificate":
        p = n.rotation.prepare("admin1")
    n.rotation.fault = crash
    with pytest.raises(Crash):
        if step == "prepared":
            n.rotation.prepare("admin1")
        else:
            n.rotation.install_certificate(sign_csr(n.ca, p.tls_csr_pem), "admin1")
    action = {"prepared": "key-rotation-prepared", "certificate": "key-rotation-certificate"}[step]
    assert [o for a, o in _audit_actions(n) if a == action] == []  # cut off by the kill
    restarted = KeyRotation(n.host)  # the next start
    assert restarted.audit_staged() == 1
    assert restarted.audit_staged() == 0  # once
    assert [o for a, o in _audit_actions(n) if a == action] == ["staged-at-start"]
    assert [o for a, o in _audit_actions(n) if a == "key-rotation-prepared"] == (
        ["staged-at-start"] if step == "prepared" else ["staged"]  # the prepare's own entry is not repeated
    )
    n.host.audit.close()
    assert verify_audit(n.cfg.audit_db, n.old.identity_public).ok
