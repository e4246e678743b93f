"""Review of the lean request path (issue 14) on real processes: the coordinator is SIGKILLed
(``kill -9``, no crash point) while several requests are being submitted, approved and signed
concurrently, and restarted. Every state change the clients saw acknowledged has its entry in
the coordinator's hash-chained log exactly once (no event key twice), every DONE request has
its full trail, and ``mpc audit verify``'s check (chains, signatures, completeness) passes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from mpcnet.client import MpcClient, SigningTeam
from mpcnet.client.audit import verify_cluster
from mpcnet.client.errors import MpcError
from mpcnet.cluster.launcher import LocalCluster

from .conftest import make_cluster

REQUESTS = 6
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}


@pytest.fixture(scope="module")
def fc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "review-lean-kill", 3, 2)
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


def _retry(call: Any, deadline: float, ok_codes: frozenset[grpc.StatusCode] = frozenset()) -> Any:
    """``call()`` until it answers (or fails with one of ``ok_codes``: None), retrying while the
    coordinator is down."""
    while True:
        try:
            return call()
        except MpcError as e:
            if e.code in ok_codes:
                return None
            if e.code not in RETRYABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def key(fc: LocalCluster) -> Any:
    with MpcClient.from_cluster(fc.lay.dir, identity="admin1", timeout=120) as admin:
        return admin.create_key("review-lean-kill")


@pytest.mark.parametrize("delay_s", [0.05, 0.3, 0.8, 1.5])
def test_a_sigkill_under_concurrent_signing_loses_and_doubles_no_audit_entry(fc: LocalCluster, key: Any, delay_s: float) -> None:
    errors: list[BaseException] = []
    acked: dict[str, set[str]] = {}  # request id -> the acknowledged changes (submit, approver names)
    lock = threading.Lock()
    with SigningTeam.from_cluster(fc.lay.dir, timeout=30) as team:

        def one(i: int) -> None:
            rid = f"kill-load-{delay_s}-{i}"
            deadline = time.monotonic() + 120
            try:
                _retry(lambda: team.requester.submit_sign_request(
                    key.key_id, hashlib.sha256(rid.encode()).digest(), request_id=rid, description="kill under load"
                ), deadline, frozenset({grpc.StatusCode.ALREADY_EXISTS}))
                with lock:
                    acked.setdefault(rid, set()).add("submit")
                for j, approver in enumerate(team.approvers):
                    _retry(lambda a=approver: a.approve(rid), deadline)
                    with lock:
                        acked[rid].add(f"approver-{j}")
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(REQUESTS)]
        for t in threads:
            t.start()
        time.sleep(delay_s)  # some requests submitted, some approved, some signing
        with lock:
            at_kill = {rid: sorted(a) for rid, a in acked.items()}
        print("acknowledged at the kill:", at_kill)
        os.kill(fc.procs["coordinator"].pid, signal.SIGKILL)
        assert fc.procs["coordinator"].wait(timeout=30) == -signal.SIGKILL
        fc.start("coordinator")
        fc.wait_healthy(["coordinator"])
        for t in threads:
            t.join(150)
        assert not errors, errors
        states = {rid: team.requester.wait_sign_request(rid, timeout=120).state for rid in acked}
    assert len(acked) == REQUESTS
    with MpcClient.from_cluster(fc.lay.dir, identity="auditor1", timeout=60) as auditor:
        rows = auditor.fetch_audit("coordinator").rows()
        info = json.loads((fc.lay.dir / "cluster.json").read_text(encoding="utf-8"))
        reports = verify_cluster(auditor, info, None)
    assert all(r.ok for r in reports), [(r.component, r.reason) for r in reports]
    events = [json.loads(str(r[6])).get("event", "") for r in rows]
    keyed = [e for e in events if e]
    assert len(keyed) == len(set(keyed)), "an outbox entry was appended twice"
    for rid, state in states.items():
        acts = Counter(str(r[3]) for r in rows if r[4] == rid and r[5] != "refused")
        assert acts["sign-request"] == 1 and acts["sign-decision"] == 2 and acts["sign-approved"] == 1, (rid, acts)
        if state == "done":
            assert acts["sign-done"] == 1, (rid, acts)
        else:
            assert state == "failed" and acts["sign-failed"] == 1, (rid, state, acts)
