"""The coordinator's FROST commitments kept in step with what the nodes still hold (issue 16).

A node deletes every fresh nonce pair when it starts (``mpc_node.frost_sign``: a restored store
must never revive a nonce), and on an epoch commit of a key. The coordinator's ``fresh`` rows of
that node (:mod:`coordinator.nonce_store`) then name commitments whose secrets are gone: each one
offered in a package costs an attempt (the node answers ``nonce-unknown``), and a restart of
several nodes could use up a request's MAX_SIGN_ATTEMPTS. Restarts can be quicker than the
health probe notices (a node is never seen down), so the signal is the count.

Each health probe reports ``NodeHealthResponse.nonces`` (fresh pairs the node stores, all keys).
A node always stores a batch before the coordinator records it, and keeps an assigned pair
until it signs, so in steady state ``reported >= held`` (``held``: the coordinator's fresh rows
of that node, all keys and epochs). ``reported < held`` on two consecutive probes (one could be
a batch recorded between the node's answer and our count) means the node lost some: every
fresh row of that node is then marked ``discarded`` (reason ``node-lost-nonces``; never offered,
as any discarded row) in one transaction, and the node is asked, best effort, to delete those
nonce ids it may still hold (``DiscardNonces``, per key), so both sides start empty and the
background refill makes new ones. A wrong guess costs one refill, never a reused nonce:
assigned == spent is untouched (only ``fresh`` rows change).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from coordinator.db import CoordinatorDb, now_ms
from coordinator.live_rows import NONCE_LIVE
from coordinator.relay import NodeHandle, fanout
from mpcnet.common.rpc import status_of
from mpcnet.wire.mpc.v1 import node_pb2

log = logging.getLogger("coordinator.frost_nonce_sync")

REASON = "node-lost-nonces"
DISCARD_TIMEOUT_S = 2.0
MAX_DISCARD_IDS = 4096  # nonce_ids per DiscardNonces (the node's limit)


class NonceSync:
    """:meth:`observe` each probe's reported counts (module docstring). Thread-safe."""

    def __init__(self, db: CoordinatorDb, nodes: Callable[[], Mapping[int, NodeHandle]]) -> None:
        self.db = db
        self.nodes = nodes
        self._suspect: set[int] = set()
        self._lock = threading.Lock()

    def held(self) -> dict[int, int]:
        """node -> the coordinator's fresh commitments of it (all keys, all epochs)."""
        rows = self.db._query(f"SELECT node, COUNT(*) FROM frost_nonces WHERE {NONCE_LIVE} GROUP BY node")
        return {int(n): int(c) for n, c in rows}

    def observe(self, reported: Mapping[int, int]) -> dict[int, int]:
        """``reported``: node -> ``NodeHealthResponse.nonces`` of this probe. Returns node -> how
        many of its fresh commitments were discarded now (second consecutive shortfall)."""
        with self._lock:
            held = self.held()
            dropped: dict[int, int] = {}
            for i, count in sorted(reported.items()):
                if held.get(i, 0) <= count:
                    self._suspect.discard(i)
                elif i not in self._suspect:
                    self._suspect.add(i)
                else:
                    self._suspect.discard(i)
                    dropped[i] = self.drop(i, held.get(i, 0), count)
            return dropped

    def drop(self, node: int, held: int = 0, reported: int = 0) -> int:
        """Discard every fresh commitment of ``node`` (one transaction), then ask the node to
        delete those nonce ids (best effort); how many were discarded."""
        with self.db._tx() as c:
            rows = [(bytes(n), bytes(k)) for n, k in c.execute(
                f"SELECT nonce_id, key_id FROM frost_nonces WHERE node = ? AND {NONCE_LIVE}", (node,))]
            c.executemany(
                "UPDATE frost_nonces SET state = 'discarded', reason = ?, updated_ms = ? WHERE nonce_id = ? AND state = 'fresh'",
                [(REASON, now_ms(), n) for n, _ in rows],
            )
        if not rows:
            return 0
        log.warning("node %d holds %d fresh FROST nonce pair(s), the coordinator had %d of it (restarted?): "
                    "%d commitment(s) discarded, refilling", node, reported, held, len(rows))
        by_key: dict[bytes, list[bytes]] = {}
        for n, k in rows:
            by_key.setdefault(k, []).append(n)
        h = self.nodes().get(node)
        if h is not None:
            for k, ids in by_key.items():
                for at in range(0, len(ids), MAX_DISCARD_IDS):
                    req = node_pb2.DiscardNoncesRequest(key_id=k, nonce_ids=ids[at:at + MAX_DISCARD_IDS], reason=REASON)
                    _, errs = fanout({node: (h.stub.DiscardNonces, req)}, DISCARD_TIMEOUT_S)
                    for err in errs.values():
                        log.info("node %d did not discard its lost nonces of key %s (%s)", node, k.hex()[:16], status_of(err)[0].name)
        return len(rows)
