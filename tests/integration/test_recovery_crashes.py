"""Issue 12 on real processes, killed like an on-call operator would (``kill -9``), on one 2-of-3
test cluster per test (LocalCluster: the test is the supervisor, so a node can stay down for a while):

* a node down while the recovery configuration is applied: the key is not backed up,
  ``ClusterStatus`` (``mpc status``) says why (the node and its error) and that the coordinator
  retries; once the node is back the bundle is collected at the next health pass, not after the
  collection backoff;
* the coordinator killed while a drill runs (right after the m-th officer's pieces were
  acknowledged): after the restart the drill finishes and is recorded exactly once, the
  acknowledged pieces count.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from governance.recovery import (
    BackupBundle,
    Officer,
    PiecePurpose,
    RecoveryConfig,
    RecoveryConfigChange,
    SignedRecoveryConfigChange,
    sign_recovery_config_change,
)
from mpcnet.client import MpcClient
from mpcnet.client.cli_backup import status_rows
from mpcnet.client.identities import load_identity
from mpcnet.cluster.launcher import LocalCluster
from mpcnet.common import agekeys
from mpcnet.common.backup import officer_deliveries
from mpcnet.common.pki import channel_credentials
from mpcnet.common.rpc import CHANNEL_OPTIONS
from mpcnet.wire.mpc.v1 import coordinator_pb2, coordinator_pb2_grpc

from .conftest import make_cluster

N, T = 3, 2
OFFICERS = ("officer1", "officer2", "officer3")
APPLIED = coordinator_pb2.PROPOSAL_STATE_APPLIED


@pytest.fixture
def kc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A fresh cluster per test (each test stands alone, also under xdist)."""
    c = make_cluster(tmp_path_factory, "recovery-crash-2of3", N, T)
    try:
        c.start_all()
        yield c
    finally:
        c.stop()


def stub(kc: LocalCluster, who: str) -> coordinator_pb2_grpc.CoordinatorStub:
    ep = kc.lay.endpoints()["coordinator"]
    ch = grpc.secure_channel(ep, channel_credentials(load_identity(kc.lay.dir, who).cert, kc.lay.ca.cert), options=CHANNEL_OPTIONS)
    return coordinator_pb2_grpc.CoordinatorStub(ch)


def wait_for(what: str, fn: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = fn()
        except grpc.RpcError:
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.2)


def status(kc: LocalCluster) -> coordinator_pb2.ClusterStatusResponse:
    return stub(kc, "auditor1").ClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=30)


@pytest.fixture(scope="module")
def officers() -> dict[str, tuple[bytes, bytes]]:
    return {o: agekeys.generate() for o in OFFICERS}


@pytest.fixture
def key(kc: LocalCluster) -> Any:
    with MpcClient.from_cluster(kc.lay.dir, identity="admin1", timeout=120) as a1:
        return a1.create_key("recovery-crash")


def configure(kc: LocalCluster, officers: dict[str, tuple[bytes, bytes]]) -> None:
    """admin1 proposes recovery configuration 1 (the three officers, quorum 2), admin2 approves."""
    admins, _ = kc.lay.governance()
    change = RecoveryConfigChange(admins.digest(), None, RecoveryConfig(1, tuple(Officer(o, officers[o][1]) for o in OFFICERS), 2, 3, 0))
    sig1 = sign_recovery_config_change(change, "admin1", load_identity(kc.lay.dir, "admin1").signing_key)
    p = stub(kc, "admin1").ProposeRecoveryConfig(coordinator_pb2.ProposeRecoveryConfigRequest(
        signed_change=SignedRecoveryConfigChange(change, (sig1,)).to_bytes()), timeout=60)
    sig2 = sign_recovery_config_change(change, "admin2", load_identity(kc.lay.dir, "admin2").signing_key)
    p = stub(kc, "admin2").ApproveLifecycleProposal(coordinator_pb2.ApproveLifecycleProposalRequest(
        proposal_id=p.proposal_id, admin="admin2", signature=sig2.signature), timeout=60)
    assert p.state == APPLIED, p


