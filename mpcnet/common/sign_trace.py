"""Timing spans along the one-round signing path (issue 14, latency work): benchmarks only, off by default.

When the environment of the process holds ``MPCNET_TRACE_SIGN=DIR`` (an existing directory) at
import, :func:`mark` records a ``time.perf_counter_ns()`` stamp under a span name for a request,
and :func:`end` appends ONE line per request to ``DIR/trace-<pid>.log`` (created ``0600``)::

    <request id> t0=<perf_counter_ns of the first mark> gc=<us> <name>=<us since the first mark> <name>=<us> ...

``gc`` is the time the process spent in garbage collections (any thread) between the request's
first and last stamps (``gc.callbacks``, registered while tracing is on).

Names are constants of the code (``received``, ``verified``, ``committed``, ...; a node's start
with ``node.``), request ids are those the
coordinator accepted (:data:`governance.text.REQUEST_ID_RULE`) and are reduced to
``[A-Za-z0-9._-]`` (64 characters) all the same: no caller text, no secret, only times.
``scripts/trace_sign_summary.py`` reads the files and prints the median of each step.

Off (the default), :func:`mark` and :func:`end` return at once (one global read). Stamps of a
request live in memory until :func:`end` (or are dropped after :data:`MAX_OPEN` open requests).
A log that cannot be written is switched off for the rest of the process (never fails a request).
"""

from __future__ import annotations

import gc
import os
import re
import stat
import threading
import time
from pathlib import Path

ENV = "MPCNET_TRACE_SIGN"
MAX_OPEN = 4096  # open requests kept at most (the oldest are dropped past it)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

_lock = threading.Lock()
_fd: int | None = None
_open: dict[str, list[tuple[str, int]]] = {}
_gc_at: dict[str, int] = {}  # request -> _gc_ns at its first stamp
_gc_ns = 0  # ns spent in collections since tracing started
_gc_start = 0


def enabled() -> bool:
    """True when spans are recorded (``MPCNET_TRACE_SIGN`` was set at import, or :func:`open_log`)."""
    return _fd is not None


def begin(rid: str, name: str) -> None:
    """Stamp ``name`` as the first stamp of ``rid`` (dropping earlier ones: e.g. a decision that
    did not complete the quorum)."""
    mark(rid, name, first=True)


def mark(rid: str, name: str, *, first: bool = False) -> None:
    """Stamp ``name`` (a constant of the code) for request ``rid`` now (perf_counter_ns)."""
    if _fd is None:
        return
    t = time.perf_counter_ns()
    with _lock:
        marks = None if first else _open.get(rid)
        if marks is None:
            if len(_open) >= MAX_OPEN:
                oldest = next(iter(_open))
                del _open[oldest]
                _gc_at.pop(oldest, None)
            marks = _open[rid] = []
            _gc_at[rid] = _gc_ns
        marks.append((name, t))


def end(rid: str, name: str = "end") -> None:
    """Stamp ``name`` for ``rid`` and append its line (``<rid> t0=ns name=us ...``, microseconds
    since its first stamp); nothing if tracing is off or ``rid`` has no stamps."""
    global _fd
    fd = _fd
    if fd is None:
        return
    t = time.perf_counter_ns()
    with _lock:
        marks = _open.pop(rid, None)
        gc_ns = _gc_ns - _gc_at.pop(rid, _gc_ns)
    if not marks:
        return
    marks.append((name, t))
    t0 = marks[0][1]
    safe = _UNSAFE.sub("_", rid)[:64] or "-"
    line = f"{safe} t0={t0} gc={gc_ns // 1000} " + " ".join(f"{n}={(s - t0) // 1000}" for n, s in marks) + "\n"
    with _lock:  # only while fd is still the log's: a closed log's number may be another file's now
        if _fd != fd:
            return
        try:
            os.write(fd, line.encode())
        except OSError:
            _fd = None


def open_log(directory: Path) -> None:
    """Record spans and append lines to ``directory/trace-<pid>.log``; raises OSError if it
    cannot be opened, or is not a regular file of this user (a symlink, a FIFO: refused). Called
    at import when :data:`ENV` is set."""
    global _fd
    path = Path(directory) / f"trace-{os.getpid()}.log"
    # a predictable name, maybe in a shared directory: never through a planted symlink, never
    # blocked on a planted FIFO, only a regular file of our own, and 0600 even if it existed
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(path, flags, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise OSError(f"{path.name}: not a regular file of this user")
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    with _lock:
        old, _fd = _fd, fd
    if old is not None:
        os.close(old)
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


def close_log() -> None:
    """Stop recording (idempotent); open stamps are dropped."""
    global _fd
    with _lock:
        fd, _fd = _fd, None
        _open.clear()
        _gc_at.clear()
    if _on_gc in gc.callbacks:
        gc.callbacks.remove(_on_gc)
    if fd is not None:
        os.close(fd)


def _on_gc(phase: str, info: dict[str, int]) -> None:
    """``gc.callbacks``: add each collection's duration to :data:`_gc_ns` (collections run one at
    a time, holding the GIL)."""
    global _gc_ns, _gc_start
    if phase == "start":
        _gc_start = time.perf_counter_ns()
    elif _gc_start:
        _gc_ns += time.perf_counter_ns() - _gc_start
        _gc_start = 0


def _from_environment() -> None:
    directory = os.environ.get(ENV)
    if directory:
        try:
            open_log(Path(directory))
        except OSError:
            pass  # a benchmark aid: a bad directory leaves the process running, untraced


_from_environment()
