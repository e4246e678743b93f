"""Probing one node now, when background work found it unreachable.

Background sessions (the pools' presign sessions, :mod:`coordinator.pool`; FROST nonce refills,
:mod:`coordinator.frost_sign`) never judge a node's health themselves: a busy node that answers
late is not down, only the health probe judges. But a node that is really gone then stays
``healthy`` until the next probe (up to ``health_interval_s`` plus the probe's deadline), and the
pools keep trying it. So when such work fails with the transport saying the node is unreachable
(gRPC ``UNAVAILABLE``: connection refused, no route; not a deadline, which a busy node can miss),
it asks for THAT node to be probed now (:meth:`ProbeNow.request`): one ``Health`` call with the
probe's own deadline, judged as the background probe judges
(:meth:`coordinator.service.CoordinatorService.probe_one`), so a node that answers in time stays
up and one that does not is marked down at once.

At most one such probe per node runs at a time, and a node is probed this way at most once per
:data:`MIN_INTERVAL_S` seconds (many sessions failing together cost one probe). The probe runs on
its own daemon thread: the failing session's thread does not wait for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("coordinator.probe_now")

MIN_INTERVAL_S = 0.5  # a node is probed on request at most once per this many seconds


class ProbeNow:
    """Runs ``probe_one(i)`` on request (see the module). ``clock``: monotonic seconds."""

    def __init__(self, probe_one: Callable[[int], None], *, min_interval_s: float = MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._probe_one = probe_one
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._running: set[int] = set()
        self._last: dict[int, float] = {}  # node -> clock() when its last requested probe started
        self._idle = threading.Condition(self._lock)
        self._stopped = False

    def request(self, i: int) -> bool:
        """Probe node ``i`` now, unless a requested probe of it runs or started less than
        ``min_interval_s`` seconds ago, or after :meth:`stop`. True if a probe was started."""
        with self._lock:
            now = self._clock()
            last = self._last.get(i)
            if self._stopped or i in self._running or (last is not None and now - last < self._min_interval_s):
                return False
            self._running.add(i)
            self._last[i] = now
        log.info("node %d: a background session found it unreachable; probing it now", i)
        try:
            threading.Thread(target=self._run, args=(i,), name=f"probe-now-{i}", daemon=True).start()
        except BaseException:
            self._done(i)
            raise
        return True

    def _run(self, i: int) -> None:
        try:
            self._probe_one(i)
        except Exception:
            log.exception("probing node %d failed", i)
        finally:
            self._done(i)

    def _done(self, i: int) -> None:
        with self._lock:
            self._running.discard(i)
            self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds until no requested probe runs; True if none does."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._running, timeout_s)

    def stop(self) -> None:
        """Start no more probes (those running end on their own: one call with a short deadline)."""
        with self._lock:
            self._stopped = True
