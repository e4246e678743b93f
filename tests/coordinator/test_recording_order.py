""""Newest first" in the coordinator's database is the order rows were recorded (rowid), never
``created_ms`` (the wall clock). Regression: after a clock step back a newer row sorted below
older ones dated ahead: the nodes' signed abandonments of failed sessions (given to later
sessions, at most MAX_ABANDONMENTS: the LIMIT dropped the newest), and its siblings, the newest
backup bundle and ceremony and the sign-request listing."""

from __future__ import annotations

from pathlib import Path

from coordinator.db import CoordinatorDb
from coordinator.keyop_store import MAX_ABANDONMENTS

KEY = b"\x01" * 32
NOW = 10_000_000_000
DAY_MS = 86_400_000


def test_an_abandonment_recorded_after_a_clock_step_back_is_the_newest(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    try:
        db.add_abandonments(KEY, b"\xaa" * 32, {1: b"ahead-1", 2: b"ahead-2"}, NOW + DAY_MS)  # a clock a day ahead
        db.add_abandonments(KEY, b"\xbb" * 32, {1: b"after-the-step"}, NOW)  # then stepped back a day
        assert db.abandonments(KEY) == [b"after-the-step", b"ahead-2", b"ahead-1"]
    finally:
        db.close()


def test_the_limit_keeps_the_newest_recorded_ones(tmp_path: Path) -> None:
    db = CoordinatorDb(tmp_path / "c.db")
    try:
        for i in range(MAX_ABANDONMENTS):  # a full window dated ahead
            db.add_abandonments(KEY, i.to_bytes(32, "big"), {1: b"old-%d" % i}, NOW + DAY_MS + i)
        db.add_abandonments(KEY, b"\xff" * 32, {3: b"new"}, NOW)  # recorded last, dated earlier
        db.add_abandonments(b"\x02" * 32, b"\xee" * 32, {1: b"another key"}, NOW)
        got = db.abandonments(KEY)
        assert len(got) == MAX_ABANDONMENTS and got[0] == b"new" and b"old-0" not in got
        db.add_abandonments(KEY, (0).to_bytes(32, "big"), {1: b"old-0 again"}, NOW)  # recorded again: the newest
        assert db.abandonments(KEY)[0] == b"old-0 again"
    finally:
        db.close()


def test_the_newest_backup_bundle_and_ceremony_are_the_ones_recorded_last(tmp_path: Path) -> None:
    """Sibling: bundles and ceremonies were "newest first" by created_ms. After a clock step back
    the superseded bundle dated ahead was the key's "newest": the collector saw no bundle of the
    current epoch every pass and drills checked the wrong one."""
    import dataclasses

    from coordinator.backup_store import BundleRecord, CeremonyRecord, Target
    from coordinator.db import AuditEvent

    def ev() -> AuditEvent:
        return AuditEvent("coordinator", "test", "", "ok", {"x": 1})

    db = CoordinatorDb(tmp_path / "c.db")
    try:
        assert db.add_bundle(BundleRecord(b"1" * 32, KEY, 0, 1, NOW + DAY_MS, False, 5, b"old"), ev())
        assert db.add_bundle(BundleRecord(b"2" * 32, KEY, 1, 1, NOW, False, 5, b"new"), ev())  # after the step back
        newest = db.newest_bundle(KEY)
        assert newest is not None and newest.digest == b"2" * 32 and not newest.superseded and newest.epoch == 1
        assert [b.digest for b in db.list_bundles(KEY)] == [b"2" * 32, b"1" * 32]
        assert [b.digest for b in db.list_bundles(limit=1)] == [b"2" * 32]
        targets = (Target(1, 1, b"r" * 32), Target(2, 2, b"s" * 32))
        first = CeremonyRecord(b"a" * 16, "drill", KEY, 0, b"1" * 32, 1, 2, "collecting", b"", "", targets, "", "o1",
                               NOW + DAY_MS, NOW + DAY_MS)
        assert db.add_ceremony(first, ev())
        assert db.add_ceremony(dataclasses.replace(first, ceremony_id=b"b" * 16, created_ms=NOW, updated_ms=NOW), ev())
        assert [c.ceremony_id for c in db.list_ceremonies(KEY, limit=1)] == [b"b" * 16]
    finally:
        db.close()

