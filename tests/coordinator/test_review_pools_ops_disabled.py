"""Review E, finding 4: a cluster restarted with pools off (``mpc-cluster up --no-presign`` on a
cluster that had them: every node restarted and deleted its fresh presignatures) kept showing
the old pools as ready (``mpc status``: "DISABLED (pools left from before): ... 96 ready",
``mpc keys``: "presigs 48") although no node held one. A coordinator with pools off reconciles
once at its start: the ready presignatures the nodes no longer hold are discarded; the ones
they still hold stay listed."""

from __future__ import annotations

import time
from pathlib import Path

from coordinator.pool_config import PresignConfig

from .pool_util import cluster


def test_pools_off_the_start_reconciles_once(tmp_path: Path) -> None:
    c = cluster(tmp_path, cfg=PresignConfig(enabled=False))
    kept = c.presign((1, 2), 2, seed=b"kept")
    lost = c.presign((1, 3), 2, seed=b"lost")
    for r in lost:  # node 3 restarted: its part of the (1, 3) pool is gone (node 1 still holds its own)
        c.stubs[3].fresh.pop(r.presig_id)
    c.pools.start()
    deadline = time.monotonic() + 5
    while c.db.presigs_ready_of_key(c.key.key_id) != 2:
        assert time.monotonic() < deadline, c.db.pool_counts()
        time.sleep(0.02)
    assert {r.presig_id for r in c.db.ready_presigs()} == {r.presig_id for r in kept}
