"""The roster's part of ``ClusterStatus`` (issue 11 item 5): the roster version and epoch in force,
each listed node's roster entry (key version, identity key, TLS certificate fingerprint), and the
revoked nodes, listed with ``revoked=true`` (never probed: the coordinator does not dial them).
"""

from __future__ import annotations

from coordinator.roster import RosterBook
from mpcnet.wire.mpc.v1 import coordinator_pb2


def roster_status(resp: coordinator_pb2.ClusterStatusResponse, book: RosterBook) -> None:
    """Fill ``resp`` (whose ``nodes`` hold the active nodes' handles) from ``book``'s roster in
    force, in place; a legacy config (no signed roster) leaves it unchanged (version 0)."""
    roster = book.current()
    if roster is None:
        return
    resp.roster_version = roster.version
    resp.roster_epoch = roster.epoch
    listed = set()
    for ns in resp.nodes:
        e = roster.entry(ns.index)
        if e is None:
            continue
        listed.add(ns.index)
        ns.key_version = e.key_version
        ns.identity_public = e.identity_key
        ns.tls_fingerprint = e.tls_fingerprint
    for e in roster.entries:
        if e.active or e.index in listed:
            continue
        resp.nodes.append(
            coordinator_pb2.NodeStatus(
                index=e.index, name=e.name, endpoint=e.endpoint, healthy=False, last_error="revoked", revoked=True,
                key_version=e.key_version, identity_public=e.identity_key, tls_fingerprint=e.tls_fingerprint,
            )
        )
    nodes = sorted(resp.nodes, key=lambda n: n.index)
    del resp.nodes[:]
    resp.nodes.extend(nodes)
