"""coordinator.relay.fanout: every call is issued (the last on the calling thread, the others on
the pool, all at once), answers and gRPC errors come back keyed by node in the calls' order, and
the timeout / wait_for_ready reach every call."""

from __future__ import annotations

import threading
from typing import Any

import grpc

from coordinator.relay import fanout


class _Err(grpc.RpcError):
    pass


def test_answers_errors_threads_and_order() -> None:
    seen: dict[int, tuple[str, Any, Any]] = {}
    both = threading.Barrier(3, timeout=5)  # three calls at once: none waits for another to finish

    def method(i: int, fail: bool = False) -> Any:
        def call(req: Any, timeout: float, wait_for_ready: bool) -> Any:
            seen[i] = (threading.current_thread().name, timeout, wait_for_ready)
            both.wait()
            if fail:
                raise _Err()
            return f"answer-{i}-{req}"

        return call

    caller = threading.current_thread().name
    ok, errs = fanout({3: (method(3), "a"), 1: (method(1, fail=True), "b"), 2: (method(2), "c")}, 7.0, wait_for_ready=True)
    assert list(ok) == [3, 2] and ok == {3: "answer-3-a", 2: "answer-2-c"}
    assert list(errs) == [1] and isinstance(errs[1], _Err)
    assert seen[2][0] == caller and seen[3][0] != caller and seen[1][0] != caller
    assert {v[1:] for v in seen.values()} == {(7.0, True)}


def test_no_calls() -> None:
    assert fanout({}, 1.0) == ({}, {})
