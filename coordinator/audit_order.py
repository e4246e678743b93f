"""An audit entry no state change goes with (a refusal), appended in causal order: the entries
the audit outbox queued before it are flushed first, so the log shows them before it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from mpcnet.common.stores.audit import AuditLog

log = logging.getLogger("coordinator.audit_order")


def append_after_queued(
    audit: AuditLog, flush_now: Callable[[], object], actor: str, action: str, outcome: str,
    details: Mapping[str, str | int | bool],
) -> None:
    """``flush_now()`` (a failure is logged: the queued entries stay queued and the flusher
    retries them), then append the entry directly. Raises what :meth:`AuditLog.append` raises."""
    try:
        flush_now()
    except Exception as e:  # they stay queued; the refusal is still audited
        log.warning("audit: queued entries not flushed before a %s entry (%s)", action, type(e).__name__)
    audit.append(actor, action, outcome=outcome, details=dict(details))
