"""``mpc-cluster up --log-format json`` as a user runs it (issue 15 gap): the started cluster's
servers write one JSON object per line to ``DIR/logs/*.log`` (component, event, request_id /
session_id where relevant), the no-secrets scan of test_coordinator_holds_no_secrets finds
nothing in them (JSON-decoded too), a process the supervisor restarts keeps the format, and ``up
--log-format text`` on the running cluster is a usage error instead of being ignored."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mpcnet.client import MpcClient, SigningTeam
from mpcnet.cluster.launcher import load_layout

from .test_cli import run, stop_cluster
from .test_coordinator_holds_no_secrets import _DIRECT_HEADER, _secrets_of
from .test_ops_json_logs_and_watch import _records


@pytest.fixture(scope="module")
def jdir(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("json-up")
    run("mpcnet.cluster.cli", "up", "-n", "3", "-t", "2", "--dir", str(d), "--scrypt-n", "1024", "--log-format", "json", "--quiet")
    try:
        yield d
    finally:
        stop_cluster(d)


@pytest.fixture(scope="module")
def signed(jdir: Path) -> list[str]:
    with MpcClient.from_cluster(jdir, identity="admin1", timeout=120) as admin:
        key = admin.create_key("json-up")
    with SigningTeam.from_cluster(jdir, timeout=120) as team:
        rids = [team.sign(key.key_id, hashlib.sha256(b"json-up %d" % j).digest(), path=[j]).request_id for j in range(2)]
    # the coordinator logs sign-done after the request is DONE (the client may see DONE first):
    # poll for it, bounded, instead of a fixed sleep that a loaded machine outlasts
    coord, deadline = jdir / "logs" / "coordinator.log", time.monotonic() + 30
    while not all(_line_of(coord, rid, "sign-done") for rid in rids):
        if time.monotonic() > deadline:
            pytest.fail(f"the coordinator's log has no sign-done line for every request within 30 s: {rids}")
        time.sleep(0.1)
    return rids


def _line_of(path: Path, rid: str, event: str) -> str:
    """The first line of ``path`` with ``"event":"EVENT"`` and ``rid`` ("" when none yet)."""
    return next((ln for ln in path.read_text(errors="replace").splitlines() if f'"event":"{event}"' in ln and rid in ln), "")


def test_every_server_log_line_is_a_json_object_with_the_ids(jdir: Path, signed: list[str]) -> None:
    logs = jdir / "logs"
    sup = _records(logs / "supervisor.log")  # the supervisor's own log follows the cluster's format
    assert sup and {d["component"] for d in sup} == {"supervisor"}
    coord = _records(logs / "coordinator.log")
    assert {d["component"] for d in coord} == {"coordinator"}
    for rid in signed:
        assert {"sign-request", "sign-approved", "sign-done"} <= {d["event"] for d in coord if d.get("request_id") == rid}
    for i in (1, 2, 3):
        recs = _records(logs / f"node-{i}.log")
        assert recs and {d["component"] for d in recs} == {f"node-{i}"}
        started = [d for d in recs if d["event"] == "session-started"]
        assert started and all(isinstance(d["session_id"], str) and len(d["session_id"]) == 64 for d in started)


def test_the_json_logs_hold_no_secret(jdir: Path, signed: list[str]) -> None:
    secrets = _secrets_of(SimpleNamespace(lay=load_layout(jdir)))
    assert len(secrets) > 20
    files = sorted((jdir / "logs").iterdir())  # the JSON logs and the processes' captured stdout/stderr
    assert {"coordinator.log", "node-1.log", "supervisor.log"} <= {f.name for f in files}
    for f in files:
        data = f.read_bytes()
        decoded = data.decode("utf-8", "replace")
        if f.suffix == ".log":  # decoded: what a log shipper stores and indexes
            decoded += "\n".join(json.dumps(json.loads(line), ensure_ascii=False) for line in data.splitlines())
        for s in secrets:
            assert s not in data and s.hex().encode() not in data, f"{f.name} contains secret material"
            assert s.hex() not in decoded.lower() and repr(s)[2:-1] not in decoded, f"{f.name} contains secret material (decoded)"
        assert not _DIRECT_HEADER.search(data), f"{f.name} contains a plaintext direct protocol message"


def test_up_with_the_other_format_on_the_running_cluster_is_refused(jdir: Path, signed: list[str]) -> None:
    p = run("mpcnet.cluster.cli", "up", "--dir", str(jdir), "--log-format", "text", check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--log-format" in p.stderr and "json" in p.stderr, p
    assert "already running" in run("mpcnet.cluster.cli", "up", "--dir", str(jdir), "--log-format", "json").stdout


def test_a_process_the_supervisor_restarts_keeps_json_logs(jdir: Path, signed: list[str]) -> None:
    info = json.loads((jdir / "cluster.json").read_text())
    node = next(n for n in info["nodes"] if n["name"] == "node-3")
    log = jdir / "logs" / "node-3.log"
    before = len(log.read_bytes().splitlines())
    os.kill(node["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        again = json.loads((jdir / "cluster.json").read_text())
        pid = next(n for n in again["nodes"] if n["name"] == "node-3").get("pid")
        if pid and pid != node["pid"] and len(log.read_bytes().splitlines()) > before:
            break
        time.sleep(0.3)
    else:
        pytest.fail("node-3 was not restarted (or wrote nothing) within 60 s")
    recs = _records(log)
    assert len(recs) > before and all(d["component"] == "node-3" for d in recs[before:])
