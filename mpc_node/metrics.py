"""The node's metrics (issue 15): what :mod:`mpcnet.common.metrics` defines, fed from a
:class:`~mpc_node.service.NodeService`.

Read at each scrape: ``mpcnet_sessions_live{protocol}`` (live sessions by kind),
``mpcnet_store_healthy`` (the last store probe wrote), ``mpcnet_disk_free_bytes`` (the store's
directory), ``mpcnet_audit_entries_total`` / ``mpcnet_audit_head_age_seconds`` (the audit head).
Counted by the service: ``mpcnet_sessions_aborted_total{protocol,reason}`` (:func:`count_abort`),
``mpcnet_round_seconds{protocol,round}`` (:func:`timed_round`), ``mpcnet_bans_total``, and
``mpcnet_rpc_denied_total{role,method}`` by the role check (``mpc_node.main``). No label carries
a key id, session id, request id or digest.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mpcnet.common.metrics import ABORT_REASONS, MAX_ROUND, PROTOCOLS, Metrics, make_metrics, reason_class

if TYPE_CHECKING:
    from mpc_node.service import NodeService

# a session's kind → its protocol label
_PROTOCOL = {"dkg": "dkg", "sign": "sign", "reshare": "reshare", "presign": "presign", "refresh": "refresh"}


def protocol_label(kind: str) -> str:
    """A session kind (``dkg`` | ``sign`` | ``reshare``) as a ``protocol`` label, one of
    :data:`PROTOCOLS` (an unknown kind reads ``reshare``): bounded by construction."""
    return _PROTOCOL.get(kind, "reshare")


def count_abort(metrics: Metrics, kind: str, reason: str) -> None:
    """Count one aborted session of ``kind`` with reason class ``reason`` (:data:`ABORT_REASONS`)."""
    metrics.sessions_aborted_total.labels(protocol=protocol_label(kind), reason=reason_class(reason)).inc()


@contextmanager
def timed_round(metrics: Metrics, kind: str, rnd: int) -> Iterator[None]:
    """Observe the seconds the body takes as ``mpcnet_round_seconds{protocol, round}`` (the
    round clamped to 0..:data:`MAX_ROUND`), whether it succeeds or raises."""
    t0 = time.monotonic()
    try:
        yield
    finally:
        metrics.round_seconds.labels(protocol=protocol_label(kind), round=str(max(0, min(rnd, MAX_ROUND)))).observe(
            time.monotonic() - t0
        )


def node_metrics(service: NodeService) -> Metrics:
    """The metrics of ``service`` (:class:`NullMetrics` when its config has no ``metrics``),
    with the scrape-time readings wired to the service's sessions, store and audit log."""
    m = make_metrics("node", service.cfg.metrics)
    for protocol in PROTOCOLS:
        for reason in ABORT_REASONS:  # every child at 0 from the start: increase() sees the first abort
            m.sessions_aborted_total.labels(protocol=protocol, reason=reason).inc(0)
        m.sessions_live.labels(protocol=protocol).set_function(functools.partial(_live, service, protocol))
    m.watch_store(lambda: not service.store_problem)
    m.presignatures_available.set_function(functools.partial(_fresh, service))  # issue 14: fresh pool presignatures
    m.watch_disk(service.cfg.store.parent)
    m.watch_audit(service.audit.head_stamp, service.clock.now_ms)
    return m


def _live(service: NodeService, protocol: str) -> float:
    with service._lock:
        return float(sum(
            1 for s in service._sessions.values() if protocol_label(s.kind) == protocol and not s.done and s.failed is None
        ))


def _fresh(service: NodeService) -> float:
    """Fresh pool presignatures stored, all keys (0 while the store cannot be read)."""
    try:
        return float(service.pools.fresh_count())
    except Exception:
        return 0.0
