"""``mpc-cluster prometheus --dir DIR [--listen HOST:PORT] [--config-only]`` (issue 15).

Writes ``DIR/prometheus/`` for the local cluster in DIR (:mod:`mpcnet.cluster.prometheus_setup`:
``prometheus.yml`` scraping and evaluating every 5 s, a copy of ``deploy/monitoring/alerts.yml``,
the file_sd targets of every process's metrics endpoint), then runs Debian's ``prometheus`` in the
foreground on ``--listen`` (default ``127.0.0.1:9090``: the UI is unauthenticated) with its storage
in ``DIR/prometheus/data``; Ctrl-C stops it (exit 130). With ``--config-only`` it writes the files
and prints the Prometheus command line instead. The cluster need not be running: its targets are
then down until ``mpc-cluster up``, which refreshes the targets file.

Endings (:mod:`mpcnet.common.cliutil`): 0 done (``--config-only``) or Prometheus stopped cleanly;
1 ``prometheus`` is not installed, cannot be started or exited with an error; 2 usage error (DIR is
not a cluster directory, a bad ``--listen``, the files cannot be written): nothing is written;
130 interrupted.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import socket
import subprocess
from pathlib import Path

import click

from governance.text import escape
from mpcnet.cluster import prometheus_setup as setup
from mpcnet.cluster.launcher import ClusterError, load_layout
from mpcnet.cluster.monitoring_hints import alerts_where
from mpcnet.common import cliutil
from mpcnet.common.cliutil import Endpoint, Failed, PathArg
from mpcnet.common.interrupts import DeferredInterrupt

PROG = "mpc-cluster"
STOP_GRACE_S = 30.0
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
EPILOG = """\b
Exit codes:
  0    --config-only: the files are written; else Prometheus stopped cleanly
  1    prometheus is not installed (apt-get install prometheus), did not start or failed
  2    usage error: DIR is not a cluster directory, a bad --listen, DIR cannot be written
  130  interrupted (Ctrl-C); Prometheus is stopped (143: SIGTERM, 129: the terminal closed)
"""


@click.command("prometheus", epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--dir", "directory", required=True, type=PathArg("DIR", resolve=True), help="the cluster directory")
@click.option("--listen", type=Endpoint(), default=setup.DEFAULT_LISTEN, show_default=True,
              help="where Prometheus serves its UI and API (unauthenticated: keep it on loopback)")
@click.option("--config-only", is_flag=True, help="write DIR/prometheus/ and print the prometheus command line; do not run it")
def cmd_prometheus(directory: Path, listen: str, config_only: bool) -> int:
    """Run a Prometheus scraping this cluster, with the alert rules of deploy/monitoring.

    Writes DIR/prometheus/ (prometheus.yml, alerts.yml, targets/mpcnet.json; storage in data/),
    then runs 'prometheus' in the foreground until Ctrl-C. 'mpc-cluster up' keeps the targets
    current. Alerts: http://LISTEN/api/v1/alerts (page: /classic/alerts with Debian's package).
    """
    try:
        lay = load_layout(directory)
    except ClusterError as e:
        raise click.UsageError(str(e), click.get_current_context()) from None
    binary = setup.find_binary()
    if binary is None and not config_only:  # before anything is written
        raise Failed(f"'{setup.BINARY}' is not installed (Debian: {setup.INSTALL_HINT})")
    if not config_only and listen_taken(listen):  # else prometheus's own error is one line among many
        raise Failed(f"{listen} is already in use (another Prometheus?); pick a free address with --listen HOST:PORT")
    try:
        alerts = setup.repo_file(setup.REPO_ALERTS)
    except setup.SetupError as e:  # an installation without the repository: not the caller's mistake
        raise Failed(str(e)) from None
    try:
        files = setup.write_setup(lay, alerts=alerts)
    except setup.SetupError as e:
        raise click.UsageError(str(e), click.get_current_context()) from None
    if listen.rpartition(":")[0] not in LOOPBACK:
        cliutil.say(PROG, f"warning: the Prometheus UI and API on {listen} are unauthenticated; anyone who reaches it reads every metric")
    argv = setup.command_line(binary or setup.BINARY, files, listen)
    if config_only:
        print(escape(f"wrote {files.config}, {files.alerts} and {files.targets}"))
        print(escape(shlex.join(argv)))
        return 0
    cliutil.say(PROG, f"Prometheus on http://{listen}; alerts: {alerts_where(listen)}; Ctrl-C stops it")
    return run_foreground(argv)


def listen_taken(listen: str) -> bool:
    """Whether ``listen`` (``host:port``, ``[v6]:port``) cannot be bound now: another process
    listens there (binding as Prometheus does, with SO_REUSEADDR, so a port in TIME_WAIT is free).
    An address that does not resolve counts as free: Prometheus then reports it itself."""
    host, _, port = listen.rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return False
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError:
            return True
    return False


def run_foreground(argv: list[str]) -> int:
    """Run ``argv`` (Prometheus) attached to this terminal until it exits (0: it stopped cleanly;
    else :class:`Failed`) or this process gets Ctrl-C (KeyboardInterrupt, once the child is
    stopped: SIGINT, then SIGKILL after :data:`STOP_GRACE_S`) or SIGTERM (forwarded; exit 143) or
    SIGHUP (its terminal closed: Prometheus is sent SIGTERM, not left running; exit 129).
    Raises :class:`Failed` when it cannot be started."""
    terminated: list[int] = []

    def on_term(signum: int, frame: object) -> None:
        terminated.append(signum)  # only recorded: acted on between two polls

    old = signal.signal(signal.SIGTERM, on_term)
    old_hup = signal.signal(signal.SIGHUP, on_term)  # the terminal went away: Prometheus takes SIGHUP as "reload"
    try:
        with DeferredInterrupt() as interrupt:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
            except OSError as e:
                raise Failed(f"cannot start {argv[0]}: {e.strerror or type(e).__name__}") from None
            try:
                while proc.poll() is None and not terminated:
                    interrupt.sleep(0.1)
            except KeyboardInterrupt:
                _stop(proc, signal.SIGINT)
                raise
            if terminated:
                _stop(proc, signal.SIGTERM)
                return 128 + terminated[0]
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGHUP, old_hup)
    if proc.returncode != 0:
        raise Failed(f"{argv[0]} exited with status {proc.returncode}")
    return 0


def _stop(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal ``proc`` (also after the terminal's own Ctrl-C reached it) and reap it; SIGKILL
    after :data:`STOP_GRACE_S`."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
