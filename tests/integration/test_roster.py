"""The roster as a live governance object on real processes (issue 11 item 3): a revocation
applied by a coordinator reaches every active node, the coordinator stops dialing the revoked
node and shows it revoked, the revoked node's certificate is refused by every node and by the
coordinator (audited), signing goes on with the active nodes (the reservation quorum follows
them), a restarted node keeps the chain its genesis-only config lacks, and a config naming
another chain than the store's stops the node with a clear message."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.config import load_coordinator_config
from coordinator.service import CoordinatorService
from governance.roster import SignedRosterChange, change_endpoint, revoke_node
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.client.errors import MpcError
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.common.pki import CertPaths, channel_credentials
from mpcnet.common.rpc import CHANNEL_OPTIONS
from mpcnet.wire.mpc.v1 import coordinator_pb2, coordinator_pb2_grpc, node_pb2, node_pb2_grpc
from tests.integration.conftest import coordinator_handles, running_cluster
from tests.integration.rostertools import cert_fingerprint, history, signed_next

N, T = 4, 2
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with running_cluster(tmp_path_factory, "roster-4", N, T) as c:
        yield c


def _versions(c: LocalCluster, among: list[int]) -> dict[int, int]:
    with coordinator_handles(c) as hs:
        return {i: len(hs[i].stub.GetRoster(node_pb2.GetRosterRequest(), timeout=10).signed_changes) for i in among}


def _as(c: LocalCluster, cert: CertPaths, endpoint: str) -> grpc.Channel:
    return grpc.secure_channel(endpoint, channel_credentials(cert, c.lay.ca.cert), options=CHANNEL_OPTIONS)


def _audit(client: MpcClient, component: str, action: str) -> list[tuple[str, dict]]:
    """``component``'s audit entries of ``action`` (retried while the coordinator reconnects to
    a node that was just restarted)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            entries = client.fetch_audit(component).entries
            break
        except MpcError as e:
            if e.code != Code.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    return [(e.outcome, json.loads(e.details_json)) for e in entries if e.action == action]


def _extend_config(path: Path, *changes: SignedRosterChange) -> None:
    doc = json.loads(path.read_text())
    doc["governance"]["roster_history"] = [*doc["governance"]["roster_history"], *(c.to_dict() for c in changes)]
    path.write_text(json.dumps(doc))


