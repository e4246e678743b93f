"""The coordinator config's ``presign`` section (issue 14): defaults, and a bad value is a start
error naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator import pool_config
from coordinator.pool_config import PresignConfig, load_presign
from crypto_core.sign import MAX_PRESIGN_BATCH
from mpcnet.common.config import ConfigError, Fields


def _load(section: Any) -> PresignConfig:
    return load_presign(Fields({"presign": section}, "coordinator.json"))


def test_absent_section_means_pools_off_with_the_contract_defaults() -> None:
    cfg = load_presign(Fields({}, "coordinator.json"))
    assert cfg == PresignConfig()
    assert (cfg.enabled, cfg.paths, cfg.target, cfg.refill_at, cfg.cap, cfg.batch, cfg.max_parallel) == (
        False, ((),), 16, 8, 32, 16, 1,
    )
    assert _load({}) == PresignConfig()


def test_a_full_section_is_read() -> None:
    cfg = _load({"enabled": True, "paths": [[], [0, 7]], "target": 16, "refill_at": 2, "cap": 40, "batch": 8, "max_parallel": 2})
    assert cfg == PresignConfig(True, ((), (0, 7)), 16, 2, 40, 8, 2)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"enabled": "yes"}, "presign.enabled"),
        ({"paths": []}, "presign.paths"),
        ({"paths": "m/0"}, "presign.paths"),
        ({"paths": [[0], [0]]}, "presign.paths"),
        ({"paths": [["0"]]}, "presign.paths[0]"),
        ({"paths": [[], [2**31]]}, "presign.paths[1]"),
        ({"paths": [[True]]}, "presign.paths[0]"),
        ({"target": 0}, "presign.target"),
        ({"target": 1.5}, "presign.target"),
        ({"refill_at": 16}, "presign.refill_at"),
        ({"refill_at": -1}, "presign.refill_at"),
        ({"cap": 7}, "presign.cap"),
        ({"batch": 0}, "presign.batch"),
        ({"batch": MAX_PRESIGN_BATCH + 1}, "presign.batch"),
        ({"max_parallel": 0}, "presign.max_parallel"),
        ({"max_parallel": 17}, "presign.max_parallel"),
        ({"depth": 3}, "presign.depth"),
    ],
)
def test_a_bad_value_names_the_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(section)
    assert str(e.value).startswith(f"coordinator.json: {field}: ")


def test_the_batch_bound_is_the_crypto_one() -> None:
    """The coordinator may not import crypto_core.sign (secret state); the copy must agree."""
    assert pool_config.MAX_PRESIGN_BATCH == MAX_PRESIGN_BATCH


def test_the_coordinator_config_carries_the_section(tmp_path: Any) -> None:
    import coordinator.config as config

    assert "presign" in config._KEYS
    import dataclasses

    f = {x.name: x for x in dataclasses.fields(config.CoordinatorConfig)}["presign"]
    assert f.default_factory is PresignConfig
