"""Attack on the metrics endpoint's idle timeout (issue 15 review 2): the timeout is per read, so a
client dripping one byte of its request line every (timeout - 1) s was never dropped, and 32 such
connections (the cap) made every later scrape fail for as long as the attacker kept dripping. A
connection now has a deadline in all (:data:`metrics_http.CONNECTION_DEADLINE_S`), whatever it
sends."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from mpcnet.common import metrics_http
from mpcnet.common.metrics import Metrics

IDLE = 0.4
DEADLINE = 1.0


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(metrics_http, "IDLE_TIMEOUT_S", IDLE)
    monkeypatch.setattr(metrics_http, "CONNECTION_DEADLINE_S", DEADLINE, raising=False)
    monkeypatch.setattr(metrics_http, "MAX_CONNECTIONS", 3)
    m = Metrics("node")
    port = m.serve("127.0.0.1:0")
    yield port
    m.stop()


def _drip(port: int, stop: threading.Event, closed: list[float]) -> None:
    """Send ``GET /metrics...`` one byte every IDLE/2 s (never silent for a whole idle timeout)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for b in b"GET /" + b"a" * 10_000:
            if stop.is_set():
                return
            try:
                s.sendall(bytes([b]))
            except OSError:
                closed.append(time.monotonic() - t0)
                return
            s.settimeout(IDLE / 2)
            try:
                if s.recv(1) == b"":
                    closed.append(time.monotonic() - t0)
                    return
            except TimeoutError:
                pass
            except OSError:
                closed.append(time.monotonic() - t0)
                return


def test_a_dripping_request_line_is_dropped_at_the_connection_deadline(served: int) -> None:
    stop, closed = threading.Event(), []  # type: ignore[var-annotated]
    t = threading.Thread(target=_drip, args=(served, stop, closed), daemon=True)
    t.start()
    t.join(DEADLINE + 2.0)
    stop.set()
    assert closed, "a connection dripping one byte per (idle timeout / 2) is held open for ever"
    assert closed[0] <= DEADLINE + 0.5


def test_drippers_holding_every_slot_cannot_stop_scrapes(served: int) -> None:
    stop, closed = threading.Event(), []  # type: ignore[var-annotated]
    drippers = [threading.Thread(target=_drip, args=(served, stop, closed), daemon=True) for _ in range(3)]
    for t in drippers:
        t.start()
    time.sleep(0.2)  # every slot is taken by a dripper
    try:
        deadline = time.monotonic() + DEADLINE + 2.0
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{served}/metrics", timeout=2) as r:
                    assert b"mpcnet_build_info" in r.read()
                break
            except OSError:
                assert time.monotonic() < deadline, "scrapes fail for as long as the drippers drip"
                time.sleep(0.1)
    finally:
        stop.set()
        for t in drippers:
            t.join(3)
