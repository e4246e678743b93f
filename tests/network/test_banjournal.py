"""The ban journal (:mod:`mpc_node.banjournal`): preallocated, fixed-size records, torn writes
ignored, a full journal refuses, a journal that cannot be created stops the node."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mpc_node.banjournal import (
    REASON_BYTES,
    RECORD_SIZE,
    BanJournal,
    BanJournalError,
    JournalEntry,
    decode_record,
    encode_record,
    journal_path,
)

K1, K2 = b"\x01" * 32, b"\x02" * 32


def _open(tmp_path: Path, node: int = 1, slots: int = 4) -> BanJournal:
    return BanJournal.open(tmp_path / "node.db.bans", node, slots=slots)


def test_path_is_next_to_the_store() -> None:
    assert journal_path(Path("/d/node.db")) == Path("/d/node.db.bans")


def test_created_preallocated_and_empty(tmp_path: Path) -> None:
    j = _open(tmp_path)
    p = tmp_path / "node.db.bans"
    assert p.stat().st_size == 4 * RECORD_SIZE and p.read_bytes() == bytes(4 * RECORD_SIZE)
    assert (p.stat().st_mode & 0o777) == 0o600
    assert j.entries() == () and j.free_slots == 4
    j.close()


def test_write_then_reload(tmp_path: Path) -> None:
    j = _open(tmp_path)
    assert j.put(K1, 2, "OT extension consistency check failed in session 0123456789ab") == 0
    assert j.put(K2, 65535, "x" * 1000 + "\x00") == 1
    assert j.free_slots == 2
    j.close()
    again = _open(tmp_path)
    assert again.entries() == (
        JournalEntry(0, K1, 2, "OT extension consistency check failed in session 0123456789ab"),
        JournalEntry(1, K2, 65535, "x" * REASON_BYTES),
    )
    assert again.free_slots == 2
    again.clear(0)  # the ban is in the store now: the slot is free and reused first
    assert again.put(K2, 3, "rvole") == 0
    again.close()
    assert [(e.slot, e.key_id, e.peer) for e in _open(tmp_path).entries()] == [(0, K2, 3), (1, K2, 65535)]


def test_torn_or_foreign_records_are_ignored_and_their_slot_reused(tmp_path: Path) -> None:
    j = _open(tmp_path)
    for peer in (2, 3, 4):
        j.put(K1, peer, "gamma")
    j.close()
    p = tmp_path / "node.db.bans"
    data = bytearray(p.read_bytes())
    data[RECORD_SIZE + 40] ^= 0x01  # slot 1: the peer field changed, checksum no longer matches
    data[2 * RECORD_SIZE + 200 :] = bytes(len(data) - 2 * RECORD_SIZE - 200)  # slot 2: half written
    p.write_bytes(bytes(data))
    again = _open(tmp_path)
    assert [(e.slot, e.peer) for e in again.entries()] == [(0, 2)]
    assert again.free_slots == 3 and again.put(K1, 5, "r") == 1
    # a record is bound to its node and slot: another node's (or a moved) record does not count
    rec = encode_record(1, 0, K1, 2, "r")
    assert decode_record(1, 0, rec) == JournalEntry(0, K1, 2, "r")
    assert decode_record(2, 0, rec) is None and decode_record(1, 1, rec) is None
    assert _open(tmp_path, node=2).entries() == ()


def test_full_journal_refuses(tmp_path: Path) -> None:
    j = _open(tmp_path, slots=2)
    j.put(K1, 2, "a")
    j.put(K1, 3, "b")
    with pytest.raises(BanJournalError, match=r"ban journal .*node\.db\.bans: full \(2 slots\)"):
        j.put(K1, 4, "c")
    with pytest.raises(ValueError, match="key_id"):
        j.put(b"short", 4, "c")
    with pytest.raises(ValueError, match="peer"):
        j.put(K1, 0, "c")


def test_failed_write_leaves_the_slot_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = _open(tmp_path)

    def enospc(*a: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(BanJournalError, match="cannot write slot 0 \\(No space left on device\\)"):
        j.put(K1, 2, "a")
    monkeypatch.undo()
    assert j.free_slots == 4 and j.put(K1, 2, "a") == 0


def test_cannot_be_created_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def enospc(*a: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", enospc, raising=False)
    with pytest.raises(BanJournalError, match="cannot create or read \\(No space left on device\\)"):
        _open(tmp_path)
    monkeypatch.undo()  # space again: the half-made file is grown at the next start
    assert _open(tmp_path).free_slots == 4


def test_short_file_is_grown_keeping_its_records_and_a_long_one_refused(tmp_path: Path) -> None:
    j = _open(tmp_path, slots=2)
    j.put(K1, 2, "a")
    j.close()
    grown = _open(tmp_path, slots=4)
    assert [e.peer for e in grown.entries()] == [2] and grown.free_slots == 3
    grown.close()
    with pytest.raises(BanJournalError, match="expected at most"):
        _open(tmp_path, slots=2)


# --- the registry with its journal (a fake store) ----------------------------------------------


class _Store:
    def __init__(self) -> None:
        self.bans: dict[bytes, dict[int, str]] = {}
        self.failing = False

    def add_ban(self, key_id: bytes, peer: int, reason: str, *, audit: object = None) -> None:
        if self.failing:
            raise OSError(errno.ENOSPC, "database or disk is full")
        self.bans.setdefault(key_id, {}).setdefault(peer, reason)

    def all_bans(self) -> dict[bytes, dict[int, str]]:
        return {k: dict(v) for k, v in self.bans.items()}


def test_registry_journals_when_the_store_fails_and_fails_closed_only_when_both_fail(tmp_path: Path) -> None:
    from mpc_node.bans import BanRegistry

    store = _Store()
    store.failing = True
    j = _open(tmp_path, slots=1)
    reg = BanRegistry(store, j)  # type: ignore[arg-type]
    assert reg.record(K1, 2, "first") == "journaled"
    assert reg.refusal(K1, [2, 3]) is not None and reg.closed(K1) is None
    assert reg.record(K2, 3, "second") == "not-recorded"  # the journal is full now: K2 fails closed
    assert reg.closed(K2) is not None and reg.refusal(K2, [4]) is not None

    # restart: the journal's ban counts, the in-memory-only one is gone (K2 was refused meanwhile)
    j.close()
    j = _open(tmp_path, slots=1)
    reg = BanRegistry(store, j)  # type: ignore[arg-type]
    assert reg.banned(K1) == frozenset({2}) and reg.journaled(K1) == frozenset({2}) and reg.banned(K2) == frozenset()
    assert reg.retry() == []  # store still full
    store.failing = False
    assert [(b.key_id, b.peer, b.reason) for b in reg.retry()] == [(K1, 2, "first")]
    assert store.bans == {K1: {2: "first"}} and reg.journaled(K1) == frozenset() and j.free_slots == 1

    # a key fail-closed while the journal was full opens once the retry journals its ban
    store.failing = True
    assert reg.record(K1, 3, "third") == "journaled"
    assert reg.record(K2, 3, "fourth") == "not-recorded"
    j.clear(0)  # (as if the first ban had reached the store): room again
    reg.retry()
    assert reg.closed(K2) is None and reg.journaled(K2) == frozenset({3}) and reg.banned(K2) == frozenset({3})
    # a journal record whose ban is in the store already is freed at the next retry
    store.failing = False
    j.close()
    store.bans.setdefault(K2, {})[3] = "fourth"
    j = _open(tmp_path, slots=1)
    reg = BanRegistry(store, j)  # type: ignore[arg-type]
    assert reg.journaled(K2) == frozenset() and j.free_slots == 0
    assert reg.retry() == [] and j.free_slots == 1
