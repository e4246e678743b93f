"""Issue 14 red-team finding on real processes: a governance step and its audit entry are ONE
coordinator transaction (the ``audit_outbox`` table, coordinator/audit_flush.py).

A coordinator killed (test-mode crash point, like ``kill -9``) after the approval that completes
a policy proposal's quorum committed but before its entries reached the audit log
(``audit-queued``), or after they reached it but before they left the outbox
(``audit-appended``), restarts with: the proposal applied (never stuck pending: a proposal left
at its quorum is applied at the start), the policy in force, every entry of the proposal in its
log exactly once, and a chain that verifies."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest

from coordinator.faults import ENV as COORDINATOR_FAULT_ENV
from mpcnet.client import MpcClient
from mpcnet.client.audit import components, verify_component
from mpcnet.client.errors import MpcError
from mpcnet.cluster.launcher import LocalCluster
from tests.integration.conftest import make_cluster


@pytest.fixture(scope="module")
def pc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "policy-crash-2of3", 3, 2)
    (c.lay.dir / "faults").mkdir()
    c.env = {COORDINATOR_FAULT_ENV: str(c.lay.dir / "faults" / "coordinator.json")}
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


def _client(pc: LocalCluster, who: str) -> MpcClient:
    return MpcClient.from_cluster(pc.lay.dir, identity=who, timeout=60)


def _entries(pc: LocalCluster, pid: str) -> list[tuple[str, str, str]]:
    """(action, outcome, event key) of the proposal's entries in the coordinator's log."""
    with _client(pc, "auditor1") as auditor:
        rows = auditor.fetch_audit("coordinator").rows()
    out = []
    for r in rows:
        details = json.loads(str(r[6]))
        if details.get("proposal") == pid:
            out.append((str(r[3]), str(r[5]), str(details.get("event", ""))))
    return out


def _chain_verifies(pc: LocalCluster) -> None:
    info = json.loads((pc.lay.dir / "cluster.json").read_text())
    with _client(pc, "auditor1") as auditor:
        report = verify_component(auditor, "coordinator", components(info)["coordinator"], None)
    assert report.ok, report.reason


@pytest.mark.parametrize("point", ["audit-queued", "audit-appended"])
def test_a_kill_between_the_apply_and_its_audit_flush_loses_nothing_and_leaves_nothing_pending(
    pc: LocalCluster, point: str
) -> None:
    ttl = {"audit-queued": 900, "audit-appended": 901}[point]
    with _client(pc, "admin1") as admin1:
        proposal = admin1.propose_policy(admin1.next_policy(None, ttl_seconds=ttl), push=False)
        version = proposal.signed_change.change.new_policy.version
    assert proposal.state == "pending"
    # GetAuditLog flushes the outbox first: the crash cannot fire at the proposal's own flush
    assert [(a, o) for a, o, _ in _entries(pc, proposal.proposal_id)] == [("policy-propose", "pending")]
    fault = pc.lay.dir / "faults" / "coordinator.json"
    fault.write_text(json.dumps({"action": "crash", "point": point}))
    with _client(pc, "admin2") as admin2:
        try:
            admin2.approve_policy(proposal.proposal_id, push=False)
        except MpcError:
            pass  # the crash may fire before the answer leaves: what committed stays committed
    assert pc.procs["coordinator"].wait(timeout=60) == 137  # os._exit at the crash point
    assert not fault.exists()  # fired once
    pc.start("coordinator")
    pc.wait_healthy(["coordinator"])
    with _client(pc, "admin1") as admin1:
        assert admin1.get_proposal(proposal.proposal_id).state == "applied"
        assert [p.proposal_id for p in admin1.list_proposals("pending")] == []
        in_force = admin1.get_policy(None).policy
        assert (in_force.version, in_force.ttl_seconds) == (version, ttl)
    log = _entries(pc, proposal.proposal_id)
    assert Counter((a, o) for a, o, _ in log) == {
        ("policy-propose", "pending"): 1, ("policy-approve", "signed"): 1, ("policy-apply", "applied"): 1,
    }, log
    assert len({ev for _, _, ev in log}) == len(log)  # each event once
    _chain_verifies(pc)


def test_a_second_approval_by_a_signer_of_a_proposal_at_its_quorum_is_refused_when_applied(pc: LocalCluster) -> None:
    """Approving an applied proposal again changes nothing: refused, and the refusal audited."""
    with _client(pc, "admin1") as admin1:
        proposal = admin1.propose_policy(admin1.next_policy(None, ttl_seconds=902), push=False)
    with _client(pc, "admin2") as admin2:
        assert admin2.approve_policy(proposal.proposal_id, push=False).state == "applied"
        with pytest.raises(MpcError) as e:
            admin2.approve_policy(proposal.proposal_id, push=False)
    assert "not pending" in e.value.message or "applied" in e.value.message
    _chain_verifies(pc)
