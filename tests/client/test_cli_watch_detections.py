"""``mpc status --watch`` names an anomaly rule detected between two refreshes even when the
coordinator's ``mpcnet_anomaly_active`` gauge is already back at 0 (a rule's window shorter than
the watch's interval): it compares ``mpcnet_anomalies_total`` between snapshots."""

from __future__ import annotations

from mpcnet.client.cli_watch import Scrape, Snapshot, new_detections, plain_lines, scrape, snapshot_doc

PAGE = """# TYPE mpcnet_anomalies counter
mpcnet_anomalies_total{rule="key_burst"} %d
mpcnet_anomalies_total{rule="denied_calls"} 2
# TYPE mpcnet_anomaly_active gauge
mpcnet_anomaly_active{rule="key_burst"} 0
mpcnet_anomaly_active{rule="denied_calls"} 0
"""


def snap(at: float, key_burst: int) -> Snapshot:
    m = scrape({"coordinator": "c:9100"}, lambda ep, t: (PAGE % key_burst).encode(), 1.0)
    return Snapshot(at=at, wall=1_800_000_000.0 + at, status=None, error="unavailable", metrics=m)


def test_a_detection_between_refreshes_is_shown_though_the_gauge_is_0() -> None:
    a, b, c = snap(0, 0), snap(2, 1), snap(4, 1)
    assert b.metrics.anomalies == () and b.metrics.detections == {"key_burst": 1.0, "denied_calls": 2.0}
    assert new_detections(a, b) == ("key_burst",)
    assert "  detected: since the last refresh: key_burst" in plain_lines(a, b)
    assert snapshot_doc(a, b)["anomalies_detected"] == ["key_burst"]
    assert new_detections(b, c) == () and not any("detected:" in line for line in plain_lines(b, c))
    assert new_detections(None, a) == ()  # the first snapshot has nothing to compare with


def test_a_restarted_coordinator_counts_from_zero_and_missing_counts_give_nothing() -> None:
    before = snap(0, 5)
    assert new_detections(before, snap(2, 1)) == ("key_burst",)  # 5 -> 1: a restart, then one detection
    assert new_detections(before, snap(2, 0)) == ()
    bare = Snapshot(at=2, wall=1.0, status=None, metrics=Scrape())
    assert new_detections(before, bare) == () and new_detections(bare, before) == ()


def test_rule_names_are_escaped() -> None:
    page = 'mpcnet_anomalies_total{rule="\x1b[31mx"} 1\n'
    m = scrape({"coordinator": "c:9100"}, lambda ep, t: page.encode(), 1.0)
    assert m.detections is not None and len(m.detections) == 1
    assert all("\x1b" not in r and "x" in r for r in m.detections)
