"""coordinator.sign_workers: a job runs on an idle worker when there is one (no new thread), on a
new thread when every worker is busy (never queued behind a long signing), at most max_idle stay
idle, idle workers end after idle_s, a job that raises does not kill its worker, and concurrent
submits each run exactly once."""

from __future__ import annotations

import threading
import time

from coordinator.sign_workers import SignWorkers


def _until(cond: object, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.005)
    return False


def test_an_idle_worker_takes_the_next_job_without_a_new_thread() -> None:
    w = SignWorkers(max_idle=2, idle_s=5.0)
    ran: list[tuple[str, str]] = []
    done = threading.Event()

    def job(rid: str) -> None:
        ran.append((rid, threading.current_thread().name))
        done.set()

    w.submit(job, "req-aaaaaaaaaaaaaaaaaaaa")
    assert done.wait(5) and _until(lambda: w.idle == 1)
    done.clear()
    w.submit(job, "req-b")
    assert done.wait(5)
    assert w.started == 1
    assert ran == [("req-aaaaaaaaaaaaaaaaaaaa", "sign-req-aaaaaaaaaaaa"), ("req-b", "sign-req-b")]
    assert _until(lambda: w.idle == 1)


def test_submit_returns_once_the_worker_took_the_job() -> None:
    w = SignWorkers(max_idle=1, idle_s=5.0)
    first = threading.Event()
    w.submit(lambda rid: first.set(), "req-1")
    assert first.wait(5) and _until(lambda: w.idle == 1)
    release = threading.Event()
    w.submit(lambda rid: release.wait(5), "req-2")
    assert w._jobs.empty()  # the worker had taken the job off the queue when submit returned
    release.set()


def test_busy_workers_never_delay_a_job() -> None:
    w = SignWorkers(max_idle=1, idle_s=5.0)
    release = threading.Event()
    quick = threading.Event()
    w.submit(lambda rid: release.wait(5), "req-slow")
    w.submit(lambda rid: quick.set(), "req-quick")
    assert quick.wait(5)  # ran while the first still blocks
    assert w.started == 2
    release.set()
    assert _until(lambda: w.idle == 1)  # one stays idle, the other ended (max_idle=1)


def test_idle_workers_end_and_a_failing_job_keeps_its_worker() -> None:
    w = SignWorkers(max_idle=4, idle_s=0.05)
    seen = threading.Event()

    def boom(rid: str) -> None:
        raise RuntimeError("job failed")

    w.submit(boom, "req-x")
    assert _until(lambda: w.idle == 1)
    w.submit(lambda rid: seen.set(), "req-y")
    assert seen.wait(5) and w.started == 1
    assert _until(lambda: w.idle == 0)  # idle longer than idle_s: ended


def test_concurrent_submits_each_run_once() -> None:
    w = SignWorkers(max_idle=3, idle_s=0.01)  # short idle: timeouts race with submits
    lock = threading.Lock()
    counts: dict[str, int] = {}

    def job(rid: str) -> None:
        with lock:
            counts[rid] = counts.get(rid, 0) + 1

    def submitter(k: int) -> None:
        for j in range(100):
            w.submit(job, f"req-{k}-{j}")
            if j % 10 == 0:
                time.sleep(0.012)

    ts = [threading.Thread(target=submitter, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert _until(lambda: len(counts) == 400)
    assert set(counts.values()) == {1}
    assert _until(lambda: w.idle == 0, timeout=10)
