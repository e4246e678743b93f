"""Attacks on the wiring of issue 12 (coordinator ceremonies, node RPCs), each a finding fixed:
a drill of an epoch the key left is never handed out again or left open for ever."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from coordinator.db import now_ms
from crypto_core.group import Q
from governance.recovery import PiecePurpose
from mpcnet.common.rpc import RpcError
from tests.coordinator.recovery_util import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def _refresh(world: World) -> None:
    """The key moves to epoch +1 (new shares of the same secret on every node and in the
    coordinator's record); its new bundle is collected."""
    slope = secrets.randbelow(Q - 1) + 1
    for i, node in world.nodes.items():
        node.share = (world.secret + slope * i) % Q
        node.epoch += 1
    world.db.set_key_epoch(world.key_id, world.nodes[1].epoch, tuple(world.nodes), now_ms())
    world.backups._backoff.clear()
    assert len(world.backups.check()) == 1


def test_a_drill_left_open_when_the_key_moves_on_is_failed_not_handed_out_again(world: World) -> None:
    """Finding: an open drill of epoch e stayed the key's drill for ever (StartDrill answered it
    again after a refresh to e+1: officers refuse it, nodes refuse it; the key could never be
    drilled again, and a drill of a refreshed-away epoch stayed open to collect pieces)."""
    world.configure()
    assert world.backups.check() != []
    stale = world.ceremonies.start_drill(world.key_id, "officer1")
    world.ceremonies.submit(world.pieces("officer1", stale.ceremony_id, PiecePurpose.DRILL), "officer1")
    _refresh(world)
    fresh = world.ceremonies.start_drill(world.key_id, "officer1")
    assert fresh.ceremony_id != stale.ceremony_id and fresh.epoch == 1
    old = world.ceremonies.get(stale.ceremony_id)
    assert old.state == "failed" and "epoch 1" in old.error, old.error
    assert ("ceremony-failed", "superseded") in world.actions()
    # the new one runs
    world.ceremonies.submit(world.pieces("officer1", fresh.ceremony_id, PiecePurpose.DRILL), "officer1")
    done = world.ceremonies.submit(world.pieces("officer2", fresh.ceremony_id, PiecePurpose.DRILL), "officer2")
    assert done.state == "done", done.error


def test_the_background_pass_fails_a_drill_of_an_epoch_the_key_left(world: World) -> None:
    world.configure()
    assert world.backups.check() != []
    stale = world.ceremonies.start_drill(world.key_id, "officer1")
    world.nodes[2].down = True
    world.ceremonies.submit(world.pieces("officer1", stale.ceremony_id, PiecePurpose.DRILL), "officer1")
    assert world.ceremonies.submit(world.pieces("officer2", stale.ceremony_id, PiecePurpose.DRILL), "officer2").state == "running"
    world.nodes[2].down = False
    _refresh(world)
    drills = world.nodes[2].drills
    world.ceremonies._retry_at.clear()
    world.ceremonies.check()
    rec = world.ceremonies.get(stale.ceremony_id)
    assert rec.state == "failed" and "epoch 1" in rec.error
    assert world.nodes[2].drills == drills  # no share of epoch 0 is sent anywhere any more
    d = world.db.drill_record(world.key_id)
    assert d is None or d.last_ok_ms == 0


def test_listings_answer_the_newest_ceremonies_and_bundles_not_every_one_ever(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: ListCeremonies/ListBackups answered every row ever made (drills and scheduled
    refreshes add rows for ever): one answer would outgrow the gRPC message limit and the
    status commands would fail for good."""
    import dataclasses

    import coordinator.backups
    import coordinator.ceremonies
    from coordinator.backup_store import BundleRecord
    from coordinator.db import AuditEvent

    monkeypatch.setattr(coordinator.ceremonies, "MAX_LISTED", 5)
    monkeypatch.setattr(coordinator.backups, "MAX_LISTED", 4)
    world.configure()
    assert world.backups.check() != []
    first = world.ceremonies.start_drill(world.key_id, "officer1")
    ev = AuditEvent("test", "ceremony-opened", "", "drill", {})
    ids = [first.ceremony_id]
    for k in range(8):
        rec = dataclasses.replace(first, ceremony_id=bytes([k + 1]) * 16, state="failed", created_ms=first.created_ms + k + 1)
        assert world.db.add_ceremony(rec, ev)
        ids.append(rec.ceremony_id)
    listed = world.ceremonies.listing(None)
    assert [bytes(c.ceremony_id) for c in listed] == ids[::-1][:5]
    assert len(world.ceremonies.listing(world.key_id)) == 5
    newest = world.db.newest_bundle(world.key_id)
    assert newest is not None
    full = world.db.get_bundle(newest.digest)
    assert full is not None
    for k in range(6):
        b = BundleRecord(bytes([k + 1]) * 32, world.key_id, 0, 1, newest.created_ms + k + 1, False, 1, full.bundle)
        world.db.add_bundle(b, AuditEvent("test", "backup-created", "", "created", {}))
    assert len(world.backups.listing(None)) == 4 and len(world.backups.listing(world.key_id)) == 4
    assert world.backups.listing(world.key_id)[0].bundle_digest == bytes([6]) * 32


def test_a_drill_open_for_too_long_is_failed_and_a_new_one_attests_afresh(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Officers count only epoch attestations at most 24 h old: a drill open longer (20 h) is
    failed, so StartDrill opens a new one with fresh attestations instead of answering one no
    officer will contribute to."""
    import coordinator.ceremonies
    from governance.recovery import EpochAttestation

    world.configure()
    assert world.backups.check() != []
    old = world.ceremonies.start_drill(world.key_id, "officer1")
    later = now_ms() + coordinator.ceremonies.DRILL_LIFETIME_MS
    monkeypatch.setattr(coordinator.ceremonies, "now_ms", lambda: later)
    world.ceremonies.check()
    rec = world.ceremonies.get(old.ceremony_id)
    assert rec.state == "failed" and "20 h" in rec.error
    new = world.ceremonies.start_drill(world.key_id, "officer1")
    assert new.ceremony_id != old.ceremony_id and new.state == "collecting"
    atts = [EpochAttestation.from_bytes(t.attestation) for t in new.targets if t.attestation]
    assert len(atts) >= 2 and all(a.ceremony_id == new.ceremony_id for a in atts)


def test_a_restore_of_an_epoch_the_key_left_is_failed_before_officers_send_pieces(world: World) -> None:
    """Sibling of the stale drill: a restore ceremony still collecting when the key moved on (a
    refresh or reshare committed) can never complete (its follow-up starts from the old epoch);
    it is failed at once instead of collecting officers' pieces of a refreshed-away share until
    its order expires."""
    world.configure()
    digest = world.backups.check()[0]
    order = world.restore_order((3,), digest)
    p = world.propose_order(order, "ada")
    world.approve(p.proposal_id, "bob", order.encode())
    c = world.ceremonies.get(order.order_id)
    assert c.state == "collecting"
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.RESTORE), "officer1")
    _refresh(world)
    restored = world.nodes[3].restored
    world.ceremonies.check()
    rec = world.ceremonies.get(c.ceremony_id)
    assert rec.state == "failed" and "epoch 1" in rec.error, rec.error
    with pytest.raises(RpcError) as e:
        world.ceremonies.submit(world.pieces("officer2", c.ceremony_id, PiecePurpose.RESTORE), "officer2")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and "not collecting" in e.value.message
    assert world.nodes[3].restored == restored and world.keyops.started == []


