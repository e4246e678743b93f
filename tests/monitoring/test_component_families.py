"""Issue 15 gap: each component exports only the metric families it maintains -- a coordinator
shows no ``mpcnet_store_healthy 0`` (it has no key-share store), a node no request counters --
(tests/monitoring/test_rules.py checks every metric the alert rules and the dashboard select is
exported by some component)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from coordinator.metrics import observe_nodes
from mpcnet.common.metrics import OWNED, Metrics, exported_families

NODE_ONLY = {"mpcnet_store_healthy", "mpcnet_sessions_live", "mpcnet_sessions_aborted", "mpcnet_round_seconds",
             "mpcnet_bans", "mpcnet_presignatures_available"}
COORDINATOR_ONLY = {"mpcnet_requests", "mpcnet_request_seconds", "mpcnet_quorum_to_done_seconds", "mpcnet_keygen_seconds",
                    "mpcnet_signatures", "mpcnet_approvals", "mpcnet_policy_changes", "mpcnet_node_up",
                    "mpcnet_node_clock_skew_seconds", "mpcnet_anomalies", "mpcnet_anomaly_active",
                    "mpcnet_backup_drill_age_seconds"}


def families(text: str) -> dict[str, str]:
    """``{family name: type}`` of an exposition text (counters without ``_total``)."""
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_each_component_exports_only_its_own_families() -> None:
    assert exported_families("coordinator").isdisjoint(NODE_ONLY)
    assert exported_families("node").isdisjoint(COORDINATOR_ONLY)
    assert NODE_ONLY <= exported_families("node") and COORDINATOR_ONLY <= exported_families("coordinator")
    both = exported_families("node") & exported_families("coordinator")
    assert both == {"mpcnet_rpc_denied", "mpcnet_audit_entries", "mpcnet_audit_head_age_seconds",
                    "mpcnet_disk_free_bytes", "mpcnet_build_info"}
    for component in ("coordinator", "node"):
        assert set(families(Metrics(component).render().decode())) <= exported_families(component)


def test_a_coordinator_never_exports_a_store_health_it_does_not_have(tmp_path: Path) -> None:
    m = Metrics("coordinator")
    m.watch_store(lambda: False)  # a caller reaching for a node-only metric: a no-op, nothing exported
    m.store_healthy.set(0)
    m.bans_total.inc()
    m.sessions_live.labels(protocol="sign").set(3)
    text = m.render().decode()
    assert "store_healthy" not in text and "bans" not in text and "sessions_live" not in text
    n = Metrics("node")
    n.requests_total.labels(state="done").inc()
    n.signature("k")
    n.drill_age({"k": 5.0})
    assert not {"mpcnet_requests", "mpcnet_signatures", "mpcnet_backup_drill_age_seconds"} & set(families(n.render().decode()))


def test_unset_gauges_export_no_misleading_zero() -> None:
    """The drill age appears with the first drill age; an unmeasured skew has no sample."""
    m = Metrics("coordinator")
    assert "backup_drill_age" not in m.render().decode()
    m.drill_age({})
    assert "backup_drill_age" not in m.render().decode()
    m.drill_age({"treasury": 12.0})
    m.drill_age({"treasury": 13.0})  # registered once
    assert "mpcnet_backup_drill_age_seconds 13.0" in m.render().decode()
    observe_nodes(m, [type("H", (), {"name": "node-1", "healthy": True, "clock": None})()])
    text = m.render().decode()
    assert 'mpcnet_node_up{node="node-1"} 1.0' in text and "node_clock_skew_seconds{" not in text


def test_every_unlabelled_gauge_a_component_exports_is_set_by_it(tmp_path: Path) -> None:
    """With no wiring, the only unlabelled gauges a component shows are the ones its wiring
    (``watch_*``) reads at scrape time or the constructor sets (build info, the empty pool)."""
    wired = {"node": {"mpcnet_store_healthy", "mpcnet_disk_free_bytes", "mpcnet_audit_head_age_seconds"},
             "coordinator": {"mpcnet_disk_free_bytes", "mpcnet_audit_head_age_seconds"}}
    constant = {"mpcnet_build_info", "mpcnet_presignatures_available"}
    for component in ("coordinator", "node"):
        unlabelled = {
            f.name for f in text_string_to_metric_families(Metrics(component).render().decode())
            if f.type == "gauge" and f.samples and not f.samples[0].labels
        }
        assert unlabelled <= wired[component] | constant, (component, unlabelled)
    assert OWNED["coordinator"] >= {"disk_free_bytes", "audit_head_age_seconds"}
