"""Pre-started threads for the signing of approved requests (issue 14, lean path: no thread start
between the quorum decision and the fan-out).

:meth:`coordinator.requests.SignRequests._spawn` used to start a thread per request; a thread start
costs a few hundred microseconds on the critical path (and as much CPU). :class:`SignWorkers` hands
the job to an idle worker instead, and starts a new thread only when none is idle, so a request is
never queued behind another one's signing (a full protocol run may take seconds): the number of
threads is what it was -- one per signing in progress -- plus at most :attr:`SignWorkers.max_idle`
idle ones, each ending after :attr:`SignWorkers.idle_s` seconds without work.

A worker takes the name ``sign-<first 16 characters of the request id>`` while it runs a job (the
commit log of the benchmarks names commits by thread; request ids are checked against
:data:`governance.text.REQUEST_ID_RULE`) and ``sign-idle`` between jobs. A job that raises is
logged and the worker carries on. Thread-safe.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("coordinator.sign_workers")

MAX_IDLE = 8  # idle workers kept at most (the 9th to finish ends)
IDLE_S = 30.0  # an idle worker ends after this long without a job (s)

HANDOFF_WAIT_S = 0.05  # submit waits at most this long for the worker to take the job (s)

Job = tuple[Callable[[str], object], str, threading.Event | None]  # (function, request id, set when taken)


class SignWorkers:
    """Run ``fn(rid)`` on an idle pre-started worker, or on a new thread when none is idle."""

    def __init__(self, max_idle: int = MAX_IDLE, idle_s: float = IDLE_S) -> None:
        if max_idle < 0 or idle_s <= 0:
            raise ValueError("max_idle must be >= 0 and idle_s > 0")
        self.max_idle = max_idle
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._idle = 0  # workers waiting for a job that no submit has claimed yet
        self.started = 0  # threads started (tests, diagnostics)

    @property
    def idle(self) -> int:
        with self._lock:
            return self._idle

    def submit(self, fn: Callable[[str], object], rid: str) -> None:
        """Run ``fn(rid)`` now on another thread: an idle worker's, else a new one's. Never
        blocks on other jobs; returns once the worker has taken the job (as ``Thread.start``
        returns once the thread runs: the caller gives up the GIL to it now, instead of racing
        it for the GIL while the job starts), or after :data:`HANDOFF_WAIT_S`."""
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # claimed: exactly one waiting worker takes this job
                taken = threading.Event()
                self._jobs.put((fn, rid, taken))
            else:
                taken = None
                self.started += 1
        if taken is not None:
            taken.wait(HANDOFF_WAIT_S)
            return
        threading.Thread(target=self._work, args=((fn, rid, None),), name=_name(rid), daemon=True).start()

    def _work(self, job: Job) -> None:
        me = threading.current_thread()
        current: Job | None = job
        while current is not None:
            fn, rid, taken = current
            me.name = _name(rid)
            if taken is not None:
                taken.set()
            try:
                fn(rid)
            except Exception:  # the job's own handler failed: keep the worker
                log.exception("signing job failed unexpectedly")
            me.name = "sign-idle"
            with self._lock:
                if self._idle >= self.max_idle:
                    return
                self._idle += 1
            current = self._take()

    def _take(self) -> Job | None:
        """The next job for a worker counted idle, or None when it should end (idle too long)."""
        try:
            return self._jobs.get(timeout=self.idle_s)
        except queue.Empty:
            with self._lock:
                try:
                    return self._jobs.get_nowait()  # claimed for us while the wait timed out
                except queue.Empty:
                    self._idle -= 1
                    return None


def _name(rid: str) -> str:
    return f"sign-{rid[:16]}"


__all__ = ["HANDOFF_WAIT_S", "IDLE_S", "MAX_IDLE", "SignWorkers"]
