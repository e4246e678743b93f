"""coordinator.anomaly's windowed counts (bisection over a sorted copy of each subject's events)
against the plain definition: a bounded deque of arrivals, the oldest dropped, a linear count of
lo < t <= hi. Times may arrive out of order (a clock stepping backwards)."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings, strategies as st

from coordinator.anomaly import AnomalyConfig, AnomalyDetector, _Events, _Windows
from tests.test_suite_settings import scaled


class _Plain:
    """The definition the engine used before: deque(maxlen), popleft while too old, a scan."""

    def __init__(self, max_events: int, horizon_ms: int) -> None:
        self.q: deque[int] = deque(maxlen=max_events)
        self.horizon_ms = horizon_ms

    def add(self, now_ms: int) -> None:
        self.q.append(now_ms)
        while self.q and self.q[0] < now_ms - self.horizon_ms:
            self.q.popleft()

    def count(self, lo_ms: int, hi_ms: int) -> int:
        return sum(1 for t in self.q if lo_ms < t <= hi_ms)


times = st.lists(st.integers(min_value=0, max_value=5_000), max_size=120)


@settings(max_examples=scaled(300), deadline=None)
@given(times, st.integers(1, 16), st.integers(1, 2_000), st.lists(st.tuples(st.integers(-10, 5_010), st.integers(-10, 5_010)), max_size=8))
def test_counts_match_the_plain_scan(ts: list[int], max_events: int, horizon_ms: int, ranges: list[tuple[int, int]]) -> None:
    cfg = AnomalyConfig(max_events=max_events)
    w = _Windows(cfg, horizon_ms)
    plain = _Plain(max_events, horizon_ms)
    for t in ts:
        q = w.add("s", t)
        plain.add(t)
        assert list(q.arrivals) == list(plain.q)
        assert q.sorted == sorted(plain.q)
        for lo, hi in [(t - horizon_ms, t), (t - 2 * horizon_ms, t - horizon_ms), *ranges]:
            assert q.count(lo, hi) == plain.count(lo, hi)


def test_an_event_bounded_queue_drops_the_oldest_arrival_not_the_smallest_time() -> None:
    e = _Events(3)
    for t in (50, 10, 40, 30):  # 50 arrived first: it goes, although 10 is smaller
        e.add(t)
    assert list(e.arrivals) == [10, 40, 30]
    assert e.sorted == [10, 30, 40]
    assert e.count(0, 100) == 3
    assert e.count(10, 40) == 2  # lo excluded, hi included
    assert e.count(40, 10) == 0


@settings(max_examples=scaled(100), deadline=None)
@given(st.lists(st.integers(0, 400_000), min_size=1, max_size=60))
def test_the_detector_reports_the_same_as_the_plain_count(ts: list[int]) -> None:
    cfg = AnomalyConfig(window_s=1, baseline_windows=3, burst_min_count=4, burst_factor=1.5, max_events=25)
    d = AnomalyDetector(cfg)
    plain = _Plain(cfg.max_events, cfg.window_ms * (cfg.baseline_windows + 1))
    w = cfg.window_ms
    for t in ts:
        plain.add(t)
        current = plain.count(t - w, t)
        baseline = plain.count(t - w * (cfg.baseline_windows + 1), t - w) / cfg.baseline_windows
        expected = max(float(cfg.burst_min_count), cfg.burst_factor * baseline)
        hit = d.key_burst.observe("k", t)
        assert (hit is not None) == (current > expected)
        if hit is not None:
            assert (hit.observed, hit.expected) == (float(current), expected)
