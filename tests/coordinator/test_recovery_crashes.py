"""The coordinator side of issue 12 killed at every durable step (an on-call operator's view):
the in-process recovery world (tests/coordinator/recovery_util.py) "crashes" by raising
:class:`Crash` (a BaseException, so no handler of the code under test catches it) just before a
chosen ceremony transaction, then restarts on the same database, like ``kill -9`` and
``mpc-cluster up``. After the restart the background pass must finish the ceremony: nothing an
officer was told was accepted is lost, no drill is recorded twice, a restore's follow-up
operation is started once. Also: a node back from a long outage gets its bundle at the next pass
(not after the backoff of up to an hour), and ``ClusterStatus`` says why a key has no bundle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from coordinator import ceremonies as ceremonies_mod
from coordinator.backups import BACKOFF_MS
from coordinator.ceremonies import DRILL_MAX_MS
from coordinator.db import now_ms
from coordinator.recovery_proposals import CONFIG_KIND, ORDER_KIND
from governance.keyop import SignedKeyOperation
from governance.recovery import PiecePurpose, SignedRecoveryConfigChange
from mpcnet.common import agekeys
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import coordinator_pb2
from tests.coordinator.recovery_util import RecordingKeyOps, World

Code = grpc.StatusCode


class Crash(BaseException):
    """The coordinator process dies here."""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def _configured(world: World) -> bytes:
    world.configure()
    assert world.backups.check() != []
    newest = world.db.newest_bundle(world.key_id)
    assert newest is not None
    return newest.digest


def _crash_at(world: World, monkeypatch: pytest.MonkeyPatch, when: Any) -> None:
    """Die just before the ceremony update for which ``when(kwargs)`` is true (its transaction
    is never written)."""
    real = world.db.update_ceremony

    def update(cid: bytes, **kw: Any) -> bool:
        if when(kw):
            raise Crash(kw.get("state"))
        return real(cid, **kw)

    monkeypatch.setattr(world.db, "update_ceremony", update)


def _restart(world: World) -> None:
    world.restart()
    world.ceremonies._retry_at.clear()


def _pass(world: World) -> None:
    world.ceremonies._retry_at.clear()
    world.ceremonies.check()


def _count(world: World, action: str) -> int:
    return sum(1 for e in world.audit.entries() if e.action == action)


# --- bundles after an outage -------------------------------------------------------------------
def test_a_node_back_from_an_outage_gets_its_bundle_at_the_next_pass_and_status_says_why_meanwhile(world: World) -> None:
    world.nodes[3].down = True
    world.configure()
    for _ in range(3):  # three failed passes in a row: the backoff has grown
        world.backups.check()
        world.backups._backoff[world.key_id] = (world.backups._backoff[world.key_id][0], 0)
    assert world.backups.check() == []
    failures, at = world.backups._backoff[world.key_id]
    assert failures == 4
    [row] = world.backups.status()
    assert not row.backed_up
    # what is wrong (the node and its error) and that the coordinator tries again by itself
    assert "node 3" in row.backup_error and "UNAVAILABLE" in row.backup_error and "next try in" in row.backup_error
    assert "failed 4 time(s) in a row" in row.backup_error
    assert at - 1 > BACKOFF_MS * 4  # without the hook below the next try would be minutes away
    world.nodes[3].down = False
    assert world.backups.check() == []  # still backing off ...
    world.backups.node_back(3)  # ... until the health pass sees node 3 answer again
    assert len(world.backups.check()) == 1
    [row] = world.backups.status()
    assert row.backed_up and row.backup_error == ""


def test_a_key_backed_up_has_no_error_and_a_bad_node_is_named_escaped(world: World) -> None:
    world.nodes[2].down = True
    world.configure()
    world.backups._failed(world.key_id, "node 2: UNAVAILABLE: \x1b[31mred\x1b[0m")
    [row] = world.backups.status()
    assert "\x1b" not in row.backup_error and "node 2" in row.backup_error


# --- ceremonies killed at each step -------------------------------------------------------------
def test_pieces_acknowledged_before_a_crash_count_after_it(world: World) -> None:
    _configured(world)
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    first = world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    assert first.state == "collecting"
    _restart(world)
    done = world.ceremonies.submit(world.pieces("officer2", c.ceremony_id, PiecePurpose.DRILL), "officer2")
    assert done.state == "done", done.error
    # the officer who was acknowledged is told so again, not asked twice
    with pytest.raises(RpcError) as e:
        world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    assert e.value.code == Code.FAILED_PRECONDITION


def test_a_drill_killed_before_its_running_state_runs_after_the_restart(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    _configured(world)
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    _crash_at(world, monkeypatch, lambda kw: kw.get("state") == "running" and kw.get("from_states") == ("collecting",))
    with pytest.raises(Crash):
        world.ceremonies.submit(world.pieces("officer2", c.ceremony_id, PiecePurpose.DRILL), "officer2")
    _restart(world)
    assert world.ceremonies.get(c.ceremony_id).state == "collecting"
    _pass(world)  # the background pass sees the quorum of pieces
    assert world.ceremonies.get(c.ceremony_id).state == "done"
    assert _count(world, "drill-recorded") == 1


def test_a_drill_killed_after_the_nodes_reported_is_recorded_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    _configured(world)
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    _crash_at(world, monkeypatch, lambda kw: kw.get("drill") is not None)
    with pytest.raises(Crash):
        world.ceremonies.submit(world.pieces("officer2", c.ceremony_id, PiecePurpose.DRILL), "officer2")
    _restart(world)
    assert world.ceremonies.get(c.ceremony_id).state == "running"
    assert world.ceremonies.start_drill(world.key_id, "officer3").ceremony_id == c.ceremony_id  # no second drill meanwhile
    _pass(world)  # the nodes are asked again (a drill changes nothing on them)
    _pass(world)
    rec = world.ceremonies.get(c.ceremony_id)
    assert rec.state == "done", rec.error
    assert _count(world, "drill-recorded") == 1
    [row] = world.backups.status()
    assert row.last_drill_outcome == "ok"
    assert all(n.drills == 2 for n in world.nodes.values())


class _OnceKeyOps(RecordingKeyOps):
    """Starting the same operation again answers ALREADY_EXISTS, like KeyOperations.start."""

    def start(self, signed: SignedKeyOperation, authorized_by: str, actor: str, *, wait: bool = False) -> str:
        op_id = signed.operation.proposal_id
        if any(s.operation.proposal_id == op_id for s, _ in self.started):
            raise RpcError(Code.ALREADY_EXISTS, f"operation_id: operation {op_id} is running")
        return super().start(signed, authorized_by, actor, wait=wait)


def _applied_restore(world: World) -> tuple[bytes, str]:
    digest = _configured(world)
    order = world.restore_order((3,), digest)
    p = world.propose_order(order, "ada")
    world.approve(p.proposal_id, "bob", order.encode())
    assert order.follow_up is not None
    return order.order_id, order.follow_up.proposal_id


def _with_once_keyops(world: World) -> None:
    ko = world.keyops
    ko.__class__ = _OnceKeyOps


def test_a_restore_killed_after_its_target_restored_asks_it_again_and_starts_the_follow_up_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, op_id = _applied_restore(world)
    world.ceremonies.submit(world.pieces("officer1", cid, PiecePurpose.RESTORE), "officer1")
    # the target stored its restored share and answered its receipt; the coordinator dies
    # before it writes that receipt down
    _crash_at(world, monkeypatch, lambda kw: kw.get("state") == "running" and kw.get("targets") is not None)
    with pytest.raises(Crash):
        world.ceremonies.submit(world.pieces("officer2", cid, PiecePurpose.RESTORE), "officer2")
    assert world.nodes[3].restored == world.nodes[3].share
    _restart(world)
    _with_once_keyops(world)
    _pass(world)
    rec = world.ceremonies.get(cid)
    assert rec.state == "follow-up", rec.error
    assert [t.state for t in rec.targets] == ["ok"]
    assert [s.operation.proposal_id for s, _ in world.keyops.started] == [op_id]


def test_a_restore_killed_after_starting_its_follow_up_does_not_start_it_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, op_id = _applied_restore(world)
    _with_once_keyops(world)
    world.ceremonies.submit(world.pieces("officer1", cid, PiecePurpose.RESTORE), "officer1")
    _crash_at(world, monkeypatch, lambda kw: kw.get("state") == "follow-up")
    with pytest.raises(Crash):
        world.ceremonies.submit(world.pieces("officer2", cid, PiecePurpose.RESTORE), "officer2")
    started = list(world.keyops.started)
    assert [s.operation.proposal_id for s, _ in started] == [op_id]
    _restart(world)
    _with_once_keyops(world)
    world.keyops.started = started  # the operation is in the (durable) key operations table
    _pass(world)
    rec = world.ceremonies.get(cid)
    assert rec.state == "follow-up" and rec.follow_up == op_id, rec.error
    assert len(world.keyops.started) == 1
    world.done_operation(op_id)
    _pass(world)
    assert world.ceremonies.get(cid).state == "done"
    assert _count(world, "ceremony-done") == 1


def test_an_export_killed_before_it_was_done_finishes_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = _configured(world)
    _, off_public = agekeys.generate()
    order = world.export_order(digest, off_public)
    p = world.propose_order(order, "ada", "bob")
    world.approve(p.proposal_id, "cyd", order.encode())
    cid = order.order_id
    world.ceremonies.submit(world.pieces("officer1", cid, PiecePurpose.EXPORT), "officer1")
    _crash_at(world, monkeypatch, lambda kw: kw.get("state") == "done")
    with pytest.raises(Crash):
        world.ceremonies.submit(world.pieces("officer2", cid, PiecePurpose.EXPORT), "officer2")
    _restart(world)
    assert world.ceremonies.get(cid).state == "running"
    _pass(world)
    rec = world.ceremonies.get(cid)
    assert rec.state == "done"
    assert len(world.ceremonies.message(rec).export_pieces) == 4
    loud = [e.outcome for e in world.audit.entries() if e.action == "break-glass-export"]
    assert loud == ["export", "pieces-collected"]


# --- a configuration change killed while it is pushed --------------------------------------------
def _killed_while_pushing(world: World, monkeypatch: pytest.MonkeyPatch) -> str:
    """The configuration change is stored at its quorum, then the coordinator dies while pushing
    it to the nodes (before the proposal is marked applied). The proposal id."""
    def push() -> None:
        raise Crash("push")

    monkeypatch.setattr(world.book, "sync_all", push)
    change = world.config_change()
    with pytest.raises(Crash):
        world.configure()
    assert world.book.version == 1  # the configuration is in force ...
    [rec] = world.db.list_lifecycle_proposals()
    assert rec.state == "pending" and rec.proposal_id == change.proposal_id  # ... its proposal is not applied
    _restart(world)
    return rec.proposal_id


def test_a_configuration_killed_while_pushed_is_applied_by_the_restarted_coordinator(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = _killed_while_pushing(world, monkeypatch)
    assert world.lifecycle.retry_pending((CONFIG_KIND, ORDER_KIND), "coordinator") == [pid]
    assert world.lifecycle.get(pid).state == "applied"
    assert all(len(n.history) == 1 for n in world.nodes.values())  # pushed to every node
    assert world.lifecycle.retry_pending((CONFIG_KIND, ORDER_KIND), "coordinator") == []
    assert len(world.backups.check()) == 1  # and the bundle follows


def test_a_configuration_killed_while_pushed_can_be_approved_again_not_stuck_pending(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = _killed_while_pushing(world, monkeypatch)
    change = world.config_change()  # the next one is version 2: the first is in force
    assert change.config.version == 2
    rec = world.db.get_lifecycle_proposal(pid)
    assert rec is not None
    p = world.approve(pid, "cyd", SignedRecoveryConfigChange.from_bytes(rec.signed).change.encode())
    assert p.state == coordinator_pb2.PROPOSAL_STATE_APPLIED, p.error
    assert all(len(n.history) == 1 for n in world.nodes.values())


# --- drills that cannot finish --------------------------------------------------------------------
def test_a_drill_waiting_for_a_node_down_for_good_fails_after_a_day_and_a_new_one_opens(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configured(world)
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    world.nodes[2].down = True  # its host is gone (it will be replaced)
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    running = world.ceremonies.submit(world.pieces("officer2", c.ceremony_id, PiecePurpose.DRILL), "officer2")
    assert running.state == "running" and "node 2" in running.error
    _pass(world)
    assert world.ceremonies.get(c.ceremony_id).state == "running"  # waits (retried) ...
    world.nodes[2].down = False
    later = now_ms() + DRILL_MAX_MS + 1000
    monkeypatch.setattr(ceremonies_mod, "now_ms", lambda: later)
    world.nodes[2].down = True
    _pass(world)  # ... but not for ever
    rec = world.ceremonies.get(c.ceremony_id)
    assert rec.state == "failed" and "did not complete within 20 h" in rec.error and "node 2" in rec.error
    assert "mpc backup drill" in rec.error
    [row] = world.backups.status()
    assert (row.last_drill_outcome.startswith("failed: ") and row.drill_overdue is False) or row.last_drill_unix_ms == 0
    assert ("drill-recorded", "failed") in world.actions()
    # the key's next drill is a new ceremony
    assert world.ceremonies.start_drill(world.key_id, "officer1").ceremony_id != c.ceremony_id


def test_an_open_drill_of_a_superseded_bundle_is_not_joined(world: World) -> None:
    _configured(world)
    stale = world.ceremonies.start_drill(world.key_id, "officer1")
    world.ceremonies.submit(world.pieces("officer1", stale.ceremony_id, PiecePurpose.DRILL), "officer1")
    world.configure()  # a new configuration: a new bundle supersedes the drill's
    assert world.backups.check() != []
    fresh = world.ceremonies.start_drill(world.key_id, "officer2")
    assert fresh.ceremony_id != stale.ceremony_id and fresh.bundle_digest != stale.bundle_digest
    old = world.ceremonies.get(stale.ceremony_id)
    assert old.state == "failed" and "a newer bundle of the key superseded this drill" in old.error


def test_a_pending_order_whose_apply_failed_is_not_retried_at_every_start(world: World) -> None:
    digest = _configured(world)
    world.nodes[2].down = True
    order = world.restore_order((3,), digest)
    p = world.propose_order(order, "ada")
    with pytest.raises(RpcError):
        world.approve(p.proposal_id, "bob", order.encode())
    rec = world.lifecycle.get(p.proposal_id)
    assert rec.state == "pending" and "node 2" in rec.error
    world.nodes[2].down = False
    assert world.lifecycle.retry_pending((CONFIG_KIND, ORDER_KIND), "coordinator") == []  # the admins retry it (propose again)
    again = world.propose_order(order, "ada")
    assert again.state == coordinator_pb2.PROPOSAL_STATE_APPLIED, again.error


def test_export_of_a_key_without_a_bundle_says_why(world: World) -> None:
    world.nodes[3].down = True
    world.configure()
    world.backups.check()
    with pytest.raises(RpcError) as e:
        world.backups.export(world.key_id, b"", "officer1")
    assert e.value.code == Code.NOT_FOUND and e.value.message.startswith("key_id: no backup bundle")
    assert "node 3" in e.value.message and "next try in" in e.value.message
