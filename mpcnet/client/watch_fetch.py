"""One bounded HTTP GET for ``mpc status --watch``'s scrapes of the metrics endpoints.

A metrics endpoint is in the monitoring plane (a compromised node, or whoever holds its port,
answers what it likes), so one fetch: ends within ``timeout_s`` seconds in all (a watchdog shuts
the socket down at the deadline, whatever the endpoint sends: a dripping status line, headers or
body cannot hold the watch), reads at most ``limit`` bytes of body, follows no redirect, uses no
proxy, and reports every failure as OSError (``http.client``'s malformed-answer errors included)
or ValueError (a page past ``limit``). :func:`fetch_all` reads several endpoints at once, so a
refresh costs one timeout, not one per slow endpoint.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor


def _cut(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass


def fetch_page(endpoint: str, path: str, timeout_s: float, limit: int) -> bytes:
    """``GET http://ENDPOINT{path}`` (``endpoint`` ``HOST:PORT``): the body (status 200 only).
    Raises OSError (cannot connect, another status, a malformed answer, past ``timeout_s`` in
    all) or ValueError (more than ``limit`` bytes)."""
    host, _, port = endpoint.rpartition(":")
    deadline = time.monotonic() + timeout_s
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout_s)
    watchdog = threading.Timer(timeout_s, _cut, (conn,))
    watchdog.daemon = True
    try:
        watchdog.start()
        conn.request("GET", path, headers={"Accept": "text/plain", "Accept-Encoding": "identity"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise OSError(f"HTTP status {resp.status}")
        body = resp.read(limit + 1)
    except http.client.HTTPException as e:  # a malformed answer (BadStatusLine, LineTooLong...)
        raise OSError(f"malformed answer ({type(e).__name__})") from None
    finally:
        watchdog.cancel()
        conn.close()
    if time.monotonic() >= deadline:  # cut by the watchdog: whatever was read is not a whole page
        raise TimeoutError(f"no complete answer within {timeout_s:g} s")
    if len(body) > limit:
        raise ValueError(f"more than {limit} bytes")
    return body


MAX_PARALLEL = 16
"""Endpoints read at once by :func:`fetch_all` (more wait for a free thread)."""


def fetch_all(endpoints: Mapping[str, str], fetch: Callable[[str, float], bytes], timeout_s: float) -> dict[str, Future[bytes]]:
    """``fetch(endpoint, timeout_s)`` of every ``{name: endpoint}`` at once (at most
    :data:`MAX_PARALLEL` threads), returned once all have ended: ``{name: future}``, whose
    ``result()`` is the page or raises what the fetch raised. With a ``fetch`` bounded by
    ``timeout_s`` (:func:`fetch_page`) it returns within about ``timeout_s`` for up to
    :data:`MAX_PARALLEL` endpoints; its threads are gone when it returns (no pile-up)."""
    if not endpoints:
        return {}
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(endpoints)), thread_name_prefix="watch-scrape") as pool:
        return {name: pool.submit(fetch, ep, timeout_s) for name, ep in endpoints.items()}
