"""``mpc-cluster`` (detached trio supervisor) and the ``mpc`` CLI, as a user runs them: the
identities it creates, and the whole request / approve / sign / audit flow.

``mpc-cluster`` always runs as a process. ``mpc`` runs in this process (:func:`cli`: the same
``main``, exit code and output, without a Python start per call), except in the end-to-end tests
that run it as a process (:func:`mpc_process`): the keygen / request / approve / pubkey / keys /
audit flow, ``policy show``, and ``request watch``.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpcnet.cluster.launcher import child_env

from .cli_util import cli
from .test_cluster_api import verify_independently


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", *args], env=child_env(), capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr}")
    return p


def stop_cluster(d: Path) -> None:
    """``mpc-cluster stop --dir d``, then SIGKILL whatever of its processes ``cluster.json`` still names."""
    run("mpcnet.cluster.cli", "stop", "--dir", str(d), check=False)
    info = json.loads((d / "cluster.json").read_text())
    for p in info["nodes"] + [info["coordinator"]] + [{"pid": info.get("supervisor_pid")}]:
        if p.get("pid"):
            try:
                os.kill(p["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def mpc(d: Path, who: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cli("--cluster", str(d), "--as", who, *args, check=check)


def mpc_process(d: Path, who: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The same as :func:`mpc`, as a separate process (``python -m mpcnet.client.cli``)."""
    return run("mpcnet.client.cli", "--cluster", str(d), "--as", who, *args, check=check)


def sign_via_cli(d: Path, key_id: str, digest: bytes, *extra: str, via=mpc) -> dict:
    """requester1 asks, approver1 and approver2 approve (the second with --wait): the signature.
    ``via``: :func:`mpc` (in this process) or :func:`mpc_process`."""
    req = json.loads(via(
        d, "requester1", "request", "sign", "--key", key_id, "--digest", digest.hex(), "--description", "cli test", *extra, "--json"
    ).stdout)
    assert req["state"] == "pending_approval" and req["approvals"] == []
    p = via(d, "approver1", "approve", req["request_id"], "--expect-digest", "00" * 32, check=False)
    assert p.returncode == 1 and "nothing was signed" in p.stderr
    p = via(d, "approver1", "approve", req["request_id"], "--expect-digest", digest.hex(), "--expect-path", "m/9/9", check=False)
    assert p.returncode == 1 and "derivation_path: request" in p.stderr and "nothing was signed" in p.stderr
    via(d, "approver1", "approve", req["request_id"], "--expect-digest", digest.hex(), "--expect-key", key_id)
    done = json.loads(via(d, "approver2", "approve", req["request_id"], "--wait", "--json").stdout)
    assert done["state"] == "done", done
    return done["signature"]


@pytest.fixture(scope="module")
def cdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-cluster")
    run("mpcnet.cluster.cli", "up", "--nodes", "3", "--threshold", "2", "--dir", str(d), "--scrypt-n", "1024")
    try:
        yield d
    finally:
        stop_cluster(d)


def status(d: Path) -> dict:
    return json.loads(run("mpcnet.cluster.cli", "status", "--dir", str(d), "--json", check=False).stdout)


def test_up_writes_cluster_json_and_everything_is_healthy(cdir: Path) -> None:
    st = status(cdir)
    assert st["status"] == "running" and st["threshold"] == 2 and st["nodes"] == 3
    assert all(p["healthy"] for p in st["processes"])
    for f in ("ca/ca.pem", "certs/client.pem", "nodes/node-1/keystore.json", "nodes/node-1/passphrase", "coordinator/config.json",
              "coordinator/keystore.json", "governance.json", "nodes/node-1/audit.db", "coordinator/audit.db"):
        assert (cdir / f).exists(), f
    assert oct((cdir / "nodes/node-1/passphrase").stat().st_mode & 0o777) == "0o600"
    info = json.loads((cdir / "cluster.json").read_text())
    roles = {n: i["role"] for n, i in info["identities"].items()}
    assert roles == {"admin1": "admin", "admin2": "admin", "admin3": "admin", "requester1": "requester",
                     "approver1": "approver", "approver2": "approver", "approver3": "approver", "auditor1": "auditor",
                     "officer1": "officer", "officer2": "officer", "officer3": "officer"}
    for name in roles:
        d = cdir / "identities" / name
        assert (d / f"{name}.pem").exists() and (d / "signing.pub").read_text().strip() == info["identities"][name]["public_key"]
        assert oct((d / "signing.key").stat().st_mode & 0o777) == "0o600"
    assert set(info["admin_set"]["admins"]) == {"admin1", "admin2", "admin3"} and info["admin_set"]["quorum"] == 2
    assert set(info["audit"]) == {"coordinator", "node-1", "node-2", "node-3"}
    policy = json.loads(mpc_process(cdir, "auditor1", "policy", "show", "--json").stdout)
    assert policy["approval_quorum"] == 2 and sorted(policy["approvers"]) == ["approver1", "approver2", "approver3"]
    assert policy["requesters"] == ["requester1"] and policy["signed_by"] == ["admin1", "admin2"]
    again = run("mpcnet.cluster.cli", "up", "--nodes", "3", "--threshold", "2", "--dir", str(cdir))
    assert "already running" in again.stdout


