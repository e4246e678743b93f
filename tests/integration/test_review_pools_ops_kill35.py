"""The kills of :mod:`test_review_pools_ops_kill` on a 3-of-5 cluster (pools on, the launcher's
defaults): the coordinator and nodes SIGKILLed at random moments and at the crash points under
signing load; every request ends within MAX_SIGN_ATTEMPTS, no ``r`` twice, OpenSSL verifies,
nothing stays SIGNING or assigned, the pools refill, the audit trail verifies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mpcnet.cluster.launcher import LocalCluster

from .conftest import make_cluster
from .test_review_pools_ops_kill import _coord_env, kills_under_load

PLAN_3OF5: list[tuple[list[str], str | None]] = [
    (["node-4"], None),
    (["node-1"], "presign-consumed"),
    (["coordinator"], "presig-assigned"),
    (["coordinator", "node-5"], None),
    (["coordinator"], "presig-partial"),
    (["node-3"], None),
]


@pytest.fixture(scope="module")
def kc35(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = make_cluster(tmp_path_factory, "review-pools-kill35", 5, 3, fault_files=True)
    try:
        c.start_all()
        c.kill("coordinator")  # the coordinator reads its fault file from now on
        c.start("coordinator", _coord_env(c))
        c.wait_healthy(["coordinator"])
        yield c
    finally:
        c.stop()


def test_kills_on_3_of_5_under_signing_load(kc35: LocalCluster) -> None:
    kills_under_load(kc35, PLAN_3OF5, "review-pools-kill35")
