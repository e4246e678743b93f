"""Review of issue 14 (attacker), seen on a real 2-of-3 cluster (``mpc-cluster up``, node-1
SIGSTOPped while its pools were full): the request chosen for a pool with the hung node took 65 s
(SignPresigned waited the whole step timeout, 20 s, then was retried with another 20 s although
the health poll had marked the node down 0.3 s in, then the discard waited 5 s more on the hung
node before the full protocol started). A hung or slow-walking corrupted signer must cost a
pool attempt little: one short deadline, no retry of a node already known down, and no
discard RPC to a node that is down (it is reconciled when it is back)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import grpc

from coordinator.presigned import PresignedDeps, PresignedSigning

from .pool_util import NodeError, cluster

DIGEST = hashlib.sha256(b"pay 1 coin").digest()


def test_a_hung_signer_is_asked_once_with_a_short_deadline_and_sent_no_discard(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    rows = c.presign((1, 2), 2)
    signing = PresignedSigning(PresignedDeps(c.pools, lambda *a: [], lambda: b"", 20.0, threading.Event()))  # the default step timeout
    asked: list[float] = []
    discards: list[int] = []

    def hung(req: Any, timeout: float | None = None, **_: Any) -> Any:
        asked.append(float(timeout or 0))
        c.nodes[2].mark_down("DEADLINE_EXCEEDED: health poll")  # the poller saw it meanwhile
        raise NodeError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    def discard(req: Any, **_: Any) -> Any:
        discards.append(len(req.presig_ids))
        raise NodeError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    c.stubs[2].SignPresigned = hung  # type: ignore[method-assign]
    c.stubs[2].DiscardPresignatures = discard  # type: ignore[method-assign]
    assert signing.sign("req-1", c.key, DIGEST, (), b"b") is None  # the full protocol signs
    assert len(asked) == 1, asked  # not retried: it is known down
    assert 0 < asked[0] <= 5.0, asked  # one RPC of a few ms: never the 20 s step timeout
    assert discards == []  # no discard waits on a node that is down
    assert rows[0].presig_id not in {r.presig_id for r in c.db.ready_presigs()}
    assert c.db.presig_assigned_to("req-1") is None
