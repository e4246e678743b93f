"""The coordinator's protocol-session slots (``max_parallel_sessions``) and the refill policy of
the presignature pools (issue 14).

Signing with the full protocol and keygen take a slot with ``with slots:`` (waiting for one when
all are taken); the pool refiller takes one with ``acquire(blocking=False)`` and never waits
(:meth:`coordinator.pool.PresignPools.step`). :attr:`SessionSlots.demand` counts the ``with``
users, holding a slot or waiting for one; one-round signing from a pool takes no slot.

Slots kept for the refiller: with pools on and more than ``presign.max_parallel`` slots,
``reserved = presign.max_parallel`` slots are for non-blocking ``acquire`` callers only: ``with``
users hold at most ``slots - reserved`` at once. Without that, a sustained load of requests falling
back to the full protocol (each about twice the CPU of a one-round signature plus its share of a
presign batch) would hold every slot for as long as the load lasts, the refiller would never get
one, and the pools would never fill again. When the refiller may run is the pools' own rule
(:meth:`coordinator.pool.PresignPools.step`).
"""

from __future__ import annotations

import threading
from types import TracebackType


class SessionSlots(threading.BoundedSemaphore):
    """A bounded semaphore of ``value`` (>= 1) slots, ``reserved`` (0 <= reserved < value) of
    them for non-blocking ``acquire`` callers only (the refiller); counts its ``with`` users
    (holding a slot or waiting for one) in :attr:`demand`. Raises ValueError naming the config
    field for bad values. Thread-safe."""

    def __init__(self, value: int, reserved: int = 0) -> None:
        if value < 1:
            raise ValueError("max_parallel_sessions: must be at least 1")
        if not 0 <= reserved < value:
            raise ValueError(f"presign.max_parallel: {reserved} reserved slots need max_parallel_sessions > {reserved}")
        super().__init__(value)
        self.slots = value
        self.reserved = reserved
        self._gate = threading.BoundedSemaphore(value - reserved) if reserved else None  # the `with` users' share
        self._count_lock = threading.Lock()
        self.demand = 0

    def __enter__(self, blocking: bool = True, timeout: float | None = None) -> bool:
        with self._count_lock:
            self.demand += 1
        gated = got = False
        try:
            gated = self._gate is None or self._gate.acquire(blocking, timeout)
            got = gated and super().__enter__(blocking, timeout)
            return got
        finally:
            if not got:  # an exception or a timed-out wait: nothing is held
                if gated and self._gate is not None:
                    self._gate.release()
                with self._count_lock:
                    self.demand -= 1

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            super().__exit__(t, v, tb)
            if self._gate is not None:
                self._gate.release()
        finally:
            with self._count_lock:
                self.demand -= 1


def reserved_for_pools(max_parallel_sessions: int, pools_enabled: bool, presign_max_parallel: int) -> int:
    """The slots kept for the refiller (module docstring): ``presign_max_parallel`` when pools are
    on and signing keeps at least one slot, else 0."""
    if pools_enabled and max_parallel_sessions > presign_max_parallel:
        return presign_max_parallel
    return 0