def test_a_revocation_on_real_processes(cluster: LocalCluster, tmp_path: Path) -> None:
    lay = cluster.lay
    eps = lay.endpoints()
    with MpcClient.from_cluster(lay.dir, identity="admin1", timeout=120) as client, SigningTeam.from_cluster(
        lay.dir, timeout=120
    ) as team:
        key = client.create_key("roster-key")
        r1 = history(lay)[0].change.new_roster
        revoked = signed_next(lay, r1, revoke_node(r1, 4))

        # a coordinator (in process, its own database) applies the revocation and pushes it
        cfg = load_coordinator_config(lay.coordinator_config)
        cfg = dataclasses.replace(cfg, db=tmp_path / "coordinator.db", audit_db=tmp_path / "audit.db")
        svc = CoordinatorService(cfg, Ed25519PrivateKey.generate())
        try:
            seen: list[int] = []
            svc.rosters.add_listener(lambda old, new: seen.append(new.version))
            assert sorted(svc.nodes) == [1, 2, 3, 4]
            cluster.kill("node-3")  # down while the change is applied: synced when it is back
            assert svc.rosters.apply(revoked, "admin1") == revoked.change.new_roster
            assert seen == [2]
            assert sorted(svc.nodes) == [1, 2, 3] and svc.nodes.retired(4)  # closed: never dialed again
            assert [svc.roster_sync.synced(i) for i in (1, 2, 3)] == [True, True, False]
            cluster.start("node-3")
            cluster.wait_healthy(["node-3"])
            deadline = time.monotonic() + 30
            while not svc.roster_sync.sync_node(3) and time.monotonic() < deadline:  # what the background loop does
                time.sleep(0.5)
            assert _versions(cluster, [1, 2, 3, 4]) == {1: 2, 2: 2, 3: 2, 4: 1}  # the revoked node is not told
            assert all(svc.roster_sync.synced(i) for i in (1, 2, 3))
            st = svc.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), None)
            assert (st.parties, st.roster_version, st.roster_epoch) == (3, 2, 1)
            by = {n.index: n for n in st.nodes}
            assert sorted(by) == [1, 2, 3, 4] and [i for i, n in by.items() if n.revoked] == [4]
            assert by[4].healthy is False and by[4].identity_public == r1.entry(4).identity_key
            assert by[4].tls_fingerprint == cert_fingerprint(lay, "node-4") and by[1].key_version == 1
            assert by[2].identity_public == r1.entry(2).identity_key
            actions = [(e.action, e.outcome) for e in svc.audit.entries() if e.action.startswith("roster-")]
            assert actions[0] == ("roster-apply", "applied")
            assert sorted(actions[1:]) == [("roster-push", "synced")] * 3
        finally:
            svc.stop()

        # the cluster's own coordinator learns the chain from its config at a restart
        _extend_config(lay.coordinator_config, revoked)
        cluster.restart("coordinator")
        st = client.cluster_status()
        assert (st.parties, st.roster_version, st.roster_epoch) == (3, 2, 1)
        assert [n.index for n in st.nodes if n.revoked] == [4]

        # signing goes on with the three active nodes (reservation quorum 2 of 3)
        sig = team.sign(key.key_id, os.urandom(32))
        assert len(sig.signers) == T and 4 not in sig.signers
        # with node 3 down too, two reservations are a majority of the three active nodes (of
        # the four in the roster they would not be): the coordinator and the nodes both count
        # the active nodes only
        cluster.kill("node-3")
        try:
            sig = team.sign(key.key_id, os.urandom(32))
            assert sig.signers == (1, 2)
        finally:
            cluster.start("node-3")
            cluster.wait_healthy(["node-3"])

        # the revoked node's own certificate is refused by every node and by the coordinator
        node4 = lay.cert("node-4")
        for i in (1, 2, 3):
            with _as(cluster, node4, eps[f"node-{i}"]) as ch:
                with pytest.raises(grpc.RpcError) as e:
                    node_pb2_grpc.NodeStub(ch).GetRoster(node_pb2.GetRosterRequest(), timeout=10)
            assert e.value.code() == Code.PERMISSION_DENIED
            assert "is revoked or was rotated away" in e.value.details()
        with _as(cluster, node4, eps["coordinator"]) as ch:
            with pytest.raises(grpc.RpcError) as e:
                coordinator_pb2_grpc.CoordinatorStub(ch).ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=10)
        assert e.value.code() == Code.PERMISSION_DENIED and "is revoked or was rotated away" in e.value.details()
        fp = cert_fingerprint(lay, "node-4").hex()
        with MpcClient.from_cluster(lay.dir, identity="auditor1", timeout=60) as auditor:
            for component in ("node-1", "node-2", "node-3", "coordinator"):
                denied = [d for o, d in _audit(auditor, component, "rpc-denied") if d.get("reason") == "revoked certificate"]
                assert denied and denied[-1]["fingerprint"] == fp, component

        # a restarted node keeps the chain (its config holds the genesis only: the store extends it)
        cluster.restart("node-1")
        assert _versions(cluster, [1]) == {1: 2}
        with _as(cluster, node4, eps["node-1"]) as ch:
            with pytest.raises(grpc.RpcError) as e:
                node_pb2_grpc.NodeStub(ch).GetRoster(node_pb2.GetRosterRequest(), timeout=10)
        assert e.value.code() == Code.PERMISSION_DENIED

        # a config naming another version 2 than the store's stops the node with a clear message
        cfg2 = lay.node_config(2)
        original = cfg2.read_text()
        forked = signed_next(lay, r1, change_endpoint(r1, 3, "127.0.0.1:9"))
        cluster.kill("node-2", 15)
        _extend_config(cfg2, forked)
        try:
            p = cluster.start("node-2")
            assert p.wait(timeout=60) != 0
            out = lay.log("node-2").with_suffix(".out").read_text()
            assert "governance.roster_history[1] differs from version 2 of the roster this node installed" in out
        finally:
            cfg2.write_text(original)
        cluster.start("node-2")
        cluster.wait_healthy(["node-2"])
        deadline = time.monotonic() + 30
        while _versions(cluster, [2]) != {2: 2} and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _versions(cluster, [2]) == {2: 2}
