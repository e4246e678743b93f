"""A Prometheus for a local cluster, set up in ``DIR/prometheus/`` (issue 15).

What ``mpc-cluster prometheus --dir DIR`` and ``scripts/demo-monitoring`` write and run::

    DIR/prometheus/prometheus.yml         scrape and rule evaluation every 5 s, the two below
    DIR/prometheus/alerts.yml             a copy of the repository's deploy/monitoring/alerts.yml
    DIR/prometheus/targets/mpcnet.json    file_sd targets (mpcnet.cluster.prometheus_sd), one per process
    DIR/prometheus/data/                  Prometheus's storage (--storage.tsdb.path)

Paths inside ``prometheus.yml`` are relative to it (Prometheus resolves them against the config
file's directory), so the setup works whatever characters DIR's path holds and from any working
directory. ``mpc-cluster up`` calls :func:`refresh_targets`: when ``DIR/prometheus/`` exists the
targets file follows the ports the cluster now has, and a Prometheus left running (it watches the
file) follows the cluster across restarts.

The Prometheus web UI and API are unauthenticated: :data:`DEFAULT_LISTEN` is loopback only.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mpcnet.cluster.launcher import Layout
from mpcnet.cluster.metrics_ports import metrics_endpoints
from mpcnet.cluster.prometheus_sd import file_sd_groups
from mpcnet.common.fsutil import write_atomic

SUBDIR = "prometheus"
DEFAULT_LISTEN = "127.0.0.1:9090"
INTERVAL_S = 5
"""Scrape and rule-evaluation interval, seconds (a dev cluster: alerts show within seconds)."""
BINARY = "prometheus"
INSTALL_HINT = "apt-get install prometheus"
REPO_ALERTS = Path("deploy") / "monitoring" / "alerts.yml"
REPO_DASHBOARD = Path("deploy") / "monitoring" / "grafana-dashboard.json"

CONFIG_TEXT = f"""\
# Written by 'mpc-cluster prometheus' for this local mpcnet cluster (issue 15); rewritten on each run.
# Paths are relative to this file. 'mpc-cluster up' refreshes targets/mpcnet.json (new ports).
global:
  scrape_interval: {INTERVAL_S}s
  scrape_timeout: {INTERVAL_S - 1}s
  evaluation_interval: {INTERVAL_S}s

rule_files:
  - alerts.yml

scrape_configs:
  - job_name: mpcnet
    file_sd_configs:
      - files: ["targets/*.json"]
        refresh_interval: {INTERVAL_S}s
