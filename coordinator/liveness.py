"""A second, longer look at nodes judged down before a foreground operation fails for them.

The background health probe (:meth:`coordinator.service.CoordinatorService.probe`) gives each node
1 s to answer; a node busy with presign sessions or a DKG can answer later than that once and is
then marked down although it is fine. Signing copes (it falls back between signer sets), but a
refresh needs its whole committee and a reshare its old threshold: such an operation, about to
fail for "unavailable" nodes, first asks exactly those nodes' ``Health`` again, at once, with a
longer deadline (``liveness_recheck_s`` of the coordinator config, default
:data:`coordinator.config.DEFAULT_RECHECK_S` = 5 seconds). A node that answers serving is marked up and the operation
proceeds; one that answers NOT_SERVING or does not answer stays down (marked with the new reason)
and the operation fails with the same message as without the second look.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from coordinator.relay import NodeHandle, fanout
from governance.text import escape
from mpcnet.common.rpc import status_of
from mpcnet.wire.mpc.v1 import node_pb2

log = logging.getLogger("coordinator.liveness")


def recheck(
    nodes: Mapping[int, NodeHandle], indices: Iterable[int], timeout_s: float, on_back: Callable[[int], None] | None = None,
) -> dict[int, str]:
    """Ask ``Health`` of each of ``indices`` (those in ``nodes``) once more, all at once, waiting up
    to ``timeout_s`` seconds (also for a channel that is reconnecting). A node that answers
    serving is marked up (``on_back(i)`` first if it was marked down: it may have missed policy or
    roster pushes); any other is marked down with the reason. Returns index -> why it is still
    unavailable (``"NOT_SERVING: ..."`` or the gRPC code and details, escaped); an index not in
    ``nodes`` is left out (the caller names it)."""
    asked = {i: nodes[i] for i in dict.fromkeys(indices) if i in nodes}
    if not asked:
        return {}
    req = node_pb2.NodeHealthRequest()
    ok, errs = fanout({i: (h.stub.Health, req) for i, h in asked.items()}, timeout_s, wait_for_ready=True)
    still: dict[int, str] = {}
    for i, resp in ok.items():
        h = asked[i]
        if not resp.serving:
            why = f"NOT_SERVING: {escape(resp.reason[:300]) or 'no reason given'}"
            h.mark_down(why)
            still[i] = why
            continue
        if h.healthy is False:
            log.info("%s answered its health check within %.1f s: available (it had answered late or not at all)",
                     h.label, timeout_s)
            if on_back is not None:
                on_back(i)
        h.mark_up()
    for i, e in errs.items():
        code, details = status_of(e)
        why = f"{code.name}: {details[:300]}" if details else code.name  # status_of escaped them
        asked[i].mark_down(why)
        still[i] = why
    return still
