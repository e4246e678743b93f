"""Warm presignature pools for ``scripts/bench_cluster.py --warm`` (issue 14): before each phase
the benchmark waits until every pool of its key is full (``ClusterStatus.pools``: ready at
target, no presign session running), so a burst starts from full pools and no refill competes
with it for CPU at its start; then it reports which share of the phase's requests the
coordinator signed from a pool (``SignRequestInfo.presigned``).

Pools are the coordinator's business, so the wait degrades instead of failing, and says why:

* ``disabled``: the coordinator keeps no pools (config ``presign.enabled`` false, or a
  coordinator older than issue 14): every request runs the full protocol;
* ``empty``: pools are enabled but the key has none with a ready presignature when the wait gives
  up (the refiller has not filled any, e.g. a node is down);
* ``partial``: some pool stays below target (the refiller tops a pool up only once it falls to
  ``refill_at``; a pool left between the two stays there): the phase starts from what is ready
  once nothing has changed for ``settle_s`` seconds with no presign session running;
* ``warm``: every pool of the key is at target and none is filling.

:func:`fill_to_target` makes a ``partial`` pool full: it signs (untimed) as many requests as
there are ready presignatures, so every pool falls below ``refill_at`` and the refiller fills it
to target, then waits again (a few rounds at most).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mpcnet.client.pools import PoolView, PresignStatus

WARM, PARTIAL, EMPTY, DISABLED = "warm", "partial", "empty", "disabled"
NOTES = {
    WARM: "pools full",
    PARTIAL: "pools settled below target (refilled only at refill_at)",
    EMPTY: "pools empty (enabled, but nothing ready for the bench key)",
    DISABLED: "pools disabled (coordinator config presign.enabled, or a coordinator without pools): full protocol",
}


@dataclass(frozen=True)
class PoolWait:
    """How the pools of the bench key stood when a phase started: ``state`` (one of :data:`NOTES`),
    ``pools`` (of the key), ``ready`` and ``target`` (summed over them), ``waited_s``."""

    state: str
    pools: int
    ready: int
    target: int
    waited_s: float
    drained: int = 0  # requests signed (untimed) to empty partial pools so they refill (fill_to_target)

    @property
    def note(self) -> str:
        return NOTES[self.state]

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "note": self.note, "pools": self.pools, "ready": self.ready, "target": self.target,
                "waited_s": round(self.waited_s, 2), "drained": self.drained}


def _of(status: PresignStatus, key_id: bytes) -> tuple[PoolView, ...]:
    return status.of_key(key_id)


def _depths(pools: Sequence[PoolView]) -> tuple[tuple[int, int, int], ...]:
    return tuple((p.ready, p.assigned, p.filling) for p in pools)


def wait_warm(
    status: Callable[[], PresignStatus], key_id: bytes, *, timeout_s: float = 120.0, settle_s: float = 2.0,
    min_ready: int | None = None, poll_s: float = 0.05, clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PoolWait:
    """Poll ``status`` (e.g. ``MpcClient.presign_status``) until every pool of ``key_id`` is at
    target with nothing filling or assigned (``warm``), or settled below target for ``settle_s``
    (``partial``), at most ``timeout_s`` seconds (then ``empty`` when nothing is ready, else
    ``partial``). ``disabled`` at once when the coordinator keeps no pools. ``min_ready`` (the
    sequential phase: one signature at a time): return as soon as nothing is filling or
    assigned and at least that many are ready (``warm`` if all are at target, else
    ``partial``), without waiting for a top-up the refiller will not start."""
    start = clock()
    last: tuple[tuple[int, int, int], ...] | None = None
    since = start
    while True:
        st = status()
        now = clock()
        pools = _of(st, key_id)
        ready, target = sum(p.ready for p in pools), sum(p.target for p in pools)
        if not st.enabled:
            return PoolWait(DISABLED, len(pools), ready, target, now - start)
        busy = any(p.filling or p.assigned for p in pools)
        if pools and not busy and all(p.ready >= p.target for p in pools):
            return PoolWait(WARM, len(pools), ready, target, now - start)
        if min_ready is not None and pools and not busy and ready >= min_ready:
            return PoolWait(PARTIAL, len(pools), ready, target, now - start)
        depths = _depths(pools)
        if depths != last:
            last, since = depths, now
        elif pools and ready and not busy and now - since >= settle_s:
            return PoolWait(PARTIAL, len(pools), ready, target, now - start)
        if now - start >= timeout_s:
            return PoolWait(EMPTY if not ready else PARTIAL, len(pools), ready, target, now - start)
        sleep(poll_s)


def fill_to_target(
    status: Callable[[], PresignStatus], key_id: bytes, sign_one: Callable[[], object], *, rounds: int = 3,
    timeout_s: float = 120.0, settle_s: float = 2.0, clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PoolWait:
    """:func:`wait_warm`, and while the pools settle below target (``partial``), at most ``rounds``
    times: ``sign_one()`` once per ready presignature (emptying the pools, so the refiller fills
    each to target) and wait again. The last wait, with ``drained`` = the requests signed."""
    def wait() -> PoolWait:
        return wait_warm(status, key_id, timeout_s=timeout_s, settle_s=settle_s, clock=clock, sleep=sleep)

    w, drained = wait(), 0
    for _ in range(rounds):
        if w.state != PARTIAL:
            break
        for _ in range(w.ready):
            sign_one()
        drained += w.ready
        w = wait()
    return replace(w, drained=drained)


def presigned_share(presigned: Sequence[bool]) -> dict[str, Any]:
    """``{"presigned": k, "presigned_share": k / n}`` over a phase's DONE requests (share None
    for none)."""
    k = sum(1 for x in presigned if x)
    return {"presigned": k, "presigned_share": round(k / len(presigned), 3) if presigned else None}