"""
"""``prometheus.yml``: every target of ``targets/*.json`` (each group labels its own ``job`` and
``process``), the rules of ``alerts.yml``."""


class SetupError(Exception):
    """The setup cannot be written (the message says why, in one line)."""


GLOB_CHARACTERS = "*?[\\"
"""Characters Prometheus's ``rule_files`` and ``file_sd_configs.files`` read as a glob (Go's
``filepath.Glob``, after joining the relative paths to the config file's directory): a DIR path
holding one gives a Prometheus with no rule and no target, silently."""


def check_dir(cluster_dir: Path) -> None:
    """Raise :class:`SetupError` when ``cluster_dir``'s path holds a :data:`GLOB_CHARACTERS`
    character (the message names it first, then the path)."""
    bad = sorted({c for c in str(cluster_dir) if c in GLOB_CHARACTERS})
    if bad:
        raise SetupError(
            f"a glob character ({' '.join(bad)}) in the cluster directory's path: Prometheus would load no "
            f"rule and scrape no target there; use a directory without * ? [ \\ ({cluster_dir})"
        )


@dataclass(frozen=True)
class PrometheusFiles:
    """Where a cluster's Prometheus setup lives: ``root`` = ``DIR/prometheus``."""

    root: Path

    @staticmethod
    def of(cluster_dir: Path) -> PrometheusFiles:
        return PrometheusFiles(Path(cluster_dir) / SUBDIR)

    @property
    def config(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def alerts(self) -> Path:
        return self.root / "alerts.yml"

    @property
    def targets(self) -> Path:
        return self.root / "targets" / "mpcnet.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "prometheus.log"


def repo_file(relative: Path, *, start: Path | None = None) -> Path:
    """``relative`` (e.g. :data:`REPO_ALERTS`) in the repository this package was installed from:
    the first ancestor of ``start`` (default: this module) that holds it; with an editable install
    (``pip install -e .``, what ``scripts/_venv.sh`` does) that is the clone's root. Raises
    :class:`SetupError` naming where it looked when no ancestor holds a regular file there (a
    non-editable install without the repository)."""
    here = (start or Path(__file__)).resolve()
    looked = []
    for parent in here.parents:
        candidate = parent / relative
        looked.append(str(parent))
        if candidate.is_file():
            return candidate
        if (parent / "pyproject.toml").is_file():  # the project root: nothing above it is ours
            break
    raise SetupError(
        f"cannot find {relative} (looked under {looked[-1]} and the directories between it and {here.parent}); "
        f"run from a clone of the repository (scripts/_venv.sh installs it editable)"
    )


def targets_json(lay: Layout) -> bytes:
    """The file_sd target groups of the cluster's current configs (their ``metrics.listen``),
    as written to ``targets/mpcnet.json``. Raises ``ValueError`` naming the field when no process
    has a metrics endpoint (:func:`mpcnet.cluster.prometheus_sd.file_sd_groups`)."""
    groups = file_sd_groups({"metrics": metrics_endpoints(lay)})
    return (json.dumps(groups, indent=2) + "\n").encode()


def write_setup(lay: Layout, *, alerts: Path | None = None) -> PrometheusFiles:
    """Write ``DIR/prometheus/`` (see the module docstring) for the cluster ``lay``: every file
    atomically, readable by another user (Prometheus may run as one; nothing in them is secret).
    ``alerts`` defaults to the repository's :data:`REPO_ALERTS`. Raises :class:`SetupError` (no
    alerts file, no metrics endpoint in the configs, a DIR path Prometheus would read as a glob
    (:func:`check_dir`: then nothing is written), or a write failed); files written before the
    failure stay (each is whole), a later call rewrites them all."""
    check_dir(lay.dir)
    files = PrometheusFiles.of(lay.dir)
    source = alerts if alerts is not None else repo_file(REPO_ALERTS)
    try:
        rules = source.read_bytes()
        targets = targets_json(lay)
    except ValueError as e:
        raise SetupError(f"{lay.dir}: {e}") from None
    except OSError as e:
        raise SetupError(f"cannot read {source}: {e.strerror or type(e).__name__}") from None
    try:
        files.targets.parent.mkdir(parents=True, exist_ok=True)
        files.data.mkdir(exist_ok=True)
        write_atomic(files.alerts, rules, mode=0o644)
        write_atomic(files.targets, targets, mode=0o644)
        write_atomic(files.config, CONFIG_TEXT.encode(), mode=0o644)
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise SetupError(f"cannot write {files.root}: {e.strerror or type(e).__name__}{where}") from None
    return files


def refresh_targets(lay: Layout, say: Callable[[str], None]) -> bool:
    """When ``DIR/prometheus/`` exists, rewrite its targets file from the current configs (what
    ``mpc-cluster up`` calls once it has chosen the ports). Returns whether it was written; a
    failure is reported through ``say`` (one line) and never stops the cluster from starting."""
    files = PrometheusFiles.of(lay.dir)
    if not files.root.is_dir():
        return False
    try:
        files.targets.parent.mkdir(exist_ok=True)
        write_atomic(files.targets, targets_json(lay), mode=0o644)
    except (OSError, ValueError) as e:
        say(f"could not refresh {files.targets}: {getattr(e, 'strerror', None) or e}")
        return False
    say(f"refreshed the Prometheus targets in {files.targets}")
    return True


def find_binary(name: str = BINARY) -> str | None:
    """The ``prometheus`` executable on PATH, or None (then: :data:`INSTALL_HINT`)."""
    return shutil.which(name)


LOCK_FLAG = "--storage.tsdb.use-lockfile"
"""Debian's prometheus 2.42 locks its storage only with this flag (upstream builds lock by default
and may not know it): without a lock two Prometheus on one ``data/`` write one TSDB at once."""


@functools.lru_cache(maxsize=8)
def _lock_flags(binary: str) -> tuple[str, ...]:
    """``(LOCK_FLAG,)`` when ``binary`` (a path, as :func:`find_binary` gives) lists it in its
    ``--help``, else ``()`` (a bare name is not run: no binary was found; cannot run it: the start
    fails later)."""
    if not os.path.isabs(binary):
        return ()
    try:
        p = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ()
    return (LOCK_FLAG,) if LOCK_FLAG in p.stdout + p.stderr else ()


def command_line(binary: str, files: PrometheusFiles, listen: str) -> list[str]:
    """The Prometheus command line serving ``files`` on ``listen`` (``HOST:PORT``), with its storage
    locked (:data:`LOCK_FLAG` when the binary needs it): a second Prometheus on the same DIR exits 1
    at once ("lock DB directory")."""
    return [
        binary,
        f"--config.file={files.config}",
        f"--storage.tsdb.path={files.data}",
        f"--web.listen-address={listen}",
        "--storage.tsdb.retention.time=7d",
        *_lock_flags(binary),
    ]
