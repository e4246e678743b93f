"""``mpc status --watch [--interval S] [--count N]``: a live view of the cluster for an operator.

Every ``interval`` seconds it takes one :class:`Snapshot`:

* from the coordinator's ``ClusterStatus`` (always): the cluster's threshold and roster version,
  every node's health, last error and measured clock skew;
* from ``ListKeys`` (when the identity may call it): every key's label, status and epoch (its
  version: +1 per refresh or reshare);
* from the processes' Prometheus endpoints, when ``cluster.json`` names them (``"metrics":
  {"coordinator": "HOST:PORT", "node-1": ...}``, issue 15): live sessions per protocol (the nodes'
  ``mpcnet_sessions_live``), the signatures counted (the coordinator's ``mpcnet_signatures_total``)
  and the latency histograms (``mpcnet_request_seconds``: created to done, approvals included;
  ``mpcnet_quorum_to_done_seconds``: the signing itself). Between two snapshots that gives the
  signing rate (signatures per second) and the mean latencies of the requests that ended in
  between; and the anomaly rules active now (``mpcnet_anomaly_active``, :mod:`coordinator.anomaly`)
  or detected since the previous snapshot (``mpcnet_anomalies_total`` grew: a rule's window may
  be shorter than the interval, so the gauge alone can miss a detection).
  Without endpoints (or when one cannot be read) those figures read ``n/a`` and say why.

On a terminal the view is a :mod:`rich` ``Live`` display redrawn in place; otherwise (a pipe, a
file) each snapshot is printed as plain lines after a ``--- TIME`` line, and with ``--json`` as one
JSON document per line. Ctrl-C ends the watch: that is its normal end, so the exit code is 0 (the
terminal is restored first); ``--count N`` stops after N snapshots (exit 3 if the coordinator did not
answer the last one). A failed ``ClusterStatus`` does not end the watch: the snapshot says so and
the next one tries again. Every text that came from a server or a file (names, endpoints, errors,
labels) is escaped (:func:`governance.text.escape`) and shown as plain text, never as rich markup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from governance.errors import GovernanceError
from governance.text import NAME_RE, escape
from mpcnet.client import cli_pools
from mpcnet.client.sdk import Key, MpcError, NodeState
from mpcnet.common.cliutil import EXIT_OK, Endpoint
from mpcnet.wire.mpc.v1 import coordinator_pb2

EXIT_NO_ANSWER = 3
MAX_SCRAPE_BYTES = 4 * 1024 * 1024
"""The most bytes read from one metrics endpoint (a page is a few kilobytes)."""
MAX_KEY_ROWS = 12
"""The most keys listed (the rest are counted)."""
LATENCIES = {
    "mpcnet_request_seconds": "request latency",  # created -> done (approvals included)
    "mpcnet_quorum_to_done_seconds": "signing latency",  # approval quorum -> signature
}
"""The coordinator's latency histograms shown (metric name -> row name)."""


class StatusClient(Protocol):
    """What the watch calls of :class:`mpcnet.client.sdk.MpcClient`."""

    def cluster_status(self) -> coordinator_pb2.ClusterStatusResponse: ...

    def list_keys(self) -> list[Key]: ...


Fetch = Callable[[str, float], bytes]
"""``fetch(endpoint, timeout_s) -> exposition text``: one scrape of ``http://ENDPOINT/metrics``
(OSError or ValueError when it cannot be read)."""


def http_fetch(endpoint: str, timeout_s: float) -> bytes:
    """``GET http://ENDPOINT/metrics``: at most :data:`MAX_SCRAPE_BYTES` bytes (ValueError past
    that), OSError (refused, an HTTP status other than 200, a malformed answer, or no complete
    answer within ``timeout_s`` seconds *in all*: an endpoint dripping bytes cannot hold the
    watch); no proxy, no redirect followed (an endpoint is in the monitoring plane: untrusted)."""
    from mpcnet.client.watch_fetch import fetch_page

    return fetch_page(endpoint, "/metrics", timeout_s, MAX_SCRAPE_BYTES)


