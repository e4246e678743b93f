"""Issue 14 (lean path): the cyclic garbage collector of a long-running server, tuned once at start.

A profile of the coordinator under signing load (py-spy ``--native``, 2-of-3, warm pools) showed
``gc_collect_main`` as the largest single native frame: every RPC allocates thousands of short
lived objects (protobuf messages, gRPC call state, dataclasses), so CPython's default
generation-0 threshold (700 allocations) runs a collection many times per request, and each
older-generation collection walks every object the process built at start (configuration,
imported modules, caches). :func:`tune_for_server`:

- :func:`gc.freeze` the objects alive once the server is built: they stay alive for the process's
  life, so the collector never walks them again (CPython docs, ``gc.freeze``);
- raise the generation-0 threshold to :data:`GEN0_THRESHOLD` (the older two keep their defaults):
  collections run about seventy times less often, each a little longer.

Only *when* unreachable cycles are freed changes; reference counting still frees everything else
at once, and nothing about what the process computes or stores changes. ``MPCNET_GC_TUNING=0`` in
the environment leaves the defaults (for A/B measurements).
"""

from __future__ import annotations

import gc
import os

GEN0_THRESHOLD = 50_000
"""Allocations minus deallocations between generation-0 collections (CPython's default: 700)."""

ENV = "MPCNET_GC_TUNING"


def tune_for_server(environ: dict[str, str] | None = None) -> bool:
    """Freeze the objects alive now and raise the generation-0 threshold; call once, after the
    server is built and before it serves. Returns False (and changes nothing) when
    ``MPCNET_GC_TUNING`` is ``0`` in ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    if env.get(ENV, "1") == "0":
        return False
    gc.collect()  # what start-up left unreachable goes now, not into the permanent generation
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    return True


__all__ = ["ENV", "GEN0_THRESHOLD", "tune_for_server"]