def test_keygen_request_approve_sign_pubkey_keys_with_json(cdir: Path) -> None:
    made = mpc_process(cdir, "admin1", "keygen", "--label", "cli", "--json")
    key = json.loads(made.stdout)
    assert key["status"] == "active" and key["label"] == "cli"
    assert made.stderr.splitlines() == ["creating a key: DKG on 3 nodes..."]  # said first (the DKG takes a while)
    digest = hashlib.sha256(b"cli").digest()
    sig = sign_via_cli(cdir, key["key_id"], digest, "--path", "m/0/1", via=mpc_process)
    assert set(sig) >= {"r", "s", "recovery_id", "der", "public_key", "request_id"}
    pub = json.loads(mpc_process(cdir, "auditor1", "pubkey", "--key", key["key_id"], "--path", "m/0/1", "--json").stdout)
    assert pub["public_key"] == sig["public_key"]
    assert pub["public_key_uncompressed"].startswith("04") and len(pub["public_key_uncompressed"]) == 130
    assert pub["ethereum_address"].startswith("0x") and len(pub["ethereum_address"]) == 42
    verify_independently(bytes.fromhex(pub["public_key"]), bytes.fromhex(sig["der"]), digest)
    keys = json.loads(mpc_process(cdir, "requester1", "keys", "--json").stdout)
    assert key["key_id"] in [k["key_id"] for k in keys]
    req = json.loads(mpc_process(cdir, "auditor1", "request", "show", sig["request_id"], "--json").stdout)
    assert req["state"] == "done" and req["signature"]["der"] == sig["der"]
    assert [a["approver"] for a in req["approvals"]] == ["approver1", "approver2"]
    listed = json.loads(mpc_process(cdir, "approver3", "requests", "--state", "done", "--json").stdout)
    assert sig["request_id"] in [r["request_id"] for r in listed]
    human = mpc_process(cdir, "requester1", "request", "show", sig["request_id"]).stdout
    assert "DONE" in human and "approver1, approver2" in human and "der" in human
    audit = mpc_process(cdir, "auditor1", "audit", "verify")
    assert "audit trail verified" in audit.stdout and audit.stdout.count(" ok ") == 4


