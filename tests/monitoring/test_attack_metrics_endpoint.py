"""Attack on the metrics HTTP endpoint (issue 15 review): whoever can reach the port (the
monitoring plane, a weaker trust zone than the key plane) must not be able to pin threads of the
process with idle or slow connections (slowloris), nor make it spawn a thread per connection
without bound, nor fill stderr with tracebacks; a scrape still answers afterwards."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from mpcnet.common import metrics_http
from mpcnet.common.metrics import Metrics


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Metrics, int]]:
    monkeypatch.setattr(metrics_http, "IDLE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(metrics_http, "MAX_CONNECTIONS", 4)
    m = Metrics("node")
    port = m.serve("127.0.0.1:0")
    yield m, port
    m.stop()


def _scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body: bytes = r.read()
    return body


def _closed_within(s: socket.socket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset: closed too
        return True


def test_an_idle_connection_is_closed_by_the_server(served: tuple[Metrics, int]) -> None:
    _, port = served
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never ends the headers
        assert _closed_within(s, 5.0), "a slowloris connection is held open for ever"
    assert b"mpcnet_build_info" in _scrape(port)


def test_connections_past_the_cap_start_no_thread_and_a_scrape_answers_later(
    served: tuple[Metrics, int], capsys: pytest.CaptureFixture[str]
) -> None:
    _, port = served
    before = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
    try:
        time.sleep(0.3)
        assert threading.active_count() <= before + 4, "one thread per idle connection, without bound"
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 5
    while True:  # the slots come back once the idle connections time out or close
        try:
            assert b"mpcnet_build_info" in _scrape(port)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err


def test_a_timed_out_request_writes_no_traceback(served: tuple[Metrics, int], capsys: pytest.CaptureFixture[str]) -> None:
    _, port = served
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metr")
        assert _closed_within(s, 5.0)
    time.sleep(0.1)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err


def test_the_endpoint_binds_only_the_configured_host(served: tuple[Metrics, int]) -> None:
    m, _ = served
    assert m._server is not None
    assert m._server.server_address[0] == "127.0.0.1"
