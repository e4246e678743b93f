"""Issue 14 red-team finding, node side, on real processes: a governance install and its audit
entry are ONE node store transaction (the entry is queued in the store's audit outbox,
mpc_node/audit_outbox.py), so a node killed right after the install committed and before the
outbox was flushed (the test-mode crash points ``policy-installed``, ``attestation-stored``,
``roster-installed`` of mpc_node/faults.py, like ``kill -9``) logs the entry exactly once after
its restart, holds what it installed, and its audit chain verifies. Before, the store write and
the append were two steps: a kill between them lost the entry for good."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import grpc
import pytest

from governance.roster import RosterChange, SignedRosterChange, change_endpoint, sign_roster_change
from mpcnet.client import MpcClient
from mpcnet.client.audit import components, verify_component
from mpcnet.client.errors import MpcError
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.common.pki import channel_credentials
from mpcnet.wire.mpc.v1 import node_pb2, node_pb2_grpc
from tests.integration.conftest import running_cluster

NODE = "node-1"


@pytest.fixture(scope="module")
def nc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory, "install-crash-2of3", 3, 2, fault_files=True) as c:
        yield c


def _client(nc: LocalCluster, who: str) -> MpcClient:
    return MpcClient.from_cluster(nc.lay.dir, identity=who, timeout=60)


def _arm(nc: LocalCluster, point: str) -> None:
    (nc.lay.dir / "faults" / f"{NODE}.json").write_text(json.dumps({"action": "crash", "point": point}))


def _restart_after_crash(nc: LocalCluster) -> None:
    assert nc.procs[NODE].wait(timeout=60) == 137  # os._exit at the crash point
    assert not (nc.lay.dir / "faults" / f"{NODE}.json").exists()  # fired once
    nc.start(NODE, nc.node_env.get(1))  # with its fault file again
    nc.wait_healthy([NODE])
    deadline = time.monotonic() + 60
    with _client(nc, "auditor1") as auditor:  # the coordinator (which serves GetAuditLog) reaches it again
        while True:
            try:
                auditor.audit_page(NODE, 0, 1)
                return
            except MpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def _entries(nc: LocalCluster, action: str) -> list[tuple[str, dict[str, object]]]:
    """(outcome, details) of the node's ``action`` entries, through GetAuditLog."""
    with _client(nc, "auditor1") as auditor:
        rows = auditor.fetch_audit(NODE).rows()
    return [(str(r[5]), json.loads(str(r[6]))) for r in rows if r[3] == action]


def _chain_verifies(nc: LocalCluster) -> None:
    info = json.loads((nc.lay.dir / "cluster.json").read_text())
    with _client(nc, "auditor1") as auditor:
        report = verify_component(auditor, NODE, components(info)[NODE], None)
    assert report.ok, report.reason


def _node_stub(nc: LocalCluster, who: str) -> tuple[grpc.Channel, node_pb2_grpc.NodeStub]:
    creds = channel_credentials(load_identity(nc.lay.dir, who).cert, nc.lay.ca.cert)
    ch = grpc.secure_channel(nc.lay.endpoints()[NODE], creds)
    return ch, node_pb2_grpc.NodeStub(ch)


def test_a_kill_after_a_policy_install_committed_logs_its_entry_once(nc: LocalCluster) -> None:
    with _client(nc, "admin1") as admin1:
        proposal = admin1.propose_policy(admin1.next_policy(None, ttl_seconds=777), push=False)
    digest = proposal.signed_change.change.new_policy.digest().hex()
    _arm(nc, "policy-installed")
    with _client(nc, "admin2") as admin2:  # the coordinator applies it and pushes it to every node
        try:
            admin2.approve_policy(proposal.proposal_id, push=False)
        except MpcError:
            pass  # the client's own checks may find node-1 down already
        assert admin2.get_proposal(proposal.proposal_id).state == "applied"
    _restart_after_crash(nc)
    ch, stub = _node_stub(nc, "admin1")
    with ch:
        held = stub.GetPolicies(node_pb2.GetPoliciesRequest(), timeout=30)
    assert proposal.signed_change.change.new_policy.version in [p.version for p in held.policies]
    mine = [(o, d) for o, d in _entries(nc, "policy-install") if d.get("policy_digest") == digest]
    assert [o for o, _ in mine] == ["installed"], mine  # once, although the node died before the append
    _chain_verifies(nc)


def test_a_kill_after_an_attestation_was_stored_logs_its_entry_once(nc: LocalCluster) -> None:
    issued = int(time.time() * 1000) + 2000  # newer than any held (a node accepts up to 300 s ahead)
    _arm(nc, "attestation-stored")
    with _client(nc, "admin1") as admin1:
        out = admin1.attest(issued_at_ms=issued)
    assert out.get("coordinator") == "stored", out
    assert out.get(NODE) != "confirmed", out  # died before it answered (pushed by the coordinator or by us)
    _restart_after_crash(nc)
    mine = [(o, d) for o, d in _entries(nc, "policy-attest") if d.get("issued_at_ms") == issued]
    assert [o for o, _ in mine] == ["stored"], mine
    ch, stub = _node_stub(nc, "admin1")
    with ch:
        got = stub.GetPolicies(node_pb2.GetPoliciesRequest(), timeout=30)
    assert bytes(got.policy_attestation)  # the stored one survived the kill
    _chain_verifies(nc)


def test_a_kill_after_a_roster_install_committed_logs_its_entry_once(nc: LocalCluster) -> None:
    ch, stub = _node_stub(nc, "admin1")
    with ch:
        history = stub.GetRoster(node_pb2.GetRosterRequest(), timeout=30).signed_changes
    roster = SignedRosterChange.from_bytes(history[-1]).change.new_roster
    entry = roster.entry(3)
    assert entry is not None
    host, port = entry.endpoint.rsplit(":", 1)
    new = change_endpoint(roster, 3, f"{'localhost' if host != 'localhost' else '127.0.0.1'}:{port}")
    admin_set, _ = nc.lay.governance()
    change = RosterChange(new, roster.digest(), admin_set.digest())
    sigs = tuple(sign_roster_change(change, a, load_identity(nc.lay.dir, a).signing_key) for a in ("admin1", "admin2"))
    signed = SignedRosterChange(change, sigs).to_bytes()
    _arm(nc, "roster-installed")
    ch, stub = _node_stub(nc, "admin1")
    with ch, pytest.raises(grpc.RpcError):  # pushed by an admin directly; node-1 dies before it answers
        stub.InstallRosterChange(node_pb2.InstallRosterChangeRequest(signed_change=signed), timeout=60)
    _restart_after_crash(nc)
    ch, stub = _node_stub(nc, "admin1")
    with ch:
        assert stub.GetRoster(node_pb2.GetRosterRequest(), timeout=30).signed_changes[-1] == signed
    mine = [(o, d) for o, d in _entries(nc, "roster-install") if d.get("roster_digest") == new.digest().hex()]
    assert [o for o, _ in mine] == ["installed"], mine
    _chain_verifies(nc)
