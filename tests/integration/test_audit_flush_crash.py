"""Issue 14 R1 on real processes: the coordinator's audit entries reach its log in the background
(coordinator/audit_flush.py). A coordinator killed (test-mode crash point, like ``kill -9``) after
a state change committed but before its entry was appended (``audit-queued``), or after the
append but before the outbox drop (``audit-appended``), logs the entry exactly once after its
restart, and the request completes with every entry once."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from coordinator.faults import ENV as COORDINATOR_FAULT_ENV
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.client.errors import MpcError
from mpcnet.cluster.launcher import LocalCluster

from .conftest import make_cluster


@pytest.fixture(scope="module")
def fc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "audit-flush-2of3", 3, 2)
    (c.lay.dir / "faults").mkdir()
    c.env = {COORDINATOR_FAULT_ENV: str(c.lay.dir / "faults" / "coordinator.json")}
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def team(fc: LocalCluster) -> Iterator[SigningTeam]:
    with SigningTeam.from_cluster(fc.lay.dir, timeout=120) as t:
        yield t


@pytest.fixture(scope="module")
def key(fc: LocalCluster) -> Any:
    with MpcClient.from_cluster(fc.lay.dir, identity="admin1", timeout=120) as admin:
        return admin.create_key("flush-crash")


def _entries(fc: LocalCluster, rid: str) -> list[tuple[str, str]]:
    """(action, event key) of the request's entries in the coordinator's log, via GetAuditLog."""
    with MpcClient.from_cluster(fc.lay.dir, identity="auditor1", timeout=60) as auditor:
        rows = auditor.fetch_audit("coordinator").rows()
    return [(str(r[3]), json.loads(str(r[6])).get("event", "")) for r in rows if r[4] == rid]


@pytest.mark.parametrize("point", ["audit-queued", "audit-appended"])
def test_a_kill_between_the_commit_and_the_audit_flush_logs_each_entry_once(
    fc: LocalCluster, team: SigningTeam, key: Any, point: str
) -> None:
    rid = f"flush-crash-{point}"
    (fc.lay.dir / "faults" / "coordinator.json").write_text(json.dumps({"action": "crash", "point": point}))
    try:
        team.requester.submit_sign_request(key.key_id, hashlib.sha256(rid.encode()).digest(), request_id=rid, description="crash")
    except MpcError:
        pass  # the crash may fire before the answer leaves: the request is committed all the same
    assert fc.procs["coordinator"].wait(timeout=60) == 137  # os._exit at the crash point
    assert not (fc.lay.dir / "faults" / "coordinator.json").exists()  # fired once
    fc.start("coordinator")
    fc.wait_healthy(["coordinator"])
    assert team.requester.get_sign_request(rid).state == "pending_approval"
    assert [a for a, _ in _entries(fc, rid)] == ["sign-request"]  # flushed at the start, once
    for approver in team.approvers:
        approver.approve(rid)
    assert team.requester.wait_sign_request(rid, timeout=60).state == "done"
    log = _entries(fc, rid)
    assert Counter(a for a, _ in log) == {"sign-request": 1, "sign-decision": 2, "sign-approved": 1, "sign-done": 1}, log
    assert len({ev for _, ev in log}) == len(log)
