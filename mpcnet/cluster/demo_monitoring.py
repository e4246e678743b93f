"""The monitoring demo behind ``scripts/demo-monitoring`` (issue 15, "Done means").

A local 2-of-3 cluster (``mpc-cluster up``; a temporary directory unless ``--dir``), a Prometheus
set up as ``mpc-cluster prometheus`` does (:mod:`mpcnet.cluster.prometheus_setup`; a free port
unless ``--listen``) with the repository's ``alerts.yml``; two keys; a few signatures on one,
then a burst on the other, more than the coordinator's default ``anomaly.burst_min_count`` (20)
within its default ``anomaly.window_s`` (60 s), with the default anomaly config and the real
rules; then, polling Prometheus's HTTP API (bounded), ``MpcnetSigningBurst`` firing. Prints the
counters Prometheus reports against what the demo did, the alert, the coordinator audit trail's
``anomaly`` entry and the next steps. Without ``--keep`` everything it started is stopped and a
temporary directory deleted; Ctrl-C or SIGTERM at any step stops what it started. Exit codes: 0,
1 a step failed or a wait timed out, 2 usage, 130 interrupted, 143 terminated (SIGTERM), 129 the
terminal closed (SIGHUP).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from governance.text import escape
from mpcnet.cluster import prometheus_setup as setup
from mpcnet.cluster.demo import _run, installed
from mpcnet.cluster.launcher import child_env, free_ports, kill_and_reap, load_layout
from mpcnet.cluster.monitoring_hints import demo_next_steps
from mpcnet.cluster.prometheus_cmd import listen_taken
from mpcnet.common import cliutil
from mpcnet.common.cliutil import Endpoint, PathArg, UInt
from mpcnet.common.interrupts import DeferredInterrupt
from mpcnet.common.keystore import MAX_SCRYPT_N, MIN_SCRYPT_N

PROG = "scripts/demo-monitoring"
QUIET = 3
BURST = 25
"""Signatures on the busy key: more than the default burst_min_count (20)."""
WAIT_S = 90.0


class NotPrometheus(OSError):
    """``host:port`` answered, but not as Prometheus's JSON API does (not yet Prometheus: another
    server on the port, e.g. one that took it before Prometheus could bind it; or a cut answer).
    An OSError, so that :func:`wait_for` polls again (by then a Prometheus that could not bind
    has exited, and the demo names that)."""


class Prom:
    """The few calls of Prometheus's HTTP API the demo makes (``host:port``)."""

    def __init__(self, address: str) -> None:
        self.address = address

    def get(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful answer to ``GET path?params``; OSError when there is none
        (no answer, an HTTP error, :class:`NotPrometheus`, a status other than success)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"http://{self.address}{path}{query}", timeout=5) as r:
                doc = json.loads(r.read())
        except (ValueError, http.client.HTTPException) as e:  # not JSON (JSONDecodeError, bad UTF-8), a cut or bad reply
            raise NotPrometheus(f"http://{self.address}{path} did not answer as Prometheus's API does: "
                                f"{escape(type(e).__name__)}: {escape(str(e)[:200])}") from None
        if not isinstance(doc, dict):
            raise NotPrometheus(f"http://{self.address}{path} did not answer as Prometheus's API does: not a JSON object")
        if doc.get("status") != "success":
            raise OSError(f"prometheus answered {escape(str(doc.get('status'))[:100])}")
        if not isinstance(doc.get("data"), (dict, list)):
            raise NotPrometheus(f"http://{self.address}{path} did not answer as Prometheus's API does: no data")
        return doc["data"]

    def value(self, expr: str) -> float:
        result = self.get("/api/v1/query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else 0.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """Poll ``check`` every 0.5 s until truthy (an OSError counts as not yet); SystemExit naming
    ``what`` and the last such error after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            got = check()
        except OSError as e:
            got, last = None, str(e)
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out after {timeout:g} s waiting for {what}" + (f" (last: {last})" if last else ""))
        time.sleep(0.5)


def prometheus_address(listen: str | None) -> str:
    """Where Prometheus will listen: ``listen`` if free (else :class:`cliutil.Failed` naming it),
    or 127.0.0.1 and a free port. Called once the cluster is up: its gRPC and metrics ports are
    bound then and never picked (a port picked before ``up`` could be taken by one of its metrics
    endpoints, whose answer to every path, the API's too, is the text exposition)."""
    if listen is None:
        return f"127.0.0.1:{free_ports(1)[0]}"
    if listen_taken(listen):
        raise cliutil.Failed(f"{escape(listen)} is already in use; pick a free address with --listen HOST:PORT")
    return listen


@click.command(name=PROG, context_settings={"help_option_names": ["-h", "--help"]},
               epilog="\b\nExit codes: 0 success, 1 a step failed, 2 usage error, 130 interrupted (Ctrl-C).")
@click.option("--dir", "directory", type=PathArg("DIR", resolve=True), default=None,
              help="a new cluster directory (default: a temporary one, deleted at the end unless --keep)")
@click.option("--keep", is_flag=True, help="leave the cluster and Prometheus running")
@click.option("--listen", type=Endpoint(), default=None, help="Prometheus's address [default: 127.0.0.1 and a free port]")
@click.option("--scrypt-n", type=UInt(MIN_SCRYPT_N, MAX_SCRYPT_N, show_range=True), default=2**15, show_default=True,
              help="scrypt cost of the cluster's keystores, a power of two (tests use 1024)")
def demo_monitoring(directory: Path | None, keep: bool, listen: str | None, scrypt_n: int) -> int:
    """A cluster with metrics, a Prometheus with the repository's alert rules, a signing burst,
    and the MpcnetSigningBurst alert firing."""
    if scrypt_n & (scrypt_n - 1):
        raise click.UsageError(f"scrypt-n: must be a power of two in [2**10, 2**20], got {scrypt_n}")
    if directory is not None and directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise click.BadParameter(f"{escape(str(directory))} exists and is not an empty directory", param_hint="'--dir'")
    try:  # Prometheus would read the path as a glob (no rule, no target): refused before anything starts
        setup.check_dir(directory if directory is not None else Path(tempfile.gettempdir()))
    except setup.SetupError as e:
        raise click.BadParameter(str(e), param_hint="'--dir'") from None
    binary = setup.find_binary()
    if binary is None:
        raise cliutil.Failed(f"'prometheus' is not installed (Debian: {setup.INSTALL_HINT})")
    alerts = setup.repo_file(setup.REPO_ALERTS)
    temp = directory is None
    d = Path(tempfile.mkdtemp(prefix="mpcnet-monitoring-")) / "cluster" if directory is None else directory
    address = listen or ""  # without --listen: a free port picked once the cluster is up
    prom_proc = None
    t0 = time.monotonic()
    try:
        print(f"1. starting a local 2-of-3 cluster with metrics in {escape(str(d))}")
        # the clean-up runs 'mpc-cluster stop' from here on: an interrupted 'up' may have started processes
        _run(["mpcnet.cluster.cli", "up", "--dir", str(d), "--nodes", "3", "--threshold", "2", "--quiet",
              "--scrypt-n", str(scrypt_n)], "mpc-cluster up")
        files = setup.write_setup(load_layout(d), alerts=alerts)
        address = prometheus_address(listen)
        argv = setup.command_line(binary, files, address)
        print(f"2. starting Prometheus on http://{address} (scrape and rule evaluation every {setup.INTERVAL_S} s,")
        print(f"   rules: a copy of deploy/monitoring/alerts.yml in {escape(str(files.alerts))})")
        with files.log.open("ab") as log, DeferredInterrupt() as interrupt:  # a Ctrl-C cannot lose the Popen
            prom_proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        interrupt.check()
        prom = Prom(address)
        started_proc, prom_log = prom_proc, files.log

        def all_up() -> bool:
            if (code := started_proc.poll()) is not None:  # e.g. --listen taken: not another Prometheus's answers
                raise SystemExit(f"demo: prometheus exited with status {code} (its log: {prom_log})")
            active = prom.get("/api/v1/targets")["activeTargets"]
            return len(active) == 4 and all(t["health"] == "up" for t in active)
        wait_for("Prometheus to scrape all 4 processes", all_up)
        print("   every target is up: coordinator, node-1, node-2, node-3")

        from mpcnet.client import MpcClient, SigningTeam

        print(f"3. admin1 creates two keys; {QUIET} signatures on the first, then a burst of {BURST} on the second")
        with (MpcClient.from_cluster(d, identity="admin1", timeout=120) as admin,
              SigningTeam.from_cluster(d, timeout=120) as team):
            quiet, busy = admin.create_key("quiet"), admin.create_key("busy")
            for i in range(QUIET):
                team.sign(quiet.key_id, hashlib.sha256(b"quiet %d" % i).digest())
            tb = time.monotonic()
            for i in range(BURST):
                team.sign(busy.key_id, hashlib.sha256(b"burst %d" % i).digest())
            print(f"   burst: {BURST} signatures in {time.monotonic() - tb:.1f} s (default anomaly config: more than 20 in 60 s)")
        n = QUIET + BURST
        wait_for(f"{n} signatures in Prometheus", lambda: prom.value("sum(mpcnet_signatures_total)") == n)
        print("4. Prometheus reports (vs what the demo did):")
        for label, expr, want in [("signatures", "sum(mpcnet_signatures_total)", n),
                                  ("requests done", 'sum(mpcnet_requests_total{state="done"})', n),
                                  ("approvals", 'sum(mpcnet_approvals_total{outcome="approve"})', 2 * n)]:
            print(f"   {label:<14} {prom.value(expr):g} (did {want})")

        def firing() -> list[dict[str, Any]]:
            return [a for a in prom.get("/api/v1/alerts")["alerts"]
                    if a["labels"].get("alertname") == "MpcnetSigningBurst" and a["state"] == "firing"]
        alert = wait_for("MpcnetSigningBurst to fire", firing)[0]
        print(f"5. alert FIRING: {alert['labels']['alertname']} (severity {escape(str(alert['labels'].get('severity')))}, "
              f"rule {escape(str(alert['labels'].get('rule', '-')))})")
        print(f"   summary: {escape(str(alert['annotations'].get('summary', '')))}")
        with MpcClient.from_cluster(d, identity="auditor1", timeout=120) as auditor:
            entries = [json.loads(e.details_json) for e in auditor.fetch_audit("coordinator").entries
                       if e.action == "anomaly" and e.outcome == "detected"]
        for a in entries:
            if a.get("rule") == "key_burst":
                print(f"6. coordinator audit trail: anomaly {escape(str(a.get('rule')))} on key {escape(str(a.get('key_prefix')))}...: "
                      f"observed {escape(str(a.get('observed')))} vs expected {escape(str(a.get('expected')))} "
                      f"in {escape(str(a.get('window_s')))} s (busy key {busy.key_id.hex()[:8]}...)")
        print(f"done in {time.monotonic() - t0:.0f} s. Grafana: import {setup.REPO_DASHBOARD} (data source: http://{address})")
        if not keep:
            print("run 'scripts/demo-monitoring --keep' to leave the cluster and Prometheus running and explore them")
    finally:
        with DeferredInterrupt(), _sigterm_ignored():  # a second Ctrl-C or a SIGTERM cannot cut the clean-up short
            if prom_proc is not None and not keep:
                kill_and_reap(prom_proc)
            if not keep:
                subprocess.run([sys.executable, "-m", "mpcnet.cluster.cli", "stop", "--dir", str(d)], env=child_env(),
                               capture_output=True)
            if temp and not keep:
                shutil.rmtree(d.parent, ignore_errors=True)
    if keep and prom_proc is not None:
        print(f"still running: Prometheus http://{address} and the cluster in {escape(str(d))}")
        print("\n".join(demo_next_steps(mpc=installed("mpc"), mpc_cluster=installed("mpc-cluster"), cluster_dir=str(d),
                                       listen=address, prometheus_pid=prom_proc.pid,
                                       temp_root=str(d.parent) if temp else None)))
    return 0


STOPPING = (signal.SIGTERM, signal.SIGHUP)
"""Signals that end the demo through its clean-up (SIGHUP: its terminal closed; the cluster and
Prometheus run in their own sessions and would not get it)."""


class Terminated(SystemExit):
    """SIGTERM or SIGHUP, raised in the main thread so that the demo's clean-up runs (exit 128 + signal)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated(128 + signum)


@contextlib.contextmanager
def _sigterm_ignored() -> Iterator[None]:
    old = {s: signal.signal(s, signal.SIG_IGN) for s in STOPPING}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    """``scripts/demo-monitoring``: the exit code (143 after SIGTERM, 129 after SIGHUP, once what
    the demo started is stopped); never a traceback."""
    old = {s: signal.signal(s, _on_sigterm) for s in STOPPING}
    try:
        return cliutil.run(demo_monitoring, argv, PROG)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
