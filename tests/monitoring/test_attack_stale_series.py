"""Attack on the alerts through stale series (issue 15 review): a gauge series set for a node or a
key that is gone stays in every scrape at its last value, so an alert on it fires for ever.

* A node that went down and was then removed or replaced in the roster kept
  ``mpcnet_node_up{node="node-3"} 0``: ``MpcnetNodeDown`` fired until the coordinator restarted
  (an operator cannot clear it; a compromised admin path is not even needed, a routine replacement
  does it).
* A key retired while its drill was overdue kept ``mpcnet_backup_drill_age_seconds`` at the old
  age: ``MpcnetBackupDrillOverdue`` fired for a key that no longer exists.
"""

from __future__ import annotations

from types import SimpleNamespace

from coordinator.metrics import observe_nodes
from mpcnet.common.metrics import Metrics, NullMetrics


def _node(name: str, healthy: bool | None) -> SimpleNamespace:
    return SimpleNamespace(name=name, healthy=healthy, clock=None)


def test_a_node_gone_from_the_roster_leaves_no_node_up_series() -> None:
    m = Metrics("coordinator")
    observe_nodes(m, [_node("node-1", True), _node("node-2", True), _node("node-3", False)])
    assert 'mpcnet_node_up{node="node-3"} 0.0' in m.render().decode()
    observe_nodes(m, iter([_node("node-1", True), _node("node-2", True), _node("node-4", True)]))  # node-3 replaced
    text = m.render().decode()
    assert 'node="node-3"' not in text
    assert 'mpcnet_node_up{node="node-4"} 1.0' in text and 'mpcnet_node_up{node="node-1"} 1.0' in text
    assert 'mpcnet_node_clock_skew_seconds{node="node-4"}' not in text  # not measured yet: no sample, not 0


def test_observe_nodes_on_null_metrics_does_nothing() -> None:
    observe_nodes(NullMetrics("coordinator"), [_node("node-1", True)])


def test_a_retired_key_leaves_no_drill_age_series() -> None:
    m = Metrics("coordinator", key_labels=True)
    m.drill_age({"treasury": 40 * 86400.0, "ops": 5.0})
    m.drill_age({"ops": 6.0})  # treasury retired
    text = m.render().decode()
    assert 'key="treasury"' not in text and 'mpcnet_backup_drill_age_seconds{key="ops"} 6.0' in text


def test_the_last_overdue_key_retired_removes_the_oldest_drill_age() -> None:
    m = Metrics("coordinator")
    m.drill_age({"treasury": 40 * 86400.0})
    assert "mpcnet_backup_drill_age_seconds 3.456e+06" in m.render().decode()
    m.drill_age({})  # no key left: no sample (as before the first drill), not the retired key's age
    assert "mpcnet_backup_drill_age_seconds" not in m.render().decode()
    m.drill_age({"ops": 5.0})  # a new key drilled: exported again
    assert "mpcnet_backup_drill_age_seconds 5.0" in m.render().decode()
