"""``mpc-node``, ``mpc-coordinator`` and the offline ``mpc-node rekey-store`` given a config that is
missing, unreadable (a directory), not UTF-8, not JSON, not a JSON object, or of the wrong kind
(the other program's config, a keystore) exit 2 with ONE line on stderr naming the file and what
is wrong: never a traceback, never an "internal error" (a non-UTF-8 file was one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpcnet.cluster.launcher import Layout, prepare

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = {
    "mpc-node": ["-m", "mpc_node.main", "--config"],
    "mpc-coordinator": ["-m", "coordinator.main", "--config"],
    "mpc-node rekey-store": [
        "-m", "mpc_node.main", "rekey-store", "--pkcs11-module", "/nonexistent/libsofthsm2.so", "--pkcs11-token", "t",
        "--pkcs11-pin-env", "MPC_TEST_PIN", "--config",
    ],
    "mpc-node reset-clock-floor": ["-m", "mpc_node.main", "reset-clock-floor", "--config"],
}  # fmt: skip


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("config-kind"), 3, 2, scrypt_n=2**10, test_mode=True)


def _files(lay: Layout, d: Path, prog: str) -> dict[str, tuple[Path, str]]:
    """case -> (the file given to ``prog``, the reason it must give)."""
    (d / "dir.json").mkdir(exist_ok=True)
    (d / "latin1.json").write_bytes(b'{"name": "n\xe9ud"}')
    (d / "broken.json").write_text('{"index": 1,')
    (d / "list.json").write_text("[1, 2]")
    own = "coordinator config" if prog == "mpc-coordinator" else "node config"
    other = (
        (lay.node_config(1), "is a node config (it has 'index'), not a coordinator config") if prog == "mpc-coordinator"
        else (lay.coordinator_config, "is a coordinator config (it has 'nodes'), not a node config")
    )  # fmt: skip
    return {
        "missing": (d / "missing.json", "cannot read (No such file or directory)"),
        "directory": (d / "dir.json", "cannot read (Is a directory)"),
        "not-utf8": (d / "latin1.json", "not UTF-8 text (byte 0xe9 at offset 11)"),
        "not-json": (d / "broken.json", "not valid JSON ("),
        "not-object": (d / "list.json", "must be a JSON object, not list"),
        "keystore": (lay.node_dir(1) / "keystore.json", f"is a keystore (it has 'identity_public'), not a {own}"),
        "other-kind": other,
    }


@pytest.mark.parametrize("prog", sorted(PROGRAMS))
@pytest.mark.parametrize(
    "case", ["missing", "directory", "not-utf8", "not-json", "not-object", "keystore", "other-kind"]
)  # fmt: skip
def test_a_bad_config_is_one_line_naming_the_file_and_exit_2(lay: Layout, tmp_path: Path, prog: str, case: str) -> None:
    path, reason = _files(lay, tmp_path, prog)[case]
    env = dict(os.environ, PYTHONPATH=str(REPO), MPC_TEST_PIN="1234")
    proc = subprocess.run(
        [sys.executable, *PROGRAMS[prog], str(path)], capture_output=True, env=env, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    err = proc.stderr.decode()
    lines = err.strip().splitlines()
    assert proc.returncode == 2, err
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    what = "coordinator config" if prog == "mpc-coordinator" else "node config"
    assert lines[0].startswith(f"{prog}: error: {what} {path}: {reason}"), lines[0]
