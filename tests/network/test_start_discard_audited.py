"""Issue 14 red team, on real processes: at its start a node deletes every fresh presignature and
FROST nonce left from before (a restored store must never revive one); each deletion is ONE
transaction with its ``presign-discard`` / ``frost-nonces-discard`` entry (reason
``node-start``). A node killed right after that commit, before the entry reached its audit log
(test-mode crash point ``audit-queued``), logs it exactly once after its restart (which finds
nothing left to delete), and its audit chain verifies."""

from __future__ import annotations

import pytest

from mpcnet.cluster.launcher import Layout

from .audit_crash_util import START_DISCARDS, crash, leave_fresh, make_layout, matching, restart_entries
from .keyops_util import close, services


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return make_layout(tmp_path_factory.mktemp("start-discard-audit"))


@pytest.mark.parametrize("what", sorted(START_DISCARDS))
def test_a_kill_after_the_start_discard_logs_its_entry_once(lay: Layout, what: str) -> None:
    action = START_DISCARDS[what]
    before = len(matching(restart_entries(lay, 1), action))
    crash(lay, "start-discard", what, "3")
    entries = restart_entries(lay, 1)  # the restart: the queued entry is flushed, nothing is left to delete
    mine = matching(entries, action)[before:]
    assert [(e.outcome, e.details["count"], e.details["reason"]) for e in mine] == [("discarded", 3, "node-start")]
    svcs = services(lay, only=1)
    try:
        left = svcs[1].store.fresh_presignatures() if what == "presign" else svcs[1].store.fresh_nonces()
        assert left == []
    finally:
        close(svcs)
    assert len(matching(restart_entries(lay, 1), action)) == before + 1  # a later start adds none


@pytest.mark.parametrize("what", sorted(START_DISCARDS))
def test_the_start_discard_is_logged_before_the_node_serves(lay: Layout, what: str) -> None:
    action = START_DISCARDS[what]
    before = len(matching(restart_entries(lay, 1), action))
    leave_fresh(lay, what, 2)
    svcs = services(lay, only=1)  # no crash: the start's own flush puts it in the log
    try:
        assert svcs[1].store.pending_audit() == []
        mine = matching(svcs[1].audit.entries(), action)[before:]
        assert [(e.details["count"], e.details["reason"]) for e in mine] == [(2, "node-start")]
    finally:
        close(svcs)
