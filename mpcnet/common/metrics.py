"""The one place the Prometheus metrics of a node and the coordinator are defined and served.

Each process owns a private :class:`prometheus_client.CollectorRegistry` (never the library's
global one), so two components in one test process never mix. :class:`Metrics` names every
metric of ``design.md`` (issue 15) as an attribute without the ``mpcnet_`` prefix, e.g.
``m.requests_total.labels(state="done").inc()``; :class:`NullMetrics` has the same attributes as
no-ops, for a process whose config has no ``metrics`` section (callers never test for None).

Labels carry only bounded, non-sensitive values: ``component``, ``node`` (a roster name),
``role`` (a certificate role from :data:`mpcnet.common.pki.ROLES`, else ``other``), ``method`` (a
gRPC method name of the service's descriptor), ``state``, ``outcome``, ``reason`` (a class from
:data:`ABORT_REASONS`), ``protocol`` (:data:`PROTOCOLS`), ``round`` (a small int), ``rule`` (an
anomaly rule name) and ``key`` only when the operator opts in (``metrics.key_labels: true``; a
key's *label*, never its id). Never a key id, request id, digest, share or seed.

Config (node and coordinator): ``"metrics": {"listen": "127.0.0.1:9101", "key_labels": false}``;
absent: no endpoint (:func:`load_metrics_settings`).
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from mpcnet.common import metrics_http
from mpcnet.common.config import ConfigError, Fields
from mpcnet.common.metrics_prune import prune
from mpcnet.common.pki import ROLES
from mpcnet.common.stores.commit_count import commits_total, metric_enabled as commit_metric_enabled

COMPONENTS = ("node", "coordinator")
PROTOCOLS = ("dkg", "sign", "presign", "refresh", "reshare")
REQUEST_STATES = ("created", "approved", "done", "rejected", "expired", "failed")
APPROVAL_OUTCOMES = ("accepted", "refused")
# session abort classes: a peer was banned (a failed check, or a ban already in force), the
# protocol or its inputs failed (a bad message, a replay, a superseded session, a roster change),
# the session sat idle past session_timeout_s, the coordinator aborted it, the node itself failed
ABORT_REASONS = ("ban", "protocol", "timeout", "coordinator", "internal")
MAX_ROUND = 16

# seconds: sub-second rounds up to a slow DKG under load
ROUND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)

_KEYS = {"listen", "key_labels"}
disable_created_metrics()  # type: ignore[no-untyped-call]  # no mpcnet_*_created series: one sample per counter, as the design names them


@dataclass(frozen=True)
class MetricsSettings:
    """The config's ``metrics`` section: ``listen`` ("HOST:PORT"; port 0 picks a free one) and
    ``key_labels`` (label signing counters and drill ages by key *label*; default false)."""

    listen: str
    key_labels: bool = False


def load_metrics_settings(f: Fields) -> MetricsSettings | None:
    """The ``metrics`` section of config ``f`` (None when absent or null). Raises
    :class:`ConfigError` naming ``metrics.listen`` / ``metrics.key_labels`` / an unknown field."""
    if f.doc.get("metrics") is None:
        return None
    m = f.obj("metrics")
    m.extra_keys(_KEYS)
    listen = m.endpoint("listen")
    if int(listen.rpartition(":")[2]) > 65535:  # the pattern takes 5 digits; bind() would raise OverflowError
        raise m.error("listen", f"port must be 0-65535, got {listen.rpartition(':')[2]}")
    return MetricsSettings(listen=listen, key_labels=m.flag("key_labels", False))


def role_label(role: str | None) -> str:
    """A certificate role as a label value: one of :data:`ROLES`, else ``other`` (bounded)."""
    return role if role in ROLES else "other"


_KEY_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def key_label_value(label: str) -> str:
    """A key's label as a ``key`` label value (only with ``metrics.key_labels``): the label when
    it is 1-64 of ``[A-Za-z0-9._-]`` (starting alphanumeric), else ``other`` -- never caller text
    a dashboard would have to escape, never the key id."""
    return label if _KEY_LABEL.fullmatch(label) else "other"


def reason_class(reason: str) -> str:
    """An abort reason as a label value: one of :data:`ABORT_REASONS` (``internal`` otherwise)."""
    return reason if reason in ABORT_REASONS else "internal"


class _Noop:
    """Accepts every metric call and does nothing: every method returns the no-op itself, which
    is also a context manager (``with m.keygen_seconds.time():``)."""

    def labels(self, *_a: Any, **_k: Any) -> _Noop:
        return self

    def __getattr__(self, _name: str) -> Callable[..., _Noop]:
        return lambda *_a, **_k: self

    def __enter__(self) -> _Noop:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


class _AuditCollector(Collector):
    """``mpcnet_audit_entries_total`` read at scrape time from the log's head (its sequence
    number counts every entry ever appended; durable across restarts, never a rolled-back one)."""

    def __init__(self, head: Callable[[], tuple[int, int] | None]) -> None:
        self._head = head

    def collect(self) -> Iterator[CounterMetricFamily]:
        try:
            h = self._head()
        except Exception:  # a closed log at shutdown: no sample rather than a failed scrape
            return
        c = CounterMetricFamily("mpcnet_audit_entries", "Audit entries appended (the audit head's sequence number).")
        c.add_metric([], float(0 if h is None else h[0]))
        yield c

    def describe(self) -> Iterable[CounterMetricFamily]:
        return [CounterMetricFamily("mpcnet_audit_entries", "Audit entries appended (the audit head's sequence number).")]


class _CommitsCollector(Collector):
    """``mpcnet_store_commits_total``: the fsync'd SQLite commits of this process since it started,
    every store (:func:`mpcnet.common.stores.commit_count.commits_total`; issue 14's benchmark,
    registered only when :func:`~mpcnet.common.stores.commit_count.metric_enabled`)."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield self._family(float(commits_total()))

    def describe(self) -> Iterable[CounterMetricFamily]:
        return [self._family(None)]

    @staticmethod
    def _family(value: float | None) -> CounterMetricFamily:
        c = CounterMetricFamily("mpcnet_store_commits", "Durable (fsync'd) SQLite commits of this process, every store.")
        if value is not None:
            c.add_metric([], value)
        return c


