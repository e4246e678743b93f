"""Review of issue 14 (attacker): a corrupted node answers ListPresignatures with a huge listing
(about 4 MB: 60,000 made-up presignatures). The coordinator's reconcile must stay cheap (it
looked each id up in its database one by one, under the database lock the request path takes,
and sent all of them back in one DiscardPresignatures) and still do its job for the ids that
matter."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from coordinator.pool import MAX_LISTED
from mpcnet.wire.mpc.v1 import node_pb2

from .pool_util import cluster

FLOOD = 60_000


def test_a_flooded_listing_is_reconciled_in_bounded_work(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    rows = c.presign((1, 2), 2)
    fake = [node_pb2.PresignatureInfo(presig_id=os.urandom(32), key_id=c.key.key_id) for _ in range(FLOOD)]
    held = [node_pb2.PresignatureInfo(presig_id=rows[0].presig_id, key_id=c.key.key_id)]  # it dropped rows[1]
    looked: list[int] = []
    sent: list[int] = []
    real_live = c.db.presigs_live

    def live(ids: Any) -> set[bytes]:
        looked.append(len(ids))
        return real_live(ids)

    c.db.presigs_live = live  # type: ignore[method-assign]
    c.stubs[2].ListPresignatures = lambda req, **_: node_pb2.ListPresignaturesResponse(presignatures=held + fake)  # type: ignore[method-assign]
    c.stubs[2].DiscardPresignatures = lambda req, **_: sent.append(len(req.presig_ids)) or node_pb2.DiscardPresignaturesResponse()  # type: ignore[method-assign]
    t0 = time.perf_counter()
    assert c.pools.reconcile(c.nodes[2])  # type: ignore[arg-type]
    took = time.perf_counter() - t0
    assert [r.presig_id for r in c.db.ready_presigs()] == [rows[0].presig_id]  # the one it no longer holds is discarded
    assert sum(looked) <= MAX_LISTED and all(n <= MAX_LISTED for n in sent), (looked, sent)
    assert took < 5.0, took
