"""The metrics endpoint's HTTP server, hardened for the monitoring plane (a weaker trust zone).

prometheus-client's ``start_http_server`` starts one thread per connection and never times a
connection out: anyone who can reach the port can pin a thread per idle socket (slowloris) and
make the process spawn threads without bound, and each timed-out request would print a traceback
to stderr. :func:`serve` answers the same ``/metrics`` exposition with:

* a socket timeout of :data:`IDLE_TIMEOUT_S` seconds on every read and write of a connection
  (a client that sends nothing for that long is dropped), and a deadline of
  :data:`CONNECTION_DEADLINE_S` seconds in all (a client dripping its request a byte at a time,
  never silent for a whole idle timeout, is dropped then: it cannot hold a slot for ever);
* at most :data:`MAX_CONNECTIONS` connections handled at once; a connection past the cap is
  closed at once (it starts no thread: the scraper sees a failed scrape, ``up == 0``);
* no request log and no traceback for a dropped or broken connection (DEBUG log only).

Errors: OSError when ``host:port`` cannot be bound (the caller names the config field).
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger("mpcnet.metrics")

IDLE_TIMEOUT_S = 5.0
"""Seconds a connection may stay silent (per read or write) before the server drops it."""
MAX_CONNECTIONS = 32
"""Connections handled at once; more are closed on accept (a scraper needs one or two)."""
CONNECTION_DEADLINE_S = 10.0
"""Seconds a connection may take to send its whole request (a scraper's takes milliseconds); the
answer's writes are bounded by :data:`IDLE_TIMEOUT_S` each (``sendall``'s timeout is per call)."""


class _DeadlineReader(io.RawIOBase):
    """Reads of ``sock`` that each wait at most ``idle_s`` and end, all of them, at ``deadline``
    (``time.monotonic()``): past it a read raises TimeoutError (no extra thread per connection)."""

    def __init__(self, sock: socket.socket, deadline: float, idle_s: float) -> None:
        self._sock, self._deadline, self._idle_s = sock, deadline, idle_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("connection deadline passed")
        self._sock.settimeout(min(self._idle_s, left))
        return self._sock.recv_into(buffer)


class _Handler(WSGIRequestHandler):
    """No request log; the socket timeout comes from the server (read when the connection starts);
    the request must arrive whole within :data:`CONNECTION_DEADLINE_S` s of the connection's start."""

    def setup(self) -> None:
        idle_s = getattr(self.server, "idle_timeout_s", IDLE_TIMEOUT_S)
        self.request.settimeout(idle_s)  # writes: each sendall ends within idle_s in all
        super().setup()
        self.rfile.close()  # the plain reader: replaced by one bounded by the connection deadline
        self.rfile = io.BufferedReader(_DeadlineReader(self.request, time.monotonic() + CONNECTION_DEADLINE_S, idle_s))

    def log_message(self, format: str, *args: Any) -> None:
        return None


class MetricsServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most ``max_connections`` at once, each with ``idle_timeout_s``."""

    daemon_threads = True
    block_on_close = False
    idle_timeout_s = IDLE_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_timeout_s = IDLE_TIMEOUT_S
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.debug("metrics: connection refused (%d at once)", MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("metrics: connection dropped (timed out or broken)")


def serve(host: str, port: int, registry: CollectorRegistry) -> tuple[MetricsServer, threading.Thread]:
    """Serve ``registry``'s exposition on ``host:port`` (port 0 picks one) from a daemon thread;
    returns the server (``server_port``; ``shutdown()``/``server_close()`` to stop) and the thread.
    Raises OSError (cannot bind, unknown host) or ValueError (bad port)."""
    family, addr = _family(host, port)

    class _Bound(MetricsServer):
        address_family = family

    httpd = make_server(addr, port, make_wsgi_app(registry), _Bound, handler_class=_Handler)
    assert isinstance(httpd, MetricsServer)
    t = threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True)
    t.start()
    return httpd, t


def _family(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])
