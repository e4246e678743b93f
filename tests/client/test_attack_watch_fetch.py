"""Attack on ``mpc status --watch``'s scrape (issue 15 review): a metrics endpoint is in the
monitoring plane, so a compromised node (or whoever holds its port) controls what it answers.
Dripping one byte at a time (each within the socket timeout) froze the watch for as long as the
endpoint liked: the operator's live view stopped refreshing (a node-down or an anomaly never
shown). A redirect was followed to any URL. Now one scrape ends within its timeout in all."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mpcnet.client import cli_watch

PAGE = b"# TYPE mpcnet_signatures_total counter\nmpcnet_signatures_total 3\n"


def _serve(script: bytes, drip_s: float, stop: threading.Event) -> tuple[socket.socket, int]:
    srv = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(4096)
            for i in range(len(script)):
                if stop.is_set():
                    return
                try:
                    conn.sendall(script[i : i + 1])
                except OSError:
                    return
                time.sleep(drip_s)

    threading.Thread(target=run, daemon=True).start()
    return srv, srv.getsockname()[1]


def _fetch_within(endpoint: str, timeout_s: float, limit_s: float) -> BaseException | bytes | None:
    """``http_fetch``'s outcome (its exception or its page), or None if it has not ended after
    ``limit_s`` (the test then fails instead of hanging)."""
    out: list[BaseException | bytes] = []

    def run() -> None:
        try:
            out.append(cli_watch.http_fetch(endpoint, timeout_s))
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit_s)
    return out[0] if out else None


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    ev = threading.Event()
    yield ev
    ev.set()


def test_a_dripping_body_ends_the_scrape_within_its_timeout(stop: threading.Event) -> None:
    body = PAGE * 200
    head = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    srv, port = _serve(head + body, 0.05, stop)
    with srv:
        got = _fetch_within(f"127.0.0.1:{port}", 1.0, 3.0)
        assert isinstance(got, OSError), f"the scrape did not end within 3 s: {got!r}"


def test_dripping_headers_end_the_scrape_within_its_timeout(stop: threading.Event) -> None:
    head = b"HTTP/1.0 200 OK\r\n" + b"X-Pad: " + b"a" * 5000 + b"\r\n\r\n"
    srv, port = _serve(head + PAGE, 0.05, stop)
    with srv:
        got = _fetch_within(f"127.0.0.1:{port}", 1.0, 3.0)
        assert isinstance(got, OSError), f"the scrape did not end within 3 s: {got!r}"


def test_a_redirect_is_not_followed(stop: threading.Event) -> None:
    target = socket.create_server(("127.0.0.1", 0))
    with target:
        head = b"HTTP/1.0 302 Found\r\nLocation: http://127.0.0.1:%d/metrics\r\nContent-Length: 0\r\n\r\n" % target.getsockname()[1]
        srv, port = _serve(head, 0.0, stop)
        with srv:
            got = _fetch_within(f"127.0.0.1:{port}", 2.0, 5.0)
            assert isinstance(got, OSError), got
        target.settimeout(0.2)
        with pytest.raises(TimeoutError):
            target.accept()


def test_a_prompt_page_is_read(stop: threading.Event) -> None:
    head = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(PAGE)
    srv, port = _serve(head + PAGE, 0.0, stop)
    with srv:
        assert _fetch_within(f"127.0.0.1:{port}", 2.0, 5.0) == PAGE


BROKEN = [b"garbage\r\n\r\n", b"HTTP/1.0 200 OK\r\nContent-Length: 999\r\n\r\nshort", b"HTTP/1.0 500 Oops\r\n\r\n"]


@pytest.mark.parametrize("answer", BROKEN)
def test_a_broken_answer_is_an_unreachable_endpoint_not_a_crash(stop: threading.Event, answer: bytes) -> None:
    srv, port = _serve(answer, 0.0, stop)
    with srv:
        got = cli_watch.scrape({"node-1": f"127.0.0.1:{port}"}, cli_watch.http_fetch, 2.0)
    assert got.unreachable == ("node-1",)


def test_a_node_endpoint_cannot_forge_the_coordinators_figures() -> None:
    """A compromised node's endpoint claims signatures, latencies and an active anomaly: only the
    coordinator's endpoint is read for those (and only the nodes' for live sessions)."""
    coord = (
        b"# TYPE mpcnet_signatures_total counter\nmpcnet_signatures_total 5\n"
        b"# TYPE mpcnet_anomaly_active gauge\nmpcnet_anomaly_active{rule=\"key_burst\"} 0\n"
        b"# TYPE mpcnet_sessions_live gauge\nmpcnet_sessions_live{protocol=\"sign\"} 7\n"
    )
    forged = (
        b"# TYPE mpcnet_signatures_total counter\nmpcnet_signatures_total 1000\n"
        b"# TYPE mpcnet_anomaly_active gauge\nmpcnet_anomaly_active{rule=\"denied_calls\"} 1\n"
        b"# TYPE mpcnet_request_seconds histogram\nmpcnet_request_seconds_bucket{le=\"+Inf\"} 9\n"
        b"mpcnet_request_seconds_sum 900\nmpcnet_request_seconds_count 9\n"
        b"# TYPE mpcnet_sessions_live gauge\nmpcnet_sessions_live{protocol=\"sign\"} 1\n"
    )
    pages = {"c:1": coord, "n:1": forged}
    got = cli_watch.scrape({"coordinator": "c:1", "node-1": "n:1"}, lambda ep, _t: pages[ep], 1.0)
    assert got.signatures_total == 5.0 and got.anomalies == () and got.latency == {}
    assert got.sessions_live == {"sign": 1.0}
