"""``mpc-node init`` / ``join`` on a hostile directory (issue 13, R1).

Attacks that worked before the fix: ``--dir`` a symlink to another directory (init chmod-ed the
target and wrote its keys there), a directory or key files planted by another user (init reused
a TLS key, keystore and passphrase that user knows), a key file readable by others (reused as if
still secret) or a symlink to a key elsewhere. Each is refused naming the path; nothing changes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mpc_node import main as node_main

SCRYPT = "1024"
OTHER_UID = 4242


def node(*args: str) -> int:
    return node_main.main(list(args))


def init(d: Path) -> int:
    return node("init", "--dir", str(d), "--name", "node-1", "--endpoint", "localhost:17001", "--scrypt-n", SCRYPT)


def snapshot(d: Path) -> dict[str, tuple[bytes, int, int]]:
    out = {}
    for p in sorted(d.iterdir()):
        st = p.lstat()
        out[p.name] = (p.read_bytes() if p.is_file() and not p.is_symlink() else b"", st.st_mode, st.st_uid)
    return out


@pytest.fixture
def inited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    d = tmp_path / "node"
    assert init(d) == 0
    capsys.readouterr()
    return d


def test_dir_that_is_a_symlink_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    os.chmod(elsewhere, 0o755)  # noqa: S103 (the victim directory the attack would chmod)
    (tmp_path / "node").symlink_to(elsewhere)
    assert init(tmp_path / "node") == 1
    err = capsys.readouterr().err
    assert "dir:" in err and "symbolic link" in err and "Traceback" not in err
    assert list(elsewhere.iterdir()) == [] and stat.S_IMODE(elsewhere.stat().st_mode) == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make files owned by another user")
def test_dir_owned_by_another_user_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "node"
    d.mkdir(mode=0o777)
    os.chown(d, OTHER_UID, OTHER_UID)
    assert init(d) == 1
    err = capsys.readouterr().err
    assert "dir:" in err and f"uid {OTHER_UID}" in err
    assert list(d.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make files owned by another user")
@pytest.mark.parametrize("planted", ["tls.key", "keystore.json", "passphrase", "init.json", "enrolment-request.json"])
def test_files_planted_by_another_user_are_refused(inited: Path, planted: str, capsys: pytest.CaptureFixture[str]) -> None:
    os.chown(inited / planted, OTHER_UID, OTHER_UID)
    before = snapshot(inited)
    assert init(inited) == 1
    err = capsys.readouterr().err
    assert planted in err and f"uid {OTHER_UID}" in err
    assert snapshot(inited) == before


@pytest.mark.parametrize("secret", ["tls.key", "keystore.json", "passphrase"])
def test_a_secret_file_readable_by_others_is_refused(inited: Path, secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    os.chmod(inited / secret, 0o644)
    before = snapshot(inited)
    assert init(inited) == 1
    err = capsys.readouterr().err
    assert secret in err and "readable or writable by others" in err
    assert snapshot(inited) == before


@pytest.mark.parametrize("linked", ["tls.key", "keystore.json", "init.json"])
def test_a_key_file_that_is_a_symlink_is_refused(inited: Path, tmp_path: Path, linked: str, capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / f"outside-{linked}"
    (inited / linked).rename(outside)
    (inited / linked).symlink_to(outside)
    assert init(inited) == 1
    err = capsys.readouterr().err
    assert linked in err and "symbolic link" in err


def test_a_clean_rerun_still_works_and_modes_are_private(inited: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert init(inited) == 0
    assert stat.S_IMODE(inited.stat().st_mode) == 0o700
    for secret in ("tls.key", "keystore.json", "passphrase"):
        assert stat.S_IMODE((inited / secret).stat().st_mode) == 0o600


def test_a_passphrase_linked_to_a_mounted_secret_is_accepted_but_not_a_loose_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """deploy/entrypoint.sh links DIR/passphrase to a mounted Secret (0440) before the first init."""
    secret = tmp_path / "secret"
    secret.write_text("a passphrase from the Secret\n")
    os.chmod(secret, 0o440)
    d = tmp_path / "node"
    d.mkdir(mode=0o700)
    (d / "passphrase").symlink_to(secret)
    assert init(d) == 0
    assert init(d) == 0
    os.chmod(secret, 0o444)  # readable by everyone: refused
    assert init(d) == 1
    assert "passphrase" in capsys.readouterr().err
    if os.geteuid() == 0:
        os.chmod(secret, 0o440)
        os.chown(secret, OTHER_UID, OTHER_UID)  # someone else's file
        assert init(d) == 1
        assert f"uid {OTHER_UID}" in capsys.readouterr().err


# --- people (mpc identity init) and the CA (mpc pki init-ca) --------------------------------------


def mpc(*args: str) -> int:
    from mpcnet.client import cli as mpc_cli

    return mpc_cli.main(list(args))


def identity_init(d: Path) -> int:
    return mpc("identity", "init", "--dir", str(d), "--name", "admin1", "--role", "admin")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make files owned by another user")
@pytest.mark.parametrize("planted", ["signing.key", "tls.key"])
def test_identity_init_refuses_a_key_planted_by_another_user(tmp_path: Path, planted: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An admin's signing key someone else wrote into DIR would be adopted as the admin's own."""
    d = tmp_path / "id"
    assert identity_init(d) == 0
    os.chown(d / planted, OTHER_UID, OTHER_UID)
    capsys.readouterr()
    before = snapshot(d)
    assert identity_init(d) == 1
    err = capsys.readouterr().err
    assert planted in err and f"uid {OTHER_UID}" in err
    assert snapshot(d) == before


def test_identity_init_refuses_a_world_readable_signing_key_and_a_symlinked_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    d = tmp_path / "id"
    assert identity_init(d) == 0
    os.chmod(d / "signing.key", 0o644)
    assert identity_init(d) == 1
    assert "signing.key" in capsys.readouterr().err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    assert identity_init(tmp_path / "link") == 1
    assert mpc("pki", "init-ca", "--dir", str(tmp_path / "link")) == 1
    assert "symbolic link" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []
    assert identity_init(tmp_path / "id2") == 0 and mpc("pki", "init-ca", "--dir", str(tmp_path / "ca")) == 0
