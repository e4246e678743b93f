"""Fixtures that run real node and coordinator processes on localhost.

Clusters use a small scrypt cost and unique temporary directories; every process is stopped in
teardown (and killed if it does not stop). One 3-of-5 cluster is shared by the tests that do not
disturb it; fault tests build their own.

Every cluster has the demo identities (admin1..3, requester1, approver1..3, auditor1); a
:class:`mpcnet.client.SigningTeam` (requester1 with approver1 and approver2) gets signatures
through the approval flow, as every signature must.
"""

from __future__ import annotations

import pytest

from mpcnet.client import MpcClient, SigningTeam
from mpcnet.cluster.launcher import LocalCluster, prepare

TEST_SCRYPT_N = 2**10


def make_cluster(tmp_path_factory: pytest.TempPathFactory, name: str, n: int, t: int, **kw: object) -> LocalCluster:
    d = tmp_path_factory.mktemp(name)
    lay = prepare(d, n, t, scrypt_n=TEST_SCRYPT_N, test_mode=True, **kw)  # type: ignore[arg-type]
    return LocalCluster(lay)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = make_cluster(tmp_path_factory, "cluster-3of5", 5, 3)
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def client(cluster: LocalCluster):
    """admin1: creates keys, reads everything."""
    with MpcClient.from_cluster(cluster.lay.dir, identity="admin1", timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def team(cluster: LocalCluster):
    """requester1 with approver1 and approver2."""
    with SigningTeam.from_cluster(cluster.lay.dir, timeout=120) as t:
        yield t


@pytest.fixture(scope="session")
def key(client: MpcClient):
    return client.create_key("shared-test-key")
