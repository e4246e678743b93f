"""The coordinator config's ``"anomaly"`` section: thresholds of :mod:`coordinator.anomaly`.

Example (every field optional; absent section: the defaults of
:class:`coordinator.anomaly.AnomalyConfig`)::

    "anomaly": {"window_s": 60, "baseline_windows": 10, "burst_min_count": 20, "burst_factor": 5,
                "requester_min_count": 30, "requester_factor": 5, "max_rejections": 3,
                "max_denied": 5, "max_aborts": 2, "max_bans": 0, "audit_stall_s": 120,
                "max_subjects": 1024, "max_events": 4096, "max_paths": 1024, "enabled": true}

Errors: :class:`mpcnet.common.config.ConfigError` naming the field (``anomaly.window_s: ...``).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from coordinator.anomaly import AnomalyConfig
from mpcnet.common.config import ConfigError, Fields

KEY = "anomaly"


def load_anomaly(f: Fields) -> AnomalyConfig:
    """The ``anomaly`` section of the coordinator config ``f`` (defaults when absent)."""
    if f.doc.get(KEY) is None:
        return AnomalyConfig()
    sect = f.obj(KEY)
    names = {x.name for x in fields(AnomalyConfig)}
    sect.extra_keys(names)
    values: dict[str, Any] = {name: sect.doc[name] for name in names & set(sect.doc)}
    try:
        return AnomalyConfig(**values)
    except ValueError as e:
        raise ConfigError(f"{f.where}: {KEY}.{e}") from None
