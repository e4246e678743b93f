"""A bounded budget of long-lived gRPC streams on a thread-pool (sync) server.

grpc's sync server runs every RPC on a thread of its executor, and a blocking stream
(``WatchSignRequest``, server reflection) holds its thread for as long as it is open. Without a
bound, as many idle streams as the server has workers starve every unary call (an approval, a
``ClusterStatus``). So a server sizes its executor ``workers + budget.limit`` and every blocking
stream takes a slot of its :class:`StreamBudget` first:

* taking a slot never blocks: with all ``limit`` slots taken the call ends at once with
  ``RESOURCE_EXHAUSTED`` "too many open streams (N); retry later", so at most ``limit`` threads
  are ever held by streams and ``workers`` threads always remain for unary calls;
* one caller (the name in its client certificate; the peer address without one) holds at most
  ``per_caller`` slots (more get ``RESOURCE_EXHAUSTED`` "too many open streams for NAME (N);
  retry later"), so a single certificate holder cannot take every slot and starve the waits
  of everyone else;
* a slot is released when the handler returns (not when the client leaves: the thread is only
  free then), and handlers end promptly when the client cancels (they watch ``is_active`` and
  ``add_callback``);
* a stream lives at most ``lifetime_s``: handlers end themselves then (a watch ends with the
  current state, and the client resumes); a stream still open ``grace_s`` later (a handler
  blocked on a client that does not read) is cancelled by the budget's reaper thread.

Non-blocking handlers (the standard health service's ``Watch``) hold no thread and need no slot.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time

import grpc

from governance.text import escape
from mpcnet.common.rpc import RpcError, caller_identity

log = logging.getLogger("mpcnet.common.streams")
DEFAULT_LIFETIME_S = 60.0
GRACE_S = 5.0


class StreamSlot:
    """One open stream's slot: :meth:`release` (idempotent) gives it back."""

    __slots__ = ("_budget", "_context", "_released", "deadline", "method", "owner")

    def __init__(self, budget: StreamBudget, context: grpc.ServicerContext, method: str, deadline: float, owner: str = "") -> None:
        self._budget = budget
        self._context = context
        self.method = method
        self.owner = owner
        self.deadline = deadline  # time.monotonic() at which the stream should have ended
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        self._budget._release(self)

    def _cancel(self) -> None:
        """Called by the reaper past the deadline and grace: cancel the RPC (frees its thread)."""
        log.warning("%s: stream still open %.0f s after its lifetime: cancelled", self.method, self._budget.grace_s)
        try:
            self._context.cancel()
        except Exception as e:  # already ended
            log.debug("%s: cancel: %s", self.method, e)


class StreamBudget:
    """At most ``limit`` blocking streams at once, each for at most ``lifetime_s`` seconds (plus
    ``grace_s`` before it is cancelled). Thread-safe."""

    def __init__(
        self, limit: int, lifetime_s: float = DEFAULT_LIFETIME_S, *, grace_s: float = GRACE_S, per_caller: int | None = None
    ) -> None:
        per_caller = limit if per_caller is None else per_caller
        if limit < 1 or not 0 < lifetime_s < float("inf") or grace_s < 0 or not 1 <= per_caller <= limit:
            raise ValueError("StreamBudget: limit >= 1, 0 < lifetime_s < inf, grace_s >= 0, 1 <= per_caller <= limit")
        self.limit = limit
        self.per_caller = per_caller
        self._by_owner: dict[str, int] = {}
        self.lifetime_s = lifetime_s
        self.grace_s = grace_s
        self._lock = threading.Condition()
        self._open: set[StreamSlot] = set()
        self._due: list[tuple[float, int, StreamSlot]] = []  # (cancel at, seq, slot): the reaper's heap
        self._seq = itertools.count()
        self._reaper: threading.Thread | None = None
        self._closed = False

    @property
    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def open(self, context: grpc.ServicerContext, method: str) -> StreamSlot:
        """Take a slot for the stream ``method`` (a name for messages) without blocking.

        Raises RpcError(RESOURCE_EXHAUSTED) when every slot is taken."""
        owner = _owner(context)
        with self._lock:
            if len(self._open) >= self.limit:
                raise RpcError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, f"{method}: too many open streams ({self.limit}); retry later"
                )
            if self._by_owner.get(owner, 0) >= self.per_caller:
                raise RpcError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{method}: too many open streams for {escape(owner)[:80]} ({self.per_caller}); retry later",
                )
            slot = StreamSlot(self, context, method, time.monotonic() + self.lifetime_s, owner)
            self._open.add(slot)
            self._by_owner[owner] = self._by_owner.get(owner, 0) + 1
            heapq.heappush(self._due, (slot.deadline + self.grace_s, next(self._seq), slot))
            if self._reaper is None and not self._closed:
                self._reaper = threading.Thread(target=self._reap, name="stream-reaper", daemon=True)
                self._reaper.start()
            self._lock.notify_all()
            return slot

    def _release(self, slot: StreamSlot) -> None:
        with self._lock:
            if not slot._released:
                slot._released = True
                self._open.discard(slot)
                left = self._by_owner.get(slot.owner, 1) - 1
                if left > 0:
                    self._by_owner[slot.owner] = left
                else:
                    self._by_owner.pop(slot.owner, None)

    def close(self) -> None:
        """Stop the reaper thread (the server is stopping)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def _reap(self) -> None:
        while True:
            with self._lock:
                while self._due and self._due[0][2]._released:
                    heapq.heappop(self._due)
                if self._closed:
                    return
                if not self._due:
                    self._lock.wait()
                    continue
                when, _, slot = self._due[0]
                left = when - time.monotonic()
                if left > 0:
                    self._lock.wait(left)
                    continue
                heapq.heappop(self._due)
            slot._cancel()  # outside the lock: cancel() may run the RPC's callbacks


def _owner(context: grpc.ServicerContext) -> str:
    """Whose stream this is: the name in the caller's verified certificate, else its peer address."""
    try:
        ident = caller_identity(context)
        if ident is not None:
            return ident.name
        return str(context.peer() or "")
    except Exception:  # a test double without auth context or peer
        return ""
