"""Issue 14 (cheaper presignature): glibc keeps a node's freed heap instead of returning it to the
kernel and faulting it back in on the next request.

Presigning works on numpy temporaries of a few hundred kilobytes (the RVOLE's limb matrices,
the OT extension's fold tables; :mod:`crypto_core.hazmat`). With glibc's defaults the top of the
heap is given back (``brk`` shrinks) as soon as more than ``M_TRIM_THRESHOLD`` (dynamic, about
twice the largest recent large allocation) is free, and the next presignature grows it again,
page by page: about 860 minor page faults per 2-of-3 presignature measured in-process
(``getrusage``), kernel time counted in the process's CPU time, with nothing computed.
:func:`keep_heap` raises two ``mallopt`` parameters once, at start:

- ``M_TRIM_THRESHOLD`` to :data:`TRIM_THRESHOLD`: up to that much free memory stays mapped at the
  top of each arena instead of being returned after every request;
- ``M_MMAP_THRESHOLD`` to :data:`MMAP_THRESHOLD`: allocations below it come from the (kept) heap
  instead of a fresh ``mmap`` each time (setting either parameter turns glibc's dynamic
  adjustment of both off, so both are set).

What the process computes, stores or sends is unchanged; only how much freed memory it keeps
(bounded by :data:`TRIM_THRESHOLD` per malloc arena) changes. A no-op (returns False) outside
glibc Linux, or when ``MPCNET_HEAP_TUNING=0`` is in the environment (for A/B measurements).
Sources: ``mallopt(3)``, glibc ``malloc/malloc.c`` (``M_TRIM_THRESHOLD``, ``M_MMAP_THRESHOLD``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

TRIM_THRESHOLD = 32 << 20
"""Bytes of free memory kept at the top of a malloc arena (glibc's default: 128 KiB, dynamic)."""

MMAP_THRESHOLD = 4 << 20
"""Allocations of at least this many bytes still get an ``mmap`` of their own (and are returned
at once when freed); glibc's default starts at 128 KiB."""

ENV = "MPCNET_HEAP_TUNING"

_M_TRIM_THRESHOLD = -1  # malloc.h
_M_MMAP_THRESHOLD = -3


def keep_heap(environ: Mapping[str, str] | None = None) -> bool:
    """Set glibc's trim and mmap thresholds (see the module docstring); call once at start.

    Returns True when both were set; False, changing nothing, when ``MPCNET_HEAP_TUNING`` is
    ``0`` in ``environ`` (default: the process environment), off Linux, or when the C library
    has no working ``mallopt`` (musl's returns 0). Raises nothing.
    """
    env = os.environ if environ is None else environ
    if env.get(ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)


__all__ = ["ENV", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_heap"]
