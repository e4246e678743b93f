"""Issue 14 red team, on real processes: a node's key-epoch state changes (a reshare session's
stored outcome, CommitEpoch's switch, a non-member's erasure of its share, DiscardEpoch's
abandonment, a released confirmation) are each ONE transaction with their audit entry (the
store's audit outbox). A node killed right after the commit, before the entry reached its audit
log (test-mode crash point ``audit-queued``), logs the entry exactly once after its restart, and
its audit chain verifies."""

from __future__ import annotations

import pytest

from mpcnet.cluster.launcher import Layout

from .audit_crash_util import crash, make_layout, matching, restart_entries
from .keyops_util import close, services


@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return make_layout(tmp_path_factory.mktemp("epochs-audit-crash"))


def _epoch(lay: Layout, i: int, key_id: str) -> tuple[int, str] | None:
    svcs = services(lay, only=i)
    try:
        e = svcs[i].store.key_epoch(bytes.fromhex(key_id))
        return None if e is None else (e.epoch, e.status)
    finally:
        close(svcs)


def test_a_kill_after_a_reshare_outcome_is_stored_logs_its_entry_once(lay: Layout) -> None:
    key_id = crash(lay, "reshare-stored")[0]["key_id"]
    stored = 0
    for i in (1, 2, 3):
        svcs = services(lay, only=i)
        try:
            with svcs[i].store._read() as c:  # the sessions of the key this node stored an outcome of
                sessions = {bytes(r[0]).hex()[:16] for r in c.execute(
                    "SELECT session_id FROM pending_epochs WHERE key_id = ?", (bytes.fromhex(key_id),)
                ).fetchall()}  # fmt: skip
        finally:
            close(svcs)
        logged = matching(restart_entries(lay, i), "key-reshare", "stored-pending", key_id=key_id)
        assert sorted(str(e.details["session"]) for e in logged) == sorted(sessions)  # each stored outcome, once
        stored += len(sessions)
    assert stored >= 1


def test_a_kill_after_commit_epoch_logs_committed_once(lay: Layout) -> None:
    said = crash(lay, "commit-epoch")[0]
    key_id, session = said["key_id"], said["session"][:16]
    entries = restart_entries(lay, 1)
    assert len(matching(entries, "key-epoch", "committed", key_id=key_id, session=session, epoch=1)) == 1
    assert _epoch(lay, 1, key_id) == (1, "active")


def test_a_kill_after_a_non_member_erased_its_share_logs_left_once(lay: Layout) -> None:
    said = crash(lay, "leave-key")[0]
    key_id, session = said["key_id"], said["session"][:16]
    entries = restart_entries(lay, 3)
    assert len(matching(entries, "key-epoch", "left", key_id=key_id, session=session, epoch=1)) == 1
    assert _epoch(lay, 3, key_id) == (1, "left")


def test_a_kill_after_discard_epoch_logs_abandoned_once(lay: Layout) -> None:
    said = crash(lay, "discard-epoch")[0]
    key_id, session = said["key_id"], said["session"]
    entries = restart_entries(lay, 1)
    assert len(matching(entries, "key-epoch", "abandoned", key_id=key_id, session=session[:16], dropped=False)) == 1
    svcs = services(lay, only=1)
    try:
        with svcs[1].store._read() as c:  # the abandonment committed with it
            assert c.execute(
                "SELECT 1 FROM abandoned_sessions WHERE key_id = ? AND session_id = ?", (bytes.fromhex(key_id), bytes.fromhex(session))
            ).fetchone() is not None
    finally:
        close(svcs)


def test_a_kill_after_a_confirmation_is_released_logs_it_once(lay: Layout) -> None:
    said = crash(lay, "confirmation-released")[0]
    key_id, session = said["key_id"], said["session"]
    entries = restart_entries(lay, 1)
    assert len(matching(entries, "key-epoch", "confirmation-released", key_id=key_id, session=session[:16], abandoned_by=3)) == 1
    svcs = services(lay, only=1)
    try:  # the outcome erased and the session abandoned, with the entry
        assert svcs[1].store.pending_epoch(bytes.fromhex(key_id), bytes.fromhex(session)) is None
        with svcs[1].store._read() as c:
            assert c.execute(
                "SELECT 1 FROM abandoned_sessions WHERE key_id = ? AND session_id = ?", (bytes.fromhex(key_id), bytes.fromhex(session))
            ).fetchone() is not None
    finally:
        close(svcs)
