"""Issue 15: a burst of signatures on one key, on a real cluster, is an `anomaly` audit entry
(rule key_burst) naming the key by its 8-hex-digit id prefix; a key signed at its normal pace is
not; a new derivation path on a key with history is reported too. Repeated rejections and denied
calls are reported through the same wiring."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request

import grpc
import pytest

from coordinator.anomaly_hook import audit_heads
from mpcnet.client import MpcClient, MpcError, SigningTeam
from tests.integration.conftest import coordinator_handles, make_cluster


@pytest.fixture(scope="module")
def burst_cluster(tmp_path_factory: pytest.TempPathFactory):
    c = make_cluster(tmp_path_factory, "anomaly-2of3", 3, 2)
    cfg = json.loads(c.lay.coordinator_config.read_text())
    cfg["anomaly"] = {"burst_min_count": 3, "window_s": 600, "max_rejections": 1, "max_denied": 2, "audit_stall_s": 1}
    c.lay.coordinator_config.write_text(json.dumps(cfg))
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


def anomalies(auditor: MpcClient) -> list[dict[str, object]]:
    return [
        json.loads(e.details_json) for e in auditor.fetch_audit("coordinator").entries
        if e.action == "anomaly" and e.actor == "coordinator" and e.outcome == "detected"
    ]


def test_a_signing_burst_on_one_key_is_audited_as_key_burst(burst_cluster) -> None:
    d = burst_cluster.lay.dir
    with (
        MpcClient.from_cluster(d, identity="admin1", timeout=120) as admin,
        MpcClient.from_cluster(d, identity="auditor1", timeout=120) as auditor,
        SigningTeam.from_cluster(d, timeout=120) as team,
    ):
        busy, quiet = admin.create_key("burst-key"), admin.create_key("quiet-key")
        team.sign(quiet.key_id, hashlib.sha256(b"quiet").digest())
        for i in range(3):
            team.sign(busy.key_id, hashlib.sha256(b"burst %d" % i).digest())
        assert not [a for a in anomalies(auditor) if a["rule"] == "key_burst"]  # 3: not above the minimum
        team.sign(busy.key_id, hashlib.sha256(b"burst 3").digest())
        team.sign(busy.key_id, hashlib.sha256(b"burst 4").digest())  # reported once per window
        found = anomalies(auditor)
        bursts = [a for a in found if a["rule"] == "key_burst"]
        assert bursts == [{
            "rule": "key_burst", "key_prefix": busy.key_id.hex()[:8], "observed": "4", "expected": "3", "window_s": "600",
        }], found
        assert all(busy.key_id.hex() not in json.dumps(a) and quiet.key_id.hex()[:8] != a.get("key_prefix") for a in found)
        endpoint = json.loads((d / "cluster.json").read_text())["metrics"]["coordinator"]
        with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as r:
            text = r.read().decode()
        assert 'mpcnet_anomalies_total{rule="key_burst"} 1.0' in text
        assert 'mpcnet_anomaly_active{rule="key_burst"} 1.0' in text
        assert busy.key_id.hex()[:8] not in text
        team.sign(busy.key_id, hashlib.sha256(b"elsewhere").digest(), path=[7, 1])
        paths = [a for a in anomalies(auditor) if a["rule"] == "new_derivation_path"]
        assert [p["key_prefix"] for p in paths] == [busy.key_id.hex()[:8]]


def test_repeated_rejections_and_denied_calls_are_audited(burst_cluster) -> None:
    d = burst_cluster.lay.dir
    with (
        MpcClient.from_cluster(d, identity="admin1", timeout=120) as admin,
        MpcClient.from_cluster(d, identity="auditor1", timeout=120) as auditor,
        SigningTeam.from_cluster(d, timeout=120) as team,
    ):
        key = admin.create_key("rejected-key")
        for i in range(2):
            r = team.requester.submit_sign_request(key.key_id, hashlib.sha256(b"no %d" % i).digest())
            for approver in team.approvers:
                approver.reject(r.request_id)
        rejections = sorted(
            (str(a.get("key_prefix", "")), str(a.get("subject", ""))) for a in anomalies(auditor) if a["rule"] == "repeated_rejections"
        )
        assert rejections == [("", "requester1"), (key.key_id.hex()[:8], "")]
        for i in range(2):  # a requester may not create keys
            with pytest.raises(MpcError) as e:
                team.requester.create_key(f"not-mine-{i}")
            assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert not [a for a in anomalies(auditor) if a["rule"] == "denied_calls"]
        with pytest.raises(MpcError):
            team.requester.create_key("not-mine-2")
        denied = [a for a in anomalies(auditor) if a["rule"] == "denied_calls"]
        assert denied == [{"rule": "denied_calls", "subject": "requester1", "observed": "3", "expected": "2", "window_s": "600"}]


def test_nodes_that_audit_their_sessions_are_not_reported_stalled(burst_cluster) -> None:
    """The coordinator polls the nodes' audit heads every second here (audit_stall_s 1): nodes
    that signed and recorded it are never reported, even when a poll falls mid-session."""
    d = burst_cluster.lay.dir
    with (
        MpcClient.from_cluster(d, identity="admin1", timeout=120) as admin,
        MpcClient.from_cluster(d, identity="auditor1", timeout=120) as auditor,
        SigningTeam.from_cluster(d, timeout=120) as team,
    ):
        key = admin.create_key("steady-key")
        for i in range(3):
            team.sign(key.key_id, hashlib.sha256(b"steady %d" % i).digest())
            time.sleep(0.7)
        time.sleep(3)
        assert not [a for a in anomalies(auditor) if a["rule"] == "audit_head_stalled"]
    with coordinator_handles(burst_cluster) as hs:  # what the coordinator's poll reads: every node's head
        heads = audit_heads(hs.values())
    assert set(heads) == {"node-1", "node-2", "node-3"} and all(seq > 0 for seq in heads.values()), heads
