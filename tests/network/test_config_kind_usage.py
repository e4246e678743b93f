"""``mpc-node``, ``mpc-coordinator`` and the offline ``mpc-node rekey-store`` given a config that is
missing, unreadable (a directory, a FIFO, a device, larger than 16 MiB), not UTF-8, not JSON, not a JSON object, or of the wrong kind
(the other program's config, a keystore) exit 2 with ONE line on stderr naming the file and what
is wrong: never a traceback, never an "internal error" (a non-UTF-8 file was one, and /dev/zero a
MemoryError), never a hang (a FIFO was read for ever)."""

from __future__ import annotations

import json
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
    if not (d / "fifo.json").exists():
        os.mkfifo(d / "fifo.json")  # nobody writes it: reading it would wait for ever
    with open(d / "huge.json", "wb") as f:  # sparse: 32 MiB of spaces' worth, no disk used
        f.truncate(32 * 1024 * 1024)
    (d / "link.json").symlink_to("/dev/zero")  # a symbolic link to a device read without end
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
        "fifo": (d / "fifo.json", "cannot read (not a regular file (a FIFO))"),
        "device": (d / "link.json", "cannot read (not a regular file (a character device))"),
        "huge": (d / "huge.json", "cannot read (larger than 16777216 bytes)"),
    }


@pytest.mark.parametrize("prog", sorted(PROGRAMS))
@pytest.mark.parametrize(
    "case", ["missing", "directory", "not-utf8", "not-json", "not-object", "keystore", "other-kind", "fifo", "device", "huge"]
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
    shown = path  # every program names the config as given (a link is not resolved first, as mpc-node reads it)
    assert lines[0].startswith(f"{prog}: error: {what} {shown}: {reason}"), lines[0]


@pytest.mark.parametrize("prog", ["mpc-node", "mpc-coordinator"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [("a\0b", "must not contain a NUL character"), ("", "must be a path, not empty"),
     ("\ud800x", "is not encodable as a file name")],
)  # fmt: skip
def test_a_path_field_that_names_no_file_is_one_line_and_exit_2(lay: Layout, tmp_path: Path, prog: str, value: str, reason: str) -> None:
    """A path field holding a NUL (or empty, or a lone surrogate) was an internal error
    ('ValueError: embedded null byte') on its first use; now a config error naming the field."""
    src = lay.coordinator_config if prog == "mpc-coordinator" else lay.node_config(1)
    doc = json.loads(src.read_text())
    doc["keystore"] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, *PROGRAMS[prog], str(path)], capture_output=True, env=env, cwd=REPO, timeout=120, check=False)
    err = proc.stderr.decode()
    lines = err.strip().splitlines()
    assert proc.returncode == 2, err
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    assert lines[0].startswith(f"{prog}: error: {path}: keystore: {reason}"), lines[0]


@pytest.mark.parametrize("prog", ["mpc-node", "mpc-coordinator"])
def test_a_log_file_that_cannot_be_opened_is_one_line_not_an_internal_error(lay: Layout, tmp_path: Path, prog: str) -> None:
    """log_file naming a directory (or under a file) was 'internal error: IsADirectoryError'."""
    src = lay.coordinator_config if prog == "mpc-coordinator" else lay.node_config(1)
    doc = json.loads(src.read_text())
    (tmp_path / "plain").write_text("x")
    for target, why in ((tmp_path, "Is a directory"), (tmp_path / "plain" / "node.log", "File exists")):
        doc["log_file"] = str(target)
        path = tmp_path / "config.json"
        path.write_text(json.dumps(doc))
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.run(
            [sys.executable, *PROGRAMS[prog], str(path)], capture_output=True, env=env, cwd=REPO, timeout=120, check=False
        )
        err = proc.stderr.decode()
        lines = err.strip().splitlines()
        assert proc.returncode == 1, err
        assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
        assert lines[0] == f"{prog}: cannot start: log_file {target}: cannot open ({why})", lines[0]


@pytest.mark.parametrize(
    ("prog", "key"),
    [("mpc-node", "session_timeout_s"), ("mpc-coordinator", "step_timeout_s"), ("mpc-coordinator", "sweep_interval_s")],
)  # fmt: skip
def test_a_duration_too_long_to_wait_is_a_config_error(lay: Layout, tmp_path: Path, prog: str, key: str) -> None:
    """1e308 seconds is finite, so it passed the check; then every gRPC call with it as deadline
    failed at once (DEADLINE_EXCEEDED) and an Event.wait of it raised OverflowError in a
    background thread (the sweep stopped for good). Now exit 2 naming the field."""
    src = lay.coordinator_config if prog == "mpc-coordinator" else lay.node_config(1)
    doc = json.loads(src.read_text())
    doc[key] = 1e308
    path = src.parent / "too-long.json"  # beside the original: its relative paths still resolve
    path.write_text(json.dumps(doc))
    try:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.run(
            [sys.executable, *PROGRAMS[prog], str(path)], capture_output=True, env=env, cwd=REPO, timeout=60, check=False
        )
    finally:
        path.unlink()
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert f"{key}: must be at most 3.16224e+07 seconds" in err, err
