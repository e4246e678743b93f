"""The off-line deploy commands killed (SIGKILL, real processes) at random moments and re-run, and
two admins signing one genesis at once (issue 13, R2).

Findings: ``mpc pki init-ca`` killed between writing ``ca.key`` and ``ca.pem`` could never be
re-run ("already holds a CA key (never overwritten)") although :func:`create_ca` completes
exactly that state; two ``mpc genesis sign`` of one file at once (read, sign, write) lost one
admin's signatures, each printing "signed by" (fixed: the read-sign-write holds a lock on the
genesis's directory, so the second signs the first's output).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mpcnet.client.cli_deploy import load_signing_key
from mpcnet.common.enrolment import IdentityRequest, load_request
from mpcnet.common.genesis import load_genesis, verify_genesis
from tests.deploy.crashkit import run, run_killed, start_paused
from tests.deploy.test_enrolment import World, enrol_world
from tests.test_suite_settings import scaled

MPC = "mpcnet.client.cli:main"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> World:
    return enrol_world(tmp_path_factory.mktemp("crash-offline"))


def _spki(key: object) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def test_init_ca_killed_between_its_key_and_its_certificate_completes_on_re_run(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    killed = run_killed(MPC, "mpcnet.common.pki:_self_signed_ca", 0, 0, ["pki", "init-ca", "--dir", str(ca)])
    assert killed.returncode == -9 and (ca / "ca.key").exists() and not (ca / "ca.pem").exists()
    done = run(MPC, ["pki", "init-ca", "--dir", str(ca)])
    assert done.returncode == 0, done.stderr
    cert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((ca / "ca.key").read_bytes(), None)
    assert _spki(cert) == _spki(key)
    again = run(MPC, ["pki", "init-ca", "--dir", str(ca)])
    assert again.returncode == 1 and "already holds a CA" in again.stderr  # a complete CA is never touched


def test_init_ca_killed_anywhere_then_re_run(tmp_path: Path) -> None:
    for i in range(scaled(3)):
        ca = tmp_path / f"ca{i}"
        run_killed(MPC, "mpcnet.client.cli_deploy:cmd_init_ca.callback", 0, 0.05, ["pki", "init-ca", "--dir", str(ca)])
        if not (ca / "ca.pem").exists():
            done = run(MPC, ["pki", "init-ca", "--dir", str(ca)])
            assert done.returncode == 0, done.stderr
        cert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
        assert _spki(cert) == _spki(serialization.load_pem_private_key((ca / "ca.key").read_bytes(), None))
        assert (ca / "ca.key").stat().st_mode & 0o777 == 0o600


def test_identity_init_killed_anywhere_then_re_run_publishes_its_own_keys(tmp_path: Path) -> None:
    for i in range(scaled(4)):
        d = tmp_path / f"id{i}"
        args = ["identity", "init", "--dir", str(d), "--name", "admin9", "--role", "admin"]
        run_killed(MPC, "mpcnet.client.cli_deploy:cmd_identity_init.callback", 0, 0.05, args)
        done = run(MPC, args)
        assert done.returncode == 0, done.stderr
        req = load_request(d / "identity-request.json")  # its signature verifies
        key = load_signing_key(d / "signing.key")
        assert isinstance(req, IdentityRequest)
        assert req.signing_key == key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert bytes.fromhex((d / "signing.pub").read_text().strip()) == req.signing_key
        tls = serialization.load_pem_private_key((d / "tls.key").read_bytes(), None)
        assert req.csr_public_key_der() == _spki(tls)
        assert f"fingerprint: {req.fingerprint}" in done.stdout


def test_sign_csr_killed_leaves_no_partial_certificate(built: World, tmp_path: Path) -> None:
    for i in range(scaled(3)):
        out = tmp_path / f"node-1.{i}.pem"
        args = ["pki", "sign-csr", "--ca-dir", str(built.host("ca")), "--request", str(built.request("node-1")), "--out", str(out)]
        run_killed(MPC, "mpcnet.client.cli_deploy:cmd_sign_csr.callback", 0, 0.05, args)
        if out.exists():  # whole or absent, never a torn file
            x509.load_pem_x509_certificate(out.read_bytes())
        assert run(MPC, args).returncode == 0
        x509.load_pem_x509_certificate(out.read_bytes())


def _copy(built: World, tmp_path: Path) -> World:
    shutil.copytree(built.root, tmp_path / "w", symlinks=True)
    return World(tmp_path / "w")


def _sign_args(w: World, admin: str) -> list[str]:
    return ["genesis", "sign", str(w.ex / "genesis.json"), "--name", admin, "--signing-key", str(w.host(admin) / "signing.key")]


def test_two_admins_signing_one_genesis_at_once_keep_both_signatures(built: World, tmp_path: Path) -> None:
    w = _copy(built, tmp_path)
    # each signer pauses between reading the file and writing it back: both read the unsigned file
    procs = [start_paused(MPC, "mpcnet.client.cli_deploy:write_genesis", 0.8, 0.8, _sign_args(w, a)) for a in ("admin1", "admin2")]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    genesis = load_genesis(w.ex / "genesis.json")
    assert {s.admin for s in genesis.signatures} == {"admin1", "admin2"}
    verify_genesis(genesis)  # both changes carry the quorum


def test_genesis_sign_killed_anywhere_then_re_run(built: World, tmp_path: Path) -> None:
    w = _copy(built, tmp_path)
    path = w.ex / "genesis.json"
    unsigned = path.read_bytes()
    for _ in range(scaled(3)):
        path.write_bytes(unsigned)
        run_killed(MPC, "mpcnet.client.cli_deploy:cmd_genesis_sign.callback", 0, 0.05, _sign_args(w, "admin1"))
        load_genesis(path)  # whole: the old file or the signed one
        assert run(MPC, _sign_args(w, "admin1")).returncode == 0
        assert run(MPC, _sign_args(w, "admin2")).returncode == 0
        verify_genesis(load_genesis(path))


def test_two_identity_inits_of_one_directory_at_once_publish_one_identity(tmp_path: Path) -> None:
    """Found: the second failed with "internal error (a bug, please report it): FileExistsError"
    (both generated a signing key; the second could not link its own). Now it waits and keeps
    the first's keys: both print the same fingerprint."""
    d = tmp_path / "id"
    args = ["identity", "init", "--dir", str(d), "--name", "admin9", "--role", "admin"]
    procs = [start_paused(MPC, "mpcnet.client.cli_deploy:write_atomic", 0.5, 0.5, args) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    req = load_request(d / "identity-request.json")
    assert all(f"fingerprint: {req.fingerprint}" in out for out, _ in outs), outs


def test_two_init_cas_of_one_directory_at_once_never_overwrite_the_key(tmp_path: Path) -> None:
    """Found: both exited 0 printing different CA fingerprints, the second's key written over the
    first's ("never overwrites"): whoever published the first's certificate published a CA whose
    key was gone. Now one makes the CA, the other is refused; the files match what was printed."""
    ca = tmp_path / "ca"
    args = ["pki", "init-ca", "--dir", str(ca)]
    procs = [start_paused(MPC, "mpcnet.common.pki:_self_signed_ca", t, t, args) for t in (0.8, 0.2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 1], outs
    made, refused = (outs[0], outs[1]) if procs[0].returncode == 0 else (outs[1], outs[0])
    assert "already holds a CA key (never overwritten)" in refused[1]
    cert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    assert _spki(cert) == _spki(serialization.load_pem_private_key((ca / "ca.key").read_bytes(), None))
    from mpcnet.common.pki import certificate_fingerprint

    assert f"sha256: {certificate_fingerprint(cert).hex()}" in made[0]