def test_a_node_down_delays_the_backup_cleanly_and_it_comes_once_the_node_is_back(
    kc: LocalCluster, key: Any, officers: dict[str, tuple[bytes, bytes]]
) -> None:
    kc.kill("node-3")
    configure(kc, officers)
    # the collection fails (node 3 is down): status names the node and says it is retried
    row = wait_for("a backup error naming node 3", lambda: next(
        (b for b in status(kc).backups if not b.backed_up and "node 3" in b.backup_error), None), timeout=30)
    assert "next try" in row.backup_error
    text = " ".join(v for _, v in status_rows(status(kc)))
    assert "NOT BACKED UP" in text and "node 3" in text, text
    time.sleep(3)  # down "for a while": a second failed pass (if any) only grows the backoff
    t0 = time.monotonic()
    kc.start("node-3")
    kc.wait_healthy(["node-3"])
    row = wait_for("the bundle once node 3 is back", lambda: next((b for b in status(kc).backups if b.backed_up), None), timeout=25)
    took = time.monotonic() - t0
    assert row.backup_error == ""
    print(f"\nbundle collected {took:.1f} s after node 3 was restarted")
    assert took < 20


def test_the_coordinator_killed_while_a_drill_runs_records_it_once(
    kc: LocalCluster, key: Any, officers: dict[str, tuple[bytes, bytes]]
) -> None:
    configure(kc, officers)
    wait_for("a bundle", lambda: next((b for b in status(kc).backups if b.backed_up), None))
    c = stub(kc, "officer1").StartDrill(coordinator_pb2.StartDrillRequest(key_id=key.key_id), timeout=60)
    info = stub(kc, "officer1").ExportBackup(coordinator_pb2.ExportBackupRequest(key_id=key.key_id, bundle_digest=c.bundle_digest),
                                            timeout=30)
    bundle = BackupBundle.from_file(bytes(info.bundle))
    targets = {t.share_index: bytes(t.recipient) for t in c.targets}

    def submit(o: str) -> coordinator_pb2.Ceremony:
        files = officer_deliveries(bundle, officers[o][0], ceremony_id=c.ceremony_id, purpose=PiecePurpose.DRILL, targets=targets)
        return stub(kc, o).SubmitRecoveryPieces(coordinator_pb2.SubmitRecoveryPiecesRequest(
            ceremony_id=c.ceremony_id, officer=o,
            pieces=[coordinator_pb2.TargetPiece(share_index=s, ciphertext=f) for s, f in sorted(files.items())]), timeout=60)

    submit("officer1")
    submit("officer3")  # acknowledged: the drill runs in the background ...
    kc.kill("coordinator")  # ... and the coordinator dies (kill -9)
    t0 = time.monotonic()
    kc.start("coordinator")
    kc.wait_healthy(["coordinator"])

    def done() -> coordinator_pb2.Ceremony | None:
        got = stub(kc, "auditor1").GetCeremony(coordinator_pb2.GetCeremonyRequest(ceremony_id=c.ceremony_id), timeout=30)
        return got if got.state in ("done", "failed") else None

    final = wait_for("the drill after the restart", done, timeout=25)
    print(f"\ndrill finished {time.monotonic() - t0:.1f} s after the coordinator restart")
    assert final.state == "done", final.error
    assert list(final.officers) == ["officer1", "officer3"]
    drills = stub(kc, "auditor1").ListCeremonies(coordinator_pb2.ListCeremoniesRequest(key_id=key.key_id), timeout=30).ceremonies
    assert [d.ceremony_id for d in drills if d.kind == "drill"] == [c.ceremony_id]
    [row] = [b for b in status(kc).backups if b.key_id == key.key_id]
    assert row.last_drill_outcome == "ok" and row.last_drill_unix_ms > 0
