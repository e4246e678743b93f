"""The dev cluster's metrics endpoints (issue 15): a free port per process for its ``metrics``
config section, and the endpoints clients and Prometheus scrape, for ``cluster.json``.

Like the gRPC ports, a restarted cluster keeps the metrics ports of its existing configs where
they are still free, so a Prometheus scraping ``cluster.json``'s targets finds them again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpcnet.cluster import launcher


def _old_port(path: Path) -> int:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return int(str(doc["metrics"]["listen"]).rpartition(":")[2])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def metrics_ports(
    lay: launcher.Layout, taken: list[int], say: Callable[[str], None] = lambda _m: None
) -> list[int]:
    """The coordinator's metrics port, then each node's (same order as ``launcher._ports``): the
    existing configs' where still free, else fresh free ports, none of them in ``taken`` (the
    gRPC ports just chosen). A process whose existing port moves is reported through ``say``
    (one line: its name, the old and the new port; a Prometheus scraping the old target would
    scrape whatever took it). Raises ClusterError when too few ports are free."""
    names = ["coordinator"] + [f"node-{i}" for i in range(1, lay.nodes + 1)]
    configs = [lay.coordinator_config] + [lay.node_config(i) for i in range(1, lay.nodes + 1)]
    fresh = [p for p in launcher.free_ports(len(configs) + len(taken)) if p not in taken]
    out: list[int] = []
    for name, path in zip(names, configs, strict=True):
        port = old = _old_port(path)
        if not (0 < port < 65536 and port not in out and port not in taken and launcher._port_free(port)):
            port = next(p for p in fresh if p not in out)
            if 0 < old < 65536:
                say(f"{name}'s metrics port {old} is taken by another process: it now serves metrics on "
                    f"{port} (cluster.json's \"metrics\"; update your Prometheus targets)")
        out.append(port)
    return out


def metrics_section(port: int) -> dict[str, Any]:
    """The ``metrics`` config section listening on ``port`` (:mod:`mpcnet.common.metrics`)."""
    return {"metrics": {"listen": f"{launcher.LISTEN_HOST}:{port}", "key_labels": False}}


def metrics_endpoints(lay: launcher.Layout) -> dict[str, str]:
    """``{"coordinator": "localhost:P", "node-1": ...}`` from the current configs (a process
    whose config has no ``metrics`` section, e.g. a wiped node, is left out): ``cluster.json``'s
    ``metrics``, what Prometheus scrapes at ``http://ENDPOINT/metrics``."""
    out: dict[str, str] = {}
    for name, path in [("coordinator", lay.coordinator_config)] + [
        (f"node-{i}", lay.node_config(i)) for i in range(1, lay.nodes + 1)
    ]:
        port = _old_port(path)
        if 0 < port < 65536:
            out[name] = launcher.dial_endpoint(f"{launcher.LISTEN_HOST}:{port}")
    return out


def _config_ports(path: Path) -> set[int]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    out = set()
    for v in (doc.get("listen"), (doc.get("metrics") or {}).get("listen") if isinstance(doc.get("metrics"), dict) else None):
        try:
            out.add(int(str(v).rpartition(":")[2]))
        except ValueError:
            pass
    return out


def own_metrics_section(lay: launcher.Layout, index: int, grpc_port: int) -> dict[str, Any]:
    """The ``metrics`` section for ``node-<index>`` made by ``add-node`` / ``replace-node``
    (whose config starts as a copy of another node's): its own config's metrics port when that
    is not another process's, else a free port that no config of the cluster names and that is
    not ``grpc_port``. Raises ClusterError when no port is free."""
    others = {p for path in [lay.coordinator_config] + [
        lay.node_config(i) for i in range(1, max(lay.nodes, index) + 1) if i != index
    ] for p in _config_ports(path)} | {grpc_port}
    port = _old_port(lay.node_config(index))
    if not (0 < port < 65536) or port in others:
        port = next(p for p in launcher.free_ports(len(others) + 1) if p not in others)
    return metrics_section(port)
