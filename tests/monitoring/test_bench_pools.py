"""``scripts/bench_cluster.py --warm`` waits for full presignature pools (issue 14;
mpcnet.cluster.bench_pools), with a fake ClusterStatus and clock: warm at target with nothing
filling, "pools disabled" at once, "pools empty" after the timeout, "partial" once a pool has
settled below target (the refiller tops up only at refill_at), and the sequential phase's
``min_ready`` does not wait for a top-up that will not come."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mpcnet.client.pools import PoolView, PresignStatus
from mpcnet.cluster.bench_pools import DISABLED, EMPTY, PARTIAL, WARM, PoolWait, presigned_share, wait_warm

KID, OTHER = b"\x01" * 32, b"\x02" * 32


def pool(ready: int, *, filling: int = 0, assigned: int = 0, key: bytes = KID, signers: tuple[int, ...] = (1, 2)) -> PoolView:
    return PoolView(key, 0, (), signers, ready, assigned, filling, 8, 4, 32)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def run(states: list[PresignStatus], **kw: object) -> PoolWait:
    clock = Clock()
    it: Iterator[PresignStatus] = iter(states)
    last = [states[0]]

    def status() -> PresignStatus:
        last[0] = next(it, last[0])  # the last state stays
        return last[0]

    return wait_warm(status, KID, clock=clock, sleep=clock.sleep, poll_s=0.5, **kw)  # type: ignore[arg-type]


def test_warm_once_every_pool_of_the_key_is_at_target_and_idle() -> None:
    filling = PresignStatus(True, (pool(4, filling=4), pool(8, signers=(2, 3)), pool(0, key=OTHER)))
    full = PresignStatus(True, (pool(8), pool(8, signers=(2, 3)), pool(0, key=OTHER)))
    w = run([filling, filling, full])
    assert (w.state, w.pools, w.ready, w.target) == (WARM, 2, 16, 16) and w.waited_s == 1.0
    assert w.as_dict()["note"] == "pools full"


def test_disabled_at_once_and_empty_after_the_timeout() -> None:
    w = run([PresignStatus(False, ())])
    assert w.state == DISABLED and w.waited_s == 0.0 and "pools disabled" in w.note
    w = run([PresignStatus(True, ())], timeout_s=5.0)
    assert w.state == EMPTY and w.waited_s >= 5.0 and "pools empty" in w.note


def test_partial_once_a_pool_settles_below_target() -> None:
    w = run([PresignStatus(True, (pool(6),))], settle_s=2.0)
    assert w.state == PARTIAL and w.ready == 6 and 2.0 <= w.waited_s <= 2.5
    busy = PresignStatus(True, (pool(6, filling=2),))
    w = run([busy], settle_s=2.0, timeout_s=10.0)  # a session under way: no settling, the timeout ends it
    assert w.state == PARTIAL and w.waited_s >= 10.0


def test_min_ready_returns_without_waiting_for_a_top_up() -> None:
    w = run([PresignStatus(True, (pool(5, assigned=1),)), PresignStatus(True, (pool(5),))], min_ready=1)
    assert w.state == PARTIAL and w.waited_s == 0.5
    assert run([PresignStatus(True, (pool(8),))], min_ready=1).state == WARM


def test_presigned_share() -> None:
    assert presigned_share([True, False, True, True]) == {"presigned": 3, "presigned_share": 0.75}
    assert presigned_share([]) == {"presigned": 0, "presigned_share": None}


def _bench_cluster() -> Any:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "bench_cluster.py"
    spec = importlib.util.spec_from_file_location("bench_cluster", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_report_says_how_the_pools_stood() -> None:
    bench = _bench_cluster()
    warm = PoolWait(WARM, 3, 24, 24, 1.5).as_dict()
    phases = [("sign (sequential)", {"pools_at_start": warm}), ("sign @ concurrency 4", {"presigned_share": 0.5})]
    assert bench.pool_text({"config": {"presign_enabled": False}}, phases).startswith("pools disabled")
    text = bench.pool_text({"config": {"presign_enabled": True}}, phases)
    assert text == "enabled; sign (sequential): pools full (24 ready of 24)"
    assert bench.pool_text({"config": {"presign_enabled": True}}, phases[1:]).startswith("enabled; not waited for")
    assert bench.share_text({"presigned_share": 0.5}) == "50%" and bench.share_text({"presigned_share": None}) == "-"


def test_the_report_says_when_a_phase_outran_its_pools() -> None:
    bench = _bench_cluster()
    warm = PoolWait(WARM, 3, 32, 32, 1.5).as_dict()
    phases = [("sign @ concurrency 16", {"n": 32, "pools_at_start": warm}), ("sign @ concurrency 64", {"n": 64, "pools_at_start": warm}),
              ("sign (sequential)", {"n": 100})]
    assert bench.refill_notes(phases) == [
        "sign @ concurrency 64: 64 signatures on 32 ready presignatures: the pools were refilled during the phase "
        "(presign sessions on the nodes), and its figures include that",
    ]


def test_fill_to_target_empties_a_settled_pool_so_it_refills() -> None:
    from mpcnet.cluster.bench_pools import fill_to_target

    clock = Clock()
    ready = [6]  # a pool left between refill_at (4) and target (8): the refiller will not top it up

    def status() -> PresignStatus:
        return PresignStatus(True, (pool(ready[0]),))

    def sign_one() -> None:
        ready[0] -= 1
        if ready[0] <= 4:  # the refiller: back to target once it fell to refill_at
            ready[0] = 8 if ready[0] == 0 else ready[0]

    w = fill_to_target(status, KID, sign_one, settle_s=1.0, clock=clock, sleep=clock.sleep)
    assert w.state == WARM and w.drained == 6 and w.ready == 8
    off = fill_to_target(lambda: PresignStatus(False, ()), KID, sign_one, clock=clock, sleep=clock.sleep)
    assert off.state == DISABLED and off.drained == 0
    stuck = [0]
    w = fill_to_target(lambda: PresignStatus(True, (pool(6),)), KID, lambda: stuck.__setitem__(0, stuck[0] + 1), rounds=2,
                       settle_s=1.0, clock=clock, sleep=clock.sleep)
    assert w.state == PARTIAL and w.drained == 12 == stuck[0]  # bounded: two rounds, then it says partial
