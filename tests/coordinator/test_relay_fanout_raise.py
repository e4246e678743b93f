"""Review of issue 14's inline last call in coordinator.relay.fanout: when the call on the calling
thread raises something other than a gRPC error (e.g. grpc's ValueError on a channel closed by
a roster or certificate change), fanout still collects the other calls before it raises, as it
did when every call ran on the pool: no call of a fan-out is in flight once it has returned
or raised."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from coordinator.relay import fanout


def test_a_raising_inline_call_waits_for_the_others() -> None:
    finished = threading.Event()

    def slow(req: Any, timeout: float, wait_for_ready: bool) -> Any:
        time.sleep(0.3)
        finished.set()
        return "slow"

    def closed(req: Any, timeout: float, wait_for_ready: bool) -> Any:
        raise ValueError("Cannot invoke RPC on closed channel!")

    with pytest.raises(ValueError, match="closed channel"):
        fanout({1: (slow, "a"), 2: (closed, "b")}, 5.0)
    assert finished.is_set()
