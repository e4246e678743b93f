"""``mpc-node init`` with passphrase protection SIGKILLed (a real process) at random moments, then
re-run: it completes, and the published request is signed by the keystore's identity and names
its encryption key and the TLS key on disk (issue 13, R2; the token variant is
tests/hsm/test_crash_init.py)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from mpcnet.common.enrolment import EnrolmentRequest, load_request
from mpcnet.common.keystore import load_keystore
from tests.deploy.crashkit import run, run_killed
from tests.test_suite_settings import scaled

NODE = "mpc_node.main:main"


def _args(d: Path) -> list[str]:
    return ["init", "--dir", str(d), "--name", "node-1", "--endpoint", "localhost:17001", "--scrypt-n", "1024"]


def test_init_killed_anywhere_then_re_run_publishes_its_own_keys(tmp_path: Path) -> None:
    for i in range(scaled(4)):
        d = tmp_path / f"n{i}"
        run_killed(NODE, "mpcnet.common.hostenrol:init_host", 0.0, 0.12, _args(d))
        done = run(NODE, _args(d))
        assert done.returncode == 0, done.stderr
        req = load_request(d / "enrolment-request.json")  # the identity signature verifies
        assert isinstance(req, EnrolmentRequest) and f"fingerprint: {req.fingerprint}" in done.stdout
        keys = load_keystore(d / "keystore.json", (d / "passphrase").read_bytes().rstrip(b"\n"))
        assert (keys.identity_public, keys.encryption_public) == (req.identity_key, req.encryption_key)
        tls = serialization.load_pem_private_key((d / "tls.key").read_bytes(), None)
        assert req.csr_public_key_der() == tls.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        for f in ("passphrase", "keystore.json", "tls.key"):
            assert (d / f).stat().st_mode & 0o777 == 0o600, f
        published = (d / "enrolment-request.json").read_bytes()
        again = run(NODE, _args(d))  # and a third run changes nothing
        assert again.returncode == 0 and (d / "enrolment-request.json").read_bytes() == published
        assert f"fingerprint: {req.fingerprint}" in again.stdout
