"""An option documented "with --X" given without --X is a usage error naming it (exit 2), never
silently ignored: ``mpc audit verify --public-key`` without ``--db``, ``mpc pki sign-csr
--name/--role`` without ``--csr`` (siblings of ``mpc status --interval`` without ``--watch``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpcnet.client import cli as mpc_cli


def test_audit_verify_public_key_needs_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cluster.json").write_text("{}")
    code = mpc_cli.main(["--cluster", str(tmp_path), "--as", "auditor1", "audit", "verify", "--public-key", "00" * 32])
    err = capsys.readouterr().err
    assert code == 2 and "--public-key" in err and "--db" in err and "Traceback" not in err


@pytest.mark.parametrize("extra", [("--name", "node-1"), ("--role", "node"), ("--name", "n", "--role", "node")])
def test_sign_csr_name_and_role_need_csr(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...]) -> None:
    req = tmp_path / "request.json"
    req.write_text("{}")
    out = tmp_path / "cert.pem"
    code = mpc_cli.main(["pki", "sign-csr", "--ca-dir", str(tmp_path), "--request", str(req), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and "--csr" in err and "Traceback" not in err
    assert not out.exists()
