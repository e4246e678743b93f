"""The dev cluster's log format (issue 15): ``mpc-cluster up --log-format text|json`` writes the
servers' ``log_format`` config key (:mod:`mpcnet.common.jsonlog`) into every node and coordinator
config it (re)writes, so the supervisor's restarts keep it, and the supervisor's own log
(``DIR/logs/supervisor.log``) follows the coordinator config's; without the option an existing
cluster keeps the format its configs already name (a new one: ``text``). A log file is appended
to: switching the format of an existing cluster leaves its older lines in the older format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mpcnet.common.jsonlog import LOG_FORMATS


def configured_log_format(config: Path) -> str | None:
    """The ``log_format`` a server config names (None: no such file, unreadable, or no valid value)."""
    try:
        doc = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = doc.get("log_format") if isinstance(doc, dict) else None
    return value if value in LOG_FORMATS else None


def log_format_section(wanted: str | None, config: Path) -> dict[str, Any]:
    """``{"log_format": ...}`` for the config at ``config``: ``wanted`` when given, else the one the
    existing config names, else ``text``. Raises ValueError for a ``wanted`` not in
    :data:`~mpcnet.common.jsonlog.LOG_FORMATS` (the CLI's Choice refuses it first)."""
    if wanted is not None and wanted not in LOG_FORMATS:
        raise ValueError(f"log_format: must be one of {', '.join(LOG_FORMATS)}")
    return {"log_format": wanted or configured_log_format(config) or "text"}


def running_mismatch(wanted: str | None, config: Path) -> str | None:
    """For ``up --log-format`` on a cluster already running: a one-line usage error when its
    config (the coordinator's) names another format (the option would otherwise be ignored
    silently), None when it matches or no format was asked for."""
    have = configured_log_format(config) or "text"
    if wanted is None or wanted == have:
        return None
    return f"--log-format: the cluster is running with {have} logs; 'mpc-cluster stop' it first to switch to {wanted}"
