"""README's "Monitoring" section (issue 15), read as a newcomer does: its commands exist with
their options, and what it lists (metrics per process, alerts, anomaly rules and their default
thresholds) is what the code exports, evaluates and defaults to. ``scripts/demo-monitoring``
itself runs in tests/integration/test_demo_monitoring.py."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from coordinator.anomaly import RULES, AnomalyConfig
from mpcnet.common.metrics import exported_families

from ..readme_commands import check_line, command_lines, section

TITLE = "## Monitoring"
TEXT = section(TITLE)
LINES = command_lines(TITLE)
ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "alerts.yml"


def _family(name: str) -> str:
    """A metric name as prometheus_client names its family (a counter without ``_total``)."""
    return name.removesuffix("_total")


def test_the_section_shows_the_demo_prometheus_and_the_watch() -> None:
    assert "scripts/demo-monitoring" in TEXT
    joined = "\n".join(LINES)
    for needed in ("mpc-cluster up ", "mpc-cluster prometheus ", " status --watch", " audit export "):
        assert needed in joined, needed


@pytest.mark.parametrize("line", LINES)
def test_each_readme_command_exists_with_its_options(line: str) -> None:
    check_line(line)


def test_the_metrics_table_lists_what_each_process_exports() -> None:
    rows = {m.group(1): set(re.findall(r"`(mpcnet_[a-z_]+)", m.group(2)))
            for m in re.finditer(r"^\| (coordinator|node|both) \| (.*) \|$", TEXT, flags=re.M)}
    assert set(rows) == {"coordinator", "node", "both"}
    for component in ("coordinator", "node"):
        listed = {_family(n) for n in rows[component] | rows["both"]}
        assert listed == set(exported_families(component)), component
    assert not rows["both"] & (rows["coordinator"] | rows["node"])


def test_every_metric_named_in_the_section_is_exported() -> None:
    exported = exported_families("coordinator") | exported_families("node")
    named = {_family(n) for n in re.findall(r"\b(mpcnet_[a-z_]*[a-z])\b", TEXT)}
    assert named <= exported, named - exported


def test_the_alert_list_is_the_rules_file() -> None:
    in_rules = set(re.findall(r"^\s*- alert: (\w+)\s*$", ALERTS.read_text(), flags=re.M))
    in_readme = set(re.findall(r"`(Mpcnet[A-Za-z]+)`", TEXT))
    assert in_rules and in_readme == in_rules


def test_the_anomaly_rules_and_defaults_are_the_codes() -> None:
    for rule in RULES:
        assert f"`{rule}`" in TEXT, rule
    defaults = dataclasses.asdict(AnomalyConfig())
    stated = re.findall(r"`([a-z_]+)` (\d+(?:\.\d+)?)", TEXT)  # "`burst_min_count` 20"
    assert len(stated) >= 8
    for name, value in stated:
        assert name in defaults, name
        assert float(defaults[name]) == float(value), (name, value, defaults[name])
    for name, value in re.findall(r"`([a-z_]+_s)`, (\d+) s", TEXT):  # "`window_s`, 60 s"
        assert float(defaults[name]) == float(value), (name, value)
