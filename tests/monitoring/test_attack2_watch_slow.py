"""Attack on ``mpc status --watch`` with slow metrics endpoints (issue 15 review 2): every scrape
is bounded (:mod:`mpcnet.client.watch_fetch`), but the endpoints were read one after the other,
so N endpoints answering at the last moment (or dripping) made one refresh take N x the scrape
timeout: with 4 processes and ``--interval 1`` a refresh took 3 s, not 1. They are now read at
once (one short-lived thread each, all joined before the snapshot is shown: no pile-up)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mpcnet.client import cli_watch

TIMEOUT = 0.4


def test_slow_endpoints_cost_one_timeout_per_refresh_not_one_each() -> None:
    endpoints = {name: f"127.0.0.1:{9000 + i}" for i, name in enumerate(["coordinator", "node-1", "node-2", "node-3"])}

    def slow(endpoint: str, timeout_s: float) -> bytes:
        time.sleep(timeout_s)
        raise TimeoutError("no answer")

    t0 = time.monotonic()
    got = cli_watch.scrape(endpoints, slow, TIMEOUT)
    took = time.monotonic() - t0
    assert sorted(got.unreachable) == sorted(endpoints)
    assert took < 2 * TIMEOUT, f"4 slow endpoints took {took:.2f} s (one timeout each, in turn)"


def test_results_keep_their_endpoint_when_read_at_once() -> None:
    endpoints = {"coordinator": "127.0.0.1:1", "node-1": "127.0.0.1:2", "node-2": "127.0.0.1:3"}
    pages = {
        "127.0.0.1:1": b"mpcnet_signatures_total 7\n",
        "127.0.0.1:2": b'mpcnet_sessions_live{protocol="sign"} 2\n',
    }

    def fetch(endpoint: str, timeout_s: float) -> bytes:
        time.sleep(0.05 if endpoint.endswith(":1") else 0.0)  # the coordinator answers last
        if endpoint not in pages:
            raise ConnectionRefusedError(endpoint)
        return pages[endpoint]

    got = cli_watch.scrape(endpoints, fetch, TIMEOUT)
    assert got.signatures_total == 7.0
    assert got.sessions_live == {"sign": 2.0}
    assert got.unreachable == ("node-2",)


@pytest.fixture
def dripping() -> Iterator[int]:
    """An endpoint that accepts, then sends one byte of a status line every 0.1 s, for ever."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            for b in b"HTTP/1.1 200 OK" * 1000:
                if stop.wait(0.1):
                    return
                try:
                    conn.sendall(bytes([b]))
                except OSError:
                    return

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    srv.close()


def test_the_watch_stays_near_its_interval_with_dripping_endpoints_and_no_thread_pile_up(dripping: int) -> None:
    endpoints = {n: f"127.0.0.1:{dripping}" for n in ["coordinator", "node-1", "node-2", "node-3"]}
    before = threading.active_count()
    t0 = time.monotonic()
    for _ in range(3):
        got = cli_watch.scrape(endpoints, cli_watch.http_fetch, TIMEOUT)
        assert len(got.unreachable) == 4
    took = time.monotonic() - t0
    assert took < 3 * 2 * TIMEOUT, f"3 refreshes of 4 dripping endpoints took {took:.2f} s"
    time.sleep(0.3)
    assert threading.active_count() <= before + 4 + 1, "threads pile up across refreshes"
