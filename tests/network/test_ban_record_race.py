"""A ban being recorded while the sweeper retries pending bans is written and reported once.

Regression (seen once in a full CI run, `test_concurrent_sessions_reveal_one_check_outcome_only`):
:meth:`BanRegistry.record` marks the ban pending, then writes it; the sweeper's
:meth:`BanRegistry.retry`, running during that write, wrote the same ban and reported it as
written, so the node audited it twice ("recorded" and "recorded-late")."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from mpc_node.banjournal import BanJournal, journal_path
from mpc_node.bans import RECORDED, BanRegistry
from mpc_node.storage import NodeStore


def test_retry_leaves_a_ban_being_recorded_to_its_recorder(tmp_path: Path) -> None:
    store = NodeStore.open(tmp_path / "node.db", b"pass", 1, scrypt_n=2**10)
    journal = BanJournal.open(journal_path(tmp_path / "node.db"), 1)
    registry = BanRegistry(store, journal)
    key_id = bytes(range(32))
    writing, release = threading.Event(), threading.Event()
    real_add_ban = store.add_ban
    calls: list[int] = []

    def slow_add_ban(k: bytes, peer: int, reason: str, **kw: Any) -> None:
        calls.append(peer)
        writing.set()
        assert release.wait(10)
        real_add_ban(k, peer, reason, **kw)

    store.add_ban = slow_add_ban  # type: ignore[method-assign]
    outcome: list[str] = []
    t = threading.Thread(target=lambda: outcome.append(registry.record(key_id, 2, "cheated")))
    t.start()
    assert writing.wait(10)
    assert registry.retry() == []  # in flight: record() writes and reports it
    assert 2 in registry.banned(key_id)  # it counts meanwhile
    release.set()
    t.join(10)
    assert outcome == [RECORDED] and calls == [2]
    assert registry.retry() == []
    store.add_ban = real_add_ban  # type: ignore[method-assign]
    assert store.banned(key_id) == frozenset({2})
    journal.close()
    store.close()
