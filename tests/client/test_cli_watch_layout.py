"""``mpc status --watch``'s layout as a newcomer reads it (issue 15 review): piped snapshots name
their columns, and the live view puts the activity (rates, anomalies) right after the cluster
line so a short terminal, which rich crops at the bottom, still shows it."""

from __future__ import annotations

import io

from rich.console import Console

from mpcnet.client import cli_watch
from mpcnet.client.sdk import NodeState
from mpcnet.wire.mpc.v1 import coordinator_pb2

from .test_cli_watch import FakeEndpoints, _snaps


def test_plain_snapshots_name_the_columns_of_nodes_and_keys() -> None:
    a, b = _snaps(FakeEndpoints())
    lines = cli_watch.plain_lines(a, b)
    nodes = lines.index("Nodes:")
    assert lines[nodes + 1] == "  node  endpoint  health  clock skew  policies"
    assert lines[nodes + 2].startswith("  node-1  localhost:1  up")
    keys = lines.index("Keys (1):")
    assert lines[keys + 1] == "  key  label  status  version (epoch)"
    activity = lines.index("Activity:")
    assert lines[activity + 1].startswith("  live sessions: ")  # key: value rows need no header


def test_the_live_view_shows_activity_before_nodes_and_keys() -> None:
    a, b = _snaps(FakeEndpoints())
    out = io.StringIO()
    Console(file=out, width=120, force_terminal=False).print(cli_watch.rich_view(a, b, 2.0))
    text = out.getvalue()
    assert text.index("Cluster") < text.index("Activity") < text.index("Nodes") < text.index("Keys (1)")
    assert "ACTIVE: key_burst" in text


def test_activity_first_keeps_every_section_once() -> None:
    a, b = _snaps(FakeEndpoints())
    parts = cli_watch.sections(a, b)
    moved = cli_watch.activity_first(parts)
    assert [s.title for s in moved] == ["Cluster", "Activity", "Nodes", "Keys (1)"]
    assert sorted(s.title for s in moved) == sorted(s.title for s in parts)


def test_a_tiny_negative_skew_is_shown_as_plus_zero() -> None:
    def clock(skew_ms: int) -> str:
        st = coordinator_pb2.ClusterStatusResponse()
        raw = st.nodes.add(index=1, name="node-1", clock_measured=True, clock_skew_ms=skew_ms, max_clock_skew_ms=30000)
        return cli_watch._clock(NodeState.from_proto(raw))

    assert clock(-40) == "+0.0s" and clock(40) == "+0.0s"
    assert clock(-60) == "-0.1s" and clock(1500) == "+1.5s"
