"""The coordinator's backup and recovery tables (coordinator/backup_store.py): the configuration
chain is append-only and gap-free, a new bundle supersedes the key's older ones, one submission
per officer per ceremony, compare-and-set ceremony states, drill records keep the last success,
and every change is one transaction with its audit entry (a refused change queues nothing)."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.backup_store import AlreadySubmitted, BundleRecord, CeremonyRecord, Outcome, Target
from coordinator.db import AuditEvent, CoordinatorDb

KEY = b"k" * 32
OTHER = b"o" * 32


def _ev(action: str = "test") -> AuditEvent:
    return AuditEvent("coordinator", action, "", "ok", {"x": 1})


def _bundle(digest: bytes, key: bytes = KEY, epoch: int = 0, created: int = 1) -> BundleRecord:
    return BundleRecord(digest, key, epoch, 1, created, False, 5, b"bytes")


def _ceremony(cid: bytes = b"c" * 16, kind: str = "drill", quorum: int = 2) -> CeremonyRecord:
    targets = (Target(1, 1, b"r" * 32), Target(2, 2, b"s" * 32))
    return CeremonyRecord(cid, kind, KEY, 0, b"d" * 32, 1, quorum, "collecting", b"", "", targets, "", "officer1", 1, 1)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[CoordinatorDb]:
    d = CoordinatorDb(tmp_path / "c.db")
    yield d
    d.close()


def _queued(db: CoordinatorDb) -> list[str]:
    return [e.audit.action for e in db.pending_audit()]


def test_the_configuration_chain_is_append_only_and_gap_free(db: CoordinatorDb) -> None:
    db.put_recovery_config(1, b"one", _ev("recovery-config"), 1)
    with pytest.raises(ValueError, match="stored version is 1, expected 2"):
        db.put_recovery_config(3, b"three", _ev("recovery-config"), 2)
    with pytest.raises(ValueError):
        db.put_recovery_config(1, b"again", _ev("recovery-config"), 2)
    db.put_recovery_config(2, b"two", _ev("recovery-config"), 3)
    assert db.recovery_config_changes() == [b"one", b"two"]
    assert _queued(db) == ["recovery-config", "recovery-config"]  # the refused ones queued nothing
    with pytest.raises(sqlite3.DatabaseError):
        with db._tx() as c:
            c.execute("UPDATE recovery_config_changes SET signed_change = x'00' WHERE version = 1")


def test_a_new_bundle_supersedes_the_older_ones_of_its_key_only(db: CoordinatorDb) -> None:
    assert db.add_bundle(_bundle(b"1" * 32, created=1), _ev("backup-created"))
    assert db.add_bundle(_bundle(b"9" * 32, key=OTHER, created=2), _ev("backup-created"))
    assert db.add_bundle(_bundle(b"2" * 32, epoch=1, created=3), _ev("backup-created"))
    assert not db.add_bundle(_bundle(b"2" * 32, epoch=1, created=4), _ev("backup-created"))  # same digest: nothing
    listed = db.list_bundles(KEY)
    assert [(b.digest[:1], b.superseded, b.bundle) for b in listed] == [(b"2", False, b""), (b"1", True, b"")]
    assert not db.list_bundles(OTHER)[0].superseded
    newest = db.newest_bundle(KEY)
    assert newest is not None and newest.digest == b"2" * 32 and newest.bundle == b"bytes" and newest.size == 5
    assert db.get_bundle(b"1" * 32) is not None and db.get_bundle(b"x" * 32) is None
    assert _queued(db) == ["backup-created"] * 3


def test_one_submission_per_officer_and_only_while_collecting(db: CoordinatorDb) -> None:
    rec = _ceremony()
    assert db.add_ceremony(rec, _ev("ceremony-opened"))
    assert not db.add_ceremony(rec, _ev("ceremony-opened"))
    assert db.add_pieces(rec.ceremony_id, "alice", 1, [(1, b"a1"), (2, b"a2")], _ev("ceremony-pieces"), 2) == 1
    with pytest.raises(AlreadySubmitted):
        db.add_pieces(rec.ceremony_id, "alice", 1, [(1, b"a1")], _ev("ceremony-pieces"), 3)
    assert db.add_pieces(rec.ceremony_id, "bob", 2, [(1, b"b1"), (2, b"b2")], _ev("ceremony-pieces"), 3) == 2
    assert db.update_ceremony(rec.ceremony_id, from_states=("collecting",), state="running", now=4)
    with pytest.raises(ValueError, match="running, not collecting"):
        db.add_pieces(rec.ceremony_id, "carol", 3, [(1, b"c1")], _ev("ceremony-pieces"), 5)
    assert [(p.officer, p.share_index, p.ciphertext) for p in db.ceremony_pieces(rec.ceremony_id)] == [
        ("alice", 1, b"a1"), ("alice", 2, b"a2"), ("bob", 1, b"b1"), ("bob", 2, b"b2"),
    ]
    assert _queued(db) == ["ceremony-opened", "ceremony-pieces", "ceremony-pieces"]


def test_ceremony_states_are_compare_and_set_and_a_drill_keeps_its_last_success(db: CoordinatorDb) -> None:
    rec = _ceremony()
    db.add_ceremony(rec, _ev("ceremony-opened"))
    assert not db.update_ceremony(rec.ceremony_id, from_states=("running",), state="done", now=2)
    assert db.update_ceremony(rec.ceremony_id, from_states=("collecting",), state="running", now=2)
    done = (Target(1, 1, b"r" * 32, "ok", "", (Outcome(1, "alice", "ok"),)), Target(2, 2, b"s" * 32, "ok"))
    assert db.update_ceremony(rec.ceremony_id, from_states=("running",), state="done", now=10, targets=done,
                              audit=_ev("drill-recorded"), drill=(True, "ok"))
    got = db.get_ceremony(rec.ceremony_id)
    assert got is not None and got.state == "done" and got.targets == done
    d = db.drill_record(KEY)
    assert d is not None and (d.last_ok_ms, d.last_outcome) == (10, "ok")
    second = _ceremony(b"e" * 16)
    db.add_ceremony(second, _ev("ceremony-opened"))
    db.update_ceremony(second.ceremony_id, from_states=("collecting",), state="failed", now=20, drill=(False, "failed: x"),
                       audit=_ev("drill-recorded"))
    d = db.drill_record(KEY)
    assert d is not None and (d.last_ms, d.last_outcome, d.last_ok_ms) == (20, "failed: x", 10)
    assert [c.ceremony_id for c in db.list_ceremonies(KEY, ("done",))] == [rec.ceremony_id]
    assert len(db.list_ceremonies()) == 2 and db.drill_record(OTHER) is None


def test_a_targets_epoch_attestation_is_stored_with_it_and_older_rows_read_without_one(db: CoordinatorDb) -> None:
    att = Target(1, 1, b"r" * 32, attestation=b"\x01attestation")
    assert Target.from_json(att.to_json()) == att
    plain = Target(2, 2, b"s" * 32, "ok", "", (Outcome(1, "alice", "ok"),))
    assert "attestation" not in plain.to_json() and Target.from_json(plain.to_json()) == plain  # the layout before attestations
    rec = dataclasses.replace(_ceremony(b"a" * 16), targets=(att, plain))
    assert db.add_ceremony(rec, AuditEvent("officer1", "ceremony-opened", "", "drill", {"x": 1}))
    got = db.get_ceremony(b"a" * 16)
    assert got is not None and got.targets == (att, plain)
