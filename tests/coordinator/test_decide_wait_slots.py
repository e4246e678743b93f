"""Issue 14: the deciding answers that may wait for DONE at once come from the configuration
(``max_waiting_decisions``, default 64) and get server threads of their own on top of
``workers``."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator import decide_wait
from coordinator.config import load_coordinator_config
from coordinator.decide_wait import MAX_WAITING_DECISIONS, configure, wait_until_ended
from coordinator.watch import ChangeFeed
from mpcnet.cluster.launcher import Layout, prepare
from mpcnet.common.config import ConfigError


@pytest.fixture
def restore_slots() -> Iterator[None]:
    yield
    configure(MAX_WAITING_DECISIONS)


def _waiters(n: int, feed: ChangeFeed, stop: threading.Event) -> tuple[list[threading.Thread], list[str]]:
    out: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        got = wait_until_ended(feed, f"r{i}", lambda: "signing", lambda s: s == "done", 3000, stop)
        with lock:
            out.append(got)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, out


def test_configure_sets_how_many_answers_wait_at_once(restore_slots: None) -> None:
    feed, stop = ChangeFeed(), threading.Event()
    configure(3)
    threads, out = _waiters(3, feed, stop)
    for _ in range(200):  # all three hold their slot
        if feed_subscribers(feed) == 3:
            break
        threading.Event().wait(0.01)
    assert feed_subscribers(feed) == 3
    # a fourth is answered at once with the state then
    assert wait_until_ended(feed, "r-late", lambda: "signing", lambda s: s == "done", 3000, stop) == "signing"
    stop.set()
    feed.publish("r0")  # wake them: stop is set
    feed.publish("r1")
    feed.publish("r2")
    for t in threads:
        t.join(5)
    assert out == ["signing"] * 3
    # the slots came back: a new wait waits again (and ends at once when the request ended)
    stop.clear()
    assert wait_until_ended(feed, "r-next", lambda: "done", lambda s: s == "done", 3000, stop) == "done"


def feed_subscribers(feed: ChangeFeed) -> int:
    """How many of the waits ``_waiters`` started (requests r0..r9) are under way."""
    return sum(feed.watching(f"r{i}") for i in range(10))


def test_configure_0_never_waits(restore_slots: None) -> None:
    configure(0)
    calls: list[int] = []

    def read() -> str:
        calls.append(1)
        return "signing"

    assert wait_until_ended(ChangeFeed(), "r", read, lambda s: s == "done", 3000, threading.Event()) == "signing"
    assert calls == [1]


def test_configure_refuses_a_negative_limit(restore_slots: None) -> None:
    with pytest.raises(ValueError, match="limit"):
        configure(-1)


def test_a_wait_under_way_gives_its_slot_back_to_the_limit_it_took_it_from(restore_slots: None) -> None:
    configure(1)
    feed, stop = ChangeFeed(), threading.Event()
    threads, out = _waiters(1, feed, stop)
    for _ in range(200):
        if feed_subscribers(feed) == 1:
            break
        threading.Event().wait(0.01)
    configure(2)  # a restart of the server in the same process: a new limit
    stop.set()
    feed.publish("r0")
    threads[0].join(5)
    assert out == ["signing"]
    sem: Any = decide_wait._slots
    assert sem.acquire(blocking=False) and sem.acquire(blocking=False) and not sem.acquire(blocking=False)


# --- configuration -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lay(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return prepare(tmp_path_factory.mktemp("decide-slots"), 3, 2, scrypt_n=2**10)


def _with(lay: Layout, tmp_path: Path, **keys: Any) -> Path:
    doc = json.loads(lay.coordinator_config.read_text()) | keys
    p = lay.coordinator_dir / f"config-{tmp_path.name}.json"
    p.write_text(json.dumps(doc))
    return p


def test_defaults(lay: Layout) -> None:
    cfg = load_coordinator_config(lay.coordinator_config)
    assert cfg.max_waiting_decisions == MAX_WAITING_DECISIONS == 64


def test_settings_are_read(lay: Layout, tmp_path: Path) -> None:
    cfg = load_coordinator_config(_with(lay, tmp_path, max_waiting_decisions=0))
    assert cfg.max_waiting_decisions == 0


@pytest.mark.parametrize(
    "key,value",
    [("max_waiting_decisions", -1), ("max_waiting_decisions", 1001), ("max_waiting_decisions", "8"),
     ("max_waiting_decisions", True), ("switch_interval_ms", 1)],
)
def test_bad_settings_name_the_field(lay: Layout, tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=key):
        load_coordinator_config(_with(lay, tmp_path, **{key: value}))


def test_the_server_runs_threads_for_the_waits_on_top_of_workers(lay: Layout, tmp_path: Path, restore_slots: None) -> None:
    from coordinator.main import build_server
    from coordinator.service import CoordinatorService

    cfg = load_coordinator_config(_with(lay, tmp_path, max_waiting_decisions=5, listen="127.0.0.1:0"))
    svc = CoordinatorService(dataclasses.replace(cfg, db=tmp_path / "c.db", audit_db=tmp_path / "a.db"), Ed25519PrivateKey.generate())
    try:
        server = build_server(cfg, svc)
        pool: Any = server._state.thread_pool  # type: ignore[attr-defined]
        assert pool._max_workers == cfg.workers + svc.streams.limit + cfg.max_requests + 5
        sem: Any = decide_wait._slots
        assert [sem.acquire(blocking=False) for _ in range(6)] == [True] * 5 + [False]
        server.stop(0)
    finally:
        svc.stop()
