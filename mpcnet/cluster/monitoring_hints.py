"""What the monitoring commands tell a person to do next (issue 15 review: a newcomer's reading).

Debian's ``prometheus`` package (the one ``scripts/demo-monitoring`` installs) is built without the
React UI: its pages are under ``/classic/`` and ``http://HOST:PORT/alerts`` is a 404 there, while
upstream builds serve ``/alerts``. The HTTP API ``/api/v1/alerts`` is the same in both, so every
hint names it first.
"""

from __future__ import annotations

from governance.text import escape

ALERTS_JQ = "jq -c '.data.alerts[] | {alert: .labels.alertname, state}'"
"""The jq filter that turns ``/api/v1/alerts`` into one line per alert (name, state)."""


def alerts_where(listen: str) -> str:
    """Where the alerts of the Prometheus on ``listen`` (``host:port``) are: the API, then the page
    of Debian's build and of upstream's. One line, escaped."""
    return escape(f"http://{listen}/api/v1/alerts (page: http://{listen}/classic/alerts with Debian's package, /alerts upstream)")


def demo_next_steps(*, mpc: str, mpc_cluster: str, cluster_dir: str, listen: str, prometheus_pid: int | None,
                    temp_root: str | None) -> list[str]:
    """The lines ``scripts/demo-monitoring --keep`` ends with: the commands that work on what it
    left running (``mpc`` and ``mpc-cluster`` as the shell finds them), then how to stop it all
    (``kill PID`` of Prometheus, ``mpc-cluster stop``, and ``rm -r`` of the temporary directory
    when the demo made one). Every caller-derived text escaped."""
    d = escape(cluster_dir)
    lines = [
        "next, on what is still running:",
        f"   {mpc} --cluster {d} --as admin1 status --watch      # the live view; Ctrl-C ends it",
        f"   curl -s http://{escape(listen)}/api/v1/alerts | {ALERTS_JQ}",
        f"   {mpc} --cluster {d} --as auditor1 audit export --jsonl --component coordinator"
        " | jq -c 'select(.action == \"anomaly\")'",
        f"   in a browser: http://{escape(listen)}/classic/alerts (Debian's package; upstream builds: /alerts)",
        "stop it all:",
    ]
    if prometheus_pid is not None:
        lines.append(f"   kill {prometheus_pid}      # Prometheus")
    lines.append(f"   {mpc_cluster} stop --dir {d}")
    if temp_root is not None:
        lines.append(f"   rm -r {escape(temp_root)}")
    return lines
