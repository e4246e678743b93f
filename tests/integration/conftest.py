"""Fixtures that run real node and coordinator processes on localhost.

Clusters use a small scrypt cost and unique temporary directories; every process is stopped in
teardown (and killed if it does not stop). One 3-of-5 cluster is shared by the tests that do not
disturb it; fault tests build their own.

Every cluster has the demo identities (admin1..3, requester1, approver1..3, auditor1); a
:class:`mpcnet.client.SigningTeam` (requester1 with approver1 and approver2) gets signatures
through the approval flow, as every signature must.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from coordinator.config import NodeEndpoint
from coordinator.relay import NodeHandle
from mpcnet.client import MpcClient, SigningTeam
from mpcnet.cluster.launcher import LocalCluster, prepare
from mpcnet.common.pki import channel_credentials

TEST_SCRYPT_N = 2**10


def make_cluster(
    tmp_path_factory: pytest.TempPathFactory, name: str, n: int, t: int, *, fault_files: bool = False, **kw: object
) -> LocalCluster:
    """A prepared (not started) test cluster; with ``fault_files`` every node reads its fault
    file ``DIR/faults/node-i.json`` (``MPC_TEST_FAULT_FILE``, see :mod:`mpc_node.faults`)."""
    d = tmp_path_factory.mktemp(name)
    lay = prepare(d, n, t, scrypt_n=TEST_SCRYPT_N, test_mode=True, **kw)  # type: ignore[arg-type]
    c = LocalCluster(lay)
    if fault_files:
        fdir = lay.dir / "faults"
        fdir.mkdir()
        for i in range(1, n + 1):
            c.node_env[i] = {"MPC_TEST_FAULT_FILE": str(fdir / f"node-{i}.json")}
    return c


@contextlib.contextmanager
def coordinator_handles(c: LocalCluster) -> Iterator[dict[int, NodeHandle]]:
    """A channel to every node with the coordinator's certificate: the harness plays a
    (compromised) coordinator calling the nodes directly."""
    creds = channel_credentials(c.lay.cert("coordinator"), c.lay.ca.cert)
    eps = c.lay.endpoints()
    hs = {i: NodeHandle(NodeEndpoint(i, f"node-{i}", eps[f"node-{i}"]), creds) for i in range(1, c.lay.nodes + 1)}
    try:
        yield hs
    finally:
        for h in hs.values():
            h.close()


@contextlib.contextmanager
def running_cluster(
    tmp_path_factory: pytest.TempPathFactory, name: str, n: int, t: int, *, fault_files: bool = False, **kw: object
) -> Iterator[LocalCluster]:
    """:func:`make_cluster`, started; stopped when the block ends (a module's cluster fixture)."""
    c = make_cluster(tmp_path_factory, name, n, t, fault_files=fault_files, **kw)
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with running_cluster(tmp_path_factory, "cluster-3of5", 5, 3) as c:
        yield c


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


@contextlib.contextmanager
def coordinator_on_tmpfs(c: LocalCluster, size: str) -> Iterator[LocalCluster]:
    """Start ``c`` with its coordinator's data directory on a tmpfs of ``size`` (e.g. ``"4m"``),
    so that a test can fill the coordinator's disk; skips the test where no tmpfs can be mounted
    (it needs root). Stops the cluster and unmounts on exit."""
    d = c.lay.coordinator_dir
    saved = d.parent / "coordinator.saved"
    shutil.copytree(d, saved)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=700", "tmpfs", str(d)], capture_output=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        shutil.copytree(saved, d, dirs_exist_ok=True)
        c.start_all()
        yield c
    finally:
        c.stop()
        subprocess.run(["umount", str(d)], capture_output=True)
