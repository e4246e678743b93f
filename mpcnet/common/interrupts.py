"""Ctrl-C (SIGINT) recorded, not raised, while a command spawns, waits for and stops processes.

Python raises ``KeyboardInterrupt`` at whatever bytecode the main thread runs when SIGINT arrives.
Landing inside :mod:`subprocess` internals it can leave a ``Popen``'s wait lock held (``poll()``
takes it with ``acquire(False)`` just before its ``try``), after which ``Popen.wait()`` blocks for
ever; landing between ``Popen(...)`` returning and the ``try`` that stops the child on an
interrupt, it leaves the child running. On a busy host, where the main thread is more often
running Python than sleeping when the signal comes, both happen. Within :class:`DeferredInterrupt`
the signal handler only records the signal (no locks, no I/O: it may run between any two
bytecodes); the command checks :attr:`DeferredInterrupt.pending` at points where an interrupt is
safe (:meth:`DeferredInterrupt.check`, :meth:`DeferredInterrupt.sleep`) and raises
``KeyboardInterrupt`` there.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType, TracebackType


class DeferredInterrupt:
    """Context manager: while inside, SIGINT sets :attr:`pending` (and counts in :attr:`count`)
    instead of raising ``KeyboardInterrupt``; the previous handler is restored on exit (a pending
    interrupt is not re-raised there: call :meth:`check`).

    It changes nothing (``active`` False) off the main thread, or when SIGINT is not handled by
    Python's default ``KeyboardInterrupt`` handler (e.g. ignored, as in a background job that was
    started with SIGINT ignored: it stays ignored)."""

    def __init__(self) -> None:
        self.count = 0
        self.active = False

    @property
    def pending(self) -> bool:
        """Whether SIGINT arrived since entering."""
        return self.count > 0

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1  # nothing else: this runs between two arbitrary bytecodes of the main thread

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                signal.signal(signal.SIGINT, self._record)
                self.active = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.active:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.active = False

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if SIGINT arrived (call it where an interrupt is safe)."""
        if self.count:
            raise KeyboardInterrupt

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (>= 0), then :meth:`check`. The sleep goes on after the handler ran
        (PEP 475), so an interrupt is raised at most ``seconds`` late: keep them short (0.1 s)."""
        self.check()
        time.sleep(seconds)
        self.check()
