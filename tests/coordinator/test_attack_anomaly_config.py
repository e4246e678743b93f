"""Attack on the anomaly config (issue 15 review): a window under a millisecond was accepted
(``0 < window_s``) but rounds to a 0 ms window, in which no event is ever counted: detection
silently off while the config says it is on. NaN from a JSON ``NaN`` literal is refused too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator.anomaly import AnomalyConfig, AnomalyDetector
from coordinator.anomaly_config import load_anomaly
from mpcnet.common.config import ConfigError, Fields


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"window_s": 0.0004}, "anomaly.window_s"),
        ({"window_s": 0.5}, "anomaly.window_s"),
        ({"audit_stall_s": 0.0001}, "anomaly.audit_stall_s"),
        ({"window_s": float("nan")}, "anomaly.window_s"),
        ({"burst_factor": float("nan")}, "anomaly.burst_factor"),
        ({"window_s": float("-inf")}, "anomaly.window_s"),
        ({"max_events": 10**30}, "anomaly.max_events"),
    ],
)
def test_a_window_that_counts_nothing_is_a_start_error(tmp_path: Path, section: dict[str, object], field: str) -> None:
    text = json.dumps({"anomaly": section})  # NaN/-Infinity: Python's json writes and reads them
    doc = json.loads(text)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_anomaly(Fields(doc, str(tmp_path / "c.json")))


def test_the_shortest_window_still_detects_a_burst() -> None:
    cfg = AnomalyConfig(window_s=1, burst_min_count=2)
    d = AnomalyDetector(cfg)
    found = [x for t in range(3) for x in d.signed(b"\x07" * 32, [0], [], 1_000_000 + t)]
    assert [x.rule for x in found] == ["key_burst"]
