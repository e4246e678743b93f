"""Presignature pools in the dev cluster (issue 14; README "Presignature pools"): ``mpc-cluster up``
writes the coordinator config's ``presign`` section with pools **on** (:data:`DEFAULT_PRESIGN`,
the contract's defaults), ``--no-presign`` writes it with ``enabled: false`` (every request then
runs the full four-round protocol), and without either option an existing cluster keeps what its
coordinator config says (a new one: on). The coordinator validates the section (a bad value is a
start error naming the field); the nodes need nothing (their own cap,
``max_presignatures_per_key``, defaults to 64).

A coordinator that does not read a ``presign`` section (an older tree: it refuses unknown config
fields) gets none: :func:`coordinator_reads_presign` looks for its pool module, so the launcher of
one checkout always writes a config its own coordinator starts with.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

DEFAULT_PRESIGN: dict[str, Any] = {
    "enabled": True,
    "paths": [[]],  # derivation paths kept per key ([] = the master key)
    "target": 16,  # refilled up to this many ready presignatures per pool ...
    "refill_at": 8,  # ... when ready falls to this
    "cap": 32,  # never more than this (ready + assigned + filling) per pool
    "batch": 16,  # presignatures per presign session (a node's max_presign_batch defaults to 16)
    "max_parallel": 1,  # presign sessions at once (signing always goes first)
}
"""The coordinator's ``presign`` section in a dev cluster (the contract's defaults, pools on)."""

POOL_MODULE = "coordinator.pool"
"""The coordinator module that keeps pools: its presence means the coordinator reads ``presign``."""


def coordinator_reads_presign() -> bool:
    """Whether this checkout's coordinator reads a ``presign`` config section (has
    :data:`POOL_MODULE`; the module is located, not imported)."""
    try:
        return importlib.util.find_spec(POOL_MODULE) is not None
    except (ImportError, ValueError):
        return False


def configured_presign(config: Path) -> bool | None:
    """``presign.enabled`` of an existing coordinator config (None: no such file, unreadable, no
    section or no boolean value)."""
    try:
        doc = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    section = doc.get("presign") if isinstance(doc, dict) else None
    value = section.get("enabled") if isinstance(section, dict) else None
    return value if isinstance(value, bool) else None


def presign_section(wanted: bool | None, config: Path, *, supported: bool | None = None) -> dict[str, Any]:
    """``{"presign": {...}}`` for the coordinator config at ``config``: :data:`DEFAULT_PRESIGN`
    with ``enabled`` = ``wanted`` when given, else what the existing config says, else True; the
    other fields of an existing section are kept (an operator's tuning survives ``up``). Empty
    when the coordinator does not read the section (``supported``; None: ask
    :func:`coordinator_reads_presign`)."""
    if not (coordinator_reads_presign() if supported is None else supported):
        return {}
    section = dict(DEFAULT_PRESIGN)
    try:
        old = json.loads(config.read_text(encoding="utf-8")).get("presign")
    except (OSError, ValueError, AttributeError):
        old = None
    if isinstance(old, dict):
        section.update({k: v for k, v in old.items() if k in DEFAULT_PRESIGN})
    enabled = wanted if wanted is not None else configured_presign(config)
    section["enabled"] = True if enabled is None else enabled
    return {"presign": section}


def running_mismatch(wanted: bool | None, config: Path) -> str | None:
    """For ``up --presign/--no-presign`` on a cluster already running: a one-line usage error when
    its coordinator config says otherwise (the option would be ignored silently), else None."""
    if wanted is None:
        return None
    have = configured_presign(config)
    have_on = bool(have) if have is not None else False
    if have_on == wanted:
        return None
    now, asked = ("on", "--no-presign") if have_on else ("off", "--presign")
    return f"{asked}: the cluster is running with presignature pools {now}; 'mpc-cluster stop' it first to switch"
