"""``mpc-cluster`` (detached trio supervisor) and the ``mpc`` CLI, as a user runs them."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpcnet.cluster import child_env

from .test_cluster_api import verify_independently


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", *args], env=child_env(), capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr}")
    return p


def mpc(d: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("mpcnet.cli", "--cluster", str(d), *args, check=check)


@pytest.fixture(scope="module")
def cdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-cluster")
    run("mpcnet.cluster_cli", "up", "--nodes", "3", "--threshold", "2", "--dir", str(d), "--scrypt-n", "1024")
    try:
        yield d
    finally:
        run("mpcnet.cluster_cli", "stop", "--dir", str(d), check=False)
        info = json.loads((d / "cluster.json").read_text())
        for p in info["nodes"] + [info["coordinator"]] + [{"pid": info.get("supervisor_pid")}]:
            if p.get("pid"):
                try:
                    os.kill(p["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass


def status(d: Path) -> dict:
    return json.loads(run("mpcnet.cluster_cli", "status", "--dir", str(d), "--json", check=False).stdout)


def test_up_writes_cluster_json_and_everything_is_healthy(cdir: Path) -> None:
    st = status(cdir)
    assert st["status"] == "running" and st["threshold"] == 2 and st["nodes"] == 3
    assert all(p["healthy"] for p in st["processes"])
    for f in ("ca/ca.pem", "certs/client.pem", "nodes/node-1/keystore.json", "nodes/node-1/passphrase", "coordinator/config.json"):
        assert (cdir / f).exists(), f
    assert oct((cdir / "nodes/node-1/passphrase").stat().st_mode & 0o777) == "0o600"
    again = run("mpcnet.cluster_cli", "up", "--nodes", "3", "--threshold", "2", "--dir", str(cdir))
    assert "already running" in again.stdout


def test_keygen_sign_pubkey_keys_with_json(cdir: Path) -> None:
    key = json.loads(mpc(cdir, "keygen", "--label", "cli", "--json").stdout)
    assert key["status"] == "active" and key["label"] == "cli"
    digest = hashlib.sha256(b"cli").digest()
    sig = json.loads(mpc(cdir, "sign", "--key", key["key_id"], "--digest", digest.hex(), "--path", "m/0/1", "--json").stdout)
    assert set(sig) >= {"r", "s", "recovery_id", "der", "public_key", "request_id"}
    pub = json.loads(mpc(cdir, "pubkey", "--key", key["key_id"], "--path", "m/0/1", "--json").stdout)
    assert pub["public_key"] == sig["public_key"]
    assert pub["public_key_uncompressed"].startswith("04") and len(pub["public_key_uncompressed"]) == 130
    assert pub["ethereum_address"].startswith("0x") and len(pub["ethereum_address"]) == 42
    verify_independently(bytes.fromhex(pub["public_key"]), bytes.fromhex(sig["der"]), digest)
    keys = json.loads(mpc(cdir, "keys", "--json").stdout)
    assert key["key_id"] in [k["key_id"] for k in keys]
    req = json.loads(mpc(cdir, "request", "--id", sig["request_id"], "--json").stdout)
    assert req["state"] == "succeeded" and req["signature"]["der"] == sig["der"]
    human = mpc(cdir, "sign", "--key", key["key_id"], "--digest", digest.hex()).stdout
    assert "recovery_id" in human and "der" in human


def test_cli_errors_name_the_field(cdir: Path) -> None:
    key = json.loads(mpc(cdir, "keys", "--json").stdout)[0]["key_id"]
    p = mpc(cdir, "sign", "--key", key, "--digest", "ab" * 31, check=False)
    assert p.returncode == 1 and "INVALID_ARGUMENT: digest: must be 32 bytes, got 31" in p.stderr
    p = mpc(cdir, "pubkey", "--key", "00" * 32, check=False)
    assert p.returncode == 1 and "NOT_FOUND" in p.stderr
    p = mpc(cdir, "sign", "--key", key, "--digest", "00" * 32, "--path", "m/0'", check=False)
    assert p.returncode == 2 and "hardened" in p.stderr


def test_crashed_node_is_restarted_and_reported(cdir: Path) -> None:
    before = status(cdir)
    victim = before["processes"][1]
    os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = status(cdir)
        p = st["processes"][1]
        if p["restarts"] == victim["restarts"] + 1 and p["healthy"] and p["pid"] != victim["pid"]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"node was not restarted: {st}")
    assert "node-2" in (cdir / "logs" / "supervisor.log").read_text()


def test_stop_then_up_again_reuses_keys_and_data(cdir: Path) -> None:
    keys = {k["key_id"] for k in json.loads(mpc(cdir, "keys", "--json").stdout)}
    run("mpcnet.cluster_cli", "stop", "--dir", str(cdir))
    assert status(cdir)["status"] == "stopped"
    run("mpcnet.cluster_cli", "up", "--nodes", "3", "--threshold", "2", "--dir", str(cdir))
    assert {k["key_id"] for k in json.loads(mpc(cdir, "keys", "--json").stdout)} == keys
    key = sorted(keys)[0]
    digest = hashlib.sha256(b"after re-up").digest()
    sig = json.loads(mpc(cdir, "sign", "--key", key, "--digest", digest.hex(), "--json").stdout)
    verify_independently(bytes.fromhex(sig["public_key"]), bytes.fromhex(sig["der"]), digest)
    p = run("mpcnet.cluster_cli", "up", "--nodes", "5", "--threshold", "3", "--dir", str(cdir), check=False)
    assert "already running" in p.stdout


def test_foreground_ctrl_c_stops_everything(tmp_path: Path) -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "mpcnet.cluster_cli", "up", "-n", "2", "-t", "2", "--dir", str(tmp_path), "--scrypt-n", "1024", "--foreground"],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        info = None
        while time.monotonic() < deadline:
            try:
                info = json.loads((tmp_path / "cluster.json").read_text())
                if info["status"] == "running":
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        assert info and info["status"] == "running"
        pids = [n["pid"] for n in info["nodes"]] + [info["coordinator"]["pid"]]
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0 and "stopped" in out
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if p.poll() is None:
            p.kill()