class Metrics:
    """The metrics of one process (``component``: ``node`` | ``coordinator``) in a private
    registry. Raises ValueError for another component name."""

    def __init__(self, component: str, *, key_labels: bool = False, version: str = "") -> None:
        if component not in COMPONENTS:
            raise ValueError(f"component must be one of {', '.join(COMPONENTS)}")
        self.component = component
        self.key_labels = key_labels
        self.registry = CollectorRegistry(auto_describe=True)
        self._server: Any = None
        self._lock = threading.Lock()
        r = self.registry
        key = ("key",) if key_labels else ()
        # coordinator
        self.requests_total = Counter("mpcnet_requests", "Request state transitions.", ["state"], registry=r)
        self.request_seconds = Histogram(
            "mpcnet_request_seconds", "Signing request created to done (s).", buckets=REQUEST_BUCKETS, registry=r
        )
        self.quorum_to_done_seconds = Histogram(
            "mpcnet_quorum_to_done_seconds", "Signing request quorum of approvals to done (s).", buckets=REQUEST_BUCKETS, registry=r
        )
        self.keygen_seconds = Histogram("mpcnet_keygen_seconds", "Key creation (DKG) end to end (s).", buckets=REQUEST_BUCKETS, registry=r)
        self.signatures_total = Counter("mpcnet_signatures", "Signatures produced.", key, registry=r)
        self.approvals_total = Counter("mpcnet_approvals", "Approvals submitted, by outcome.", ["outcome"], registry=r)
        self.policy_changes_total = Counter("mpcnet_policy_changes", "Policy changes installed.", registry=r)
        self.node_up = Gauge("mpcnet_node_up", "1 when the health probe reached the node.", ["node"], registry=r)
        self.node_clock_skew_seconds = Gauge(
            "mpcnet_node_clock_skew_seconds", "Node clock minus coordinator clock (s).", ["node"], registry=r
        )
        self.anomalies_total = Counter("mpcnet_anomalies", "Anomaly detections, by rule.", ["rule"], registry=r)
        self.anomaly_active = Gauge("mpcnet_anomaly_active", "1 while a rule's detection is within its window.", ["rule"], registry=r)
        self.backup_drill_age_seconds = Gauge(
            "mpcnet_backup_drill_age_seconds", "Age of the oldest last successful backup drill (s).", key, registry=r
        )
        # coordinator: presignature pools (issue 14; coordinator/pool.py), bounded labels, no key id
        self.presigs_pooled = Gauge("mpcnet_pool_presignatures", "Pool presignatures, by state (ready, assigned).", ["state"], registry=r)
        self.presigs_used_total = Counter("mpcnet_pool_presignatures_used", "Pool presignatures signed with.", registry=r)
        self.presigs_discarded_total = Counter(
            "mpcnet_pool_presignatures_discarded", "Pool presignatures discarded, by reason.", ["reason"], registry=r
        )
        self.presign_fallbacks_total = Counter(
            "mpcnet_presign_fallbacks", "Signing requests that fell back to the full protocol, by reason.", ["reason"], registry=r
        )
        # node
        self.sessions_live = Gauge("mpcnet_sessions_live", "Protocol sessions in progress.", ["protocol"], registry=r)
        self.sessions_aborted_total = Counter(
            "mpcnet_sessions_aborted", "Protocol sessions aborted, by reason class.", ["protocol", "reason"], registry=r
        )
        self.round_seconds = Histogram(
            "mpcnet_round_seconds", "Time a protocol round took on this node (s).", ["protocol", "round"], buckets=ROUND_BUCKETS, registry=r
        )
        self.bans_total = Counter("mpcnet_bans", "Bans recorded against peers.", registry=r)
        self.presignatures_available = Gauge("mpcnet_presignatures_available", "Presignatures in the pool.", registry=r)
        self.store_healthy = Gauge("mpcnet_store_healthy", "1 when the store answers.", registry=r)
        # both
        self.rpc_denied_total = Counter(
            "mpcnet_rpc_denied", "RPCs refused PERMISSION_DENIED by the role check.", ["role", "method"], registry=r
        )
        self.audit_head_age_seconds = Gauge("mpcnet_audit_head_age_seconds", "Now minus the newest audit entry's time (s).", registry=r)
        self.disk_free_bytes = Gauge("mpcnet_disk_free_bytes", "Free bytes on the data directory's file system.", registry=r)
        self.coordinator_store_healthy = Gauge(  # coordinator only: its database and audit log (coordinator/store_health.py)
            "mpcnet_coordinator_store_healthy", "1 when the last write of every coordinator store succeeded, else 0.", registry=r
        )
        self.build_info = Gauge("mpcnet_build_info", "Build of this process (always 1).", ["version", "component"], registry=r)
        self.build_info.labels(version=version or _version(), component=component).set(1)
        if commit_metric_enabled():  # benchmarks only (MPCNET_COMMIT_LOG): not in the documented set
            r.register(_CommitsCollector())
        self.presignatures_available.set(0)
        noop: Any = _Noop()
        for name in _METRIC_ATTRS:  # export only what this component maintains (no misleading zeros)
            if name not in OWNED[component]:
                r.unregister(getattr(self, name))
                setattr(self, name, noop)
        # an unlabelled drill age is exported once a drill age exists (no "drilled just now" 0)
        self._drill_exported = key_labels or component != "coordinator"
        if not self._drill_exported:
            r.unregister(self.backup_drill_age_seconds)
        # exported once wired to the coordinator's store health (no unset 0 meaning "failing")
        self._store_exported = component != "coordinator"
        if not self._store_exported:
            r.unregister(self.coordinator_store_healthy)

    @property
    def enabled(self) -> bool:
        """True when metrics are on (skip work that only feeds them otherwise)."""
        return True

    # --- helpers for callers -----------------------------------------------------------------

    def signature(self, key_label: str) -> None:
        """Count one signature; labelled by ``key_label`` only when ``key_labels`` is on."""
        (self.signatures_total.labels(key=key_label_value(key_label)) if self.key_labels else self.signatures_total).inc()

    def denied(self, role: str | None, method: str) -> None:
        """Count one PERMISSION_DENIED of the role check (``role``: the caller's certificate role,
        None without one; ``method``: a method name of the service's descriptor)."""
        self.rpc_denied_total.labels(role=role_label(role), method=method).inc()

    def drill_age(self, ages: dict[str, float]) -> None:
        """Set the drill-age gauge from ``{key label: seconds since its last successful drill}``:
        the oldest overall, or one series per key when ``key_labels`` is on."""
        if self.key_labels:
            per_key: dict[str, float] = {}
            for label, age in ages.items():
                v = key_label_value(label)
                per_key[v] = max(per_key.get(v, 0.0), age)
            prune(self.backup_drill_age_seconds, "key", per_key)  # a retired key's series goes
            for v, age in per_key.items():
                self.backup_drill_age_seconds.labels(key=v).set(age)
        elif ages:
            self.backup_drill_age_seconds.set(max(ages.values()))
            with self._lock:
                if not self._drill_exported:
                    self.registry.register(self.backup_drill_age_seconds)
                    self._drill_exported = True
        else:  # no key left: no sample (absent, as before the first drill), not the age of a retired key
            with self._lock:
                if self._drill_exported:
                    self.registry.unregister(self.backup_drill_age_seconds)
                    self._drill_exported = False

    def watch_audit(self, head: Callable[[], tuple[int, int] | None], now_ms: Callable[[], int]) -> None:
        """Read ``mpcnet_audit_entries_total`` and ``mpcnet_audit_head_age_seconds`` at each scrape
        from ``head()`` → ``(seq, timestamp_ms)`` of the newest entry (None: empty log)."""
        self.registry.register(_AuditCollector(head))

        def age() -> float:
            try:
                h = head()
            except Exception:
                return 0.0
            return 0.0 if h is None else max(0.0, (now_ms() - h[1]) / 1000.0)

        self.audit_head_age_seconds.set_function(age)

    def watch_disk(self, path: Path) -> None:
        """Read ``mpcnet_disk_free_bytes`` of ``path``'s file system at each scrape."""
        self.disk_free_bytes.set_function(lambda: float(_free(path)))

    def watch_coordinator_store(self, healthy: Callable[[], bool]) -> None:
        """Read ``mpcnet_coordinator_store_healthy`` (1/0) from ``healthy()`` at each scrape (an exception: 0)."""
        self.coordinator_store_healthy.set_function(lambda: _one_if(healthy))
        with self._lock:
            if not self._store_exported:
                self.registry.register(self.coordinator_store_healthy)
                self._store_exported = True

    def watch_store(self, healthy: Callable[[], bool]) -> None:
        """Read ``mpcnet_store_healthy`` (1/0) from ``healthy()`` at each scrape (an exception: 0)."""

        def value() -> float:
            try:
                return 1.0 if healthy() else 0.0
            except Exception:
                return 0.0

        self.store_healthy.set_function(value)

    # --- exposition --------------------------------------------------------------------------

    def render(self) -> bytes:
        """The exposition text of this registry (what a scrape returns)."""
        return generate_latest(self.registry)

    def serve(self, listen: str) -> int:
        """Serve ``/metrics`` over HTTP on ``listen`` ("HOST:PORT"; port 0 picks one) in a daemon
        thread; returns the bound port. Raises OSError ``metrics.listen: cannot bind ...``."""
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        try:
            server, _thread = metrics_http.serve(host, int(port), self.registry)  # timeouts + a connection cap
        except (OSError, ValueError, OverflowError) as e:  # OverflowError: a port past 65535
            raise OSError(f"metrics.listen: cannot bind {listen} ({getattr(e, 'strerror', None) or type(e).__name__})") from None
        with self._lock:
            self._server = server
        return int(server.server_port)

    def stop(self) -> None:
        """Stop the HTTP endpoint (idempotent)."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


class NullMetrics(Metrics):
    """Metrics off: the same attributes, every call a no-op; :meth:`serve` refuses."""

    def __init__(self, component: str = "node", *, key_labels: bool = False, version: str = "") -> None:
        self.component = component
        self.key_labels = key_labels
        self.registry = CollectorRegistry(auto_describe=True)
        self._server = None
        self._lock = threading.Lock()
        self._drill_exported = True
        noop: Any = _Noop()
        for name in _METRIC_ATTRS:
            setattr(self, name, noop)

    @property
    def enabled(self) -> bool:
        return False

    def watch_audit(self, head: Callable[[], tuple[int, int] | None], now_ms: Callable[[], int]) -> None:
        pass

    def watch_disk(self, path: Path) -> None:
        pass

    def watch_store(self, healthy: Callable[[], bool]) -> None:
        pass

    def watch_coordinator_store(self, healthy: Callable[[], bool]) -> None:
        pass

    def serve(self, listen: str) -> int:
        raise OSError("metrics: not enabled")


_METRIC_ATTRS = (
    "requests_total", "request_seconds", "quorum_to_done_seconds", "keygen_seconds", "signatures_total",
    "approvals_total", "policy_changes_total", "node_up", "node_clock_skew_seconds", "anomalies_total",
    "anomaly_active", "backup_drill_age_seconds", "sessions_live", "sessions_aborted_total", "round_seconds",
    "bans_total", "presignatures_available", "store_healthy", "rpc_denied_total", "audit_head_age_seconds",
    "disk_free_bytes", "build_info", "coordinator_store_healthy",
    "presigs_pooled", "presigs_used_total", "presigs_discarded_total", "presign_fallbacks_total",
)

_BOTH = ("rpc_denied_total", "audit_head_age_seconds", "disk_free_bytes", "build_info")
# The metric attributes each component maintains; the others are no-ops there, never exported
# (a coordinator has no key-share store, sessions or bans; a node has no requests or approvals).
OWNED: dict[str, frozenset[str]] = {
    "coordinator": frozenset((
        "requests_total", "request_seconds", "quorum_to_done_seconds", "keygen_seconds", "signatures_total",
        "approvals_total", "policy_changes_total", "node_up", "node_clock_skew_seconds", "anomalies_total",
        "anomaly_active", "backup_drill_age_seconds", "coordinator_store_healthy", *_BOTH,
        "presigs_pooled", "presigs_used_total", "presigs_discarded_total", "presign_fallbacks_total",  # issue 14
    )),
    "node": frozenset((
        "sessions_live", "sessions_aborted_total", "round_seconds", "bans_total", "presignatures_available",
        "store_healthy", *_BOTH,
    )),
}


def exported_families(component: str) -> frozenset[str]:
    """The metric family names ``component`` can export (counters without ``_total``, as
    ``prometheus_client`` names families): its :data:`OWNED` metrics (the drill age included, which
    appears once a drill age exists), ``mpcnet_audit_entries`` (read from the audit head) and, for
    the coordinator, ``mpcnet_coordinator_store_healthy`` (registered once wired)."""
    m = Metrics(component, key_labels=True)
    wired = {"mpcnet_coordinator_store_healthy"} if "coordinator_store_healthy" in OWNED[component] else set()
    return frozenset(f.name for f in m.registry.collect()) | {"mpcnet_audit_entries"} | wired


def make_metrics(component: str, settings: MetricsSettings | None) -> Metrics:
    """:class:`Metrics` for ``settings`` (the config's section), :class:`NullMetrics` when None."""
    if settings is None:
        return NullMetrics(component)
    return Metrics(component, key_labels=settings.key_labels)


def monotonic() -> float:
    """Seconds of the monotonic clock (latencies)."""
    return time.monotonic()


def _one_if(healthy: Callable[[], bool]) -> float:
    """1.0 if ``healthy()``, else 0.0 (also when it raises)."""
    try:
        return 1.0 if healthy() else 0.0
    except Exception:
        return 0.0


def _free(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mpcnet")
    except Exception:
        return "dev"


__all__ = [
    "ABORT_REASONS", "PROTOCOLS", "REQUEST_STATES", "ConfigError", "Metrics", "MetricsSettings", "NullMetrics",
    "load_metrics_settings", "make_metrics", "reason_class", "role_label",
]


def serve_metrics(settings: MetricsSettings | None, metrics: Metrics, logger: logging.Logger) -> int | None:
    """Start ``metrics``' endpoint on ``settings.listen`` (nothing when ``settings`` is None) and
    log where; returns the bound port. Raises OSError ``metrics.listen: cannot bind ...``."""
    if settings is None:
        return None
    port = metrics.serve(settings.listen)
    host = settings.listen.rpartition(":")[0]
    logger.info("metrics on http://%s:%d/metrics", host, port)
    return port
