"""The coordinator side of issue 12 (coordinator/recovery_config.py, backups.py, ceremonies.py,
recovery_proposals.py) against three fake nodes of a 2-of-3 key and three recovery officers
(quorum 2): the configuration proposal and its push, bundle collection and supersession, a
drill end to end, every refusal of SubmitRecoveryPieces, a restore through its follow-up
operation, a break-glass export needing the export quorum, and no share ever reaching the
coordinator's files."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.db import KeyRecord, now_ms
from crypto_core.group import scalar_to_bytes
from governance.keyop import KeyOpKind
from governance.recovery import BackupBundle, EpochAttestation, PiecePurpose
from mpcnet.common import agekeys
from mpcnet.common.backup import open_deliveries
from mpcnet.common.bundle import verify_bundle
from mpcnet.common.rpc import RpcError
from mpcnet.wire.mpc.v1 import coordinator_pb2
from tests.coordinator.recovery_util import World

Code = grpc.StatusCode


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def _refused(fn: object, *args: object) -> RpcError:
    with pytest.raises(RpcError) as e:
        fn(*args)  # type: ignore[operator]
    return e.value


def _configured(world: World, **kw: int) -> bytes:
    world.configure(**kw)
    assert world.backups.check() != []
    newest = world.db.newest_bundle(world.key_id)
    assert newest is not None
    return newest.digest


# --- configuration -----------------------------------------------------------------------------


def test_a_configuration_applies_at_the_admin_quorum_and_reaches_every_node(world: World) -> None:
    change = world.config_change()
    pending = world.propose_config(change, "ada")
    assert pending.state == coordinator_pb2.PROPOSAL_STATE_PENDING and world.book.version == 0
    applied = world.approve(pending.proposal_id, "bob", change.encode())
    assert applied.state == coordinator_pb2.PROPOSAL_STATE_APPLIED
    assert world.book.version == 1 and all(len(n.history) == 1 for n in world.nodes.values())
    assert all(world.book.synced(i) for i in world.nodes)
    assert ("recovery-config", "applied") in world.actions()
    # the same change again does not extend the chain; a stale one names previous_digest
    e = _refused(world.propose_config, change, "ada")
    assert e.code == Code.ALREADY_EXISTS or "previous_digest" in e.message
    # a restarted coordinator verifies and keeps the chain
    world.restart()
    assert world.book.version == 1 and world.book.history() == world.nodes[1].history


def test_an_export_quorum_not_above_the_admin_quorum_is_refused_naming_it(world: World) -> None:
    e = _refused(world.propose_config, world.config_change(export_quorum=2), "ada")
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("signed_change.config.export_quorum:")
    assert world.book.version == 0


def test_a_node_that_was_down_gets_the_configuration_later(world: World) -> None:
    world.nodes[2].down = True
    world.configure()
    assert not world.book.synced(2) and world.book.synced(1)
    world.nodes[2].down = False
    assert world.book.sync_node(2) and world.book.synced(2)


# --- bundles -----------------------------------------------------------------------------------


def test_bundles_are_collected_verified_and_superseded(world: World) -> None:
    assert world.backups.check() == []  # no configuration: nothing to back up
    digest = _configured(world)
    rec = world.db.get_bundle(digest)
    assert rec is not None and (rec.epoch, rec.config_version, rec.superseded) == (0, 1, False)
    bundle = BackupBundle.from_file(rec.bundle)
    summary = verify_bundle(bundle, world.admins)
    assert summary.committee == (1, 2, 3) and bundle.digest() == digest
    assert world.backups.check() == []  # already backed up at this epoch and configuration
    # a new configuration: a new bundle supersedes the old one
    world.configure(drill_period_s=86400)
    second = world.backups.check()
    assert len(second) == 1 and second[0] != digest
    listed = world.backups.listing(world.key_id)
    assert [(b.bundle_digest, b.superseded, b.bundle) for b in listed] == [(second[0], False, b""), (digest, True, b"")]
    info = world.backups.export(world.key_id, b"", "auditor1")
    assert info.bundle_digest == second[0] and BackupBundle.from_file(info.bundle).digest() == second[0]
    old = world.backups.export(world.key_id, digest, "auditor1")
    assert old.superseded
    e = _refused(world.backups.export, world.key_id, b"\x00" * 32, "auditor1")
    assert e.code == Code.NOT_FOUND and e.message.startswith("bundle_digest:")
    [row] = world.backups.status()
    assert row.backed_up and row.bundle_digest == second[0] and row.drill_overdue and row.last_drill_unix_ms == 0
    assert ("backup-created", "created") in world.actions() and ("backup-export", "exported") in world.actions()


def test_a_bad_part_stores_nothing_names_the_node_and_backs_off(world: World) -> None:
    world.nodes[2].tamper = True
    world.configure()
    assert world.backups.check() == []
    assert world.db.newest_bundle(world.key_id) is None
    failed = [e for e in world.audit.entries() if e.action == "backup-created" and e.outcome == "failed"]
    assert len(failed) == 1 and "node 2" in str(failed[0].details)
    world.nodes[2].tamper = False
    assert world.backups.check() == []  # backing off
    world.backups._backoff.clear()
    assert len(world.backups.check()) == 1


def test_a_node_down_leaves_the_key_unbacked_until_it_is_back(world: World) -> None:
    world.nodes[3].down = True
    world.configure()
    assert world.backups.check() == []
    [row] = world.backups.status()
    assert not row.backed_up
    world.nodes[3].down = False
    world.backups._backoff.clear()
    assert len(world.backups.check()) == 1


# --- drills ------------------------------------------------------------------------------------


def test_a_drill_runs_once_m_officers_gave_pieces_and_is_recorded(world: World) -> None:
    digest = _configured(world, drill_period_s=86400)
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    assert c.kind == "drill" and c.state == "collecting" and c.bundle_digest == digest and c.quorum == 2
    assert [(t.share_index, t.node, t.recipient) for t in c.targets] == [
        (i, i, world.nodes[i].enc_public) for i in (1, 2, 3)
    ]
    assert world.ceremonies.start_drill(world.key_id, "officer2").ceremony_id == c.ceremony_id  # the open one
    first = world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    assert first.state == "collecting" and all(n.drills == 0 for n in world.nodes.values())
    done = world.ceremonies.submit(world.pieces("officer3", c.ceremony_id, PiecePurpose.DRILL), "officer3")
    assert done.state == "done", done.error
    assert all(t.state == "ok" for t in done.targets)
    assert all({(o.officer, o.outcome) for o in t.outcomes} == {(1, "ok"), (2, "missing"), (3, "ok")} for t in done.targets)
    msg = world.ceremonies.message(done)
    assert list(msg.officers) == ["officer1", "officer3"] and not msg.export_pieces
    [row] = world.backups.status()
    assert row.last_drill_unix_ms > 0 and not row.drill_overdue and row.last_drill_outcome == "ok"
    assert ("drill-recorded", "ok") in world.actions()
    # a late officer is refused: the drill is over
    e = _refused(world.ceremonies.submit, world.pieces("officer2", c.ceremony_id, PiecePurpose.DRILL), "officer2")
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("ceremony_id:")
    # a new drill is a new ceremony
    assert world.ceremonies.start_drill(world.key_id, "officer1").ceremony_id != c.ceremony_id


def test_a_drill_with_a_wrong_piece_fails_naming_the_officer_and_keeps_the_last_success(world: World) -> None:
    _configured(world)
    c = world.ceremonies.start_drill(world.key_id, "admin1")
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    # officer 2 delivers pieces bound to another purpose (replayed): every node refuses them
    req = world.pieces("officer2", c.ceremony_id, PiecePurpose.RESTORE)
    done = world.ceremonies.submit(req, "officer2")
    assert done.state == "failed"
    assert all(t.state == "failed" for t in done.targets)
    assert all((2, "wrong-binding") in {(o.officer, o.outcome) for o in t.outcomes} for t in done.targets)
    d = world.db.drill_record(world.key_id)
    assert d is not None and d.last_ok_ms == 0 and d.last_outcome.startswith("failed: ")
    assert ("drill-recorded", "failed") in world.actions()


def test_submissions_are_checked_and_refusals_audited(world: World) -> None:
    _configured(world)
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    cid = c.ceremony_id
    good = world.pieces("officer1", cid, PiecePurpose.DRILL)
    e = _refused(world.ceremonies.submit, good, "officer2")  # the caller is another officer
    assert e.code == Code.PERMISSION_DENIED and e.message.startswith("officer:")
    outsider = coordinator_pb2.SubmitRecoveryPiecesRequest(ceremony_id=cid, officer="mallory", pieces=good.pieces)
    e = _refused(world.ceremonies.submit, outsider, "mallory")
    assert e.code == Code.PERMISSION_DENIED and "not an officer" in e.message
    unknown = coordinator_pb2.SubmitRecoveryPiecesRequest(ceremony_id=b"\x01" * 16, officer="officer1", pieces=good.pieces)
    assert _refused(world.ceremonies.submit, unknown, "officer1").code == Code.NOT_FOUND
    wrong_share = coordinator_pb2.SubmitRecoveryPiecesRequest()
    wrong_share.CopyFrom(good)
    wrong_share.pieces[0].share_index = 7
    e = _refused(world.ceremonies.submit, wrong_share, "officer1")
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("pieces[0].share_index:")
    twice = coordinator_pb2.SubmitRecoveryPiecesRequest()
    twice.CopyFrom(good)
    twice.pieces[1].share_index = 1
    e = _refused(world.ceremonies.submit, twice, "officer1")
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("pieces[1].share_index:")
    short = coordinator_pb2.SubmitRecoveryPiecesRequest(ceremony_id=cid, officer="officer1", pieces=good.pieces[:2])
    e = _refused(world.ceremonies.submit, short, "officer1")
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("pieces:") and "[3]" in e.message
    not_age = coordinator_pb2.SubmitRecoveryPiecesRequest()
    not_age.CopyFrom(good)
    not_age.pieces[2].ciphertext = b"\x00" * 64
    e = _refused(world.ceremonies.submit, not_age, "officer1")
    assert e.code == Code.INVALID_ARGUMENT and e.message.startswith("pieces[2].ciphertext:")
    assert world.db.ceremony_pieces(cid) == []  # nothing stored by any refusal
    world.ceremonies.submit(good, "officer1")
    e = _refused(world.ceremonies.submit, good, "officer1")
    assert e.code == Code.ALREADY_EXISTS
    refusals = [a for a in world.actions() if a == ("ceremony-pieces", "refused")]
    assert len(refusals) == 8
    assert len(world.db.ceremony_pieces(cid)) == 3


def test_a_drill_needs_a_configuration_and_a_bundle_of_the_current_epoch(world: World) -> None:
    e = _refused(world.ceremonies.start_drill, world.key_id, "officer1")
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("key_id:")
    assert _refused(world.ceremonies.start_drill, b"\x05" * 32, "officer1").code == Code.NOT_FOUND
    world.configure()
    e = _refused(world.ceremonies.start_drill, world.key_id, "officer1")  # not collected yet
    assert e.code == Code.FAILED_PRECONDITION and "no backup bundle" in e.message


def test_a_drill_opens_only_when_the_threshold_of_the_committee_attests_the_bundles_epoch(world: World) -> None:
    """A drill needs no admin order: a superseded bundle (its holders moved on to a newer epoch)
    must never be drilled, or a holder would get back its refreshed-away share."""
    _configured(world)
    world.nodes[1].attest_as = world.nodes[2].attest_as = 1  # they hold the key at epoch 1: the bundle is stale
    e = _refused(world.ceremonies.start_drill, world.key_id, "officer1")
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("key_id: only 1 of the committee attest epoch 0"), e
    assert "node 1: holds the key at epoch 1, the bundle is of epoch 0" in e.message and "threshold 2" in e.message
    assert world.db.list_ceremonies(world.key_id) == [] and ("drill-refused", "refused") in world.actions()
    world.nodes[2].attest_as = None
    world.nodes[3].down = True  # one attests another epoch, one is unreachable
    e = _refused(world.ceremonies.start_drill, world.key_id, "officer1")
    assert e.code == Code.FAILED_PRECONDITION and "node 3: UNAVAILABLE" in e.message
    world.nodes[1].attest_as = None
    own = world.nodes[2].identity
    world.nodes[2].identity = Ed25519PrivateKey.generate()  # signs with a key the roster does not name
    e = _refused(world.ceremonies.start_drill, world.key_id, "officer1")
    assert "node 2: the attestation's signature does not verify" in e.message
    assert world.db.list_ceremonies(world.key_id) == []
    # two of three (the threshold) attest epoch 0: the drill opens and shows their attestations
    world.nodes[2].identity = own
    world.nodes[2].down, world.nodes[3].down = True, False
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    msg = world.ceremonies.message(c)
    atts = [EpochAttestation.from_bytes(a) for a in msg.epoch_attestations]
    assert [(a.node, a.epoch, a.ceremony_id, a.key_id) for a in atts] == [(i, 0, c.ceremony_id, world.key_id) for i in (1, 3)]
    roster = world.roster
    assert all(a.verify(roster.entry(a.node).identity_key) for a in atts)  # type: ignore[union-attr]
    # kept through the drill's run and a restart
    world.nodes[2].down = False
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    world.ceremonies.submit(world.pieces("officer2", c.ceremony_id, PiecePurpose.DRILL), "officer2")
    world.restart()
    rec = world.ceremonies.get(c.ceremony_id)
    assert rec.state == "done", rec.error
    assert list(world.ceremonies.message(rec).epoch_attestations) == list(msg.epoch_attestations)


def test_an_expired_order_is_refused_and_its_ceremony_fails(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import coordinator.ceremonies
    import coordinator.recovery_proposals

    digest = _configured(world)
    e = _refused(world.propose_order, world.restore_order((3,), digest, expires_ms=now_ms() - 1), "ada")
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("signed_order.order.expires_ms: the order expired at"), e
    order = world.restore_order((3,), digest, expires_ms=now_ms() + 60_000)
    p = world.propose_order(order, "ada")
    later = now_ms() + 120_000
    monkeypatch.setattr(coordinator.recovery_proposals, "now_ms", lambda: later)
    e = _refused(world.approve, p.proposal_id, "bob", order.encode())  # approved too late: not applied
    assert e.code == Code.FAILED_PRECONDITION and "expires_ms" in e.message, e
    assert world.ceremonies.db.get_ceremony(order.order_id) is None and all(not n.orders for n in world.nodes.values())
    monkeypatch.undo()
    order = world.restore_order((3,), digest, expires_ms=now_ms() + 60_000)
    world.propose_order(order, "ada", "bob")
    cid = order.order_id
    world.ceremonies.submit(world.pieces("officer1", cid, PiecePurpose.RESTORE), "officer1")
    monkeypatch.setattr(coordinator.ceremonies, "now_ms", lambda: later)
    e = _refused(world.ceremonies.submit, world.pieces("officer2", cid, PiecePurpose.RESTORE), "officer2")
    assert e.code == Code.FAILED_PRECONDITION and "the recovery order expired at" in e.message, e
    rec = world.ceremonies.get(cid)
    assert rec.state == "failed" and rec.error.startswith("the recovery order expired at") and world.nodes[3].restored is None
    assert ("ceremony-failed", "restore") in world.actions()
    monkeypatch.undo()
    # a collecting ceremony expires in the background pass; a restore whose follow-up never completed
    # stops retrying it once its order expired
    o2 = world.restore_order((2,), digest, expires_ms=now_ms() + 60_000)
    world.propose_order(o2, "ada", "bob")
    o3 = world.restore_order((1,), digest, expires_ms=now_ms() + 60_000)
    world.propose_order(o3, "ada", "bob")
    world.ceremonies.submit(world.pieces("officer1", o3.order_id, PiecePurpose.RESTORE), "officer1")
    assert world.ceremonies.submit(world.pieces("officer2", o3.order_id, PiecePurpose.RESTORE), "officer2").state == "follow-up"
    monkeypatch.setattr(coordinator.ceremonies, "now_ms", lambda: later)
    world.ceremonies._retry_at.clear()
    world.ceremonies.check()
    assert world.ceremonies.get(o2.order_id).state == "failed"
    rec3 = world.ceremonies.get(o3.order_id)
    assert rec3.state == "failed" and "did not complete" in rec3.error and "expired" in rec3.error


def test_a_drill_waits_for_a_node_that_is_down_and_finishes_when_it_is_back(world: World) -> None:
    _configured(world)
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    world.nodes[2].down = True
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    running = world.ceremonies.submit(world.pieces("officer2", c.ceremony_id, PiecePurpose.DRILL), "officer2")
    assert running.state == "running"
    assert [t.state for t in running.targets] == ["ok", "waiting", "ok"]
    world.nodes[2].down = False
    world.restart()  # the background pass of a restarted coordinator finishes it
    world.ceremonies._retry_at.clear()
    world.ceremonies.check()
    rec = world.ceremonies.get(c.ceremony_id)
    assert rec.state == "done" and world.nodes[1].drills == 1 and world.nodes[2].drills == 1


# --- restore and export ------------------------------------------------------------------------


def test_a_restore_order_installs_everywhere_restores_then_starts_its_follow_up(world: World) -> None:
    digest = _configured(world)
    order = world.restore_order((3,), digest)
    p = world.propose_order(order, "ada")
    assert p.state == coordinator_pb2.PROPOSAL_STATE_PENDING and p.admin_quorum == 2
    applied = world.approve(p.proposal_id, "bob", order.encode())
    assert applied.state == coordinator_pb2.PROPOSAL_STATE_APPLIED
    assert all(len(n.orders) == 1 for n in world.nodes.values())
    c = world.ceremonies.get(order.order_id)
    assert c.kind == "restore" and [(t.share_index, t.node, t.recipient) for t in c.targets] == [(3, 3, world.nodes[3].enc_public)]
    assert c.follow_up == order.follow_up.proposal_id  # type: ignore[union-attr]
    world.ceremonies.submit(world.pieces("officer2", c.ceremony_id, PiecePurpose.RESTORE), "officer2")
    rec = world.ceremonies.submit(world.pieces("officer3", c.ceremony_id, PiecePurpose.RESTORE), "officer3")
    assert rec.state == "follow-up", rec.error
    assert world.nodes[3].restored == world.nodes[3].share
    [(signed, how)] = world.keyops.started
    assert how == "recovery-order" and signed.operation == order.follow_up and signed.signatures == ()
    world.ceremonies.check()
    assert world.ceremonies.get(c.ceremony_id).state == "follow-up"  # the operation is not done yet
    world.done_operation(rec.follow_up)
    world.ceremonies._retry_at.clear()
    world.ceremonies.check()
    assert world.ceremonies.get(c.ceremony_id).state == "done"
    acts = world.actions()
    assert ("ceremony-opened", "restore") in acts and ("ceremony-follow-up", "restore") in acts and ("ceremony-done", "restore") in acts


def test_a_restore_order_is_checked_against_the_coordinator_state(world: World) -> None:
    digest = _configured(world)
    e = _refused(world.propose_order, world.restore_order((3,), b"\x07" * 32), "ada")
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("signed_order.order.bundle_digest:")
    world.db.set_key_epoch(world.key_id, 1, (1, 2, 3), now_ms())  # the key moved on
    e = _refused(world.propose_order, world.restore_order((3,), digest), "ada")
    assert e.code == Code.FAILED_PRECONDITION and e.message.startswith("signed_order.order.epoch:")
    assert ("lifecycle-propose", "refused") in world.actions()


def test_a_restore_refused_by_its_target_goes_back_to_collecting(world: World) -> None:
    digest = _configured(world)
    order = world.restore_order((2,), digest)
    world.propose_order(order, "ada", "bob")
    cid = order.order_id
    world.ceremonies.submit(world.pieces("officer1", cid, PiecePurpose.RESTORE), "officer1")
    bad = world.pieces("officer2", cid, PiecePurpose.DRILL)  # bound to the wrong purpose
    rec = world.ceremonies.submit(bad, "officer2")
    assert rec.state == "collecting" and "more officers" in rec.error and rec.targets[0].state == "failed"
    rec = world.ceremonies.submit(world.pieces("officer3", cid, PiecePurpose.RESTORE), "officer3")
    assert rec.state == "follow-up", rec.error
    assert {(o.officer, o.outcome) for o in rec.targets[0].outcomes} == {(1, "ok"), (2, "wrong-binding"), (3, "ok")}


def test_a_restore_refused_for_a_reason_more_pieces_cannot_fix_fails_at_once(world: World) -> None:
    """Found by the newcomer review: a restore naming a node that still holds the key (not
    replaced) went back to collecting ("more officers may give pieces") and stayed open until its
    order expired. Only a refusal about the pieces themselves waits for more officers."""
    digest = _configured(world)
    order = world.restore_order((2,), digest)
    world.propose_order(order, "ada", "bob")
    world.nodes[2].live = True
    cid = order.order_id
    world.ceremonies.submit(world.pieces("officer1", cid, PiecePurpose.RESTORE), "officer1")
    rec = world.ceremonies.submit(world.pieces("officer2", cid, PiecePurpose.RESTORE), "officer2")
    assert rec.state == "failed" and "a restore never replaces a live share" in rec.error, rec.error
    assert "more officers" not in rec.error


def test_a_break_glass_export_needs_the_export_quorum_and_is_loud(world: World) -> None:
    digest = _configured(world)
    off_private, off_public = agekeys.generate()
    order = world.export_order(digest, off_public)
    p = world.propose_order(order, "ada", "bob")  # the admin quorum is not enough
    assert p.state == coordinator_pb2.PROPOSAL_STATE_PENDING and p.admin_quorum == 3
    assert world.db.get_ceremony(order.order_id) is None
    applied = world.approve(p.proposal_id, "cyd", order.encode())
    assert applied.state == coordinator_pb2.PROPOSAL_STATE_APPLIED
    c = world.ceremonies.get(order.order_id)
    assert c.kind == "export" and [(t.share_index, t.node, t.recipient) for t in c.targets] == [(1, 0, off_public), (2, 0, off_public)]
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.EXPORT), "officer1")
    done = world.ceremonies.submit(world.pieces("officer2", c.ceremony_id, PiecePurpose.EXPORT), "officer2")
    assert done.state == "done" and all(n.drills == 0 and n.restored is None for n in world.nodes.values())
    msg = world.ceremonies.message(done)
    assert len(msg.export_pieces) == 4
    # the off-line machine rebuilds both shares from the ciphertexts alone
    b = world.db.get_bundle(digest)
    assert b is not None
    bundle = BackupBundle.from_file(b.bundle)
    for s in (1, 2):
        files = {j: p.ciphertext for j, p in zip((1, 2), [p for p in msg.export_pieces if p.share_index == s], strict=True)}
        secret, _ = open_deliveries(bundle, s, files, off_private, ceremony_id=c.ceremony_id, purpose=PiecePurpose.EXPORT)
        assert secret == world.nodes[s].share
    loud = [e.outcome for e in world.audit.entries() if e.action == "break-glass-export"]
    assert loud == ["export", "pieces-collected"]


def test_the_coordinator_never_stores_a_share_or_a_piece(world: World, tmp_path: Path) -> None:
    digest = _configured(world)
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    for o in ("officer1", "officer2"):
        world.ceremonies.submit(world.pieces(o, c.ceremony_id, PiecePurpose.DRILL), o)
    order = world.restore_order((1,), digest)
    world.propose_order(order, "ada", "bob")
    for o in ("officer1", "officer2"):
        world.ceremonies.submit(world.pieces(o, order.order_id, PiecePurpose.RESTORE), o)
    world.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for n in world.nodes.values():
        assert n.share is not None
        for form in (scalar_to_bytes(n.share), scalar_to_bytes(n.share).hex().encode()):
            assert form not in blob
    world.open()  # for the fixture's close


def test_cluster_status_rows_only_for_active_keys(world: World) -> None:
    assert world.backups.status() == []
    _configured(world)
    world.db.add_key(KeyRecord(b"\x09" * 32, "pending", world.public_key, world.chain_code, 2, 3, "pending", now_ms(), "r"))
    assert [r.key_id for r in world.backups.status()] == [world.key_id]


def test_concurrent_starts_share_one_drill_and_concurrent_officers_run_it_once(world: World) -> None:
    import threading

    _configured(world)
    got: list[bytes] = []
    starters = [threading.Thread(target=lambda: got.append(world.ceremonies.start_drill(world.key_id, "officer1").ceremony_id))
                for _ in range(4)]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    assert len(set(got)) == 1
    cid = got[0]
    reqs = {o: world.pieces(o, cid, PiecePurpose.DRILL) for o in ("officer1", "officer2", "officer3")}
    errors: list[Exception] = []

    def submit(o: str) -> None:
        try:
            world.ceremonies.submit(reqs[o], o)
        except RpcError as e:  # the third officer may find the drill already running
            errors.append(e)

    officers = [threading.Thread(target=submit, args=(o,)) for o in reqs]
    for t in officers:
        t.start()
    for t in officers:
        t.join()
    assert all(isinstance(e, RpcError) and e.code == Code.FAILED_PRECONDITION for e in errors)
    assert world.ceremonies.get(cid).state == "done"
    assert [n.drills for n in world.nodes.values()] == [1, 1, 1]


def test_a_node_with_a_wiped_store_gets_the_configuration_before_the_order(world: World) -> None:
    digest = _configured(world)
    world.nodes[3].history = []  # replaced: a new, empty store (the coordinator still thinks it is synced)
    order = world.restore_order((3,), digest)
    applied = world.propose_order(order, "ada", "bob")
    assert applied.state == coordinator_pb2.PROPOSAL_STATE_APPLIED, applied.error
    assert len(world.nodes[3].history) == 1 and len(world.nodes[3].orders) == 1


def test_an_order_not_installed_on_every_node_opens_nothing_and_stays_pending(world: World) -> None:
    digest = _configured(world)
    world.nodes[2].down = True
    order = world.restore_order((3,), digest)
    e = _refused(world.propose_order, order, "ada", "bob")
    assert e.code == Code.UNAVAILABLE and "node 2" in e.message
    assert world.db.get_ceremony(order.order_id) is None
    [p] = world.lifecycle.listing(coordinator_pb2.PROPOSAL_STATE_PENDING)
    assert "node 2" in p.error
    world.nodes[2].down = False
    again = world.propose_order(order, "ada", "bob")  # proposing again retries the apply
    assert again.state == coordinator_pb2.PROPOSAL_STATE_APPLIED and world.db.get_ceremony(order.order_id) is not None


def test_a_member_gone_for_good_that_the_follow_up_leaves_out_does_not_block_the_order(world: World) -> None:
    """Found by the end-to-end review: every member of the old committee had to install the
    order, so a host that never comes back blocked the recovery of every key it held. Only the
    nodes that act on the order must install it: its targets and the follow-up's new committee."""
    digest = _configured(world)
    world.nodes[2].down = True  # node 2 is gone for good
    refresh = world.restore_order((3,), digest)
    assert refresh.follow_up is not None
    reshare = dataclasses.replace(  # restore share 3 on node 3, then reshare to 2-of-{1,3} without node 2
        refresh,
        order_id=os.urandom(16),
        follow_up=dataclasses.replace(refresh.follow_up, kind=KeyOpKind.RESHARE, new_committee=(1, 3), op_id=os.urandom(16)),
    )
    e = _refused(world.propose_order, refresh, "ada", "bob")  # a refresh needs node 2: every member deals
    assert e.code == Code.UNAVAILABLE and "node 2" in e.message
    applied = world.propose_order(reshare, "ada", "bob")
    assert applied.state == coordinator_pb2.PROPOSAL_STATE_APPLIED
    assert world.db.get_ceremony(reshare.order_id) is not None


def test_a_ceremony_run_holds_its_target_nodes_so_background_refills_stand_aside(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the targets reconstruct shares from the pieces, no new presign or nonce session
    starts on them (coordinator.foreground); the hold ends with the run."""
    _configured(world)
    held: list[frozenset[int]] = []
    for node in world.nodes.values():
        real = node.DrillShare

        def drill(req: Any, _real: Any = real, **kw: Any) -> Any:
            held.append(world.keyops.foreground.nodes_held())
            return _real(req, **kw)

        monkeypatch.setattr(node, "DrillShare", drill)
    c = world.ceremonies.start_drill(world.key_id, "officer1")
    world.ceremonies.submit(world.pieces("officer1", c.ceremony_id, PiecePurpose.DRILL), "officer1")
    done = world.ceremonies.submit(world.pieces("officer3", c.ceremony_id, PiecePurpose.DRILL), "officer3")
    assert done.state == "done", done.error
    assert held == [frozenset({1, 2, 3})] * 3 and world.keyops.foreground.holds() == []
