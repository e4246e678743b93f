"""The coordinator's metrics (issue 15): what :mod:`mpcnet.common.metrics` defines, fed from a
:class:`~coordinator.service.CoordinatorService`.

Counted as things happen: ``mpcnet_requests_total{state}`` (signing request transitions:
created, approved, done, rejected, expired, failed), ``mpcnet_request_seconds`` (created → done,
by the request's own creation time), ``mpcnet_quorum_to_done_seconds`` (the approval that made
the quorum → done, measured here; a request resumed after a restart has none),
``mpcnet_keygen_seconds``, ``mpcnet_signatures_total`` (``{key}``: the key's label, only with
``metrics.key_labels``), ``mpcnet_approvals_total{outcome}`` (approve | reject | refused),
``mpcnet_policy_changes_total``, ``mpcnet_rpc_denied_total{role,method}`` (the role check),
``mpcnet_node_up{node}`` and ``mpcnet_node_clock_skew_seconds{node}`` (each health probe).
Read at each scrape: the audit head (entries, age), ``mpcnet_disk_free_bytes`` (the database's
directory), ``mpcnet_coordinator_store_healthy`` (0 while the last write of its database or
audit log failed: coordinator/store_health.py) and ``mpcnet_backup_drill_age_seconds`` (the oldest last successful drill of the
active keys; a key never drilled counts from its creation). No label carries a key id, request
id or digest.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from mpcnet.common.metrics import REQUEST_STATES, Metrics, key_label_value, make_metrics
from mpcnet.common.metrics_prune import prune

# approvals_total{outcome}: an approver's decision (governance.approval.Decision) or a refused one
APPROVAL_OUTCOMES = ("approve", "reject", "refused")

if TYPE_CHECKING:
    from coordinator.service import CoordinatorService


class _Node(Protocol):
    name: str
    healthy: bool | None

    @property
    def clock(self) -> object: ...


class QuorumClock:
    """When each signing request reached its approval quorum (monotonic seconds), in memory,
    so ``mpcnet_quorum_to_done_seconds`` can be observed when it ends. Thread-safe; bounded."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self._at: dict[str, float] = {}
        self._lock = threading.Lock()

    def reached(self, rid: str) -> None:
        with self._lock:
            if len(self._at) >= self.LIMIT:
                self._at.pop(next(iter(self._at)))
            self._at[rid] = time.monotonic()

    def ended(self, rid: str) -> float | None:
        """Seconds since ``rid`` reached its quorum (None if not seen here); forgets it."""
        with self._lock:
            t = self._at.pop(rid, None)
        return None if t is None else time.monotonic() - t


def coordinator_metrics(service: CoordinatorService) -> Metrics:
    """The metrics of ``service`` (:class:`NullMetrics` without a ``metrics`` section), with the
    scrape-time readings wired to its audit log, database directory and drills."""
    m = make_metrics("coordinator", service.cfg.metrics)
    for state in REQUEST_STATES:  # every child at 0 from the start: increase() sees the first event
        m.requests_total.labels(state=state).inc(0)
    for outcome in APPROVAL_OUTCOMES:
        m.approvals_total.labels(outcome=outcome).inc(0)
    for k in service.db.list_keys("active"):
        key_created(m, k.label)
    # the head's age on the expiry clock: a wall clock stepped back does not hide a stalled audit log
    m.watch_audit(service.audit.head_stamp, lambda: service.db.expiry_ms(time.time_ns() // 1_000_000))
    m.watch_disk(service.cfg.db.parent)
    m.watch_coordinator_store(service.db.health.healthy)
    return m


def key_created(m: Metrics, label: str) -> None:
    """With ``metrics.key_labels``: create the key's ``mpcnet_signatures_total{key}`` child at 0
    (at start for the active keys, then as each key is created), so ``rate()`` / ``increase()``
    see its first signature; nothing otherwise."""
    if m.key_labels:
        m.signatures_total.labels(key=key_label_value(label)).inc(0)


def observe_nodes(m: Metrics, nodes: Iterable[_Node]) -> None:
    """Set ``mpcnet_node_up`` (1 when the last probe found it serving) and
    ``mpcnet_node_clock_skew_seconds`` (node minus coordinator; no sample until measured) per node name;
    a node no longer in ``nodes`` (removed, replaced) loses its series (else NodeDown fires for ever)."""
    nodes = list(nodes)
    if m.enabled:
        for gauge in (m.node_up, m.node_clock_skew_seconds):
            prune(gauge, "node", {h.name for h in nodes})
    for h in nodes:
        m.node_up.labels(node=h.name).set(1.0 if h.healthy else 0.0)
        skew = getattr(h.clock, "skew_ms", None)
        if isinstance(skew, int):
            m.node_clock_skew_seconds.labels(node=h.name).set(skew / 1000.0)
        elif m.enabled:  # not measured (yet): no sample rather than a misleading 0
            with contextlib.suppress(KeyError):
                m.node_clock_skew_seconds.remove(h.name)


class DrillAges:
    """Refreshes ``mpcnet_backup_drill_age_seconds`` from the database at most every
    :attr:`PERIOD_S` seconds (the coordinator's background loop calls :meth:`refresh` each pass);
    nothing when metrics are off."""

    PERIOD_S = 15.0

    def __init__(self, service: CoordinatorService) -> None:
        self._service = service
        self._next = 0.0

    def refresh(self) -> None:
        m = self._service.metrics
        if not m.enabled or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.PERIOD_S
        m.drill_age(drill_ages(self._service, self._service.db.expiry_ms(time.time_ns() // 1_000_000)))  # the expiry clock


def drill_ages(service: CoordinatorService, now_ms: int) -> dict[str, float]:
    """``{key label: seconds since its last successful drill}`` of the active keys (since the
    key's creation if never drilled); {} before a recovery configuration exists."""
    labels = {k.key_id: k.label for k in service.db.list_keys("active")}
    out: dict[str, float] = {}
    for st in service.recovery.backups.status(now_ms):
        since = st.last_drill_unix_ms or 0
        label = labels.get(st.key_id, "")
        if not since:
            k = service.db.get_key(st.key_id)
            since = k.created_ms if k is not None else now_ms
        out[label] = max(out.get(label, 0.0), max(0.0, (now_ms - since) / 1000.0))
    return out
