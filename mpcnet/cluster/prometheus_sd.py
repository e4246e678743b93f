"""Prometheus file-based service discovery for a local cluster's metrics endpoints (issue 15).

``mpc-cluster up`` writes every process's metrics endpoint into ``DIR/cluster.json`` as
``"metrics": {"coordinator": "localhost:P", "node-1": "localhost:Q", ...}``. Prometheus cannot
read that document, so this module turns it into a ``file_sd_configs`` target file (a JSON list of
``{"targets": ["host:port"], "labels": {...}}`` groups), one group per process, labelled
``job`` = ``mpcnet-coordinator`` | ``mpcnet-node`` and ``process`` = its name:

    python -m mpcnet.cluster.prometheus_sd DIR OUT.json

writes ``OUT.json`` atomically (Prometheus re-reads it when it changes; run it again after
``mpc-cluster up`` picked new ports). ``deploy/monitoring/prometheus.yml`` reads such files.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from governance.text import escape
from mpcnet.common.fsutil import write_atomic

_NAME = re.compile(r"coordinator|node-[1-9][0-9]{0,3}")
_ENDPOINT = re.compile(r"[A-Za-z0-9.-]{1,253}:[0-9]{1,5}|\[[0-9A-Fa-f:.]{2,45}\]:[0-9]{1,5}")


def file_sd_groups(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The target groups of ``info`` (a parsed cluster.json) for Prometheus's file_sd.

    Returns ``[{"targets": ["host:port"], "labels": {"job": ..., "process": name}}, ...]``, the
    coordinator first, then the nodes by index. Raises ``ValueError`` naming the field when
    ``info["metrics"]`` is missing (a cluster started without metrics) or holds a name or an
    endpoint that is not ``coordinator``/``node-N`` and ``host:port`` (port 1-65535).
    """
    metrics = info.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError("cluster.json: field 'metrics' is missing or empty (start the cluster with metrics)")
    groups: list[tuple[tuple[int, int], dict[str, Any]]] = []
    for name, endpoint in metrics.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError("cluster.json: field 'metrics' has a name that is not 'coordinator' or 'node-N'")
        if not isinstance(endpoint, str) or not _ENDPOINT.fullmatch(endpoint):
            raise ValueError(f"cluster.json: field 'metrics.{name}' is not host:port")
        if not 1 <= int(endpoint.rsplit(":", 1)[1]) <= 65535:
            raise ValueError(f"cluster.json: field 'metrics.{name}' has a port outside 1-65535")
        job = "mpcnet-coordinator" if name == "coordinator" else "mpcnet-node"
        order = (0, 0) if name == "coordinator" else (1, int(name.removeprefix("node-")))
        groups.append((order, {"targets": [endpoint], "labels": {"job": job, "process": name}}))
    return [g for _, g in sorted(groups, key=lambda og: og[0])]


def write_file_sd(cluster_dir: Path, out: Path) -> list[dict[str, Any]]:
    """Read ``cluster_dir/cluster.json`` and write its target groups to ``out`` atomically.

    Returns the groups written. Raises ``OSError`` when cluster.json cannot be read,
    ``ValueError`` (see :func:`file_sd_groups`) when it is not valid JSON or has no usable
    ``metrics`` section; ``out`` is then left as it was.
    """
    try:
        info = json.loads((cluster_dir / "cluster.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"cluster.json is not valid JSON (line {e.lineno})") from None
    if not isinstance(info, dict):
        raise ValueError("cluster.json is not a JSON object")
    groups = file_sd_groups(info)
    write_atomic(out, (json.dumps(groups, indent=2) + "\n").encode(), mode=0o644)  # Prometheus may run as another user
    return groups


def main(argv: list[str] | None = None) -> int:
    """``python -m mpcnet.cluster.prometheus_sd DIR OUT.json``: exit 0 written, 2 usage or bad input."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m mpcnet.cluster.prometheus_sd CLUSTER_DIR OUT.json", file=sys.stderr)
        return 2
    out = Path(args[1])
    try:
        out.parent.mkdir(mode=0o755, exist_ok=True)  # targets/ of deploy/monitoring is not in git; only the last level
        groups = write_file_sd(Path(args[0]), out)
    except OSError as e:
        read = e.filename is not None and Path(str(e.filename)).name == "cluster.json"  # else writing OUT (its temp file)
        print(escape(f"prometheus_sd: {e.strerror or type(e).__name__}: {e.filename if read else args[1]}"), file=sys.stderr)
        return 2
    except ValueError as e:
        print(escape(f"prometheus_sd: {e}"), file=sys.stderr)
        return 2
    print(f"wrote {len(groups)} target(s) to {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