def test_pieces_for_a_superseded_drill_are_refused_and_the_drill_failed(world: World) -> None:
    world.configure()
    assert world.backups.check() != []
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    _refresh(world)
    with pytest.raises(RpcError) as e:
        world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and e.value.message.startswith("ceremony_id:")
    assert "failed: superseded: the key moved on to epoch 1" in e.value.message
    assert world.db.ceremony_pieces(c.ceremony_id) == [] and world.ceremonies.get(c.ceremony_id).state == "failed"


def test_a_restore_whose_own_follow_up_moved_the_key_on_is_not_called_superseded(world: World) -> None:
    """The background pass may see the restore still ``running`` after its follow-up started
    (and committed): that is its own operation, not a stale restore."""
    world.configure()
    digest = world.backups.check()[0]
    order = world.restore_order((3,), digest)
    world.approve(world.propose_order(order, "ada").proposal_id, "bob", order.encode())
    c = world.ceremonies.get(order.order_id)
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.RESTORE), "officer1")
    assert world.ceremonies.submit(world.pieces("officer2", c.ceremony_id, PiecePurpose.RESTORE), "officer2").state == "follow-up"
    world.db.update_ceremony(c.ceremony_id, from_states=("follow-up",), state="running", now=now_ms())  # the window
    world.done_operation(c.follow_up)
    _refresh(world)
    world.ceremonies._retry_at.clear()
    world.ceremonies.check()
    assert world.ceremonies.get(c.ceremony_id).state != "failed"
