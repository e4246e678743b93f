"""The anomaly windows do not follow the coordinator's wall clock (p16).

``AnomalyMonitor`` read ``time.time_ns()``: a step forward of a day emptied every window (a burst
straddling the step went unseen, and a repeat detection was no longer suppressed), a step back
kept a detection active (``mpcnet_anomaly_active``) for a whole day. Its default clock is now
monotonic; the engine (coordinator/anomaly.py) only takes differences. The signing's start time
handed to ``signed`` is read from the same clock."""

from __future__ import annotations

import time

import pytest

from coordinator.anomaly import AnomalyConfig
from coordinator.anomaly_hook import AnomalyMonitor

KEY = bytes.fromhex("ab" * 32)
DAY_NS = 86_400 * 10**9


class Clocks:
    """A stepped wall clock and a settable monotonic clock, both in ns, patched into ``time``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall, self.mono = 1_750_000_000 * 10**9, 5_000 * 10**9
        monkeypatch.setattr(time, "time_ns", lambda: self.wall)
        monkeypatch.setattr(time, "monotonic_ns", lambda: self.mono)

    def wait_s(self, s: float) -> None:
        self.wall += round(s * 1e9)
        self.mono += round(s * 1e9)


def test_a_burst_straddling_a_step_forward_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = Clocks(monkeypatch)
    mon = AnomalyMonitor(AnomalyConfig(burst_min_count=3, window_s=60), None, "coordinator")
    for _ in range(3):
        assert mon.signed(KEY, (0,), ["node-1"]) == []
        clocks.wait_s(1)
    clocks.wall += DAY_NS
    [hit] = mon.signed(KEY, (0,), ["node-1"])
    assert hit.rule == "key_burst" and hit.observed == 4


def test_a_step_back_keeps_no_detection_active_and_repeats_stay_suppressed(monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = Clocks(monkeypatch)
    mon = AnomalyMonitor(AnomalyConfig(max_denied=0, window_s=60), None, "coordinator")
    [hit] = mon.rpc_denied("mallory")
    assert hit.rule == "denied_calls"
    clocks.wall += DAY_NS
    assert mon.rpc_denied("mallory") == []  # the same window: not reported twice
    clocks.wall -= 2 * DAY_NS
    clocks.wait_s(61)
    assert mon.engine.active(mon.clock()).get("denied_calls", 0) == 0
    [again] = mon.rpc_denied("mallory")  # a new window: reported again
    assert again.rule == "denied_calls"
