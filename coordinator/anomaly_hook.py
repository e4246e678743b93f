"""The coordinator's anomaly monitor: feeds :mod:`coordinator.anomaly` from the places events
happen and reports each detection three ways.

Events (sources): a signing request accepted (:meth:`coordinator.requests.SignRequests.submit`),
rejected by its approvers (``decide``), signed (``_run_signing``); a PERMISSION_DENIED answer (the
role check's ``rpc-denied`` audit entries, via :meth:`AnomalyMonitor.watching_denials`, and a
requester refused by a key's policy); a signing session aborted or a node reporting banned peers
(:meth:`coordinator.service.CoordinatorService._sign`); each node's audit head, polled by the
background loop (:meth:`AnomalyMonitor.poll_audit_heads`, every ``audit_stall_s / 4`` seconds).

Each detection: an audit entry ``anomaly`` (actor: the coordinator's name; outcome ``detected``;
details ``rule``, ``key_prefix`` (8 hex digits) or ``subject`` (a requester, caller or node name,
escaped), ``observed``, ``expected`` (decimal text), ``window_s``), the metrics
``mpcnet_anomalies_total{rule}`` (+1) and ``mpcnet_anomaly_active{rule}`` (1 while a detection of the rule
is within its window, else 0; refreshed by :meth:`AnomalyMonitor.refresh`), and a WARNING log line. The monitor is
best effort and never raises into the path that reported the event: a failure to audit is logged.
Thread-safe (one lock around the engine).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from coordinator.anomaly import KEY_PREFIX_HEX, RULES, AnomalyConfig, AnomalyDetector, Detection
from governance.audit import detail_text
from governance.text import escape

log = logging.getLogger("coordinator.anomaly")

_KEY_SUBJECT = "key:"
_KEY_RULES = ("key_burst", "new_derivation_path", "protocol_aborts")
_FAR_AHEAD = 2**62  # an after_seq past any head: the page carries head_seq and no entries


class _Family(Protocol):
    def labels(self, *args: str, **kw: str) -> Any: ...


class AnomalyMetrics(Protocol):
    """The part of :class:`mpcnet.common.metrics.Metrics` (issue 15, M1) the monitor uses."""

    @property
    def anomalies_total(self) -> _Family: ...
    @property
    def anomaly_active(self) -> _Family: ...


class _Audit(Protocol):
    def append(self, actor: str, action: str, *, outcome: str = "", details: Mapping[str, Any] | None = None) -> Any: ...


def _num(v: float) -> str:
    return f"{v:g}"


def audit_details(d: Detection) -> dict[str, str | int | bool]:
    """The ``anomaly`` entry's details for ``d`` (caller text escaped, never a whole key id)."""
    out: dict[str, str | int | bool] = {"rule": d.rule}
    if d.subject.startswith(_KEY_SUBJECT) or d.rule in _KEY_RULES:
        out["key_prefix"] = d.subject.removeprefix(_KEY_SUBJECT)[:KEY_PREFIX_HEX]
    else:
        out |= detail_text("subject", escape(d.subject))
    return out | {"observed": _num(d.observed), "expected": _num(d.expected), "window_s": _num(d.window_s)}


def _steady_ms() -> int:
    """The anomaly windows' clock (ms, monotonic): the windows measure spans only, and in memory;
    on the wall clock a step forward would empty every window and a step back keep a detection
    active (and its repeats suppressed) for the whole step (README "Clock steps")."""
    return time.monotonic_ns() // 1_000_000


