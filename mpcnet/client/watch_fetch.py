"""One bounded HTTP GET for ``mpc status --watch``'s scrapes of the metrics endpoints.

A metrics endpoint is in the monitoring plane (a compromised node, or whoever holds its port,
answers what it likes), so one fetch: ends within ``timeout_s`` seconds in all (a watchdog shuts
the socket down at the deadline, whatever the endpoint sends: a dripping status line, headers or
body cannot hold the watch), reads at most ``limit`` bytes of body, follows no redirect, uses no
proxy, and reports every failure as OSError (``http.client``'s malformed-answer errors included)
or ValueError (a page past ``limit``).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time


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
