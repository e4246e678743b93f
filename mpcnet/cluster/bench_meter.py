"""What ``scripts/bench_cluster.py`` measures around each phase: CPU time per process, fsync'd
commits per process, and the commits on a signature's critical path (issue 14).

* **CPU.** :func:`process_cpu_s` reads ``/proc/PID/stat`` fields 14 and 15 (utime + stime, in
  clock ticks of ``SC_CLK_TCK``; every thread of the process) for the coordinator and each node
  (pids from ``cluster.json``); :func:`self_cpu_s` is the benchmark's own process (the client:
  ``resource.getrusage(RUSAGE_SELF)``, all its threads). A :class:`Meter` snapshot before and
  after a phase gives CPU milliseconds per signature per process and the CPU-bound ceiling:
  cores / total CPU seconds per signature (signatures per second the machine could do if CPU were
  the only limit).
* **Commits.** Each process started with ``MPCNET_COMMIT_LOG=DIR`` exports
  ``mpcnet_store_commits_total`` on its metrics endpoint
  (``cluster.json`` ``metrics``: ``{"coordinator": "localhost:P", "node-1": ...}``;
  :mod:`mpcnet.common.stores.commit_count`); :func:`scrape_commits` reads it over plain HTTP
  (the endpoint is local and unauthenticated by design).
* **Critical path.** With the processes started under ``MPCNET_COMMIT_LOG=DIR``, every commit
  is a line ``<unix_ns> <db file> <thread>`` in ``DIR/commits-<pid>.log``.
  :func:`critical_path_commits` counts, per process, the commits from the moment the client sends
  the approval that meets the quorum up to and including the coordinator's DONE commit: the first
  coordinator commit at or after the DONE record's ``updated_unix_ms`` (that timestamp is taken
  inside the DONE transaction, before its commit). Commits after DONE (the audit flush) are not
  counted. ``serial`` adds the coordinator's commits to the busiest node's (nodes commit in
  parallel with each other). Meant for **sequential** signatures: anything the processes commit in that window
  counts (a background health probe or sweep would too; the median over many signatures drops such
  strays). Two coordinator commits in the DONE record's millisecond would end the window one
  commit early.

Errors: :class:`MeterError` naming the process and what could not be read.
"""

from __future__ import annotations

import json
import os
import re
import resource
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_COMMITS = re.compile(r"mpcnet_store_commits_total ([0-9.e+]+)", re.M)
_LOG_LINE = re.compile(r"([0-9]{1,20}) ([A-Za-z0-9._-]{1,64}) ([A-Za-z0-9._-]{1,64})")
_NAME = re.compile(r"coordinator|node-[0-9]{1,3}")
CLIENT = "client"


class MeterError(Exception):
    """A process's CPU time, commit count or commit log could not be read (``field`` names it)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) process ``pid`` has used, from ``/proc/PID/stat``.
    Raises :class:`MeterError` (``pid``) when the process is gone or the file is malformed."""
    try:
        text = Path(f"/proc/{int(pid)}/stat").read_text()
    except OSError as e:
        raise MeterError("pid", f"cannot read /proc/{int(pid)}/stat ({e.strerror})") from None
    # field 2 (comm) is parenthesised and may hold spaces: split after its closing parenthesis
    rest = text[text.rfind(")") + 2:].split()
    if len(rest) < 13:
        raise MeterError("pid", f"/proc/{int(pid)}/stat has {len(rest) + 2} fields")
    return (int(rest[11]) + int(rest[12])) / _CLK_TCK  # fields 14 (utime) and 15 (stime)


def self_cpu_s() -> float:
    """CPU seconds (user + system, all threads) of this process: ``getrusage(RUSAGE_SELF)``."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def cores() -> int:
    """The cores this process may run on (its CPU affinity), the ceiling's numerator."""
    return len(os.sched_getaffinity(0))


def scrape_commits(endpoint: str, timeout: float = 5.0) -> int:
    """``mpcnet_store_commits_total`` of the process serving metrics at ``endpoint`` ("HOST:PORT").
    Raises :class:`MeterError` (``metrics``) when unreachable or the metric is missing."""
    try:
        with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=timeout) as r:
            text = r.read(4 << 20).decode("utf-8", "replace")
    except OSError as e:
        raise MeterError("metrics", f"cannot scrape {endpoint} ({type(e).__name__})") from None
    m = _COMMITS.search(text)
    if m is None:
        raise MeterError("metrics", f"{endpoint} exports no mpcnet_store_commits_total (start the cluster with MPCNET_COMMIT_LOG=DIR)")
    return int(float(m.group(1)))


