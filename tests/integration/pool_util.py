"""Test clusters run the coordinator's presignature pools (issue 14, coordinator/pool.py): the
refiller runs presign sessions in the background (each adds ``presign`` audit entries on its
nodes) and approved requests sign in one round from a pool when one is ready. Tests that need a
quiet cluster (they read or edit live files) wait for the pools to be full
(:func:`pools_settled`); a test about the full multi-round protocol in a module whose cluster
keeps pools on turns them off for itself (:func:`pools_off`)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from math import comb

from coordinator.pool import SETS_PER_KEY
from mpcnet.client import MpcClient
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.wire.mpc.v1 import common_pb2, coordinator_pb2, node_pb2

from .conftest import coordinator_handles


def pools_settled(c: LocalCluster, timeout: float = 120.0) -> None:
    """Wait until no presign session runs and none is due: every active key has its
    ``min(SETS_PER_KEY, C(n, t))`` pools per configured path, each with nothing filling and
    more than ``refill_at`` ready, and no node has a live presign session (immediately when the
    coordinator's pools are off). Raises AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    paths = len(json.loads(c.lay.coordinator_config.read_text()).get("presign", {}).get("paths", [[]]))
    with MpcClient.from_cluster(c.lay.dir, identity="auditor1", timeout=30) as cl, coordinator_handles(c) as hs:
        while True:
            st = cl._stub.ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30)
            if not st.presign_enabled:
                return
            keys = cl._stub.ListKeys(coordinator_pb2.ListKeysRequest(), timeout=30).keys
            full = all(
                len(pools := [p for p in st.pools if p.key_id == k.key_id])
                >= paths * min(SETS_PER_KEY, comb(len(k.committee) or k.parties, k.threshold))
                and all(p.filling == 0 and p.ready > p.refill_at for p in pools)
                for k in keys if k.status == common_pb2.KEY_STATUS_ACTIVE
            )
            if full and all(h.stub.Health(node_pb2.NodeHealthRequest(), timeout=30).presign_sessions == 0 for h in hs.values()):
                return
            assert time.monotonic() < deadline, f"the pools did not settle: {st.pools}"
            time.sleep(0.2)


@contextlib.contextmanager
def pools_off(c: LocalCluster) -> Iterator[None]:
    """The coordinator restarted with ``presign.enabled`` false for the block (every request
    then runs the full protocol; the nodes keep what they hold), then restarted with its
    config as it was."""
    path = c.lay.coordinator_config
    original = path.read_text()
    doc = json.loads(original)
    doc["presign"]["enabled"] = False
    path.write_text(json.dumps(doc))
    c.restart("coordinator")
    try:
        yield
    finally:
        path.write_text(original)
        c.restart("coordinator")