def first_line(p: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The first line ``p`` prints, read from the pipe's descriptor (unbuffered, so that
    ``p.communicate()`` still gets the rest); AssertionError after ``timeout`` seconds."""
    assert p.stdout is not None
    fd, buf, deadline = p.stdout.fileno(), b"", time.monotonic() + timeout
    while b"\n" not in buf:
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise AssertionError(f"no line within {timeout:.0f}s: {buf!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


def test_reject_and_watch(cdir: Path) -> None:
    key = [k["key_id"] for k in json.loads(mpc(cdir, "admin1", "keys", "--json").stdout) if k["label"] == "cli"][0]
    req = json.loads(
        mpc(cdir, "requester1", "request", "sign", "--key", key, "--digest", "11" * 32, "--description", "no", "--json").stdout
    )
    watcher = subprocess.Popen(
        [sys.executable, "-m", "mpcnet.client.cli", "--cluster", str(cdir), "--as", "requester1", "request", "watch", req["request_id"]],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = first_line(watcher)  # it watches before the rejections (no race with a slow start)
        mpc(cdir, "approver1", "reject", req["request_id"])
        out = json.loads(mpc(cdir, "approver2", "reject", req["request_id"], "--json").stdout)
        assert out["state"] == "rejected" and "rejected by approver1, approver2" in out["error"]["message"]
        rest, _ = watcher.communicate(timeout=30)
        stdout = first + rest
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 1  # it ended, but not DONE
    lines = stdout.strip().splitlines()
    assert "PENDING_APPROVAL" in lines[0] and "REJECTED" in lines[-1]
    p = mpc(cdir, "approver3", "approve", req["request_id"], check=False)
    assert p.returncode == 1 and "FAILED_PRECONDITION" in p.stderr and "is REJECTED, not PENDING_APPROVAL" in p.stderr


def test_cli_errors_name_the_field(cdir: Path) -> None:
    key = json.loads(mpc(cdir, "admin1", "keys", "--json").stdout)[0]["key_id"]
    p = mpc(cdir, "requester1", "request", "sign", "--key", key, "--digest", "ab" * 31, check=False)
    assert p.returncode == 2 and "'--digest': must be 32 bytes as hex (64 hex digits), got 31 bytes" in p.stderr
    p = mpc(cdir, "admin1", "pubkey", "--key", "00" * 32, check=False)
    assert p.returncode == 1 and "NOT_FOUND" in p.stderr
    p = mpc(cdir, "requester1", "request", "sign", "--key", key, "--digest", "00" * 32, "--path", "m/0'", check=False)
    assert p.returncode == 2 and "hardened" in p.stderr
    p = mpc(cdir, "approver1", "request", "sign", "--key", key, "--digest", "00" * 32, check=False)
    assert p.returncode == 1 and "PERMISSION_DENIED" in p.stderr and "needs role requester" in p.stderr
    p = cli("--cluster", str(cdir), "keys", check=False)
    assert p.returncode == 2 and "--as NAME" in p.stderr and "approver1" in p.stderr
    p = mpc(cdir, "nobody", "keys", check=False)
    assert p.returncode == 2 and "no identity 'nobody'" in p.stderr


def test_policy_change_through_the_cli(cdir: Path) -> None:
    key = json.loads(mpc(cdir, "admin1", "keygen", "--label", "policy-cli", "--json").stdout)["key_id"]
    shown = json.loads(mpc(cdir, "admin1", "policy", "show", "--key", key, "--json").stdout)
    assert shown["inherited_from_default"] and shown["scope"] == "default"
    prop = json.loads(mpc(cdir, "admin1", "policy", "propose", "--key", key, "--approvers", "approver1,approver3",
                          "--quorum", "1", "--rate", "5/60", "--json").stdout)
    assert prop["state"] == "pending" and prop["signed_by"] == ["admin1"] and prop["new_policy"]["version"] == 1
    p = mpc(cdir, "requester1", "policy", "approve", prop["proposal_id"], check=False)
    assert p.returncode == 1 and "needs role admin" in p.stderr
    listed = mpc(cdir, "admin2", "policy", "proposals", "--state", "pending").stdout
    assert prop["proposal_id"] in listed
    done = json.loads(mpc(cdir, "admin3", "policy", "approve", prop["proposal_id"], "--json").stdout)
    assert done["state"] == "applied" and done["signed_by"] == ["admin1", "admin3"]
    shown = json.loads(mpc(cdir, "approver1", "policy", "show", "--key", key, "--json").stdout)
    assert not shown["inherited_from_default"] and shown["approval_quorum"] == 1
    assert sorted(shown["approvers"]) == ["approver1", "approver3"] and shown["rate_limit"] == {"max_signatures": 5, "window_seconds": 60}
    # one approval is enough now, and approver2 is no longer an approver of this key
    req = json.loads(mpc(cdir, "requester1", "request", "sign", "--key", key, "--digest", "22" * 32, "--json").stdout)
    p = mpc(cdir, "approver2", "approve", req["request_id"], check=False)
    assert p.returncode == 1 and "PERMISSION_DENIED" in p.stderr and "'approver2' is not an approver of this policy" in p.stderr
    done = json.loads(mpc(cdir, "approver3", "approve", req["request_id"], "--wait", "--json").stdout)
    assert done["state"] == "done" and done["policy_version"] == 1


def test_audit_export_and_local_verify(cdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    mpc(cdir, "auditor1", "audit", "export", "--jsonl", "--out", str(out))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert {x["component"] for x in lines} == {"coordinator", "node-1", "node-2", "node-3"}
    assert any(x["action"] == "sign-share" and x["outcome"] == "released" for x in lines)
    assert any(x["action"] == "sign-decision" and x["actor"] == "approver1" for x in lines)
    p = mpc(cdir, "admin1", "audit", "export", "--jsonl", check=False)
    assert p.returncode == 1 and "needs role auditor" in p.stderr
    info = json.loads((cdir / "cluster.json").read_text())
    pub = info["audit"]["node-2"]["public_key"]
    p = cli("audit", "verify", "--db", info["audit"]["node-2"]["db"], "--public-key", pub)
    assert "ok" in p.stdout and "entries" in p.stdout
    p = cli("audit", "verify", "--db", info["audit"]["node-2"]["db"], "--public-key", info["audit"]["node-1"]["public_key"], check=False)
    assert p.returncode == 2 and "another public key" in p.stderr  # a wrong key is a usage error, not a broken chain
    p = cli("audit", "export", "--jsonl", "--db", info["audit"]["coordinator"]["db"])
    assert all(json.loads(x)["seq"] for x in p.stdout.splitlines())


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
    listed = json.loads(mpc(cdir, "admin1", "keys", "--json").stdout)
    keys = {k["key_id"] for k in listed}
    root = json.loads((cdir / "cluster.json").read_text())["governance_root"]
    run("mpcnet.cluster.cli", "stop", "--dir", str(cdir))
    assert status(cdir)["status"] == "stopped"
    run("mpcnet.cluster.cli", "up", "--nodes", "3", "--threshold", "2", "--dir", str(cdir))
    assert json.loads((cdir / "cluster.json").read_text())["governance_root"] == root
    assert {k["key_id"] for k in json.loads(mpc(cdir, "admin1", "keys", "--json").stdout)} == keys
    key = [k["key_id"] for k in listed if k["label"] == "cli"][0]  # under the default policy (2 of 3)
    digest = hashlib.sha256(b"after re-up").digest()
    sig = sign_via_cli(cdir, key, digest)
    verify_independently(bytes.fromhex(sig["public_key"]), bytes.fromhex(sig["der"]), digest)
    p = run("mpcnet.cluster.cli", "up", "--nodes", "5", "--threshold", "3", "--dir", str(cdir), check=False)
    assert p.returncode == 2 and f"{cdir} holds a 2-of-3 cluster; run 'mpc-cluster up --dir {cdir}' without" in p.stderr, p
    assert "already running" in run("mpcnet.cluster.cli", "up", "--dir", str(cdir)).stdout  # its own topology
    assert "audit trail verified" in mpc(cdir, "auditor1", "audit", "verify").stdout


def test_foreground_ctrl_c_stops_everything(tmp_path: Path) -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "mpcnet.cluster.cli", "up", "-n", "2", "-t", "2", "--dir", str(tmp_path),
         "--scrypt-n", "1024", "--foreground"],
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


def test_processes_left_by_a_killed_supervisor_are_reported_refused_and_stopped(tmp_path: Path) -> None:
    """The supervisor is SIGKILLed; its children live on (own sessions). status shows them
    serving (not "stopped"), `up` refuses before it rewrites the configs with other ports, and
    `stop` stops them."""
    run("mpcnet.cluster.cli", "up", "-n", "2", "-t", "2", "--dir", str(tmp_path), "--scrypt-n", "1024")
    info = json.loads((tmp_path / "cluster.json").read_text())
    pids = {n["name"]: n["pid"] for n in info["nodes"]} | {"coordinator": info["coordinator"]["pid"]}
    try:
        os.kill(info["supervisor_pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(info["supervisor_pid"], 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        st = status(tmp_path)
        assert st["status"] == "unsupervised", st
        assert {p["name"]: p["pid"] for p in st["processes"]} == pids
        assert all(p["healthy"] for p in st["processes"]), st
        endpoint = json.loads((tmp_path / "nodes/node-1/config.json").read_text())["listen"]
        p = run("mpcnet.cluster.cli", "up", "-n", "2", "-t", "2", "--dir", str(tmp_path), check=False)
        assert p.returncode == 1 and f"node-1 (pid {pids['node-1']})" in p.stderr and "mpc-cluster stop" in p.stderr, p
        assert json.loads((tmp_path / "nodes/node-1/config.json").read_text())["listen"] == endpoint
        assert check_health_of(tmp_path, endpoint)
        run("mpcnet.cluster.cli", "stop", "--dir", str(tmp_path))
        for pid in pids.values():
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _running(pid):
                time.sleep(0.05)
            assert not _running(pid), pid
        assert status(tmp_path)["status"] == "stopped"
    finally:
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def check_health_of(d: Path, endpoint: str) -> bool:
    from mpcnet.cluster.launcher import check_health, load_layout

    return check_health(load_layout(d), endpoint, 5.0)


def test_request_sign_wait_prints_the_id_first_and_gives_up_at_the_timeout(cdir: Path) -> None:
    key = json.loads(cli("keygen", "--label", "wait", "--json", "--cluster", str(cdir), "--as", "admin1").stdout)["key_id"]  # globals last
    p = mpc(cdir, "requester1", "request", "sign", "--key", key, "--digest", "33" * 32, "--wait", "--timeout", "1", "--json", check=False)
    assert p.returncode == 3, p.stderr  # no answer before --timeout: exit 3
    first = p.stderr.splitlines()[0]
    assert first.startswith("request ") and first.endswith(" submitted; waiting..."), p.stderr
    rid = first.split()[1]
    assert json.loads(p.stdout)["error"]["code"] == "DEADLINE_EXCEEDED"  # stdout: one JSON document
    assert json.loads(mpc(cdir, "auditor1", "request", "show", rid, "--json").stdout)["state"] == "pending_approval"
    mpc(cdir, "approver1", "reject", rid)