class AnomalyMonitor:
    """``cfg``: thresholds; ``audit``: the coordinator's audit log; ``actor``: its name;
    ``metrics``: M1's metrics (None: none); ``clock``: ms on a steady clock (default monotonic; tests pass their own)."""

    def __init__(
        self, cfg: AnomalyConfig, audit: _Audit | None, actor: str, metrics: AnomalyMetrics | None = None,
        clock: Callable[[], int] = _steady_ms,
    ) -> None:
        self.cfg = cfg
        self.audit = audit
        self.actor = actor
        self.metrics = metrics
        self.clock = clock
        self.engine = AnomalyDetector(cfg)
        self._lock = threading.Lock()
        self._next_poll_ms = 0

    def attach_metrics(self, metrics: AnomalyMetrics) -> None:
        """Report through ``metrics`` from now on, and create ``mpcnet_anomalies_total{rule}`` (0)
        and ``mpcnet_anomaly_active{rule}`` (0) for every rule of :data:`coordinator.anomaly.RULES`
        now: a counter child that only appears at its first detection is invisible to
        ``increase()`` (Prometheus has no earlier sample), so alerts could not see a first
        detection (deploy/monitoring/alerts.yml)."""
        for rule in RULES:
            metrics.anomalies_total.labels(rule=rule).inc(0)
            metrics.anomaly_active.labels(rule=rule).set(0)
        self.metrics = metrics

    @classmethod
    def off(cls) -> AnomalyMonitor:
        """A monitor that detects nothing (the default before the service wires one in)."""
        return cls(AnomalyConfig(enabled=False), None, "coordinator")

    def _run(self, what: str, event: Callable[[AnomalyDetector, int], list[Detection]]) -> list[Detection]:
        if not self.cfg.enabled:
            return []
        try:
            with self._lock:
                now = self.clock()
                found = event(self.engine, now)
                active = self.engine.active(now)
            for d in found:
                self._report(d)
            if found:
                self._set_active(active)
            return found
        except Exception:  # never fail the caller's request over monitoring
            log.exception("anomaly check of %s failed", what)
            return []

    def _report(self, d: Detection) -> None:
        details = audit_details(d)
        subject = details.get("key_prefix") or details.get("subject")
        log.warning(
            "anomaly %s: %s observed %s, expected at most %s (window %s s)",
            d.rule, subject, details["observed"], details["expected"], details["window_s"],
        )
        if self.metrics is not None:
            self.metrics.anomalies_total.labels(rule=d.rule).inc()
        if self.audit is not None:
            try:
                self.audit.append(self.actor, "anomaly", outcome="detected", details=details)
            except Exception as e:  # the audit log refuses (disk full...): the log line stays
                log.error("anomaly %s: cannot write its audit entry: %s", d.rule, escape(" ".join(str(e).split())[:300]))

    def _set_active(self, active: Mapping[str, int]) -> None:
        if self.metrics is not None:
            for rule, n in active.items():
                self.metrics.anomaly_active.labels(rule=rule).set(1 if n else 0)

    def refresh(self) -> None:
        """Bring ``anomaly_active`` up to date (detections age out of the window): call periodically."""
        if not self.cfg.enabled or self.metrics is None:
            return
        with self._lock:
            active = self.engine.active(self.clock())
        self._set_active(active)

    def refill_requests(self, since: Callable[[int], Sequence[tuple[str, int]]]) -> int:
        """At start: count the requests accepted within ``requester_rate``'s horizon (its window
        and baseline windows) before a restart, so a burst split by the restart is still seen.
        ``since(floor_ms)``: the stored requests created after ``floor_ms`` as (requester, ms on
        :attr:`clock`: the store's steady clock, which continues across restarts). Returns how
        many were counted; a failure to read them is logged (the windows start empty), never raised."""
        if not self.cfg.enabled:
            return 0
        try:
            with self._lock:
                now = self.clock()
                rows = since(now - self.cfg.window_ms * (self.cfg.baseline_windows + 1))
                self.engine.refill_requests(rows)
            return len(rows)
        except Exception:
            log.exception("refilling the anomaly windows from the stored requests failed")
            return 0

    # --- events ------------------------------------------------------------------------------
    def request_created(self, requester: str, key_id: bytes) -> list[Detection]:
        return self._run("request", lambda e, now: e.request_created(requester, key_id, now))

    def request_rejected(self, requester: str, key_id: bytes) -> list[Detection]:
        return self._run("rejection", lambda e, now: e.request_rejected(requester, key_id, now))

    def signed(
        self, key_id: bytes, path: Sequence[int], signers: Iterable[str], started_ms: int | None = None
    ) -> list[Detection]:
        """A signature on ``key_id`` at ``path`` by the nodes named ``signers``, whose signing
        started at ``started_ms`` (ms on :attr:`clock`, read then; default now)."""
        names = list(signers)
        return self._run("signature", lambda e, now: e.signed(key_id, path, names, now, started_ms))

    def rpc_denied(self, caller: str) -> list[Detection]:
        return self._run("denial", lambda e, now: e.rpc_denied(caller, now))

    def session_aborted(self, key_id: bytes, bans: int = 0) -> list[Detection]:
        return self._run("abort", lambda e, now: e.session_aborted(key_id, bans, now))

    def audit_head(self, node: str, seq: int) -> list[Detection]:
        return self._run("audit head", lambda e, now: e.audit_head(node, seq, now))

    def poll_due(self) -> bool:
        """True (and the next poll scheduled) when the nodes' audit heads should be polled now."""
        if not self.cfg.enabled:
            return False
        now = self.clock()
        with self._lock:
            if now < self._next_poll_ms:
                return False
            self._next_poll_ms = now + max(1000, round(self.cfg.audit_stall_s * 250))
            return True

    def poll_audit_heads(self, heads: Callable[[], Mapping[str, int]]) -> None:
        """If due, read every reachable node's audit head (``heads()``: node name -> head_seq) and
        feed them to ``audit_head_stalled``; also refreshes ``anomaly_active``."""
        if not self.poll_due():
            return
        try:
            found = heads()
        except Exception:
            log.exception("polling the nodes' audit heads failed")
            return
        for node, seq in found.items():
            self.audit_head(node, seq)
        self.refresh()

    def watching_denials(self, audit: _Audit) -> _DenialWatch:
        """``audit``, seen through: an ``rpc-denied`` entry appended to it is also a denied call
        (for :func:`mpcnet.common.rpc.audited_role_check`)."""
        return _DenialWatch(audit, self)


class _DenialWatch:
    def __init__(self, audit: _Audit, monitor: AnomalyMonitor) -> None:
        self._audit, self._monitor = audit, monitor

    def append(self, actor: str, action: str, *, outcome: str = "", details: Mapping[str, Any] | None = None) -> Any:
        entry = self._audit.append(actor, action, outcome=outcome, details=details)
        if action == "rpc-denied":
            self._monitor.rpc_denied(actor)
        return entry


def audit_heads(nodes: Iterable[Any], timeout_s: float = 1.0) -> dict[str, int]:
    """Each healthy node's audit head: ``{name: head_seq}`` from ``GetAuditLog`` with an
    ``after_seq`` past any head (no entries are sent). ``nodes``: :class:`coordinator.relay.NodeHandle` s;
    a node that does not answer is left out (the health probe reports it)."""
    from mpcnet.wire.mpc.v1 import governance_pb2

    out: dict[str, int] = {}
    for h in nodes:
        if h.healthy is False:
            continue
        try:
            page = h.stub.GetAuditLog(governance_pb2.AuditLogRequest(after_seq=_FAR_AHEAD, limit=1), timeout=timeout_s)
        except Exception as e:  # grpc.RpcError, or the node being replaced
            log.debug("audit head of %s: %s", h.label, type(e).__name__)
            continue
        out[h.name] = int(page.head_seq)
    return out
