"""mpcnet.common.metrics: the names of design.md, a private registry per process, NullMetrics,
the HTTP endpoint, the config section and the bounded label values."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path

import pytest

from mpcnet.common.config import ConfigError, Fields
from mpcnet.common.metrics import (
    Metrics,
    MetricsSettings,
    NullMetrics,
    load_metrics_settings,
    make_metrics,
    reason_class,
    role_label,
)

DESIGN_NAMES = {
    "mpcnet_requests_total", "mpcnet_request_seconds", "mpcnet_quorum_to_done_seconds", "mpcnet_keygen_seconds",
    "mpcnet_signatures_total", "mpcnet_approvals_total", "mpcnet_policy_changes_total", "mpcnet_node_up",
    "mpcnet_node_clock_skew_seconds", "mpcnet_anomalies_total", "mpcnet_anomaly_active", "mpcnet_backup_drill_age_seconds",
    "mpcnet_sessions_live", "mpcnet_sessions_aborted_total", "mpcnet_round_seconds", "mpcnet_bans_total",
    "mpcnet_presignatures_available", "mpcnet_store_healthy", "mpcnet_rpc_denied_total", "mpcnet_audit_entries_total",
    "mpcnet_audit_head_age_seconds", "mpcnet_disk_free_bytes", "mpcnet_build_info",
}


def _touch_all(m: Metrics) -> None:
    m.requests_total.labels(state="done").inc()
    m.approvals_total.labels(outcome="approve").inc()
    m.node_up.labels(node="node-1").set(1)
    m.node_clock_skew_seconds.labels(node="node-1").set(0.5)
    m.anomalies_total.labels(rule="key_burst").inc()
    m.anomaly_active.labels(rule="key_burst").set(1)
    m.sessions_live.labels(protocol="sign").set(0)
    m.sessions_aborted_total.labels(protocol="sign", reason="ban").inc()
    m.round_seconds.labels(protocol="sign", round="1").observe(0.01)
    m.denied("requester", "CreateKey")
    m.signature("my-key")
    m.drill_age({"my-key": 5.0})


def test_every_design_name_is_exposed(tmp_path: Path) -> None:
    text = ""
    for component in ("coordinator", "node"):  # each exports only what it maintains; together all
        m = Metrics(component)
        _touch_all(m)
        m.watch_audit(lambda: (7, 1_000), lambda: 3_000)
        m.watch_disk(tmp_path)
        m.watch_store(lambda: True)
        text += m.render().decode()
    missing = [n for n in DESIGN_NAMES if not re.search(rf"^{n}(_count|_bucket)?[{{ ]", text, re.M)]
    assert not missing, missing
    assert "mpcnet_audit_entries_total 7.0" in text
    assert "mpcnet_audit_head_age_seconds 2.0" in text
    assert "mpcnet_store_healthy 1.0" in text
    assert "_created" not in text  # one sample per counter
    assert 'mpcnet_rpc_denied_total{method="CreateKey",role="requester"} 1.0' in text
    assert "my-key" not in text  # key labels are off by default
    assert "mpcnet_signatures_total 1.0" in text and "mpcnet_backup_drill_age_seconds 5.0" in text


def test_key_labels_only_when_opted_in() -> None:
    m = Metrics("coordinator", key_labels=True)
    m.signature("treasury")
    m.drill_age({"treasury": 9.0, "ops": 2.0})
    text = m.render().decode()
    assert 'mpcnet_signatures_total{key="treasury"} 1.0' in text
    assert 'mpcnet_backup_drill_age_seconds{key="ops"} 2.0' in text
    m.signature('evil"} 1\nmpcnet_x{a="')  # caller text never reaches a label value
    m.signature("x" * 65)
    assert 'mpcnet_signatures_total{key="other"} 2.0' in m.render().decode()


def test_registries_are_private() -> None:
    a, b = Metrics("node"), Metrics("node")
    a.bans_total.inc()
    assert "mpcnet_bans_total 1.0" in a.render().decode()
    assert "mpcnet_bans_total 0.0" in b.render().decode()


def test_store_and_audit_readings_survive_failures() -> None:
    m = Metrics("node")

    def broken() -> tuple[int, int] | None:
        raise RuntimeError("closed")

    def failing() -> bool:
        raise OSError("disk")

    m.watch_audit(broken, lambda: 0)
    m.watch_store(failing)
    text = m.render().decode()
    assert "mpcnet_store_healthy 0.0" in text
    assert "mpcnet_audit_entries_total" not in text.replace("# HELP mpcnet_audit_entries_total", "")


def test_bounded_label_helpers() -> None:
    assert role_label("admin") == "admin"
    assert role_label("x\nevil") == "other" and role_label(None) == "other"
    assert reason_class("ban") == "ban" and reason_class("anything else") == "internal"
    for used in ("ban", "protocol", "timeout", "coordinator", "internal"):  # what mpc_node counts
        assert reason_class(used) == used


def test_null_metrics_accept_every_call_and_render_nothing() -> None:
    n = NullMetrics("coordinator")
    _touch_all(n)
    n.watch_audit(lambda: None, lambda: 0)
    with n.keygen_seconds.time():
        pass
    assert n.render() == b""
    assert not n.enabled and Metrics("node").enabled
    with pytest.raises(OSError, match="not enabled"):
        n.serve("127.0.0.1:0")
    assert isinstance(make_metrics("node", None), NullMetrics)
    assert type(make_metrics("node", MetricsSettings("127.0.0.1:0"))) is Metrics


def test_serve_over_http_and_stop() -> None:
    m = Metrics("node")
    m.bans_total.inc()
    port = m.serve("127.0.0.1:0")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"mpcnet_bans_total 1.0" in r.read()
    finally:
        m.stop()
    m.stop()  # idempotent


def test_serve_names_the_config_field_when_the_port_is_taken() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match=rf"metrics\.listen: cannot bind 127\.0\.0\.1:{port}"):
            Metrics("node").serve(f"127.0.0.1:{port}")


def test_unknown_component_is_refused() -> None:
    with pytest.raises(ValueError, match="component"):
        Metrics("relay")


def _fields(doc: object) -> Fields:
    return Fields({"metrics": doc}, "cfg.json")


def test_config_section() -> None:
    assert load_metrics_settings(Fields({}, "cfg.json")) is None
    assert load_metrics_settings(_fields(None)) is None
    assert load_metrics_settings(_fields({"listen": "127.0.0.1:9101"})) == MetricsSettings("127.0.0.1:9101", False)
    assert load_metrics_settings(_fields({"listen": "0.0.0.0:0", "key_labels": True})) == MetricsSettings("0.0.0.0:0", True)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({}, "metrics.listen: missing"),
        ({"listen": "nope"}, "metrics.listen: must be HOST:PORT"),
        ({"listen": "127.0.0.1:1", "key_labels": "yes"}, "metrics.key_labels: must be true or false"),
        ({"listen": "127.0.0.1:1", "port": 3}, "metrics.port: unknown field"),
        ([1], "metrics: must be a JSON object"),
    ],
)
def test_config_section_errors_name_the_field(doc: object, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_metrics_settings(_fields(doc))


def test_node_and_coordinator_configs_accept_the_section(tmp_path: Path) -> None:
    from coordinator.config import _KEYS as COORDINATOR_KEYS
    from mpc_node.config import _KEYS as NODE_KEYS

    assert "metrics" in NODE_KEYS and "metrics" in COORDINATOR_KEYS
    json.dumps({"metrics": {"listen": "127.0.0.1:9101", "key_labels": False}})  # the documented shape
