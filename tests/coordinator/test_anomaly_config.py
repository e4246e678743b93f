"""The coordinator config's ``anomaly`` section (coordinator/anomaly_config.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator.anomaly import AnomalyConfig
from coordinator.anomaly_config import load_anomaly
from mpcnet.common.config import ConfigError, Fields


def fields_of(doc: object, tmp_path: Path) -> Fields:
    (tmp_path / "c.json").write_text(json.dumps(doc))
    return Fields(doc, str(tmp_path / "c.json"))


def test_absent_section_gives_the_defaults(tmp_path: Path) -> None:
    assert load_anomaly(fields_of({}, tmp_path)) == AnomalyConfig()


def test_fields_are_read(tmp_path: Path) -> None:
    cfg = load_anomaly(fields_of({"anomaly": {"window_s": 5, "burst_min_count": 3, "enabled": False}}, tmp_path))
    assert (cfg.window_s, cfg.burst_min_count, cfg.enabled, cfg.max_denied) == (5, 3, False, 5)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"window_s": 0}, "anomaly.window_s"),
        ({"window_s": "60"}, "anomaly.window_s"),
        ({"burst_min_count": 2.5}, "anomaly.burst_min_count"),
        ({"burst_min_count": 0}, "anomaly.burst_min_count"),
        ({"max_denied": -1}, "anomaly.max_denied"),
        ({"max_bans": True}, "anomaly.max_bans"),
        ({"enabled": "yes"}, "anomaly.enabled"),
        ({"burst_factor": 1e999}, "anomaly.burst_factor"),
        ({"bogus": 1}, "anomaly.bogus"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, section: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_anomaly(fields_of({"anomaly": section}, tmp_path))


def test_section_must_be_an_object(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="anomaly"):
        load_anomaly(fields_of({"anomaly": [1]}, tmp_path))