@dataclass(frozen=True)
class Processes:
    """The cluster's processes from ``cluster.json``: ``pids`` ``{"coordinator": pid,
    "node-1": pid, ...}`` and ``metrics`` ``{name: "HOST:PORT"}`` (names without an endpoint have
    no commit count)."""

    pids: Mapping[str, int]
    metrics: Mapping[str, str]

    @staticmethod
    def from_cluster(directory: Path) -> Processes:
        """Read ``directory/cluster.json``. Raises :class:`MeterError` (``cluster.json``) when it
        is missing, malformed, or lists a process without a pid."""
        try:
            doc = json.loads((Path(directory) / "cluster.json").read_text(encoding="utf-8"))
            entries = [("coordinator", doc["coordinator"])] + [(str(n["name"]), n) for n in doc["nodes"]]
            pids = {name: int(e["pid"]) for name, e in entries}
            metrics = {str(k): str(v) for k, v in (doc.get("metrics") or {}).items()}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MeterError("cluster.json", f"cannot read the processes ({type(e).__name__})") from None
        for name in list(pids) + list(metrics):
            if not _NAME.fullmatch(name):
                raise MeterError("cluster.json", "unexpected process name")
        return Processes(pids=pids, metrics=metrics)


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds per process (``client`` is this process) and commits per process (those with a
    metrics endpoint) at one instant."""

    cpu_s: Mapping[str, float]
    commits: Mapping[str, int]


@dataclass(frozen=True)
class PhaseCost:
    """What one phase of ``signatures`` signatures cost: CPU ms per signature per process (and
    ``total``), the CPU-bound ceiling in signatures/s, fsync'd commits per signature per process
    (and ``total``; empty without metrics endpoints)."""

    signatures: int
    cpu_ms_per_sig: Mapping[str, float]
    ceiling_per_s: float
    commits_per_sig: Mapping[str, float]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: ``{"cpu_ms_per_sig": {...}, "cpu_bound_ceiling_per_s": x, "commits_per_sig": {...}}``."""
        return {
            "cpu_ms_per_sig": dict(self.cpu_ms_per_sig),
            "cpu_bound_ceiling_per_s": self.ceiling_per_s,
            "commits_per_sig": dict(self.commits_per_sig),
        }


class Meter:
    """Snapshots of a cluster's processes; :meth:`cost` turns two into a :class:`PhaseCost`."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes

    def snapshot(self) -> Snapshot:
        """CPU of every process and this one, commits of every process with an endpoint.
        Raises :class:`MeterError` when one cannot be read."""
        cpu = {name: process_cpu_s(pid) for name, pid in self.processes.pids.items()}
        cpu[CLIENT] = self_cpu_s()
        commits = {name: scrape_commits(ep) for name, ep in self.processes.metrics.items()}
        return Snapshot(cpu_s=cpu, commits=commits)

    @staticmethod
    def cost(before: Snapshot, after: Snapshot, signatures: int) -> PhaseCost:
        """The cost of the ``signatures`` (> 0) made between ``before`` and ``after``."""
        if signatures <= 0:
            raise ValueError("signatures: must be positive")
        cpu = {n: round((after.cpu_s[n] - before.cpu_s[n]) * 1e3 / signatures, 2) for n in after.cpu_s}
        total_s = sum(after.cpu_s[n] - before.cpu_s[n] for n in after.cpu_s) / signatures
        cpu["total"] = round(total_s * 1e3, 2)
        commits = {n: round((after.commits[n] - before.commits[n]) / signatures, 2) for n in after.commits}
        if commits:
            commits["total"] = round(sum(after.commits[n] - before.commits[n] for n in after.commits) / signatures, 2)
        ceiling = round(cores() / total_s, 1) if total_s > 0 else float("inf")
        return PhaseCost(signatures=signatures, cpu_ms_per_sig=cpu, ceiling_per_s=ceiling, commits_per_sig=commits)


# --- the critical path -------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    """One logged commit: ``at_ns`` (Unix ns), the process name, the database file, the thread."""

    at_ns: int
    process: str
    database: str
    thread: str


def read_commit_log(directory: Path, pids: Mapping[str, int]) -> list[Commit]:
    """Every commit logged in ``directory/commits-<pid>.log`` by the processes ``pids``
    (``{name: pid}``), sorted by time. Lines that do not parse are skipped (a line cut by a crash)."""
    out: list[Commit] = []
    for name, pid in pids.items():
        path = Path(directory) / f"commits-{int(pid)}.log"
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            m = _LOG_LINE.fullmatch(line)
            if m:
                out.append(Commit(int(m.group(1)), name, m.group(2), m.group(3)))
    out.sort(key=lambda c: c.at_ns)
    return out


def critical_path_commits(
    commits: Sequence[Commit], start_ns: int, done_ms: int, coordinator: str = "coordinator"
) -> dict[str, int] | None:
    """Commits per process (and ``total``) from ``start_ns`` (the client sent the quorum approval)
    through the coordinator's DONE commit (its first commit at or after ``done_ms``, the DONE
    record's ``updated_unix_ms``), and ``serial``: the coordinator's plus the busiest other
    process's -- the nodes commit in parallel with each other but in series with the
    coordinator, so this approximates the commits one after another. None when no coordinator
    commit follows ``done_ms`` (the log is off or incomplete). ``commits`` sorted by time
    (:func:`read_commit_log`)."""
    done_ns = done_ms * 1_000_000
    end = next((c.at_ns for c in commits if c.process == coordinator and c.at_ns >= done_ns), None)
    if end is None or end < start_ns:
        return None
    per: dict[str, int] = {}
    for c in commits:
        if start_ns <= c.at_ns <= end:
            per[c.process] = per.get(c.process, 0) + 1
    nodes = [v for k, v in per.items() if k != coordinator]
    total = sum(per.values())
    per["serial"] = per.get(coordinator, 0) + max(nodes, default=0)
    per["total"] = total
    return per
