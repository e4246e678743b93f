"""Issue 15 items 4 and 5 on a real 2-of-3 cluster whose node and coordinator configs ask for
``"log_format": "json"``: after keygen and signing every log line is one JSON object with the
documented fields, the request and session ids are there, and no log (JSON-decoded too) holds a
share, seed or direct protocol message (the scan of test_coordinator_holds_no_secrets); then
``mpc status --watch`` shows the cluster for one refresh and ends with exit 0 on Ctrl-C."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpcnet.client import MpcClient, SigningTeam, cli
from mpcnet.cluster.launcher import LocalCluster, child_env

from .conftest import make_cluster
from .test_coordinator_holds_no_secrets import _DIRECT_HEADER, _secrets_of

FIELDS = {"ts", "level", "component", "event", "message"}


@pytest.fixture(scope="module")
def json_cluster(tmp_path_factory: pytest.TempPathFactory):
    c = make_cluster(tmp_path_factory, "ops-json-2of3", 3, 2)
    for cfg in [c.lay.node_config(i) for i in range(1, 4)] + [c.lay.coordinator_config]:
        doc = json.loads(cfg.read_text())
        doc["log_format"] = "json"
        cfg.write_text(json.dumps(doc, indent=2))
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def signed(json_cluster: LocalCluster) -> tuple[bytes, list[str]]:
    with MpcClient.from_cluster(json_cluster.lay.dir, identity="admin1", timeout=120) as admin:
        key = admin.create_key("ops-json")
    rids = []
    with SigningTeam.from_cluster(json_cluster.lay.dir, timeout=120) as team:
        for j in range(2):
            rids.append(team.sign(key.key_id, hashlib.sha256(b"ops %d" % j).digest(), path=[j]).request_id)
    return key.key_id, rids


def _records(path: Path) -> list[dict[str, object]]:
    out = []
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        assert all(0x20 <= b < 0x7F for b in line), f"{path.name}:{n}: a raw control or non-ASCII byte"
        doc = json.loads(line)
        assert isinstance(doc, dict) and FIELDS <= set(doc), f"{path.name}:{n}: {sorted(doc)}"
        out.append(doc)
    return out


def test_json_logs_have_the_fields_and_the_ids(json_cluster: LocalCluster, signed: tuple[bytes, list[str]]) -> None:
    _, rids = signed
    time.sleep(0.5)  # the last lines of the signing reach the files
    logs = json_cluster.lay.dir / "logs"
    coord = _records(logs / "coordinator.log")
    assert {d["component"] for d in coord} == {"coordinator"}
    for rid in rids:
        events = {d["event"] for d in coord if d.get("request_id") == rid}
        assert {"sign-request", "sign-approved", "sign-done"} <= events, events
    node_records = [d for i in range(1, 4) for d in _records(logs / f"node-{i}.log")]
    started = [d for d in node_records if d["event"] == "session-started"]
    assert started and all(isinstance(d["session_id"], str) and len(d["session_id"]) == 64 for d in started)
    released = [d for d in node_records if d["event"] == "session-finished" and d.get("request_id") in rids]
    assert len(released) >= 2 * len(rids)  # two signers per request


def test_json_logs_hold_no_secret(json_cluster: LocalCluster, signed: tuple[bytes, list[str]]) -> None:
    secrets = _secrets_of(json_cluster)
    assert len(secrets) > 20
    files = sorted((json_cluster.lay.dir / "logs").iterdir())
    assert any(f.name == "coordinator.log" for f in files) and any(f.name == "node-1.log" for f in files)
    for f in files:
        data = f.read_bytes()
        decoded = data.decode("utf-8", "replace")
        if f.suffix == ".log":  # the JSON lines, decoded: what a log shipper stores and indexes
            decoded += "\n".join(json.dumps(json.loads(line), ensure_ascii=False) for line in data.splitlines())
        for s in secrets:
            assert s not in data and s.hex().encode() not in data, f"{f.name} contains secret material"
            assert s.hex() not in decoded.lower() and repr(s)[2:-1] not in decoded, f"{f.name} contains secret material (decoded)"
        assert not _DIRECT_HEADER.search(data), f"{f.name} contains a plaintext direct protocol message"


def test_status_watch_shows_the_cluster_once(json_cluster: LocalCluster, signed: tuple[bytes, list[str]]) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--cluster", str(json_cluster.lay.dir), "--as", "auditor1", "status", "--watch", "--count", "1"])
    text = out.getvalue()
    assert code == 0 and err.getvalue() == "", err.getvalue()
    for i in range(1, 4):
        assert f"node-{i}  " in text and "  up  " in text
    assert "2-of-3" in text and "ops-json" in text and "signing rate:" in text
    # the no-secrets scan covers the watch screen too (issue 15 review): no share or seed, no whole
    # key id (a 16-hex prefix names a key, as in `mpc status`), no request id
    key_id, rids = signed
    for s in _secrets_of(json_cluster):
        assert s.hex() not in text.lower() and s.hex()[:16] not in text.lower(), "the watch shows secret material"
    assert key_id.hex() not in text and not any(rid in text for rid in rids)


def test_status_watch_ends_with_exit_0_on_ctrl_c(json_cluster: LocalCluster, signed: tuple[bytes, list[str]]) -> None:
    argv = [sys.executable, "-m", "mpcnet.client.cli", "--cluster", str(json_cluster.lay.dir), "--as", "auditor1",
            "status", "--watch", "--interval", "0.3"]
    p = subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(line.startswith("--- ") for line in seen) < 2:
            line = p.stdout.readline()
            if not line:
                break
            seen.append(line)
        assert sum(line.startswith("--- ") for line in seen) == 2, "".join(seen)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and "Traceback" not in err and "interrupted" not in err, err