def _is_endpoint(value: object) -> bool:
    try:
        Endpoint().check(value)
    except GovernanceError:
        return False
    return True


def metrics_endpoints(info: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    """The ``"metrics"`` object of ``cluster.json`` as ``{process name: HOST:PORT}`` and a note
    (``""``, or why some or all are not used). Entries whose name is not a process name or whose
    address is not ``HOST:PORT`` are left out (and named, escaped, in the note)."""
    raw = info.get("metrics")
    if raw is None:
        return {}, "no metrics endpoints in cluster.json"
    if not isinstance(raw, dict):
        return {}, "cluster.json: metrics: not a JSON object"
    out: dict[str, str] = {}
    bad: list[str] = []
    for name, ep in raw.items():
        if isinstance(name, str) and NAME_RE.fullmatch(name) is not None and _is_endpoint(ep):
            out[name] = ep
        else:
            bad.append(escape(name)[:40])
    return out, (f"cluster.json: metrics: ignored {', '.join(bad)} (not NAME: HOST:PORT)" if bad else "")


@dataclass(frozen=True)
class Scrape:
    """The figures the view uses from the endpoints that answered; None: no endpoint gave it."""

    sessions_live: dict[str, float] | None = None  # protocol -> sessions, summed over the nodes
    signatures_total: float | None = None
    latency: dict[str, tuple[float, float]] = field(default_factory=dict)  # histogram of LATENCIES -> (sum, count)
    unreachable: tuple[str, ...] = ()  # process names whose endpoint could not be read
    anomalies: tuple[str, ...] | None = None  # rules with mpcnet_anomaly_active > 0 (the coordinator's)
    detections: dict[str, float] | None = None  # rule -> mpcnet_anomalies_total (the coordinator's)


def parse_exposition(text: str) -> list[tuple[str, dict[str, str], float]]:
    """``(sample name, labels, value)`` of a Prometheus text page (ValueError if it is not one)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: list[tuple[str, dict[str, str], float]] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append((s.name, dict(s.labels), float(s.value)))
    return out


def scrape(endpoints: Mapping[str, str], fetch: Fetch, timeout_s: float) -> Scrape:
    """Read every endpoint once, all at once (:func:`~mpcnet.client.watch_fetch.fetch_all`), and add
    up the figures of :class:`Scrape`."""
    live: dict[str, float] | None = None
    sigs: float | None = None
    hist: dict[str, tuple[float, float]] = {}
    anomalies: set[str] | None = None
    detections: dict[str, float] | None = None
    unreachable: list[str] = []
    from mpcnet.client.watch_fetch import fetch_all

    pages = fetch_all(endpoints, fetch, timeout_s)  # at once: slow endpoints cost one timeout, not one each
    for name, _ep in sorted(endpoints.items()):
        try:
            samples = parse_exposition(pages[name].result().decode("utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            unreachable.append(name)
            continue
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        coord = name == "coordinator"  # its figures from its endpoint only: a node's cannot forge them
        for sample, labels, value in samples:
            if not math.isfinite(value) or (sample == "mpcnet_sessions_live") == coord:
                continue
            if sample == "mpcnet_sessions_live":
                live = live if live is not None else {}
                proto = escape(labels.get("protocol", "?"))[:16]
                live[proto] = live.get(proto, 0.0) + value
            elif sample == "mpcnet_anomaly_active":
                anomalies = anomalies if anomalies is not None else set()
                if value > 0:
                    anomalies.add(escape(labels.get("rule", "?"))[:40])
            elif sample == "mpcnet_anomalies_total":
                detections = detections if detections is not None else {}
                rule = escape(labels.get("rule", "?"))[:40]
                detections[rule] = detections.get(rule, 0.0) + value
            elif sample == "mpcnet_signatures_total":
                sigs = (sigs or 0.0) + value
            elif sample.endswith("_sum") and sample[:-4] in LATENCIES:
                sums[sample[:-4]] = sums.get(sample[:-4], 0.0) + value
            elif sample.endswith("_count") and sample[:-6] in LATENCIES:
                counts[sample[:-6]] = counts.get(sample[:-6], 0.0) + value
        for name_ in sums.keys() & counts.keys():
            old = hist.get(name_, (0.0, 0.0))
            hist[name_] = (old[0] + sums[name_], old[1] + counts[name_])
    return Scrape(live, sigs, hist, tuple(unreachable), None if anomalies is None else tuple(sorted(anomalies)), detections)


def new_detections(prev: Snapshot | None, cur: Snapshot) -> tuple[str, ...]:
    """The rules whose ``mpcnet_anomalies_total`` grew since ``prev`` (sorted; none without both
    counts; a count that went down, a restarted coordinator, counts from 0)."""
    before, now = (prev.metrics.detections if prev else None), cur.metrics.detections
    if before is None or now is None:
        return ()
    return tuple(sorted(r for r, n in now.items() if n > before.get(r, 0.0) or 0.0 < n < before.get(r, 0.0)))


@dataclass(frozen=True)
class Snapshot:
    """One refresh: ``at`` (monotonic seconds, for rates) and ``wall`` (Unix seconds, shown)."""

    at: float
    wall: float
    status: coordinator_pb2.ClusterStatusResponse | None
    error: str = ""  # why ClusterStatus failed ("" when it answered)
    keys: tuple[Key, ...] | None = None  # None: ListKeys failed or was refused
    metrics: Scrape = field(default_factory=Scrape)
    metrics_note: str = ""
    store_since: dict[str, float] = field(default_factory=dict)  # failing coordinator store -> wall s first seen failing


def with_store_since(prev: Snapshot | None, cur: Snapshot) -> Snapshot:
    """``cur`` with :attr:`Snapshot.store_since`: for each coordinator store ``cur`` reports
    failing, when this watch first saw it failing in an unbroken run of snapshots (``cur.wall``
    for a new one); a snapshot without an answer keeps ``prev``'s."""
    if cur.status is None:
        return dataclasses.replace(cur, store_since=dict(prev.store_since) if prev else {})
    before = prev.store_since if prev else {}
    return dataclasses.replace(cur, store_since={f.store: before.get(f.store, cur.wall) for f in cur.status.store_failures})


def store_line(cur: Snapshot) -> str:
    """The ``store`` row: ``ok``, or each failing coordinator store with since when (UTC, as
    first seen by this watch) and why; escaped, at most 400 characters."""
    st = cur.status
    if st is None or not st.store_failures:
        return "ok"
    parts = []
    for f in st.store_failures:
        since = cur.store_since.get(f.store, cur.wall)
        parts.append(f"{f.store} FAILING since {time.strftime('%H:%M:%S', time.gmtime(since))} UTC ({f.reason})")
    return escape("; ".join(parts))[:400]


def take(client: StatusClient, endpoints: Mapping[str, str], note: str, fetch: Fetch, timeout_s: float,
         clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> Snapshot:
    """One :class:`Snapshot` (never raises for a server's error: it is in ``error``)."""
    at, now = clock(), wall()
    status: coordinator_pb2.ClusterStatusResponse | None = None
    error = ""
    try:
        status = client.cluster_status()
    except MpcError as e:
        error = f"{e.code.name}: {e.message}"
    keys: tuple[Key, ...] | None = None
    if status is not None:
        try:
            keys = tuple(client.list_keys())
        except MpcError:
            keys = None
    metrics = scrape(endpoints, fetch, timeout_s) if endpoints else Scrape()
    return Snapshot(at, now, status, error, keys, metrics, note)


# --- what is shown ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """A titled table: ``header`` names the columns; every cell is already escaped text."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def signing_rate(prev: Snapshot | None, cur: Snapshot) -> float | None:
    """Signatures per second between two snapshots (None without both counts, or after a reset)."""
    a, b = (prev.metrics.signatures_total if prev else None), cur.metrics.signatures_total
    if prev is None or a is None or b is None or b < a or cur.at <= prev.at:
        return None
    return (b - a) / (cur.at - prev.at)


def mean_latency(prev: Snapshot | None, cur: Snapshot, metric: str = "mpcnet_request_seconds") -> tuple[float | None, str]:
    """Mean seconds of the histogram ``metric`` (one of :data:`LATENCIES`) over the requests that
    ended between the snapshots (``"last interval"``), else over all time (``"since start"``), else
    ``(None, "")``."""
    b = cur.metrics.latency.get(metric)
    if b is None:
        return None, ""
    a = prev.metrics.latency.get(metric) if prev else None
    if a is not None and b[1] > a[1] and b[0] >= a[0]:
        return (b[0] - a[0]) / (b[1] - a[1]), "last interval"
    if b[1] > 0:
        return b[0] / b[1], "since start"
    return None, ""


def _n_a(cur: Snapshot) -> str:
    if cur.metrics.unreachable:
        return "n/a (metrics endpoint unreachable)"
    if cur.metrics_note:
        return f"n/a ({cur.metrics_note})"
    return "n/a"


def _clock(n: NodeState) -> str:
    """``+0.1s``, ``+95.0s OFF`` (beyond the coordinator's limit) or ``unknown``."""
    text = "unknown" if n.skew_s is None else f"{round(n.skew_s, 1) or 0.0:+.1f}s"  # never "-0.0s"
    return text + " OFF" if n.clock_suspect else text


def sections(prev: Snapshot | None, cur: Snapshot) -> list[Section]:
    """The view of ``cur`` (rates against ``prev``): cluster, nodes, keys, activity."""
    st = cur.status
    head: tuple[tuple[str, str], ...]
    if st is None:
        head = (("coordinator", escape(f"NO ANSWER: {cur.error}")[:300]),)
    else:
        head = (("cluster", f"{st.threshold}-of-{st.parties}, roster version {st.roster_version} (epoch {st.roster_epoch})"),
                ("store", store_line(cur)))
    out = [Section("Cluster", ("", ""), head)]
    if st is not None:
        rows = []
        for raw in st.nodes:
            n = NodeState.from_proto(raw)
            health = "REVOKED" if raw.revoked else "up" if n.healthy else "DOWN " + n.last_error
            rows.append((escape(n.name), escape(n.endpoint), escape(health)[:200], _clock(n),
                         "yes" if n.policies_synced or raw.revoked else "not yet"))
        out.append(Section("Nodes", ("node", "endpoint", "health", "clock skew", "policies"), tuple(rows)))
    if cur.keys is not None:
        keys = sorted(cur.keys, key=lambda k: k.created_unix_ms)
        krows = [(k.key_id.hex()[:16], escape(k.label)[:40], escape(k.status), str(k.epoch)) for k in keys[:MAX_KEY_ROWS]]
        if len(keys) > MAX_KEY_ROWS:
            krows.append((f"... {len(keys) - MAX_KEY_ROWS} more", "", "", ""))
        out.append(Section(f"Keys ({len(keys)})", ("key", "label", "status", "version (epoch)"), tuple(krows)))
    m = cur.metrics
    if m.sessions_live is not None:
        live = "  ".join(f"{p} {v:g}" for p, v in sorted(m.sessions_live.items())) or "none"
    else:
        live = _n_a(cur)
    rate = signing_rate(prev, cur)
    if rate is not None:
        rate_text = f"{rate:.2f}/s ({m.signatures_total:g} signatures in all)"
    elif m.signatures_total is not None:
        rate_text = f"{m.signatures_total:g} signatures in all (rate from the next refresh)"
    else:
        rate_text = _n_a(cur)
    act = [("live sessions", live), ("signing rate", rate_text)]
    if st is not None:
        act.append(("presignature pools", cli_pools.watch_line(st)))  # issue 14
    for metric, row in LATENCIES.items():
        lat, when = mean_latency(prev, cur, metric)
        act.append((row, f"{lat:.3f}s mean ({when})" if lat is not None else "no request ended yet" if metric in m.latency else _n_a(cur)))
    if m.anomalies is not None:
        act.append(("anomalies", "ACTIVE: " + ", ".join(m.anomalies) if m.anomalies else "none"))
    if fresh := new_detections(prev, cur):
        act.append(("detected", "since the last refresh: " + ", ".join(fresh)))
    if m.unreachable:
        act.append(("metrics", "unreachable: " + ", ".join(escape(u) for u in m.unreachable)))
    out.append(Section("Activity", ("", ""), tuple(act)))
    return out


def plain_lines(prev: Snapshot | None, cur: Snapshot) -> list[str]:
    """The snapshot as plain lines (a pipe or a file): ``--- TIME``, then each section."""
    lines = [f"--- {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(cur.wall))} UTC"]
    for s in sections(prev, cur):
        lines.append(f"{s.title}:")
        if any(s.header) and s.rows:  # name the columns ("yes" under "policies", "0" under "version (epoch)")
            lines.append("  " + "  ".join(s.header))
        for row in s.rows:
            lines.append(f"  {row[0]}: {'  '.join(row[1:])}" if not any(s.header) else "  " + "  ".join(c for c in row if c))
    return lines


def snapshot_doc(prev: Snapshot | None, cur: Snapshot) -> dict[str, Any]:
    """The snapshot as one JSON document (``--json``): the figures, not the formatted text."""
    st = cur.status
    lat, when = mean_latency(prev, cur)
    sig_lat, sig_when = mean_latency(prev, cur, "mpcnet_quorum_to_done_seconds")
    return {
        "time_unix_ms": int(cur.wall * 1000),
        "error": cur.error or None,
        "threshold": st.threshold if st else None,
        "parties": st.parties if st else None,
        "roster_version": st.roster_version if st else None,
        "nodes": [NodeState.from_proto(n).as_dict() | {"revoked": n.revoked} for n in st.nodes] if st else [],
        "keys": None if cur.keys is None else [{"key_id": k.key_id.hex(), "label": k.label, "status": k.status, "epoch": k.epoch}
                                                for k in cur.keys],
        "sessions_live": cur.metrics.sessions_live,
        "signatures_total": cur.metrics.signatures_total,
        "signing_rate_per_s": signing_rate(prev, cur),
        "request_latency_s": lat, "request_latency_over": when or None,
        "signing_latency_s": sig_lat, "signing_latency_over": sig_when or None,
        "anomalies_active": None if cur.metrics.anomalies is None else list(cur.metrics.anomalies),
        "anomalies_detected": list(new_detections(prev, cur)),  # since the previous document
        "metrics_unreachable": list(cur.metrics.unreachable),
        "metrics_note": cur.metrics_note or None,
        "store_failures": None if st is None else [
            {"store": f.store, "reason": f.reason, "failing_since_unix_ms": int(cur.store_since.get(f.store, cur.wall) * 1000)}
            for f in st.store_failures
        ],
        **cli_pools.watch_doc(st),  # issue 14: presign_enabled, presignatures_ready, pools
    }


def activity_first(parts: list[Section]) -> list[Section]:
    """``parts`` with the Activity section moved after Cluster: a terminal too short for the whole
    view (rich crops the bottom) still shows the rates and the active anomalies; keys come last."""
    return parts[:1] + [s for s in parts[1:] if s.title == "Activity"] + [s for s in parts[1:] if s.title != "Activity"]


def rich_view(prev: Snapshot | None, cur: Snapshot, interval_s: float) -> Any:
    """The snapshot as rich renderables (tables of :class:`rich.text.Text`: no markup is parsed)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = [Text(f"mpc status --watch   {time.strftime('%H:%M:%S', time.gmtime(cur.wall))} UTC   "
                             f"every {interval_s:g}s   Ctrl-C to exit", style="bold")]
    for s in activity_first(sections(prev, cur)):
        show_header = any(s.header)
        t = Table(title=Text(s.title), title_justify="left", show_header=show_header, expand=False)
        for h in s.header:
            t.add_column(Text(h))
        for row in s.rows:
            style = "red" if any(c.startswith(("DOWN", "NO ANSWER", "REVOKED", "ACTIVE")) or c.endswith("s OFF") for c in row) else None
            t.add_row(*(Text(c) for c in row), style=style)
        parts.append(t)
    return Group(*parts)


# --- the loop --------------------------------------------------------------------------------


def watch(
    snap: Callable[[], Snapshot], interval_s: float, out: TextIO, *, tty: bool, json_lines: bool = False,
    count: int | None = None, sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Take a snapshot every ``interval_s`` seconds and show it (live on a terminal, else plain
    lines or JSON lines) until Ctrl-C (exit 0) or ``count`` snapshots (exit 0, or 3 if the last
    one had no answer from the coordinator)."""
    prev: Snapshot | None = None
    taken = 0
    try:
        if tty and not json_lines:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=out, force_terminal=True)
            with Live(console=console, auto_refresh=False, transient=False, redirect_stdout=False, redirect_stderr=False) as live:
                while True:
                    cur = with_store_since(prev, snap())
                    live.update(rich_view(prev, cur, interval_s), refresh=True)
                    prev, taken = cur, taken + 1
                    if count is not None and taken >= count:
                        break
                    sleep(interval_s)
        else:
            while True:
                cur = with_store_since(prev, snap())
                if json_lines:
                    out.write(json.dumps(snapshot_doc(prev, cur), sort_keys=True) + "\n")
                else:
                    out.write("\n".join(plain_lines(prev, cur)) + "\n")
                out.flush()
                prev, taken = cur, taken + 1
                if count is not None and taken >= count:
                    break
                sleep(interval_s)
    except KeyboardInterrupt:  # the watch's normal end
        return EXIT_OK
    return EXIT_NO_ANSWER if prev is not None and prev.status is None else EXIT_OK


def run_watch(
    client: StatusClient, info: Mapping[str, Any] | None, interval_s: float, out: TextIO, *, tty: bool,
    json_lines: bool = False, count: int | None = None, fetch: Fetch | None = None,
) -> int:
    """:func:`watch` of ``client`` with the metrics endpoints of ``info`` (``cluster.json``; None
    with ``--endpoint``: none)."""
    endpoints, note = metrics_endpoints(info) if info is not None else ({}, "no cluster.json (--endpoint)")
    timeout = min(2.0, max(0.2, interval_s / 2))
    get = fetch or http_fetch
    stop = threading.Event()

    def snap() -> Snapshot:
        if stop.is_set():
            raise KeyboardInterrupt
        return take(client, endpoints, note, get, timeout)

    def pause(seconds: float) -> None:
        if stop.wait(seconds):
            raise KeyboardInterrupt

    with _ctrl_c_sets(stop):
        return watch(snap, interval_s, out, tty=tty, json_lines=json_lines, count=count, sleep=pause)


@contextlib.contextmanager
def _ctrl_c_sets(stop: threading.Event) -> Iterator[None]:
    """While the watch runs, Ctrl-C (SIGINT) only sets ``stop``: the snapshot under way ends (its
    calls are bounded by their timeouts) and the watch ends before the next one. A
    KeyboardInterrupt raised in the middle of a gRPC call can leave the channel's internals
    locked, and the process then hangs closing it at exit. Outside the main thread: unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
