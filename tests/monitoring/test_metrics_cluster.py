"""Issue 15, item 1: every node and the coordinator of a real cluster serve Prometheus metrics
(``cluster.json`` "metrics"), each metric moves as the client acts (keygen, signing, a denied
call, a ban), and a scrape holds no key id, digest, request id, share or seed.

One 3-of-3 cluster: every signature needs every node, so node 2's ``tamper-ote`` fault toward
node 1 deterministically makes node 1 ban node 2 (the last test).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from coordinator.config import NodeEndpoint
from coordinator.relay import NodeHandle
from crypto_core.keyshare import KeyShare
from mpc_node.storage import NodeStore
from mpcnet.client import MpcClient, MpcError, SigningTeam
from mpcnet.common.pki import CertPaths, channel_credentials
from mpcnet.wire.mpc.v1 import coordinator_pb2, node_pb2

from ..integration.conftest import TEST_SCRYPT_N, running_cluster

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def scrape(endpoint: str) -> str:
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as r:
        return r.read().decode()


def samples(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of an exposition text (labels as printed)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def value(text: str, series: str) -> float:
    return samples(text).get(series, 0.0)


@pytest.fixture(scope="module")
def mc(tmp_path_factory):
    # pools off: the counts are the full protocol's (one signing session, each round once, no
    # presignature); the pool depth gauge: tests/network/test_presign_pool_node.py
    with running_cluster(tmp_path_factory, "metrics-3of3", 3, 3, fault_files=True, policy_max_age_s=0, presign=False) as c:
        yield c


@pytest.fixture(scope="module")
def endpoints(mc) -> dict[str, str]:
    info = json.loads((mc.lay.dir / "cluster.json").read_text())
    return info["metrics"]


@pytest.fixture(scope="module")
def acted(mc):
    """Keygen, one signature, one denied call; returns what a scan must not find."""
    with MpcClient.from_cluster(mc.lay.dir, identity="admin1", timeout=120) as admin, SigningTeam.from_cluster(
        mc.lay.dir, timeout=120
    ) as team:
        key = admin.create_key("metrics-key")
        digest = hashlib.sha256(b"metrics digest").digest()
        team.sign(key.key_id, digest, path=[7], request_id="req-metrics-one")
        with pytest.raises(MpcError) as e:
            team.requester.create_key("not-allowed")
        assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    return {"key": key, "digest": digest, "request_id": "req-metrics-one"}


def test_cluster_json_names_a_metrics_endpoint_per_process(mc, endpoints) -> None:
    assert set(endpoints) == {"coordinator", "node-1", "node-2", "node-3"}
    assert all(re.fullmatch(r"localhost:\d+", e) for e in endpoints.values())
    assert len(set(endpoints.values())) == 4
    grpc_ports = {ep.rpartition(":")[2] for ep in mc.lay.endpoints().values()}
    assert not grpc_ports & {e.rpartition(":")[2] for e in endpoints.values()}
    for name, ep in endpoints.items():
        text = scrape(ep)
        component = "coordinator" if name == "coordinator" else "node"
        pattern = r'mpcnet_build_info\{component="' + component + r'",version="[^"]+"\} 1\.0'
        assert re.search(pattern, text), text[:500]


def test_coordinator_metrics_move_as_the_client_acts(endpoints, acted) -> None:
    text = scrape(endpoints["coordinator"])
    for state in ("created", "approved", "done"):
        assert value(text, f'mpcnet_requests_total{{state="{state}"}}') == 1.0, state
    assert value(text, "mpcnet_signatures_total") == 1.0
    assert value(text, 'mpcnet_approvals_total{outcome="approve"}') == 2.0
    assert value(text, "mpcnet_request_seconds_count") == 1.0
    assert value(text, "mpcnet_quorum_to_done_seconds_count") == 1.0
    assert value(text, "mpcnet_keygen_seconds_count") == 1.0
    assert value(text, 'mpcnet_rpc_denied_total{method="CreateKey",role="requester"}') == 1.0
    for i in (1, 2, 3):
        assert value(text, f'mpcnet_node_up{{node="node-{i}"}}') == 1.0
        assert f'mpcnet_node_clock_skew_seconds{{node="node-{i}"}}' in text
    assert value(text, "mpcnet_audit_entries_total") >= 5
    assert 0 <= value(text, "mpcnet_audit_head_age_seconds") < 600
    assert value(text, "mpcnet_disk_free_bytes") > 0
    # every child an alert reads with increase() exists from the start (at 0 until its first event)
    for state in ("rejected", "expired", "failed"):
        assert f'mpcnet_requests_total{{state="{state}"}} 0.0' in text, state
    for rule in ("key_burst", "new_derivation_path", "requester_rate", "repeated_rejections", "denied_calls",
                 "protocol_aborts", "audit_head_stalled"):
        assert f'mpcnet_anomalies_total{{rule="{rule}"}}' in text, rule


def test_node_metrics_move_as_the_client_acts(endpoints, acted) -> None:
    for i in (1, 2, 3):
        text = scrape(endpoints[f"node-{i}"])
        s = samples(text)
        assert value(text, "mpcnet_store_healthy") == 1.0
        assert value(text, "mpcnet_disk_free_bytes") > 0
        assert value(text, "mpcnet_presignatures_available") == 0.0
        assert value(text, 'mpcnet_sessions_live{protocol="sign"}') == 0.0
        assert value(text, "mpcnet_bans_total") == 0.0
        dkg_rounds = [k for k in s if k.startswith('mpcnet_round_seconds_count{protocol="dkg"')]
        sign_rounds = [k for k in s if k.startswith('mpcnet_round_seconds_count{protocol="sign"')]
        assert dkg_rounds and sign_rounds, sorted(s)[:40]
        assert all(s[k] == 1.0 for k in sign_rounds)  # one signing session: each round once
        assert value(text, "mpcnet_audit_entries_total") >= 3


def test_each_process_exports_only_the_families_it_maintains(endpoints, acted) -> None:
    """No never-set gauge: a coordinator shows no store health, sessions or bans (it has none),
    a node no requests; every gauge family a process shows has a sample."""
    from prometheus_client.parser import text_string_to_metric_families

    from mpcnet.common.metrics import exported_families

    for name, ep in endpoints.items():
        component = "coordinator" if name == "coordinator" else "node"
        fams = list(text_string_to_metric_families(scrape(ep)))
        assert {f.name for f in fams} <= exported_families(component), (name, sorted(f.name for f in fams))
        assert all(f.samples for f in fams if f.type == "gauge" and f.name != "mpcnet_anomaly_active"), name
    assert "mpcnet_store_healthy" not in scrape(endpoints["coordinator"])


def test_a_scrape_holds_no_key_id_digest_request_id_share_or_seed(mc, endpoints, acted) -> None:
    key = acted["key"]
    forbidden = [
        key.key_id.hex(), key.key_id.hex()[:16], key.key_id.hex()[:8], acted["digest"].hex(), acted["digest"].hex()[:16],
        acted["request_id"], key.public_key.hex()[:16], "metrics-key",
    ]
    secrets: list[bytes] = []
    for i in (1, 2, 3):
        nd = mc.lay.node_dir(i)
        store = NodeStore.open(nd / "node.db", (nd / "passphrase").read_bytes().rstrip(b"\n"), i, scrypt_n=TEST_SCRYPT_N)
        try:
            for row in store.list_keys():
                ks = KeyShare.from_bytes(store.get_key_share(row.key_id, require_active=False))
                secrets.append(ks.secret_share.to_bytes(32, "big"))
                for p in ks.pairwise:
                    secrets.append(p.zero_seed)
                    secrets += list(p.as_bob.seeds0[:4]) + list(p.as_bob.seeds1[:4]) + list(p.as_alice.seeds[:4])
        finally:
            store.close()
    assert len(secrets) > 10
    for name, ep in endpoints.items():
        text = scrape(ep)
        for f in forbidden:
            assert f not in text, f"{name}'s scrape contains {f!r}"
        raw = text.encode()
        for s in secrets:
            assert s not in raw and s.hex().encode() not in raw and s.hex()[:16].encode() not in raw, name
        # every label value is from the bounded sets of design.md
        for series in samples(text):
            for label, val in re.findall(r'(\w+)="([^"]*)"', series):
                assert label in {"component", "node", "role", "method", "state", "outcome", "reason", "protocol",
                                 "round", "rule", "version", "le"}, series
                assert len(val) <= 40 and re.fullmatch(r"[A-Za-z0-9_.+\-]*", val), series


def test_a_node_counts_a_denied_call_by_role_and_method(mc, endpoints) -> None:
    info = json.loads((mc.lay.dir / "cluster.json").read_text())
    ident = info["identities"]["requester1"]
    creds = channel_credentials(CertPaths(Path(ident["cert"]), Path(ident["key"])), mc.lay.ca.cert)
    h = NodeHandle(NodeEndpoint(1, "node-1", mc.lay.endpoints()["node-1"]), creds)
    try:
        with pytest.raises(grpc.RpcError) as e:
            h.stub.GetInfo(node_pb2.GetInfoRequest(), timeout=10)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        h.close()
    text = scrape(endpoints["node-1"])
    assert value(text, 'mpcnet_rpc_denied_total{method="GetInfo",role="requester"}') == 1.0


def test_a_ban_and_a_failed_request_are_counted(mc, endpoints, acted) -> None:
    (mc.lay.dir / "faults" / "node-2.json").write_text(
        json.dumps({"action": "tamper-ote", "protocol": "sign", "round": 2, "receiver": 1, "once": False})
    )
    try:
        with SigningTeam.from_cluster(mc.lay.dir, timeout=120) as team:
            with pytest.raises(MpcError):
                team.sign(acted["key"].key_id, hashlib.sha256(b"ban me").digest(), path=[8])
    finally:
        (mc.lay.dir / "faults" / "node-2.json").unlink(missing_ok=True)
    n1 = scrape(endpoints["node-1"])
    assert value(n1, "mpcnet_bans_total") == 1.0
    assert value(n1, 'mpcnet_sessions_aborted_total{protocol="sign",reason="ban"}') >= 1.0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        c = scrape(endpoints["coordinator"])
        if value(c, 'mpcnet_requests_total{state="failed"}') == 1.0:
            break
        time.sleep(0.2)
    assert value(c, 'mpcnet_requests_total{state="failed"}') == 1.0
    assert value(c, 'mpcnet_requests_total{state="done"}') == 1.0
    assert value(c, "mpcnet_signatures_total") == 1.0


def test_cluster_status_still_works(mc) -> None:
    with MpcClient.from_cluster(mc.lay.dir, identity="admin1", timeout=60) as admin:
        st = admin.cluster_status()
    assert isinstance(st, coordinator_pb2.ClusterStatusResponse)
