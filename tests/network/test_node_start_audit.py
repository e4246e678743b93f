"""Issue 14 red team: a node's ``node-start`` audit entry is appended before it serves, after the
start's own state changes (the queued entries flushed, the leftover presignatures deleted with
their ``presign-discard`` entry); a node that cannot append it never serves.

On a real ``mpc-node`` process: killed at the test-mode crash point ``audit-queued`` right after
its start deleted the leftovers (their entry committed to the outbox, not yet in the log), it
never logged ``node-start``; restarted, it logs the discard once, then ``node-start``, then
serves, and its audit chain verifies."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest

from governance.errors import GovernanceError
from mpc_node import faults as node_faults, main as node_main
from mpc_node.config import load_node_config
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.common.stores.audit import AuditLog

from .audit_crash_util import arm, fault_file, leave_fresh, make_layout, matching, restart_entries


def test_a_node_killed_during_its_start_logs_the_discard_once_then_node_start(tmp_path_factory: pytest.TempPathFactory) -> None:
    lay = make_layout(tmp_path_factory.mktemp("node-start-audit"))
    c = LocalCluster(lay)
    env = {node_faults.ENV: str(fault_file(lay))}
    try:
        leave_fresh(lay, "presign", 2)
        arm(lay, "presign-discard")
        assert c.start("node-1", env).wait(timeout=120) == 137  # killed at the crash point, before serving
        assert not fault_file(lay).exists()
        c.start("node-1", env)
        c.wait_healthy(["node-1"], timeout=120)
        c.kill("node-1", signal.SIGKILL)
    finally:
        c.stop()
    entries = restart_entries(lay, 1)
    discards = matching(entries, "presign-discard", reason="node-start")
    starts = matching(entries, "node-start", "ok")
    assert [e.details["count"] for e in discards] == [2]  # once, though the first start died after deleting
    assert len(starts) == 1  # the served start only: the killed one never got as far as serving
    assert discards[0].seq < starts[0].seq  # node-start follows the start's own changes, before serving


def test_a_node_that_cannot_log_node_start_never_serves(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    lay = make_layout(tmp_path_factory.mktemp("node-start-unlogged"))
    cfg = load_node_config(lay.node_config(1))
    served: list[Any] = []
    real_append = AuditLog.append

    def append(self: AuditLog, actor: str, action: str, *a: Any, **kw: Any) -> Any:
        if action == "node-start":
            raise GovernanceError("audit_db", "database or disk is full (test)")
        return real_append(self, actor, action, *a, **kw)

    monkeypatch.setattr(AuditLog, "append", append)
    monkeypatch.setattr(node_main, "build_server", lambda *a: served.append(a))
    with pytest.raises(Exception, match=r"audit_db: database or disk is full \(test\)"):  # one line naming the data dir
        node_main.run(cfg, threading.Event(), threading.Event())
    assert served == []  # no server was built, no port ever listened
