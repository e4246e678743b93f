"""The nodes' signed abandonments of failed sessions (coordinator/keyop_store.py) are given to
later sessions newest first, at most MAX_ABANDONMENTS: in the order they were recorded (rowid),
not by ``created_ms`` (the wall clock). Regression: after a clock step back a newer abandonment
sorted below older ones dated ahead, and the LIMIT dropped it."""

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
